/**
 * The config fuzzer: mutants of the config corpus (tests/fixtures/config, tests/fixtures/daemon,
 * and api.yaml files from tests/fixtures/api beside a good config) through what `netprobify
 * check` runs (loadAll, then the lines check prints), and every mutant check accepts through the
 * daemon's plan stage (the resolver's expansion of literal destinations, buildPlan).
 *
 * A mutant passes when: the exit code is 0, 65 or 66; nothing throws; no line is a stack trace
 * or longer than MAX_LINE characters; and an accepted config plans without throwing. Mutations:
 * byte flips, line deletions, duplications and swaps, numbers replaced with extremes (0, -1,
 * 2^31, 2^53 + 1, 1e308, .nan, .inf...), huge strings and keys, anchors, aliases, merge keys and
 * alias bombs (yaml's maxAliasCount bounds those), type swaps, keys such as __proto__, oversized
 * destinations, truncation, indentation shifts, CRLF and a BOM.
 *
 *   bun scripts/fuzz-config.ts [SEED] [COUNT] [CLI_EVERY]
 *
 * prints the counts per exit code, the time, the slowest mutant and the peak RSS; every mutant that
 * breaks a rule is written to a directory it names, with its seed and index so that it can be
 * replayed, and the exit status is 1. Every CLI_EVERY-th mutant (default 1000) also goes through
 * the real CLI (`bun src/main.ts check FILE`), whose exit code must match the in-process one.
 * tests/config/fuzz.test.ts runs a few hundred mutants of a fixed seed on every test run.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_DATAERR, EXIT_FAILURE, EXIT_NOINPUT, EXIT_OK, EXIT_USAGE } from "../src/cli/exit.ts";
import type { Config } from "../src/config/schema.ts";
import { checkOutcome, loadAll } from "../src/daemon/configuration.ts";
import { buildPlan } from "../src/daemon/plan.ts";
import { Resolver } from "../src/daemon/resolver.ts";
import type { Logger } from "../src/log.ts";
import { mulberry32 } from "../tests/support/prng.ts";

const REPO = join(import.meta.dir, "..");
const FIXTURES = join(REPO, "tests", "fixtures");
const MAIN = join(REPO, "src", "main.ts");

/** Longest line check may print: a long value or key is quoted cut short, never whole. */
export const MAX_LINE = 4096;

/** One file to mutate: a netprobify.yaml, or an api.yaml to put beside a good one. */
export interface Seed {
  readonly name: string;
  readonly kind: "config" | "api";
  readonly text: string;
}

/** The corpus, in a fixed order (the file names sorted) so that a seed means the same mutants. */
export function corpus(): Seed[] {
  const read = (dir: string, kind: Seed["kind"]) =>
    readdirSync(join(FIXTURES, dir))
      .filter((f) => /\.ya?ml$/.test(f))
      .sort()
      .map((f) => ({ name: `${dir}/${f}`, kind, text: readFileSync(join(FIXTURES, dir, f), "utf8") }));
  return [...read("config", "config"), ...read("daemon", "config"), ...read("api", "api")];
}

/** The config an api.yaml mutant sits beside: valid, with the groups the api fixtures name. */
const API_HOST_CONFIG = `global: {probe_name: fuzz, interval: 30, nb_proc: 1, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}
groups: {lab: {}, wan: {}}
targets:
  t: {type: ICMPping, destination: 198.18.0.1}
`;

const EXTREMES = [
  "0", "-1", "1", "2147483647", "2147483648", "2147484", "86401", "65536", "9007199254740993", "1e308", "-1e308",
  ".nan", ".inf", "-.inf", "NaN", "1.5", "0x10", "0o17", "1_000", "'12'", "1e-320", "-0", "99999999999999999999",
];
const SCALARS = [
  "[]", "{}", "null", "~", "true", "no", "''", '"x"', "[1, 2]", "{a: 1}", "!!binary aGVsbG8=", "!!str 5", "2026-01-01",
  "*nowhere", "!!float 1", "[[[[[[]]]]]]", "|\n  text", ">-\n  folded",
];
const KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "<<", "global", "targets", "groups", "Web", "a b", "x".repeat(300)];
const DESTINATIONS = [
  "10.0.0.0/8", '"10.*.*.*"', "fd00::/64", "198.18.0.0/16", "fd00::/112", "a/b", "198.18.300.1-2", '"::"', "0.0.0.0/0",
  "localhost", '"198.18.*.1-5"', "198.18.0.0/33", '"1-2.3.4.5"', "fe80::1%lo", "::ffff:198.18.0.1",
];
const FLIP_CHARS = [" ", ":", "-", "{", "}", "[", "]", ",", "&", "*", "!", "|", ">", "'", '"', "#", "%", "@", "`", "\t", "\n", "0", "a", "\u0000", "\u00e9", "\ufeff"];

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)]!;

