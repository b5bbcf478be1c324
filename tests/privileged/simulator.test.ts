/**
 * The network simulator (tests/support/tun-responder.ts) and what the prober makes of each thing
 * it does to a path (issue 5, items 1 and 3).
 *
 * First its decisions alone (no packets, no root): seeded loss that is reproducible and unbiased
 * from the first probe, independent random streams per rule, effects in proportion, the ICMP
 * token bucket, the text forms of its options.
 *
 * Then the packet engine against a TUN host driven by it, each batch checked three ways: the
 * engine's BatchResult, a capture on the TUN device (the wire), and the simulator's log (what it
 * did to each probe). Probes are paired across the three by identity: slot k of a target is the
 * k-th of its probes on the wire, whose (destination, protocol, source port, ident) is the key of
 * its log line. Every probe seen on the wire must have exactly one decision in the log, so a
 * simulator that missed probes (overload) shows as such and not as the prober's loss.
 *
 * Needs root for that second part (TUN device, captures): without it those tests fail, loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { openProbeEngine } from "../../src/engine/pcap-network.ts";
import { type ProbeEngine, SLOT_ANSWERED, type BatchStats, type ProbeTarget } from "../../src/engine/probe-engine.ts";
import { pathHealth, paths, summarize } from "../../src/engine/stats.ts";
import { finish, pseudoHeaderSum, sum16 } from "../../src/packet/checksum.ts";
import { parseAddress } from "../../src/packet/address.ts";
import type { PcapRecord } from "../support/pcap-file.ts";
import { createNamespaces, requireRoot, type BareNamespaces, type TunHost } from "../support/testnet.ts";
import {
  configFromArgs,
  control,
  decisionKey,
  parseHostOption,
  readDecisions,
  Simulator,
  type Action,
  type ProbeInfo,
  type Rule,
  type SimConfig,
  type TunDecision,
} from "../support/tun-responder.ts";
import { canon, checkTarget, decodeCapture, type TargetCheck, type WirePacket } from "./wire.ts";

// ---------------------------------------------------------------------------------------------
// Decisions alone

function probe(dst: string, proto = 1, srcPort = 0, dstPort = 0): ProbeInfo {
  const a = parseAddress(dst)!;
  return { family: a.family, dst: a.bytes, proto, srcPort, dstPort };
}

function actions(sim: Simulator, p: ProbeInfo, n: number, stepMs = 0): Action[] {
  return Array.from({ length: n }, (_, i) => sim.decide(p, i * stepMs).action);
}

const dropsOf = (list: Action[]) => list.flatMap((a, i) => (a === "drop" ? [i] : []));

describe("simulator decisions (no packets)", () => {
  const A = probe("198.18.1.3");
  const B = probe("198.18.1.4");

  test("seeded loss: the same seed drops the same probes, another seed others, in the stated ratio", () => {
    const run = (seed: number) => dropsOf(actions(new Simulator({ seed, default: { loss: 0.1 } }), A, 10_000));
    const first = run(7);
    expect(run(7)).toEqual(first);
    expect(run(8)).not.toEqual(first);
    // Binomial(10000, 0.1): mean 1000, sd 30.
    expect(first.length).toBeGreaterThan(900);
    expect(first.length).toBeLessThan(1100);
  });

  test("seeded loss is unbiased from the first probe, whatever the seed (small seeds included)", () => {
    // A raw xorshift32 seeded with 1, 2, 3... starts with tiny numbers: its first probe was dropped
    // at any loss ratio for every small seed.
    let firstDropped = 0;
    let earlyDropped = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const a = actions(new Simulator({ seed, default: { loss: 0.05 } }), A, 10);
      if (a[0] === "drop") firstDropped++;
      earlyDropped += dropsOf(a).length;
    }
    // 2000 first probes at 5%: mean 100, sd 10; 20,000 early probes: mean 1000, sd 31.
    expect(firstDropped).toBeGreaterThan(60);
    expect(firstDropped).toBeLessThan(140);
    expect(earlyDropped).toBeGreaterThan(880);
    expect(earlyDropped).toBeLessThan(1120);
  });

  test("each rule has its own random streams: a rule's loss pattern ignores other rules' traffic and its own other settings", () => {
    const alone: SimConfig = { seed: 3, rules: [{ dst: "198.18.1.3", loss: 0.2 }] };
    const busy: SimConfig = {
      seed: 3,
      default: { loss: 0.5 },
      rules: [
        { dst: "198.18.1.3", loss: 0.2, jitterMs: 2, delayMs: 3, duplicate: 0.3, reorder: 0.2 },
        { dst: "198.18.1.4", loss: 0.7, corrupt: 0.5 },
      ],
    };
    const s1 = new Simulator(alone);
    const expected = dropsOf(actions(s1, A, 500));
    const s2 = new Simulator(busy);
    const got: Action[] = [];
    for (let i = 0; i < 500; i++) {
      got.push(s2.decide(A, i).action);
      s2.decide(B, i);
      s2.decide(probe("198.18.9.9"), i); // the default rule
    }
    expect(dropsOf(got)).toEqual(expected);
    expect(expected.length).toBeGreaterThan(50);
  });

  test("effects: at most one per answered probe, each in its proportion; the rest answered plainly", () => {
    const sim = new Simulator({ seed: 5, default: { duplicate: 0.2, reorder: 0.2, wrongQuote: 0.1, mangle: 0.1, truncate: 0.1, corrupt: 0.1 } });
    const n = 20_000;
    const count: Record<string, number> = {};
    for (const a of actions(sim, A, n)) count[a] = (count[a] ?? 0) + 1;
    const want: Record<string, number> = { answer: 0.2, duplicate: 0.2, reorder: 0.2, "wrong-quote": 0.1, mangle: 0.1, truncate: 0.1, corrupt: 0.1 };
    for (const [a, f] of Object.entries(want)) {
      // Within 5 standard deviations of n * f.
      const sd = Math.sqrt(n * f * (1 - f));
      expect({ action: a, off: Math.abs((count[a] ?? 0) - n * f) <= 5 * sd }).toEqual({ action: a, off: true });
    }
    expect(Object.keys(count).sort()).toEqual(Object.keys(want).sort());
  });

  test("reorder adds its extra hold, duplicate its gap, jitter stays within [delay - J, delay + J]", () => {
    const sim = new Simulator({ seed: 9, default: { delayMs: 10, jitterMs: 4 } });
    const delays = Array.from({ length: 5000 }, () => sim.decide(A, 0).delayMs);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(6);
    expect(Math.max(...delays)).toBeLessThanOrEqual(14);
    expect(Math.min(...delays)).toBeLessThan(6.1);
    expect(Math.max(...delays)).toBeGreaterThan(13.9);
    const r = new Simulator({ default: { delayMs: 2, reorder: 1, reorderMs: 7 } }).decide(A, 0);
    expect(r).toMatchObject({ action: "reorder", delayMs: 9, extraMs: 7 });
    const d = new Simulator({ default: { delayMs: 2, duplicate: 1, duplicateGapMs: 3 } }).decide(A, 0);
    expect(d).toMatchObject({ action: "duplicate", delayMs: 2, gapMs: 3 });
  });

  test("ICMP rate limit: a bucket of B tokens refilled at N per second; TCP answers are not limited", () => {
    const sim = new Simulator({ default: { icmpRate: 100, icmpBurst: 5 } });
    // 1000 echo requests, one per ms: 5 at once, then one every 10 ms (the 1st, 11th, 21st ms...).
    const echo = actions(sim, A, 1000, 1);
    const answered = echo.flatMap((a, i) => (a === "drop" ? [] : [i]));
    expect(answered.slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
    expect(answered.length).toBe(5 + 99);
    for (let i = 6; i < answered.length; i++) expect(answered[i]! - answered[i - 1]!).toBe(10);
    const tcp = actions(new Simulator({ default: { icmpRate: 100, icmpBurst: 5 } }), probe("198.18.1.3", 6, 65000, 80), 1000, 1);
    expect(dropsOf(tcp)).toEqual([]);
    // A wrong quote is an ICMP error, whatever the probe: limited too.
    const wq = actions(new Simulator({ default: { icmpRate: 100, icmpBurst: 5, wrongQuote: 1 } }), probe("198.18.1.3", 6, 65000, 80), 1000, 1);
    expect(dropsOf(wq).length).toBe(1000 - 104);
  });

  test("rules match destination prefixes and flows (protocol, source ports, destination port); the first match applies", () => {
    const sim = new Simulator({
      rules: [
        { dst: "fd00:19:5::/64", proto: "udp", srcPorts: "65003+65010-65011", dropSrcPorts: [65003, 65010, 65011] },
        { dst: "198.18.5.0/24", dstPort: 443, proto: "tcp", loss: 1 },
        { dst: "198.18.5.3", delayMs: 20 },
      ],
    });
    expect(sim.ruleOf(probe("fd00:19:5::7", 17, 65003, 33434))).toBe(0);
    expect(sim.ruleOf(probe("fd00:19:5::7", 17, 65004, 33434))).toBe(-1);
    expect(sim.ruleOf(probe("fd00:19:5::7", 6, 65003, 33434))).toBe(-1);
    expect(sim.ruleOf(probe("fd00:19:6::7", 17, 65003, 33434))).toBe(-1);
    expect(sim.ruleOf(probe("198.18.5.3", 6, 65000, 443))).toBe(1);
    expect(sim.ruleOf(probe("198.18.5.3", 6, 65000, 80))).toBe(2);
    expect(sim.ruleOf(probe("198.18.5.3", 1))).toBe(2);
    expect(sim.ruleOf(probe("198.18.6.3", 1))).toBe(-1);
    expect(sim.decide(probe("fd00:19:5::7", 17, 65010, 33434), 0)).toMatchObject({ action: "drop", reason: "src-port", rule: 0 });
    expect(sim.decide(probe("198.18.5.3", 1), 0)).toMatchObject({ action: "answer", delayMs: 20, rule: 2 });
  });

  test("text forms: --host MATCH:key=value (IPv6 and prefixes too), the original options, and refusals", () => {
    expect(parseHostOption("198.18.5.3:delay=20,loss=0.1")).toEqual({ dst: "198.18.5.3", delayMs: 20, loss: 0.1 });
    expect(parseHostOption("fd00:19:5::/64:proto=udp,src-ports=65003+65007,drop=1,wrong-quote=0.5,wrong-quote-field=port")).toEqual({
      dst: "fd00:19:5::/64",
      proto: "udp",
      srcPorts: "65003+65007",
      loss: 1,
      wrongQuote: 0.5,
      wrongQuoteField: "port",
    });
    expect(parseHostOption("fd00:19:5::ad:jitter=2,drop-src-ports=65000-65002")).toEqual({ dst: "fd00:19:5::ad", jitterMs: 2, dropSrcPorts: [65000, 65001, 65002] });
    const c = configFromArgs(["--ifname", "x", "--delay-ms", "3", "--loss", "0.25", "--seed", "9", "--drop-src-ports", "65003,65007", "--host", "198.18.5.3:delay=20"]);
    expect(c).toEqual({ seed: 9, default: { delayMs: 3, loss: 0.25, dropSrcPorts: [65003, 65007] }, rules: [{ dst: "198.18.5.3", delayMs: 20 }] });
    // A JSON file: its default over the command line's, its rules after the --host ones.
    const file = join(mkdtempSync(join(tmpdir(), "npsim-")), "sim.json");
    writeFileSync(file, JSON.stringify({ default: { loss: 0.5 }, rules: [{ dst: "fd00:19:5::/64", duplicate: 0.2 }] } satisfies SimConfig));
    expect(configFromArgs(["--delay-ms", "3", "--loss", "0.25", "--host", "198.18.5.3:delay=20", "--config", file])).toEqual({
      seed: 1,
      default: { delayMs: 3, loss: 0.5 },
      rules: [{ dst: "198.18.5.3", delayMs: 20 }, { dst: "fd00:19:5::/64", duplicate: 0.2 }],
    });
    rmSync(dirname(file), { recursive: true, force: true });
    expect(() => parseHostOption("198.18.5.3:bogus=1")).toThrow(/unknown key/);
    expect(() => parseHostOption("198.18.5.3")).toThrow(/MATCH:key=value/);
    expect(() => new Simulator({ default: { loss: 2 } })).toThrow(/loss/);
    expect(() => new Simulator({ default: { duplicate: 0.6, corrupt: 0.6 } })).toThrow(/more than 1/);
    expect(() => new Simulator({ rules: [{ dst: "198.18.5.0/33" }] })).toThrow(/prefix length/);
    expect(() => new Simulator({ rules: [{ dst: "not-an-address" }] })).toThrow(/not an address/);
  });
});

// ---------------------------------------------------------------------------------------------
// The prober against the simulator

const ENGINE_OPTIONS = { captureBufferBytes: 16 << 20, l3RawSocket: false, maxProbesPerSecond: 100_000, identBase: 0x4000_0000 };
/** Per probe: the engine and tcpdump read the same kernel timestamps on the TUN device. */
const SAME_PROBE_NS = 5_000;
const SRC_A = 65000;
const SRC_Z = 65015;

