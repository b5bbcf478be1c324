/**
 * Engine benchmark: the product's closed loop (send, capture both directions with kernel
 * timestamps, match) against the C yardstick in ../shared/bench, in the same run, on the same veth
 * test host, one case after the other, and their ratio.
 *
 *   sudo node_modules/.bin/bun scripts/bench-engine.ts [--count 1000000] [--quick]
 *
 * Root only. Takes /tmp/bench.lock (as the yardstick's run.sh does) so two measurements never
 * share the CPUs. Traffic stays in namespace pl-h1 (198.18.70.0/24, fd00:18:70::/64), created
 * with the yardstick's own net.sh and always torn down. Prints a markdown table.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { EXIT_NOINPUT } from "../src/cli/exit.ts";
import { openProbeEngine } from "../src/engine/pcap-network.ts";
import type { ProbeTarget } from "../src/engine/probe-engine.ts";
import type { TargetType } from "../src/config/schema.ts";
import { percentile, summarize } from "../src/engine/stats.ts";
import type { Family } from "../src/packet/address.ts";
import { cleanUpOnExit, rootUnderBenchLock } from "./bench-lock.ts";

const root = resolve(import.meta.dir, "..");
const benchDir = resolve(root, "..", "shared", "bench");
const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const quick = process.argv.includes("--quick");
const COUNT = Number(arg("count") ?? (quick ? 100000 : 1000000));
const IDLE_S = quick ? 3 : 20;

if (!existsSync(join(benchDir, "plbench.c"))) {
  console.error(`bench-engine: the yardstick is not at ${benchDir}`);
  process.exit(EXIT_NOINPUT);
}
await rootUnderBenchLock("bench-engine", "network namespaces, raw packets");

function sh(argv: string[], check = true): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (check && r.exitCode !== 0) throw new Error(`${argv.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

mkdirSync("/tmp/pl", { recursive: true });
sh(["gcc", "-O2", "-Wall", "-o", "/tmp/pl/plbench", join(benchDir, "plbench.c"), "-lpcap", "-lpthread"]);
const down = () => {
  sh(["ip", "route", "del", "198.18.71.1/32"], false);
  sh(["bash", join(benchDir, "net.sh"), "down"], false);
};
down();
cleanUpOnExit(down);
// net.sh leaves a listener running in the background: its output must not be a pipe we wait on.
const up = Bun.spawnSync(["bash", join(benchDir, "net.sh"), "up"], { stdout: "ignore", stderr: "inherit" });
if (up.exitCode !== 0) throw new Error(`net.sh up: exit ${up.exitCode}`);
// net.sh lifts icmp_ratelimit but not the global ICMP budget (1000/s by default), which would
// turn most UDP probes into loss at the target: lift it too for the UDP cases.
sh(["ip", "netns", "exec", "pl-h1", "sysctl", "-qw", "net.ipv4.icmp_msgs_per_sec=10000000", "net.ipv4.icmp_msgs_burst=10000000"]);
const mac = sh(["ip", "neigh", "show", "198.18.70.2", "dev", "pl-r1"]).split(/\s+/)[2] ?? "";
if (!/^[0-9a-f:]{17}$/.test(mac)) throw new Error(`no neighbour MAC for 198.18.70.2 (got "${mac}")`);

interface Figures {
  rate: number;
  lost: number;
  cpuPerM: number;
  p50us: number;
  p99us: number;
  dropped: number;
}

/** The yardstick's closed loop: `plbench loop PROTO pl-r1 MAC COUNT 15 0 0 inject`. */
function yardstick(proto: string): Figures {
  const out = sh(["timeout", "60", "/tmp/pl/plbench", "loop", proto, "pl-r1", mac, String(COUNT), "15", "0", "0", "inject"]);
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  return {
    rate: num(/ rate=(\d+)/),
    lost: num(/ unanswered=(\d+)/),
    cpuPerM: num(/process_s_per_M=([\d.]+)/),
    p50us: num(/rtt_kernel_us: .*?p50=([\d.]+)/),
    p99us: num(/rtt_kernel_us: .*?p99=([\d.]+)/),
    dropped: num(/ps_drop=(\d+)/),
  };
}

const engine = openProbeEngine({ captureBufferBytes: 64 << 20, l3RawSocket: false, maxProbesPerSecond: 1e9, identBase: 0x10000000 });

