/**
 * Engine benchmark: the product's closed loop (send, capture both directions with kernel
 * timestamps, match; closed-loop.ts) against the C reference loop in ../shared/bench (plbench.c),
 * in the same run, on the same veth test host, and their ratio.
 *
 *   sudo node_modules/.bin/bun scripts/bench-engine.ts [--count 1000000] [--reps 3] [--quick]
 *
 * The reference loop runs in both of its sending variants, `pcap_inject` and `sendmmsg` (64
 * frames a call on an AF_PACKET socket, its fastest), each with the same 64 MiB capture ring as
 * the engine (plbench's BUFMB argument). Each case is repeated --reps times (3; --quick: 1)
 * alternating who goes first (netprobify, pcap_inject, sendmmsg, then the reverse), and the
 * tables give the median and the range of each; the ratio is netprobify's median to the best
 * variant's median. The reference loop's unanswered probes and capture drops are printed beside
 * the engine's. The output starts with the command, the commit and the load average before and
 * after (bench-context.ts).
 *
 * Root only; gcc, libpcap's headers, python3 (net.sh's listener) and ip. Takes /tmp/bench.lock
 * (bench-lock.ts) so two measurements never share the CPUs, and says so in one line when it is
 * held. Traffic stays in namespace pl-h1 (198.18.70.0/24, fd00:18:70::/64), created with the
 * yardstick's own net.sh and always torn down. A case that fails is named under a PARTIAL RUN
 * banner above the tables, and the exit status is then 1.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { EXIT_FAILURE, EXIT_NOINPUT } from "../src/cli/exit.ts";
import type { TargetType } from "../src/config/schema.ts";
import type { ProbeTarget } from "../src/engine/probe-engine.ts";
import type { Family } from "../src/packet/address.ts";
import { describeRun, median, partialBanner, startRun } from "./bench-context.ts";
import { cleanUpOnExit, rootUnderBenchLock } from "./bench-lock.ts";
import { scriptArgs } from "./script-args.ts";
import { CAPTURE_RING_MB, engineClosedLoop, openBenchEngine, type ClosedLoopFigures } from "./closed-loop.ts";

const root = resolve(import.meta.dir, "..");
/** ../shared/bench beside the checkout (or beside its parent, for a git worktree in a folder of worktrees). */
const benchDir =
  [process.env.NETPROBIFY_YARDSTICK_DIR, resolve(root, "..", "shared", "bench"), resolve(root, "..", "..", "shared", "bench")].find(
    (d): d is string => d !== undefined && existsSync(join(d, "plbench.c")),
  ) ?? resolve(root, "..", "shared", "bench");
const { argv, int, quick } = scriptArgs("bench-engine", { values: ["count", "reps"], flags: ["quick"] });
const COUNT = int("count", quick ? 20_000 : 1_000_000, 1000, 10_000_000);
const REPS = int("reps", quick ? 1 : 3, 1, 20);
const IDLE_S = quick ? 2 : 20;
/** plbench's time limit per run: far above what COUNT takes, so every run sends COUNT. */
const YARDSTICK_SECS = 60;

if (!existsSync(join(benchDir, "plbench.c"))) {
  console.error(`bench-engine: cannot run: the C reference loop is not at ${benchDir}`);
  process.exit(EXIT_NOINPUT);
}
await rootUnderBenchLock("bench-engine", "network namespaces, raw packets", ["gcc", "ip", "python3", "timeout", "ping"]);
const ctx = startRun("bench-engine.ts", argv);