type Kind = ProbeTarget["type"];

interface Slot {
  slot: number;
  k: number;
  answered: boolean;
  reply: number;
  rttNs: number;
  srcPort: number;
  /** The probe on the wire, and the first answer the wire saw for it (null: none). */
  probe: WirePacket | undefined;
  wireAnswer: WirePacket | null;
  /** The simulator's decision for it. */
  decision: TunDecision | undefined;
  decisions: number;
}

interface TargetRun {
  t: ProbeTarget;
  label: string;
  check: TargetCheck;
  slots: Slot[];
  matchFail: number;
  portMismatch: number;
  timeOutOfOrder: number;
  from: number;
  to: number;
}

interface Run {
  targets: TargetRun[];
  stats: BatchStats;
  pkts: WirePacket[];
  records: PcapRecord[];
  log: TunDecision[];
  /** The batch result's per-path figures need the engine's arrays: computed before the next run. */
  health: { worstLossRatio: number; pathsDown: number; lossRatio: number }[];
}

function label(t: ProbeTarget): string {
  return `${t.type} v${t.family} ${t.dst}${t.type === "ICMPping" ? "" : `:${t.dstPort}`}`;
}

function protoOf(t: ProbeTarget): number {
  return t.type === "TCPsyn" ? 6 : t.type === "UDPunreachable" ? 17 : t.family === 4 ? 1 : 58;
}