function ours(kind: TargetType, family: Family, dstPort: number): Figures {
  const target: ProbeTarget = {
    type: kind,
    family,
    dst: family === 4 ? "198.18.70.2" : "fd00:18:70::2",
    dstPort,
    srcAddresses: null,
    srcPortA: 10000,
    srcPortZ: 59999,
    dscp: 0,
    dontFragment: true,
    ipPayloadSize: null,
    count: COUNT,
    intervalMs: 0,
    startMs: 0,
    timeoutMs: 1000,
  };
  const cpu0 = process.cpuUsage();
  const r = engine.run([target]);
  const cpu = process.cpuUsage(cpu0);
  const s = summarize(r, 0, COUNT);
  return {
    rate: COUNT / (r.stats.sendMs / 1000),
    lost: s.lost,
    cpuPerM: (cpu.user + cpu.system) / 1e6 / (COUNT / 1e6),
    p50us: percentile(s.rtts, 50) * 1e6,
    p99us: percentile(s.rtts, 99) * 1e6,
    dropped: r.stats.captureDropped,
  };
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
  // Nothing answers: 198.18.71.1 is routed into the namespace, which does not forward.
  sh(["ip", "route", "replace", "198.18.71.1/32", "via", "198.18.70.2"]);
  // A short batch first, so start-up work (JIT compilation, first allocations) is not counted.
  engine.run([{ ...target, timeoutMs: 200 }]);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  engine.run([target]);
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) / 1e6 / ((performance.now() - t0) / 1000)) * 100;
}

const fmt = (n: number, d = 0) => (Number.isNaN(n) ? "-" : n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));
// Idle first, in a fresh heap: after millions of probes the collector's own work would be counted.
const idle = idleCpu();
const rows: string[] = [];
const cases: [string, string | null, TargetType, Family, number][] = [
  ["TCP SYN -> RST-ACK (closed port), IPv4", "tcp4", "TCPsyn", 4, 33434],
  ["TCP SYN -> SYN-ACK, then RST (open port), IPv4", "tcp4open", "TCPsyn", 4, 8443],
  ["ICMP echo, IPv4", "icmp4", "ICMPping", 4, 0],
  ["TCP SYN -> RST-ACK, IPv6", "tcp6", "TCPsyn", 6, 33434],
  ["UDP -> ICMP port unreachable, IPv4", null, "UDPunreachable", 4, 33434],
  ["UDP -> ICMPv6 port unreachable, IPv6", null, "UDPunreachable", 6, 33434],
];
for (const [name, proto, kind, family, port] of cases) {
  const c = proto ? yardstick(proto) : null;
  const o = ours(kind, family, port);
  const ratio = c ? `${((o.rate / c.rate) * 100).toFixed(0)}%` : "-";
  rows.push(
    `| ${name} | ${fmt(o.rate)} | ${c ? fmt(c.rate) : "-"} | ${ratio} | ${fmt(o.cpuPerM, 1)} | ${c ? fmt(c.cpuPerM, 1) : "-"} | ` +
      `${fmt(o.lost)} / ${fmt(COUNT)} | ${fmt(o.dropped)} | ${fmt(o.p50us, 1)} / ${fmt(o.p99us, 1)} | ${c ? `${fmt(c.p50us, 1)} / ${fmt(c.p99us, 1)}` : "-"} |`,
  );
}
engine.close();
const cpuModel = /model name\s*:\s*(.*)/.exec(await Bun.file("/proc/cpuinfo").text())?.[1] ?? "?";
console.log(`Engine closed loop, ${fmt(COUNT)} probes per case, one thread, veth test host (${sh(["nproc"]).trim()} vCPU ${cpuModel}, kernel ${sh(["uname", "-r"]).trim()}, ${new Date().toISOString().slice(0, 10)})\n`);
console.log("| case | netprobify probes/s | C yardstick probes/s | ratio | netprobify CPU-s / 1M probes | yardstick CPU-s / 1M | unanswered | capture drops | netprobify RTT p50 / p99 us | yardstick RTT p50 / p99 us |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
console.log(`\nIdle: CPU while a batch waits ${IDLE_S} s for answers that never come: ${idle.toFixed(3)}% of a core.`);