/** Lines of the form `  key: value` (block mappings), with the parts split out. */
const KEY_VALUE = /^(\s*(?:-\s+)?)([^\s:#][^:#]*?):(\s+)(\S.*)$/;

type Operator = (text: string, random: () => number) => string;

function onLine(text: string, random: () => number, edit: (line: string) => string | null): string {
  const lines = text.split("\n");
  const candidates = lines.map((l, i) => (edit(l) !== null ? i : -1)).filter((i) => i >= 0);
  if (candidates.length === 0) return text;
  const i = pick(random, candidates);
  lines[i] = edit(lines[i]!)!;
  return lines.join("\n");
}

const OPERATORS: Record<string, Operator> = {
  flip(text, random) {
    if (text.length === 0) return text;
    const at = Math.floor(random() * text.length);
    return text.slice(0, at) + pick(random, FLIP_CHARS) + text.slice(at + 1);
  },
  deleteLine(text, random) {
    const lines = text.split("\n");
    lines.splice(Math.floor(random() * lines.length), 1);
    return lines.join("\n");
  },
  duplicateLines(text, random) {
    const lines = text.split("\n");
    const at = Math.floor(random() * lines.length);
    const n = 1 + Math.floor(random() * 4);
    lines.splice(at, 0, ...lines.slice(at, at + n));
    return lines.join("\n");
  },
  swapLines(text, random) {
    const lines = text.split("\n");
    const a = Math.floor(random() * lines.length);
    const b = Math.floor(random() * lines.length);
    [lines[a], lines[b]] = [lines[b]!, lines[a]!];
    return lines.join("\n");
  },
  number(text, random) {
    const numbers = [...text.matchAll(/(?<=[:[,\s])-?\d+(?:\.\d+)?(?=\s*(?:[,\]}\n#]|$))/g)];
    if (numbers.length === 0) return text;
    const m = pick(random, numbers);
    return text.slice(0, m.index) + pick(random, EXTREMES) + text.slice(m.index! + m[0].length);
  },
  hugeValue(text, random) {
    const size = Math.floor(10 ** (3 + random() * 3)); // 1,000 to 1,000,000 characters
    return onLine(text, random, (l) => (KEY_VALUE.test(l) ? l.replace(KEY_VALUE, (_, i, k, s) => `${i}${k}:${s}${"x".repeat(size)}`) : null));
  },
  hugeKey(text, random) {
    const size = Math.floor(10 ** (2 + random() * 4));
    return onLine(text, random, (l) => (KEY_VALUE.test(l) ? l.replace(KEY_VALUE, (_, i, _k, s, v) => `${i}${"k".repeat(size)}:${s}${v}`) : null));
  },
  typeSwap(text, random) {
    const value = pick(random, SCALARS);
    return onLine(text, random, (l) => (KEY_VALUE.test(l) ? l.replace(KEY_VALUE, (_, i, k, s) => `${i}${k}:${s}${value}`) : null));
  },
  renameKey(text, random) {
    const key = pick(random, KEYS);
    return onLine(text, random, (l) => (KEY_VALUE.test(l) || /^\s*[\w.-]+:\s*$/.test(l) ? l.replace(/^(\s*(?:-\s+)?)[^:]+:/, `$1${key}:`) : null));
  },
  destination(text, random) {
    const value = pick(random, DESTINATIONS);
    const replaced = text.replace(/(^[ \t]*)?destination: [^,}\n]+/gm, (m, indent: string | undefined) => {
      if (random() >= 0.5) return m;
      // A subnet or range is refused without is_subnet: true; half the time it comes with it, so
      // that the plan stage still expands what check accepts.
      const flag = random() < 0.5 ? "" : indent !== undefined ? `\n${indent}is_subnet: true` : ", is_subnet: true";
      return `${indent ?? ""}destination: ${value}${flag}`;
    });
    return replaced === text ? `${text}\n` : replaced;
  },
  anchorAlias(text, random) {
    // Anchor one value and use it again somewhere else, as a value or through a merge key.
    const lines = text.split("\n");
    const values = lines.map((l, i) => (KEY_VALUE.test(l) ? i : -1)).filter((i) => i >= 0);
    if (values.length < 2) return text;
    const a = pick(random, values);
    const b = pick(random, values);
    lines[a] = lines[a]!.replace(KEY_VALUE, (_, i, k, s, v) => `${i}${k}:${s}&anchor ${v}`);
    lines[b] = random() < 0.5 ? lines[b]!.replace(KEY_VALUE, (_, i, k, s) => `${i}${k}:${s}*anchor`) : lines[b]!.replace(KEY_VALUE, (_, i) => `${i}<<: *anchor`);
    return lines.join("\n");
  },
  aliasBomb(text, random) {
    // The billion laughs: nine lists of nine aliases of the previous list, at the top or in place of targets.
    let bomb = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    const depth = 2 + Math.floor(random() * 8);
    for (let i = 1; i <= depth; i++) bomb += `lol${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(", ")}]\n`;
    if (random() < 0.5) return bomb + text;
    return `${bomb}${text.replace(/^targets:.*$/m, `targets: *l${depth}`)}`;
  },
  truncate(text, random) {
    return text.slice(0, Math.floor(random() * text.length));
  },
  indent(text, random) {
    return onLine(text, random, (l) => (l.trim() === "" ? null : random() < 0.5 ? ` ${l}` : l.replace(/^ {1,2}/, "")));
  },
  crlf(text) {
    return text.replace(/\n/g, "\r\n");
  },
  bom(text) {
    return `\ufeff${text}`;
  },
  deepNesting(text, random) {
    const depth = 100 + Math.floor(random() * 5000);
    return onLine(text, random, (l) => (KEY_VALUE.test(l) ? l.replace(KEY_VALUE, (_, i, k, s) => `${i}${k}:${s}${"[".repeat(depth)}${"]".repeat(depth)}`) : null));
  },
};
const OPERATOR_NAMES = Object.keys(OPERATORS).sort();

/** One mutation of `text` half the time, else two or three; and their names. */
export function mutate(text: string, random: () => number): { text: string; ops: string[] } {
  const ops: string[] = [];
  const n = random() < 0.5 ? 1 : 2 + Math.floor(random() * 2);
  let out = text;
  for (let i = 0; i < n; i++) {
    const name = pick(random, OPERATOR_NAMES);
    ops.push(name);
    out = OPERATORS[name]!(out, random);
  }
  return { text: out, ops };
}

/**
 * Mutant `index` of `seed`: the same for the same pair, whatever ran before it. Half start from a
 * valid file (most of the corpus is bad-*.yaml, one fault each), so that mutants get past the
 * schema and into the plan stage too.
 */
export function mutant(seeds: readonly Seed[], seed: number, index: number): { seed: Seed; text: string; ops: string[] } {
  const random = mulberry32((Math.imul(seed, 1_000_003) + index) >>> 0);
  const valid = seeds.filter((s) => !/\/bad-|reload-bad|missing-|numeric-token|unknown-field|empty-groups|lifetime-above/.test(s.name));
  const from = pick(random, random() < 0.5 ? valid : seeds);
  return { seed: from, ...mutate(from.text, random) };
}

const quiet: Logger = { debug() {}, info() {}, warning() {}, error() {}, critical() {}, enabled: () => false };

/** The daemon's plan stage over a config check accepted: literal destinations expanded, then buildPlan. */
function planStage(config: Config): void {
  const resolver = new Resolver(quiet, async () => []);
  resolver.sync(config);
  buildPlan(config, (t) => resolver.addressesOf(t), config.global.nb_proc);
}

export interface Verdict {
  readonly exitCode: number;
  readonly lines: string[];
  readonly ms: number;
  /** The rule broken, if any. */
  readonly problem?: string;
}

const STACK_TRACE = /^\s+at |\b(TypeError|ReferenceError|RangeError):/m;

/** Writes the mutant in `dir` and checks it as `check` does, then the plan stage when it passes. */
export async function checkMutant(dir: string, m: { seed: Seed; text: string }): Promise<Verdict & { path: string }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "netprobify.yaml");
  if (m.seed.kind === "api") {
    writeFileSync(path, API_HOST_CONFIG);
    writeFileSync(join(dir, "api.yaml"), m.text);
  } else {
    writeFileSync(path, m.text);
  }
  const t0 = performance.now();
  let exitCode = -1;
  let lines: string[] = [];
  let problem: string | undefined;
  try {
    const loaded = await loadAll(path, { isolated: false });
    ({ exitCode, lines } = checkOutcome(path, loaded));
    if (!("exitCode" in loaded)) {
      try {
        planStage(loaded.config);
      } catch (e) {
        problem = `accepted, but the plan stage threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
      }
    }
  } catch (e) {
    problem = `check threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  }
  const ms = performance.now() - t0;
  problem ??= ![EXIT_OK, EXIT_DATAERR, EXIT_NOINPUT].includes(exitCode) ? `exit ${exitCode}` : undefined;
  problem ??= lines.some((l) => STACK_TRACE.test(l)) ? "a stack trace in the output" : undefined;
  problem ??= lines.some((l) => l.length > MAX_LINE) ? `a line of ${Math.max(...lines.map((l) => l.length))} characters` : undefined;
  return { exitCode, lines, ms, path, ...(problem ? { problem } : {}) };
}

/** The same file through the real CLI process: its exit code must be the in-process one. */
export function checkByCli(path: string, expected: number): string | undefined {
  const r = Bun.spawnSync([process.execPath, MAIN, "check", path], { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  const output = `${r.stdout.toString()}${r.stderr.toString()}`;
  if (r.exitCode !== expected) return `the CLI exited ${r.exitCode ?? r.signalCode}, in-process ${expected}: ${output.slice(0, 500)}`;
  if (STACK_TRACE.test(output)) return "a stack trace in the CLI's output";
  return undefined;
}

export interface FuzzSummary {
  readonly count: number;
  readonly byExit: Record<string, number>;
  readonly failures: { index: number; ops: string[]; from: string; problem: string }[];
  readonly seconds: number;
  readonly slowest: { index: number; ms: number; from: string; ops: string[] };
  readonly cliRuns: number;
}

/** Runs mutants `0..count-1` of `seed`; every `cliEvery`-th one also through the CLI (0: none). */
export async function fuzz(seed: number, count: number, cliEvery: number, keepFailures?: string): Promise<FuzzSummary> {
  const seeds = corpus();
  const work = mkdtempSync(join(tmpdir(), "netprobify-fuzz-"));
  const byExit: Record<string, number> = {};
  const failures: FuzzSummary["failures"] = [];
  let slowest: FuzzSummary["slowest"] = { index: -1, ms: 0, from: "", ops: [] };
  let cliRuns = 0;
  const t0 = performance.now();
  try {
    for (let i = 0; i < count; i++) {
      const m = mutant(seeds, seed, i);
      const v = await checkMutant(join(work, "m"), m);
      let problem = v.problem;
      if (!problem && cliEvery > 0 && i % cliEvery === 0) {
        cliRuns++;
        problem = checkByCli(v.path, v.exitCode);
      }
      byExit[String(v.exitCode)] = (byExit[String(v.exitCode)] ?? 0) + 1;
      if (v.ms > slowest.ms) slowest = { index: i, ms: v.ms, from: m.seed.name, ops: m.ops };
      if (problem) {
        failures.push({ index: i, ops: m.ops, from: m.seed.name, problem });
        if (keepFailures) {
          mkdirSync(keepFailures, { recursive: true });
          writeFileSync(join(keepFailures, `seed${seed}-mutant${i}-${m.seed.kind}.yaml`), m.text);
        }
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { count, byExit, failures, seconds: (performance.now() - t0) / 1000, slowest, cliRuns };
}

if (import.meta.main) {
  const seed = Number(process.argv[2] ?? 1);
  const count = Number(process.argv[3] ?? 100_000);
  const cliEvery = Number(process.argv[4] ?? 1000);
  if (!Number.isInteger(seed) || !Number.isInteger(count) || count < 1 || !Number.isInteger(cliEvery) || cliEvery < 0) {
    console.error("usage: bun scripts/fuzz-config.ts [SEED] [COUNT] [CLI_EVERY]");
    process.exit(EXIT_USAGE);
  }
  const keep = join(tmpdir(), `netprobify-fuzz-failures-seed${seed}`);
  const s = await fuzz(seed, count, cliEvery, keep);
  const peakMb = process.resourceUsage().maxRSS / 1024;
  console.log(`seed ${seed}, ${s.count} mutants (${s.cliRuns} also through the CLI) in ${s.seconds.toFixed(1)} s, peak RSS ${peakMb.toFixed(0)} MB`);
  console.log(`exit codes: ${Object.entries(s.byExit).map(([code, n]) => `${code}: ${n}`).join(", ")}`);
  console.log(`slowest: mutant ${s.slowest.index} of ${s.slowest.from} (${s.slowest.ops.join(", ")}), ${s.slowest.ms.toFixed(0)} ms`);
  if (s.failures.length > 0) {
    for (const f of s.failures.slice(0, 20)) console.log(`FAIL mutant ${f.index} of ${f.from} (${f.ops.join(", ")}): ${f.problem.split("\n")[0]}`);
    console.log(`${s.failures.length} failing mutants written to ${keep}`);
    process.exit(EXIT_FAILURE);
  }
}