/** The ident tun-responder.ts logs for a probe seen on the wire. */
function wireIdent(p: WirePacket, kind: Kind): number {
  if (kind === "TCPsyn") return p.seq;
  if (kind === "ICMPping") return ((p.icmpId << 16) | p.icmpSeq) >>> 0;
  return p.family === 4 ? p.ipId : p.tag!;
}

/** The key of a wire answer's probe, as wire.ts pairs them (first answer per probe kept). */
function firstAnswers(pkts: WirePacket[], t: ProbeTarget, probes: WirePacket[]): Map<WirePacket, { first: WirePacket; copies: number }> {
  const byKey = new Map<string, WirePacket>();
  for (const p of probes) byKey.set(probeKeyOf(p, t.type), p);
  const out = new Map<WirePacket, { first: WirePacket; copies: number }>();
  for (const p of pkts) {
    const key = answerKeyOf(p, t);
    const probe = key === null ? undefined : byKey.get(key);
    if (!probe) continue;
    const seen = out.get(probe);
    if (seen) seen.copies++;
    else out.set(probe, { first: p, copies: 1 });
  }
  return out;
}

function probeKeyOf(p: WirePacket, kind: Kind): string {
  if (kind === "TCPsyn") return `${p.dst}|${p.sport}|${p.seq}`;
  if (kind === "ICMPping") return `${p.dst}|${p.icmpId}|${p.icmpSeq}`;
  return `${p.dst}|${p.sport}|${p.family === 4 ? p.ipId : p.tag}`;
}