function sh(cmd: string[], check = true): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (check && r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim() || r.stdout.toString().trim()}`);
  return r.stdout.toString();
}

try {
  mkdirSync("/tmp/pl", { recursive: true });
  sh(["gcc", "-O2", "-Wall", "-o", "/tmp/pl/plbench", join(benchDir, "plbench.c"), "-lpcap", "-lpthread"]);
} catch (e) {
  console.error(`bench-engine: cannot run: building the C reference loop failed (gcc and libpcap0.8-dev needed): ${(e as Error).message.split("\n")[0]}`);
  process.exit(EXIT_FAILURE);
}
const down = () => {
  sh(["ip", "route", "del", "198.18.71.1/32"], false);
  sh(["bash", join(benchDir, "net.sh"), "down"], false);
};
down();
cleanUpOnExit(down);
// net.sh leaves a listener running in the background: its output must not be a pipe we wait on
// (the listener would hold it open), so its stderr goes to a file.
const upErr = "/tmp/pl/net-up.err";
const up = Bun.spawnSync(["bash", "-c", `exec bash "$0" up 2>${upErr}`, join(benchDir, "net.sh")], { stdout: "ignore", stderr: "ignore" });
if (up.exitCode !== 0) {
  console.error(`bench-engine: cannot run: net.sh up failed (exit ${up.exitCode}): ${readFileSync(upErr, "utf8").trim().split("\n")[0]}`);
  process.exit(EXIT_FAILURE);
}
// net.sh lifts icmp_ratelimit but not the global ICMP budget (1000/s by default), which would
// turn most UDP probes into loss at the target: lift it too for the UDP cases.
sh(["ip", "netns", "exec", "pl-h1", "sysctl", "-qw", "net.ipv4.icmp_msgs_per_sec=10000000", "net.ipv4.icmp_msgs_burst=10000000"]);
const mac = sh(["ip", "neigh", "show", "198.18.70.2", "dev", "pl-r1"]).split(/\s+/)[2] ?? "";
if (!/^[0-9a-f:]{17}$/.test(mac)) {
  console.error(`bench-engine: cannot run: no neighbour MAC for 198.18.70.2 after net.sh up (got "${mac}")`);
  process.exit(EXIT_FAILURE);
}

type Variant = "inject" | "mmsg";
const VARIANTS: readonly Variant[] = ["inject", "mmsg"];

/** The reference loop: `plbench loop PROTO pl-r1 MAC COUNT SECS 0 64 VARIANT` (unpaced, 64 MiB ring). */
function yardstick(proto: string, variant: Variant): ClosedLoopFigures {
  const out = sh(["timeout", String(YARDSTICK_SECS * 2), "/tmp/pl/plbench", "loop", proto, "pl-r1", mac, String(COUNT), String(YARDSTICK_SECS), "0", String(CAPTURE_RING_MB), variant]);
  const num = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`plbench ${proto} ${variant}: no ${re.source} in its output: ${out.trim().split("\n")[0]}`);
    return Number(m[1]);
  };
  if (num(/ bufmb=(\d+)/) !== CAPTURE_RING_MB) throw new Error(`plbench ran with another capture ring than ${CAPTURE_RING_MB} MiB`);
  const sent = num(/ sent=(\d+)/);
  if (sent !== COUNT) throw new Error(`plbench ${proto} ${variant} sent ${sent} of ${COUNT} within its ${YARDSTICK_SECS} s limit`);
  return {
    rate: num(/ rate=(\d+)/),
    lost: num(/ unanswered=(\d+)/),
    cpuPerM: num(/process_s_per_M=([\d.]+)/),
    p50us: num(/rtt_kernel_us: .*?p50=([\d.]+)/),
    p99us: num(/rtt_kernel_us: .*?p99=([\d.]+)/),
    dropped: num(/ ps_drop=(\d+)/) + num(/ ps_ifdrop=(\d+)/),
  };
}

let engine: ReturnType<typeof openBenchEngine>;
try {
  engine = openBenchEngine();
} catch (e) {
  console.error(`bench-engine: cannot run: the engine did not open: ${(e as Error).message.split("\n")[0]}`);
  process.exit(EXIT_FAILURE);
}

/** CPU used while a batch waits for answers that never come (a silent target). */
function idleCpu(): number {
  const target: ProbeTarget = {
    type: "UDPunreachable",
    family: 4,
    dst: "198.18.71.1",
    dstPort: 33434,
    srcAddresses: null,
    srcPortA: 65000,
    srcPortZ: 65000,
    dscp: 0,
    dontFragment: true,
    ipPayloadSize: null,
    count: 1,
    intervalMs: 0,
    startMs: 0,
    timeoutMs: IDLE_S * 1000,
  };
  // Nothing answers: 198.18.71.1 is routed into the namespace and blackholed there. (Not left to
  // "the namespace does not forward": a new namespace inherits the root's ip_forward, and one that
  // forwards answers with ICMP net unreachable, which ends the batch at once.)
  sh(["ip", "route", "replace", "198.18.71.1/32", "via", "198.18.70.2"]);
  sh(["ip", "-n", "pl-h1", "route", "replace", "blackhole", "198.18.71.1/32"]);
  // A short batch first, so start-up work (JIT compilation, first allocations) is not counted.
  engine.run([{ ...target, timeoutMs: 200 }]);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = engine.run([target]);
  const c = process.cpuUsage(c0);
  const seconds = (performance.now() - t0) / 1000;
  if (r.stats.sent !== 1 || r.stats.answered !== 0 || seconds < IDLE_S) {
    throw new Error(`the silent target was not silent: sent ${r.stats.sent}, answered ${r.stats.answered}, the batch took ${seconds.toFixed(3)} s of ${IDLE_S}`);
  }
  return ((c.user + c.system) / 1e6 / seconds) * 100;
}

interface CaseRuns {
  name: string;
  hasYardstick: boolean;
  ours: ClosedLoopFigures[];
  inject: ClosedLoopFigures[];
  mmsg: ClosedLoopFigures[];
}

const failures: string[] = [];
// Idle first, in a fresh heap: after millions of probes the collector's own work would be counted.
let idle = NaN;
try {
  idle = idleCpu();
} catch (e) {
  failures.push(`idle CPU: ${(e as Error).message}`);
}
const cases: [string, string | null, TargetType, Family, number][] = [
  ["TCP SYN -> RST-ACK (closed port), IPv4", "tcp4", "TCPsyn", 4, 33434],
  ["TCP SYN -> SYN-ACK, then RST (open port), IPv4", "tcp4open", "TCPsyn", 4, 8443],
  ["ICMP echo, IPv4", "icmp4", "ICMPping", 4, 0],
  ["TCP SYN -> RST-ACK, IPv6", "tcp6", "TCPsyn", 6, 33434],
  ["UDP -> ICMP port unreachable, IPv4", null, "UDPunreachable", 4, 33434],
  ["UDP -> ICMPv6 port unreachable, IPv6", null, "UDPunreachable", 6, 33434],
];
const results: CaseRuns[] = [];
for (const [name, proto, kind, family, port] of cases) {
  const runs: CaseRuns = { name, hasYardstick: proto !== null, ours: [], inject: [], mmsg: [] };
  results.push(runs);
  const dst = family === 4 ? "198.18.70.2" : "fd00:18:70::2";
  try {
    for (let rep = 0; rep < REPS; rep++) {
      // Who goes first alternates: netprobify, pcap_inject, sendmmsg; then the reverse.
      const order: ("ours" | Variant)[] = proto ? ["ours", ...VARIANTS] : ["ours"];
      if (rep % 2 === 1) order.reverse();
      for (const who of order) {
        if (who === "ours") runs.ours.push(engineClosedLoop(engine, { kind, family, dst, dstPort: port, count: COUNT }));
        else runs[who].push(yardstick(proto!, who));
      }
      process.stderr.write(`bench-engine: ${name}: repetition ${rep + 1} of ${REPS} done\n`);
    }
  } catch (e) {
    failures.push(`${name}: ${(e as Error).message}`);
  }
}
engine.close();

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (n: number, d = 0) => (Number.isNaN(n) ? "-" : n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));
/** Median and range of one figure over the repetitions: "90,967 (88,120-92,310)". */
const spread = (xs: ClosedLoopFigures[], pick: (f: ClosedLoopFigures) => number, d = 0) => {
  if (xs.length === 0) return "-";
  const v = xs.map(pick);
  return xs.length === 1 ? fmt(v[0]!, d) : `${fmt(median(v), d)} (${fmt(Math.min(...v), d)}-${fmt(Math.max(...v), d)})`;
};
const sum = (xs: ClosedLoopFigures[], pick: (f: ClosedLoopFigures) => number) => (xs.length ? fmt(xs.map(pick).reduce((a, b) => a + b, 0)) : "-");
const rate = (xs: ClosedLoopFigures[]) => median(xs.map((f) => f.rate));
const pct = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${((a / b) * 100).toFixed(0)}%` : "-");

