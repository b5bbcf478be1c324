/**
 * The engine's closed loop, as bench-engine.ts measures it: one target of `count` probes, unpaced
 * (no rate cap, interval 0), sent, captured in both directions with kernel timestamps and
 * matched by one ProbeEngine in this thread. bench-engine.ts calls engineClosedLoop() in its own
 * process; bench-capacity.ts runs this file inside the prober's namespace, where its daemon runs:
 *
 *   ip netns exec NS bun scripts/closed-loop.ts --dst 198.18.0.1 --port 443 --count 1000000 [--reps 3]
 *
 * which prints one JSON line per repetition (ClosedLoopFigures) on stdout.
 */
import { EXIT_USAGE } from "../src/cli/exit.ts";
import type { TargetType } from "../src/config/schema.ts";
import { openProbeEngine } from "../src/engine/pcap-network.ts";
import type { ProbeEngine, ProbeTarget } from "../src/engine/probe-engine.ts";
import { percentile, summarize } from "../src/engine/stats.ts";
import type { Family } from "../src/packet/address.ts";

export interface ClosedLoopFigures {
  /** Probes sent per second of sending. */
  rate: number;
  lost: number;
  cpuPerM: number;
  p50us: number;
  p99us: number;
  /** Packets the engine's capture dropped (pcap_stats). */
  dropped: number;
}

export interface ClosedLoopCase {
  kind: TargetType;
  family: Family;
  dst: string;
  dstPort: number;
  count: number;
}

/** The capture ring the engine gets in these benchmarks, and the yardstick with it. */
export const CAPTURE_RING_MB = 64;

export function openBenchEngine(): ProbeEngine {
  return openProbeEngine({ captureBufferBytes: CAPTURE_RING_MB << 20, l3RawSocket: false, maxProbesPerSecond: 1e9, identBase: 0x10000000 });
}

export function engineClosedLoop(engine: ProbeEngine, c: ClosedLoopCase): ClosedLoopFigures {
  const target: ProbeTarget = {
    type: c.kind,
    family: c.family,
    dst: c.dst,
    dstPort: c.dstPort,
    srcAddresses: null,
    srcPortA: 10000,
    srcPortZ: 59999,
    dscp: 0,
    dontFragment: true,
    ipPayloadSize: null,
    count: c.count,
    intervalMs: 0,
    startMs: 0,
    timeoutMs: 1000,
  };
  const cpu0 = process.cpuUsage();
  const r = engine.run([target]);
  const cpu = process.cpuUsage(cpu0);
  const s = summarize(r, 0, c.count);
  return {
    rate: c.count / (r.stats.sendMs / 1000),
    lost: s.lost,
    cpuPerM: (cpu.user + cpu.system) / 1e6 / (c.count / 1e6),
    p50us: percentile(s.rtts, 50) * 1e6,
    p99us: percentile(s.rtts, 99) * 1e6,
    dropped: r.stats.captureDropped,
  };
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const arg = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const dst = arg("dst");
  const dstPort = Number(arg("port") ?? 33434);
  const count = Number(arg("count") ?? 1_000_000);
  const reps = Number(arg("reps") ?? 1);
  if (!dst || !/^\d+\.\d+\.\d+\.\d+$/.test(dst) || !Number.isInteger(dstPort) || !Number.isInteger(count) || count < 1 || !Number.isInteger(reps) || reps < 1) {
    console.error("closed-loop: usage: closed-loop.ts --dst IPV4 [--port N] [--count N] [--reps N]");
    process.exit(EXIT_USAGE);
  }
  const engine = openBenchEngine();
  try {
    for (let i = 0; i < reps; i++) console.log(JSON.stringify(engineClosedLoop(engine, { kind: "TCPsyn", family: 4, dst, dstPort, count })));
  } finally {
    engine.close();
  }
}