/** What a well-formed answer on the wire answers (mirrors wire.ts answerOf), or null. */
function answerKeyOf(p: WirePacket, t: ProbeTarget): string | null {
  if (p.family !== t.family) return null;
  if (t.type === "TCPsyn") {
    if (p.proto !== 6 || (p.flags & 0x10) === 0 || (p.flags & 0x06) === 0) return null;
    return `${p.src}|${p.dport}|${(p.ack - 1) >>> 0}`;
  }
  if (t.type === "ICMPping") {
    const reply = t.family === 4 ? p.proto === 1 && p.icmpType === 0 : p.proto === 58 && p.icmpType === 129;
    return reply ? `${p.src}|${p.icmpId}|${p.icmpSeq}` : null;
  }
  const q = p.quote;
  if (!q || q.proto !== 17) return null;
  return `${q.dst}|${q.sport}|${q.family === 4 ? q.ipId : q.tag}`;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2;
};

describe("the prober against the simulator (TUN host, capture, log)", () => {
  let net: BareNamespaces;
  let tun: TunHost;
  let engine: ProbeEngine;
  let nextHost = 10;
  let maxAbsDiffNs = 0;

  beforeAll(async () => {
    requireRoot();
    net = await createNamespaces(1);
    tun = await net.addTunHost();
    engine = openProbeEngine(ENGINE_OPTIONS);
  }, 60_000);

  afterAll(async () => {
    engine?.close();
    await net?.teardown();
    console.log(`simulator tests: largest |engine - wire| RTT difference of any answered probe: ${maxAbsDiffNs} ns`);
  }, 60_000);

  /** A fresh address behind the TUN device (each target its own, so rules and counters are per target). */
  function address(family: 4 | 6): string {
    const n = nextHost++;
    return family === 4 ? `198.18.${tun.subnet}.${n}` : `fd00:19:${tun.subnet}::${n.toString(16)}`;
  }

  function target(kind: Kind, family: 4 | 6, over: Partial<ProbeTarget> & { port?: "open" | "closed" } = {}): ProbeTarget {
    const { port, ...rest } = over;
    return {
      type: kind,
      family,
      dst: address(family),
      dstPort: kind === "ICMPping" ? 0 : port === "open" ? tun.openPort : tun.closedPort,
      srcAddresses: null,
      srcPortA: SRC_A,
      srcPortZ: SRC_Z,
      dscp: 0,
      dontFragment: true,
      ipPayloadSize: null,
      count: 64,
      // Eight targets at once come to 2,000 probes/s: well within what the simulator answers.
      intervalMs: 4,
      startMs: 0,
      timeoutMs: 600,
      ...rest,
    };
  }

  /** TCP SYN to the open and to a closed port, ICMP echo, UDP: in both families. */
  function everyKind(over: Partial<ProbeTarget> = {}): ProbeTarget[] {
    const out: ProbeTarget[] = [];
    for (const family of [4, 6] as const) {
      out.push(target("TCPsyn", family, { ...over, port: "open" }), target("TCPsyn", family, { ...over, port: "closed" }), target("ICMPping", family, over), target("UDPunreachable", family, over));
    }
    return out;
  }

  /** Configures the simulator, runs one batch under a capture, and sets engine, wire and log side by side. */
  async function run(targets: ProbeTarget[], config: SimConfig): Promise<Run> {
    await control(tun.v4.host, { op: "configure", config });
    const offset = (await control(tun.v4.host, { op: "sync" })).decisions;
    const cap = await net.capture(tun, "ip or ip6");
    let r;
    try {
      r = engine.run(targets);
    } catch (e) {
      await cap.stop().catch(() => {});
      throw e;
    }
    // Copied at once: the result's arrays are views into the engine's buffers.
    const status = r.status.slice();
    const rtt = r.rttNs.slice();
    const reply = r.reply.slice();
    const srcPort = r.srcPort.slice();
    const health = targets.map((_, i) => {
      const from = r.targetStart[i]!;
      const to = r.targetStart[i + 1]!;
      return { ...pathHealth(paths(r, from, to)), lossRatio: summarize(r, from, to).lossRatio };
    });
    const stats = { ...r.stats };
    const records = await cap.stop();
    const pkts = decodeCapture(records, cap.linktype!);
    const checks = targets.map((t, i) => checkTarget(r, i, t, pkts, label(t)));
    await control(tun.v4.host, { op: "sync" });
    const log = readDecisions(tun.logFile);
    expect({ logLinesSinceConfigure: log.length >= offset }).toEqual({ logLinesSinceConfigure: true });
    const mine = log.slice(offset);
    const byKey = new Map<string, TunDecision[]>();
    for (const e of mine) {
      const k = decisionKey(e.dst, e.proto, e.srcPort, e.ident);
      byKey.set(k, [...(byKey.get(k) ?? []), e]);
    }
    const out: TargetRun[] = targets.map((t, i) => {
      const from = r.targetStart[i]!;
      const to = r.targetStart[i + 1]!;
      const check = checks[i]!;
      const answers = firstAnswers(pkts, t, check.wireProbes);
      const slots: Slot[] = [];
      for (let s = from; s < to; s++) {
        const p = check.wireProbes[s - from];
        const ds = p ? (byKey.get(decisionKey(canon(p.dst), p.proto, t.type === "ICMPping" ? 0 : p.sport, wireIdent(p, t.type))) ?? []) : [];
        slots.push({
          slot: s,
          k: s - from,
          answered: status[s] === SLOT_ANSWERED,
          reply: reply[s]!,
          rttNs: rtt[s]!,
          srcPort: srcPort[s]!,
          probe: p,
          wireAnswer: p ? (answers.get(p)?.first ?? null) : null,
          decision: ds[0],
          decisions: ds.length,
        });
      }
      return { t, label: label(t), check, slots, matchFail: r.matchFail[i]!, portMismatch: r.portMismatch[i]!, timeOutOfOrder: r.timeOutOfOrder[i]!, from, to };
    });
    return { targets: out, stats, pkts, records, log: mine, health };
  }

  /** Every probe left, reached the simulator exactly once, and got exactly one decision; nothing dropped by a capture. */
  function expectEveryProbeDecided(run: Run): void {
    expect(run.stats.captureDropped).toBe(0);
    for (const tr of run.targets) {
      const missing = tr.slots.filter((s) => !s.probe || s.decisions !== 1).map((s) => ({ k: s.k, onWire: !!s.probe, decisions: s.decisions }));
      expect({ target: tr.label, sent: tr.check.engine.sent, wireProbes: tr.check.wire.probes, wireDuplicates: tr.check.wire.duplicates, srcPortMismatch: tr.check.srcPortMismatch, missing }).toEqual({
        target: tr.label,
        sent: tr.t.count,
        wireProbes: tr.t.count,
        wireDuplicates: 0,
        srcPortMismatch: 0,
        missing: [],
      });
    }
  }

  /**
   * Probe by probe: the engine counts an answer exactly when the simulator's action is one of
   * `answering` (and the wire saw that answer); loss otherwise. Returns the lost count.
   */
  function expectAnsweredPerLog(tr: TargetRun, answering: Action[]): number {
    const wrong = tr.slots
      .filter((s) => s.answered !== answering.includes(s.decision!.action))
      .map((s) => ({ k: s.k, engineAnswered: s.answered, action: s.decision!.action, wireAnswerUs: s.wireAnswer && s.probe ? Number(s.wireAnswer.t - s.probe.t) / 1000 : null }));
    expect({ target: tr.label, wrong }).toEqual({ target: tr.label, wrong: [] });
    const lost = tr.slots.filter((s) => !s.answered).length;
    const notAnswering = tr.slots.filter((s) => !answering.includes(s.decision!.action)).length;
    expect({ target: tr.label, lost }).toEqual({ target: tr.label, lost: notAnswering });
    return lost;
  }

  /** Every answered probe's engine RTT is the wire's RTT of the same probe (its first answer). */
  function expectRttOfWire(tr: TargetRun): void {
    const off = [];
    for (const s of tr.slots) {
      if (!s.answered) continue;
      const wire = s.wireAnswer && s.probe ? Number(s.wireAnswer.t - s.probe.t) : NaN;
      const diff = s.rttNs - wire;
      if (Number.isFinite(diff)) maxAbsDiffNs = Math.max(maxAbsDiffNs, Math.abs(diff));
      if (!(Math.abs(diff) <= SAME_PROBE_NS)) off.push({ k: s.k, engineUs: s.rttNs / 1000, wireUs: wire / 1000 });
    }
    expect({ target: tr.label, off }).toEqual({ target: tr.label, off: [] });
  }

  const count = (tr: TargetRun, action: Action) => tr.slots.filter((s) => s.decision?.action === action).length;

  test("runs as root (these tests must not pass by not running)", () => {
    requireRoot();
  });

  test("seeded loss: lost probes are exactly the log's drops, the same seed drops the same probes again, as the offline simulator predicts", async () => {
    const targets = [target("ICMPping", 4, { count: 100 }), target("UDPunreachable", 6, { count: 100 }), target("TCPsyn", 4, { count: 100, port: "open" })];
    const config = (seed: number): SimConfig => ({ seed, rules: targets.map((t) => ({ dst: t.dst, loss: 0.2 })) });
    const lostSlots = (r: Run) => r.targets.map((tr) => tr.slots.filter((s) => !s.answered).map((s) => s.k));
    const runs: Run[] = [];
    for (const seed of [11, 11, 12]) {
      const r = await run(targets, config(seed));
      expectEveryProbeDecided(r);
      for (const tr of r.targets) {
        expectAnsweredPerLog(tr, ["answer"]);
        expectRttOfWire(tr);
      }
      runs.push(r);
    }
    // The offline simulator, fed the same probes in the same order, drops the same ones.
    const predicted = targets.map((t, i) => {
      const sim = new Simulator(config(11));
      return runs[0]!.targets[i]!.slots.filter((s) => sim.decide(probe(t.dst, protoOf(t), t.type === "ICMPping" ? 0 : s.srcPort, t.dstPort), 0).action === "drop").map((s) => s.k);
    });
    expect(lostSlots(runs[0]!)).toEqual(predicted);
    expect(lostSlots(runs[1]!)).toEqual(predicted);
    expect(lostSlots(runs[2]!)).not.toEqual(predicted);
    for (const lost of predicted) expect(lost.length).toBeGreaterThan(5);
  }, 60_000);

  test("loss on chosen flows only: UDP from one source port of 16 dropped, TCP to the same address untouched; pathsDown 1, loss exactly 1/16", async () => {
    const udp = target("UDPunreachable", 4);
    const tcp = target("TCPsyn", 4, { port: "open" });
    tcp.dst = udp.dst;
    const udp6 = target("UDPunreachable", 6);
    const r = await run([udp, tcp, udp6], {
      rules: [
        { dst: udp.dst, proto: "udp", dropSrcPorts: [65003] },
        { dst: udp6.dst, proto: "udp", srcPorts: "65011", loss: 1 },
      ],
    });
    expectEveryProbeDecided(r);
    const [u, t, u6] = r.targets as [TargetRun, TargetRun, TargetRun];
    expectAnsweredPerLog(u, ["answer"]);
    expectAnsweredPerLog(t, ["answer"]);
    expectAnsweredPerLog(u6, ["answer"]);
    expect(new Set(u.slots.filter((s) => !s.answered).map((s) => s.srcPort))).toEqual(new Set([65003]));
    expect(new Set(u6.slots.filter((s) => !s.answered).map((s) => s.srcPort))).toEqual(new Set([65011]));
    expect(u.slots.filter((s) => !s.answered).map((s) => s.decision!.reason)).toEqual(["src-port", "src-port", "src-port", "src-port"]);
    expect(r.health).toEqual([
      { worstLossRatio: 1, pathsDown: 1, lossRatio: 1 / 16 },
      { worstLossRatio: 0, pathsDown: 0, lossRatio: 0 },
      { worstLossRatio: 1, pathsDown: 1, lossRatio: 1 / 16 },
    ]);
  }, 60_000);

  test("duplicate replies: counted as duplicates, never as extra answers; each probe timed by its first copy", async () => {
    const targets = [...everyKind({ count: 64, intervalMs: 8 }), ...everyKind({ count: 64, intervalMs: 8 })];
    const rules: Rule[] = targets.map((t, i) => ({ dst: t.dst, delayMs: 1, duplicate: 0.4, duplicateGapMs: i < 8 ? 0 : 2 }));
    // The batch ends once every probe is answered, and copies that come later are not seen. A
    // lost probe sent last keeps the engine listening for its timeout: every copy arrives meanwhile.
    const keepOpen = target("ICMPping", 4, { count: 1, startMs: 64 * 8 });
    rules.push({ dst: keepOpen.dst, loss: 1 });
    const r = await run([...targets, keepOpen], { seed: 21, rules });
    expectEveryProbeDecided(r);
    expect(r.targets.at(-1)!.slots.map((s) => [s.answered, s.decision!.action])).toEqual([[false, "drop"]]);
    r.targets.pop();
    let dups = 0;
    for (const tr of r.targets) {
      expectAnsweredPerLog(tr, ["answer", "duplicate"]);
      expectRttOfWire(tr);
      dups += count(tr, "duplicate");
      // The wire carried both copies of every duplicated answer.
      const answers = firstAnswers(r.pkts, tr.t, tr.check.wireProbes);
      const twice = [...answers.values()].filter((a) => a.copies === 2).length;
      expect({ target: tr.label, twice }).toEqual({ target: tr.label, twice: count(tr, "duplicate") });
    }
    expect(dups).toBeGreaterThan(100);
    expect(r.stats.duplicates).toBe(dups);
    expect(r.stats.answered).toBe(16 * 64);
  }, 60_000);

  test("reordering: answers overtaken on the wire are all matched to their own probes, timed as on the wire", async () => {
    const targets = everyKind({ count: 100, intervalMs: 2 });
    const r = await run(targets, { seed: 31, rules: targets.map((t) => ({ dst: t.dst, delayMs: 1, reorder: 0.3, reorderMs: 10 })) });
    expectEveryProbeDecided(r);
    for (const tr of r.targets) {
      expectAnsweredPerLog(tr, ["answer", "reorder"]);
      expectRttOfWire(tr);
      // Answers left the simulator out of probe order: count the answers that overtook an earlier probe's.
      const answerTimes = tr.slots.map((s) => s.wireAnswer!.t);
      let overtaken = 0;
      for (let k = 0; k < answerTimes.length; k++) if (answerTimes.slice(k + 1).some((t) => t < answerTimes[k]!)) overtaken++;
      expect({ target: tr.label, overtaken: overtaken > 0 && overtaken >= count(tr, "reorder") * 0.8 }).toEqual({ target: tr.label, overtaken: true });
      // Each held answer took at least its extra hold.
      const short = tr.slots.filter((s) => s.decision!.action === "reorder" && Number(s.wireAnswer!.t - s.probe!.t) < 11e6).map((s) => s.k);
      expect({ target: tr.label, short }).toEqual({ target: tr.label, short: [] });
    }
  }, 60_000);

  test("ICMP errors quoting the wrong packet: never answers; counted as port mismatches when the ident matches but the ports differ", async () => {
    const byField = (field: "ident" | "port") =>
      ([4, 6] as const).flatMap((f) => [target("TCPsyn", f, { port: "open" }), target("UDPunreachable", f), target("ICMPping", f)]).map((t) => ({ t, field }));
    const cases = [...byField("ident"), ...byField("port")];
    const r = await run(
      cases.map((c) => c.t),
      { seed: 41, rules: cases.map((c) => ({ dst: c.t.dst, wrongQuote: 0.5, wrongQuoteField: c.field })) },
    );
    expectEveryProbeDecided(r);
    r.targets.forEach((tr, i) => {
      const field = cases[i]!.field;
      const wrong = count(tr, "wrong-quote");
      expect(wrong).toBeGreaterThan(10);
      expectAnsweredPerLog(tr, ["answer"]);
      expectRttOfWire(tr);
      // Only a quote whose ident is the probe's can be told to be a port mismatch; echo has no ports.
      const mismatches = field === "port" && tr.t.type !== "ICMPping" ? wrong : 0;
      expect({ target: tr.label, field, portMismatch: tr.portMismatch, matchFail: tr.matchFail }).toEqual({ target: tr.label, field, portMismatch: mismatches, matchFail: 0 });
      // The wire carried them (ICMP errors from the target's address), so the loss is not the simulator's silence.
      const errors = r.pkts.filter((p) => p.src === canon(tr.t.dst) && p.quote !== null).length;
      expect({ target: tr.label, errors }).toEqual({ target: tr.label, errors: tr.t.type === "UDPunreachable" ? tr.t.count : wrong });
    });
  }, 60_000);

  test("mangled headers (wrong TCP ack, wrong echo sequence, wrong quoted ident) never match; a wrong ack counts as a match failure", async () => {
    const targets = everyKind();
    const r = await run(targets, { seed: 51, rules: targets.map((t) => ({ dst: t.dst, mangle: 0.5 })) });
    expectEveryProbeDecided(r);
    for (const tr of r.targets) {
      const mangled = count(tr, "mangle");
      expect(mangled).toBeGreaterThan(10);
      expectAnsweredPerLog(tr, ["answer"]);
      expectRttOfWire(tr);
      expect({ target: tr.label, matchFail: tr.matchFail, portMismatch: tr.portMismatch }).toEqual({
        target: tr.label,
        matchFail: tr.t.type === "TCPsyn" ? mangled : 0,
        portMismatch: 0,
      });
    }
  }, 60_000);

  test("ICMP rate limiting: the prober's loss is exactly the simulator's rate-limit drops; TCP answers are not limited", async () => {
    const targets = everyKind({ count: 150, intervalMs: 2 });
    const r = await run(targets, { rules: targets.map((t) => ({ dst: t.dst, icmpRate: 100, icmpBurst: 10 })) });
    expectEveryProbeDecided(r);
    for (const tr of r.targets) {
      expectAnsweredPerLog(tr, ["answer"]);
      expectRttOfWire(tr);
      const drops = tr.slots.filter((s) => s.decision!.action === "drop");
      expect(new Set(drops.map((s) => s.decision!.reason))).toEqual(new Set(tr.t.type === "TCPsyn" ? [] : ["icmp-rate"]));
      if (tr.t.type === "TCPsyn") continue;
      // At most the burst plus the rate over the time the probes took to arrive (the simulator's own limit).
      const answered = tr.slots.length - drops.length;
      const spanS = Number(tr.slots.at(-1)!.probe!.t - tr.slots[0]!.probe!.t) / 1e9;
      expect({ target: tr.label, answered, withinLimit: answered <= 10 + 100 * (spanS + 0.05), someDropped: drops.length > 50 }).toEqual({
        target: tr.label,
        answered,
        withinLimit: true,
        someDropped: true,
      });
    }
  }, 60_000);

  test("truncated replies: never matched, never a crash; cut TCP and echo replies counted as truncated, errors cut before the quoted ports ignored", async () => {
    const targets = everyKind();
    // Two more targets whose replies are cut to 10 bytes: less than an IP header. The engine's
    // filter reads the ICMP type (ICMPv4 too since the probe types own their filters), which
    // such a stub lacks: the kernel drops them, and the engine neither sees nor counts them.
    const tiny = [target("ICMPping", 4), target("UDPunreachable", 4)];
    const rules: Rule[] = [...targets.map((t) => ({ dst: t.dst, truncate: 0.5 })), ...tiny.map((t) => ({ dst: t.dst, truncate: 0.5, truncateBytes: 10 }))];
    const r = await run([...targets, ...tiny], { seed: 61, rules });
    expectEveryProbeDecided(r);
    let countable = 0;
    r.targets.forEach((tr, i) => {
      const cut = count(tr, "truncate");
      expect(cut).toBeGreaterThan(10);
      expectAnsweredPerLog(tr, ["answer"]);
      expectRttOfWire(tr);
      expect({ target: tr.label, matchFail: tr.matchFail, portMismatch: tr.portMismatch }).toEqual({ target: tr.label, matchFail: 0, portMismatch: 0 });
      // The engine's decoder reports a frame too short for its own headers; an error whose quote
      // is cut has a whole outer header and is ignored for want of a quote.
      if (i < targets.length && tr.t.type !== "UDPunreachable") countable += cut;
      const lengths = new Set(tr.slots.filter((s) => s.decision!.action === "truncate").map((s) => s.decision!.bytes));
      const ip = tr.t.family === 4 ? 20 : 40;
      const want = i >= targets.length ? 10 : tr.t.type === "TCPsyn" ? ip + 12 : tr.t.type === "ICMPping" ? ip + 4 : ip + 8 + ip;
      expect({ target: tr.label, lengths: [...lengths] }).toEqual({ target: tr.label, lengths: [want] });
    });
    expect(r.stats.truncated).toBe(countable);
  }, 60_000);

  test("corrupt checksums: every reply still matched and timed (checksums are not verified on receive); the wire shows them bad", async () => {
    const targets = everyKind({ count: 32 });
    const r = await run(targets, { rules: targets.map((t) => ({ dst: t.dst, corrupt: 1 })) });
    expectEveryProbeDecided(r);
    for (const tr of r.targets) {
      expect(count(tr, "corrupt")).toBe(32);
      expectAnsweredPerLog(tr, ["corrupt"]);
      expectRttOfWire(tr);
    }
    // Independent check of the simulator: every reply from a target on the wire fails its checksum.
    const dsts = new Set(targets.map((t) => canon(t.dst)));
    let replies = 0;
    let bad = 0;
    for (const rec of r.records) {
      const c = checksums(rec.data);
      if (!c || !dsts.has(c.src)) continue;
      replies++;
      if (!c.l4Ok && (c.family === 6 || !c.ipOk)) bad++;
    }
    expect({ replies, bad }).toEqual({ replies: 8 * 32, bad: 8 * 32 });
  }, 60_000);

  test("jitter: every probe's RTT is the wire's, however much the delay varies; the wire shows the spread", async () => {
    const targets = everyKind({ count: 100, intervalMs: 2 });
    const r = await run(targets, { seed: 71, rules: targets.map((t) => ({ dst: t.dst, delayMs: 6, jitterMs: 5 })) });
    expectEveryProbeDecided(r);
    for (const tr of r.targets) {
      expectAnsweredPerLog(tr, ["answer"]);
      expectRttOfWire(tr);
      const delays = tr.slots.map((s) => s.decision!.delayMs!);
      const wire = tr.slots.map((s) => Number(s.wireAnswer!.t - s.probe!.t) / 1e6);
      // The simulator applied what it logged: the wire is never faster than the logged delay.
      const early = tr.slots.filter((s, i) => wire[i]! < s.decision!.delayMs!).map((s) => s.k);
      expect({ target: tr.label, early }).toEqual({ target: tr.label, early: [] });
      expect({ target: tr.label, delaySpread: Math.max(...delays) - Math.min(...delays) > 8, wireSpread: Math.max(...wire) - Math.min(...wire) > 6 }).toEqual({
        target: tr.label,
        delaySpread: true,
        wireSpread: true,
      });
      expect(median(delays)).toBeGreaterThan(4);
      expect(median(delays)).toBeLessThan(8);
    }
  }, 60_000);
});

