/**
 * Generator of large netprobify.yaml files: N TCPsyn targets on 198.18.0.0/15, each written out
 * in block style with description, state, alert_level and threshold set, as a large datacenter's
 * inventory exported to a config reads. Deterministic: the same options give the same bytes, so
 * tests and benchmarks (bench-config.ts, the capacity benchmark) measure the same file.
 *
 *   node_modules/.bin/bun scripts/gen-targets.ts --targets 100000 [--packets 100] [--invalid] > big.yaml
 *
 * With --invalid every target has exactly one problem, of one of four kinds in turn (a port out
 * of range, a state not allowed, a misspelt field, a missing dst_port), so that `check` must
 * report exactly N problems.
 */
import { EXIT_USAGE } from "../src/cli/exit.ts";

/** 198.18.0.0/15 holds 131,072 addresses: room for MAX_TARGETS (100,000) with one each. */
const FIRST_ADDRESS = (198 << 24) + (18 << 16);
const ADDRESSES = 1 << 17;

export interface TargetFileOptions {
  /** How many targets; at most 131,071 (one address of 198.18.0.0/15 each). */
  readonly targets: number;
  /** nb_packets of every target (default 100: 100,000 targets send 10,000,000 probes, the limit). */
  readonly packets?: number;
  /** Give every target exactly one problem (see the file's comment). */
  readonly invalid?: boolean;
}

/** The kinds of problem --invalid cycles through, one per target. */
export const INVALID_KINDS = ["dst_port out of range", "state not allowed", "misspelt field", "dst_port missing"] as const;

const ipv4 = (n: number) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

/** The name of target `i` (0-based): t000000, t000001... (sorted as they are written). */
export const targetName = (i: number) => `t${String(i).padStart(6, "0")}`;

const STATES = ["in production", "validation"] as const;
const ALERT_LEVELS = ["paging", "paging_validation", "sandbox", "no_alert"] as const;

/** The lines of target `i`, indented under `targets:`. */
function targetLines(i: number, packets: number, invalid: boolean): string[] {
  const kind = invalid ? i % INVALID_KINDS.length : -1;
  const rack = `rack ${(i >> 6) + 1}, host ${(i & 63) + 1}`;
  const lines = [
    `  ${targetName(i)}:`,
    "    type: TCPsyn",
    `    description: "web frontend ${i}, ${rack}"`,
    `    destination: ${ipv4(FIRST_ADDRESS + 1 + i)}`,
  ];
  if (kind !== 3) lines.push(`    dst_port: ${kind === 0 ? 70000 : 443}`);
  lines.push(
    `    nb_packets: ${packets}`,
    `    state: ${kind === 1 ? "in prod" : STATES[i % STATES.length]}`,
    `    alert_level: ${ALERT_LEVELS[i % ALERT_LEVELS.length]}`,
    `    ${kind === 2 ? "treshold" : "threshold"}:`,
    `      latency: ${(0.05 + (i % 10) * 0.01).toFixed(2)}`,
    `      loss: ${1 + (i % 5)}`,
  );
  return lines;
}

/** A whole config: global settings, one group, and the targets. */
export function targetFile(options: TargetFileOptions): string {
  const { targets, packets = 100, invalid = false } = options;
  if (!Number.isInteger(targets) || targets < 0 || targets >= ADDRESSES) {
    throw new RangeError(`targets must be an integer from 0 to ${ADDRESSES - 1}`);
  }
  const lines = [
    "global:",
    "  probe_name: generated",
    "  interval: 30",
    "  nb_proc: 2",
    "  logging_level: INFO",
    "  prometheus_port: 8000",
    "  dns_update_interval: 0",
    "groups:",
    "  dc:",
    "    src_port_a: 65000",
    "    src_port_z: 65099",
    "targets:",
  ];
  for (let i = 0; i < targets; i++) lines.push(...targetLines(i, packets, invalid));
  return `${lines.join("\n")}\n`;
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const number = (name: string, fallback: number) => {
    const i = argv.indexOf(`--${name}`);
    const value = i >= 0 ? Number(argv[i + 1]) : fallback;
    if (!Number.isInteger(value) || value < 0) {
      console.error(`gen-targets: --${name} wants a non-negative integer`);
      process.exit(EXIT_USAGE);
    }
    return value;
  };
  const known = new Set(["--targets", "--packets", "--invalid"]);
  const unknown = argv.filter((a, i) => a.startsWith("--") && !known.has(a) && !(i > 0 && known.has(argv[i - 1]!)));
  if (unknown.length > 0) {
    console.error(`gen-targets: unknown option ${unknown[0]}; usage: gen-targets.ts --targets N [--packets P] [--invalid]`);
    process.exit(EXIT_USAGE);
  }
  try {
    process.stdout.write(targetFile({ targets: number("targets", 1000), packets: number("packets", 100), invalid: argv.includes("--invalid") }));
  } catch (error) {
    console.error(`gen-targets: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(EXIT_USAGE);
  }
}