const lines: string[] = [];
lines.push(...partialBanner(failures));
lines.push(`Engine closed loop against the C reference loop (../shared/bench/plbench.c), ${fmt(COUNT)} probes per run, ${REPS} run(s) per case and sender, one sending thread each`, "");
lines.push(...describeRun(ctx), "");
lines.push(
  `Each run sends ${fmt(COUNT)} probes unpaced to the veth test host in namespace pl-h1 and captures both directions on a second handle ` +
    `with a ${CAPTURE_RING_MB} MiB ring (the engine and both C variants alike). Figures: median (min-max) over the runs; who goes first ` +
    "alternates between runs. The ratio is netprobify's median to the median of the C loop's faster variant. The C loop is a reference " +
    "for the same job on the same machine, not the machine's limit.",
  "",
);
lines.push("| case | netprobify probes/s | C loop `pcap_inject` probes/s | C loop `sendmmsg` x64 probes/s | netprobify / best C variant | netprobify / `pcap_inject` |");
lines.push("|---|---|---|---|---|---|");
for (const r of results) {
  const best = Math.max(rate(r.inject), rate(r.mmsg));
  lines.push(
    `| ${r.name} | ${spread(r.ours, (f) => f.rate)} | ${r.hasYardstick ? spread(r.inject, (f) => f.rate) : "-"} | ${r.hasYardstick ? spread(r.mmsg, (f) => f.rate) : "-"} | ` +
      `${r.hasYardstick ? pct(rate(r.ours), best) : "-"} | ${r.hasYardstick ? pct(rate(r.ours), rate(r.inject)) : "-"} |`,
  );
}
lines.push("");
lines.push(`Per case, netprobify / \`pcap_inject\` / \`sendmmsg\`: unanswered and capture drops summed over the runs (of ${fmt(COUNT * REPS)} probes each), CPU and kernel-timestamp RTT medians.`, "");
lines.push("| case | unanswered | capture drops | CPU-s / 1M probes | RTT p50 us | RTT p99 us |");
lines.push("|---|---|---|---|---|---|");
for (const r of results) {
  const three = (pick: (f: ClosedLoopFigures) => number, how: (xs: ClosedLoopFigures[], p: (f: ClosedLoopFigures) => number) => string) =>
    r.hasYardstick ? `${how(r.ours, pick)} / ${how(r.inject, pick)} / ${how(r.mmsg, pick)}` : `${how(r.ours, pick)} / - / -`;
  const med = (d: number) => (xs: ClosedLoopFigures[], p: (f: ClosedLoopFigures) => number) => fmt(median(xs.map(p)), d);
  lines.push(
    `| ${r.name} | ${three((f) => f.lost, sum)} | ${three((f) => f.dropped, sum)} | ${three((f) => f.cpuPerM, med(1))} | ${three((f) => f.p50us, med(1))} | ${three((f) => f.p99us, med(1))} |`,
  );
}
lines.push("", `Idle: CPU while a batch waits ${IDLE_S} s for answers that never come: ${Number.isNaN(idle) ? "-" : `${idle.toFixed(3)}% of a core`}.`);
console.log(lines.join("\n"));
if (failures.length) process.exit(EXIT_FAILURE);
