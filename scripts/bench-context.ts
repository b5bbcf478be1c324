/**
 * What a benchmark's output says about the run beside its figures: the command, the commit (and
 * whether the working tree differs from it), the machine, the load average before and after, and
 * the CPU other processes used meanwhile, so that a figure taken while other work shared the CPUs
 * reads as such (the load average after a run counts the benchmark's own work too).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { otherProcessCpu } from "./proc-stats.ts";

const root = resolve(import.meta.dir, "..");

function out(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "";
}

/** The 1, 5 and 15-minute load averages. */
export function loadAverage(): [number, number, number] {
  const f = readFileSync("/proc/loadavg", "utf8").split(" ");
  return [Number(f[0]), Number(f[1]), Number(f[2])];
}

export interface RunContext {
  /** The command line as a reader would type it. */
  command: string;
  commit: string;
  /** Files changed from the commit (git status --porcelain, untracked ones included). */
  dirty: string[];
  nproc: number;
  machine: string;
  startedAt: Date;
  loadBefore: [number, number, number];
  /** otherProcessCpu() at the start. */
  otherCpuBefore: Map<number, number>;
}

export function startRun(script: string, argv: readonly string[]): RunContext {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "?";
  const memGb = Number(/MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0) / 1024 / 1024;
  const nproc = Number(out(["nproc"])) || 0;
  const status = Bun.spawnSync(["git", "-C", root, "status", "--porcelain", "--", "src", "scripts", "build.ts", "package.json"], { stdout: "pipe", stderr: "pipe" })
    .stdout.toString()
    .split("\n")
    .filter((l) => l.length > 3);
  return {
    command: `sudo node_modules/.bin/bun scripts/${script}${argv.length ? ` ${argv.join(" ")}` : ""}`,
    commit: out(["git", "-C", root, "rev-parse", "--short=12", "HEAD"]) || "unknown (not a git checkout)",
    dirty: status.map((l) => l.slice(3)),
    nproc,
    machine: `${nproc} vCPU ${cpu}, ${memGb.toFixed(0)} GB, kernel ${out(["uname", "-r"])}, Bun ${Bun.version}`,
    startedAt: new Date(),
    loadBefore: loadAverage(),
    otherCpuBefore: otherProcessCpu(process.pid),
  };
}

/** Other work's share of the machine: a run with more than this beside it is "under load". */
const OTHER_WORK_SHARE = 0.1;

/**
 * CPU seconds other processes used since the run started: what each process alive now used since
 * the start (all of it for one started since), its reaped children included. A process that
 * started and ended in between is counted through its parent's children's time, or not at all
 * when its parent ended too.
 */
export function otherWork(ctx: RunContext): { cpuS: number; share: number } {
  let cpuS = 0;
  for (const [pid, now] of otherProcessCpu(process.pid)) cpuS += Math.max(0, now - (ctx.otherCpuBefore.get(pid) ?? 0));
  const wallS = (Date.now() - ctx.startedAt.getTime()) / 1000;
  return { cpuS, share: wallS > 0 && ctx.nproc > 0 ? cpuS / (wallS * ctx.nproc) : 0 };
}

/**
 * "Measured under load": other processes used more than OTHER_WORK_SHARE of the machine during
 * the run. Not the load average: a 1-minute average still counts a benchmark that ended just
 * before this one started, and after a run it counts the run's own work.
 */
export function underLoad(otherShare: number): boolean {
  return otherShare > OTHER_WORK_SHARE;
}

/** The lines that head a benchmark's output. */
export function describeRun(ctx: RunContext): string[] {
  const after = loadAverage();
  const other = otherWork(ctx);
  const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  const dirty = ctx.dirty.length ? ` + uncommitted changes (${ctx.dirty.slice(0, 5).join(", ")}${ctx.dirty.length > 5 ? ", ..." : ""})` : " (clean)";
  return [
    `Command: \`${ctx.command}\``,
    `Commit: ${ctx.commit}${dirty}. Machine: ${ctx.machine}. Started ${ctx.startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC.`,
    `Load average (1 / 5 / 15 min) before: ${fmt(ctx.loadBefore)}, after: ${fmt(after)} (the run's own work included), nproc ${ctx.nproc}; ` +
      `other processes used ${other.cpuS.toFixed(1)} CPU-s during the run, ${(other.share * 100).toFixed(1)}% of the machine` +
      (underLoad(other.share)
        ? ": MEASURED UNDER LOAD (other work shared the CPUs; the bench lock only keeps benchmarks apart)."
        : ": the machine was otherwise quiet."),
  ];
}

/**
 * The banner of a run that did not finish every case: printed above whatever table it has, so
 * that no partial table reads as a whole one.
 */
export function partialBanner(failures: readonly string[]): string[] {
  return failures.length ? [`PARTIAL RUN: ${failures.length} case(s) failed, their figures are missing or incomplete:`, ...failures.map((f) => `- ${f}`), ""] : [];
}

export const median = (xs: readonly number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const k = (s.length - 1) / 2;
  return (s[Math.floor(k)]! + s[Math.ceil(k)]!) / 2;
};