/** Checksums of a raw IP packet (LINKTYPE_RAW record), or null for what is not TCP / ICMP. */
function checksums(b: Uint8Array): { family: 4 | 6; src: string; ipOk: boolean; l4Ok: boolean } | null {
  const v = b[0]! >> 4;
  if (v === 4) {
    const ihl = (b[0]! & 0x0f) * 4;
    const total = (b[2]! << 8) | b[3]!;
    const proto = b[9]!;
    if (proto !== 6 && proto !== 1) return null;
    const len = Math.min(total, b.length) - ihl;
    const pseudo = proto === 6 ? pseudoHeaderSum(4, b.subarray(12, 16), b.subarray(16, 20), 6, len) : 0;
    return {
      family: 4,
      src: [...b.subarray(12, 16)].join("."),
      ipOk: finish(sum16(b, 0, ihl)) === 0,
      l4Ok: finish(sum16(b, ihl, len, pseudo)) === 0,
    };
  }
  if (v === 6) {
    const proto = b[6]!;
    if (proto !== 6 && proto !== 58) return null;
    const len = Math.min((b[4]! << 8) | b[5]!, b.length - 40);
    const words: string[] = [];
    for (let i = 8; i < 24; i += 2) words.push(((b[i]! << 8) | b[i + 1]!).toString(16));
    return {
      family: 6,
      src: canon(words.join(":")),
      ipOk: true,
      l4Ok: finish(sum16(b, 40, len, pseudoHeaderSum(6, b.subarray(8, 24), b.subarray(24, 40), proto, len))) === 0,
    };
  }
  return null;
}
