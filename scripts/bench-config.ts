/**
 * Config benchmark: `netprobify check` on generated files of N targets (scripts/gen-targets.ts:
 * TCPsyn on 198.18.0.0/15 with description, state, alert_level and threshold, in block style),
 * valid and with one fault in every target, each run in a fresh process: wall time, CPU time and
 * peak RSS (the child's own VmHWM: proc-stats.ts runMeasured), median and range over the repeats.
 *
 *   node_modules/.bin/bun scripts/bench-config.ts [--targets 1000,10000,100000] [--repeat 5]
 *     [--before DIR] [--timeout 120]
 *
 * --before DIR also runs the checkout in DIR (for example `git worktree add /tmp/before main`,
 * with node_modules beside it) on the same files in the same run, alternating which goes first;
 * a run past --timeout seconds is killed and shown as such. No root, no network; the machine's
 * load is printed with the table, since other work on it moves the times (peak RSS hardly).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXIT_USAGE } from "../src/cli/exit.ts";
import { targetFile } from "./gen-targets.ts";
import { runMeasured } from "./proc-stats.ts";

const REPO = resolve(import.meta.dir, "..");

export interface BenchOptions {
  readonly targets: readonly number[];
  readonly repeat: number;
  /** Another checkout to measure beside this one. */
  readonly before?: string;
  readonly timeoutS: number;
}

/** One run of `check`: what the process did and what it cost. */
export interface CheckRun {
  readonly exitCode: number | null;
  readonly lines: number;
  readonly wallS: number;
  readonly cpuS: number;
  readonly peakMb: number;
  readonly killed: boolean;
}

/** `bun src/main.ts check FILE` in `repo`, in a fresh process. */
export async function runCheck(repo: string, file: string, timeoutS: number): Promise<CheckRun> {
  const r = await runMeasured([process.execPath, join(repo, "src", "main.ts"), "check", file], { cwd: repo, timeoutS });
  return {
    exitCode: r.exitCode,
    lines: `${r.stdout}${r.stderr}`.split("\n").filter((line) => line.length > 0).length,
    wallS: r.wallS,
    cpuS: r.cpuS,
    peakMb: r.peakMb,
    killed: r.killed,
  };
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** "1.23 (1.20-1.31)": the median and, with more than one run, the range. */
function spread(xs: readonly number[], digits: number): string {
  const m = median(xs).toFixed(digits);
  if (xs.length < 2) return m;
  return `${m} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;
}

function commitOf(repo: string): string {
  const r = spawnSync("git", ["-C", repo, "describe", "--always", "--dirty"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown commit";
}

export interface BenchRow {
  readonly code: string;
  readonly targets: number;
  readonly kind: "valid" | "invalid";
  readonly fileMb: number;
  readonly runs: readonly CheckRun[];
}

/** Every case, `repeat` times, this checkout and the one before alternating which goes first. */
export async function bench(options: BenchOptions): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "netprobify-bench-config-"));
  const codes = [{ label: `this tree (${commitOf(REPO)})`, repo: REPO }];
  if (options.before) codes.push({ label: `before (${commitOf(options.before)})`, repo: resolve(options.before) });
  const rows: BenchRow[] = [];
  try {
    for (const targets of options.targets) {
      for (const kind of ["valid", "invalid"] as const) {
        const file = join(dir, `${kind}-${targets}.yaml`);
        writeFileSync(file, targetFile({ targets, invalid: kind === "invalid" }));
        const fileMb = statSync(file).size / 1e6;
        const runs = codes.map(() => [] as CheckRun[]);
        for (let i = 0; i < options.repeat; i++) {
          const order = codes.map((_, k) => k);
          if (i % 2 === 1) order.reverse();
          for (const k of order) {
            // A checkout that needed the whole timeout once will again: one such run says it.
            if (runs[k]!.some((run) => run.killed)) continue;
            runs[k]!.push(await runCheck(codes[k]!.repo, file, options.timeoutS));
          }
        }
        codes.forEach((code, k) => rows.push({ code: code.label, targets, kind, fileMb, runs: runs[k]! }));
        rmSync(file, { force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** The markdown table of {@link bench}'s rows. */
export function table(rows: readonly BenchRow[], timeoutS: number): string {
  const lines = [
    "| code | targets | file | file MB | exit | lines printed | wall s, median (range) | CPU s | peak RSS MB, median (range) | runs |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const row of rows) {
    const finished = row.runs.filter((r) => !r.killed);
    const killed = row.runs.length - finished.length;
    const exits = [...new Set(finished.map((r) => r.exitCode))].join(", ") || "-";
    const cells = finished.length
      ? [
          exits,
          [...new Set(finished.map((r) => r.lines))].join(", "),
          spread(finished.map((r) => r.wallS), 2),
          spread(finished.map((r) => r.cpuS), 2),
          spread(finished.map((r) => r.peakMb), 0),
        ]
      : ["-", "-", `over ${timeoutS} (killed)`, "-", `${spread(row.runs.map((r) => r.peakMb), 0)} when killed`];
    const runs = killed ? `${finished.length} (+${killed} killed at ${timeoutS} s)` : String(finished.length);
    lines.push(`| ${row.code} | ${row.targets.toLocaleString("en-US")} | ${row.kind} | ${row.fileMb.toFixed(1)} | ${cells.join(" | ")} | ${runs} |`);
  }
  return lines.join("\n");
}

function parseArgs(argv: readonly string[]): BenchOptions {
  const fail = (message: string): never => {
    console.error(`bench-config: ${message}; usage: bench-config.ts [--targets 1000,10000,100000] [--repeat 5] [--before DIR] [--timeout 120]`);
    process.exit(EXIT_USAGE);
  };
  let targets = [1_000, 10_000, 100_000];
  let repeat = 5;
  let before: string | undefined;
  let timeoutS = 120;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = argv[++i];
    if (value === undefined) fail(`${arg} wants a value`);
    if (arg === "--targets") {
      targets = value!.split(",").map((n) => Number(n.replaceAll("_", "")));
      if (targets.some((n) => !Number.isInteger(n) || n < 1 || n > 131_071)) fail("--targets wants counts from 1 to 131071");
    } else if (arg === "--repeat" || arg === "--timeout") {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) fail(`${arg} wants a positive integer`);
      if (arg === "--repeat") repeat = n;
      else timeoutS = n;
    } else if (arg === "--before") {
      before = value;
      if (!Bun.file(join(value!, "src", "main.ts")).size) fail(`${value} holds no src/main.ts`);
    } else {
      fail(`unknown option ${arg}`);
    }
  }
  return { targets, repeat, before, timeoutS };
}

if (import.meta.main) {
  const options = parseArgs(process.argv.slice(2));
  const startLoad = loadavg().map((l) => l.toFixed(2)).join(" ");
  const rows = await bench(options);
  const endLoad = loadavg().map((l) => l.toFixed(2)).join(" ");
  const command = ["node_modules/.bin/bun scripts/bench-config.ts", ...process.argv.slice(2)].join(" ");
  console.log(`\`${command}\``);
  console.log();
  console.log(
    `\`netprobify check FILE\` (as \`bun src/main.ts check FILE\`, a fresh process per run), ${options.repeat} runs per case; ` +
      `${cpus().length} vCPU ${cpus()[0]?.model.trim() ?? ""}, ${new Date().toISOString().slice(0, 10)}, ` +
      `load average at start ${startLoad}, at end ${endLoad}.`,
  );
  console.log();
  console.log(table(rows, options.timeoutS));
}
