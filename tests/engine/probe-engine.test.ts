/**
 * The engine on a network in memory (tests/support/fake-network.ts): scheduling, matching,
 * timeouts, duplicates, reordering, late answers, send failures and the closing RSTs, without
 * root or libpcap. Virtual time makes every RTT exact: an answer delayed 7 ms reads 7,000,000 ns.
 */
import { describe, expect, test } from "bun:test";
import type { TargetType } from "../../src/config/schema.ts";
import {
  ProbeEngine,
  REPLY_ECHO,
  REPLY_PORT_UNREACHABLE,
  REPLY_SYN_ACK,
  REPLY_UNREACHABLE,
  SLOT_ANSWERED,
  SLOT_LOST,
  SLOT_UNSENT,
  type BatchResult,
  type ProbeTarget,
} from "../../src/engine/probe-engine.ts";
import { formatAddress } from "../../src/packet/address.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_RST, TCP_SYN } from "../../src/packet/build.ts";
import type { IpFields } from "../../src/packet/parse.ts";
import type { ProbeType } from "../../src/probes/probe-type.ts";
import { PROBE_TYPES } from "../../src/probes/registry.ts";
import { AnswerBuilder, FakeNetwork, type Responder, type SentFrame } from "../support/fake-network.ts";

const OPEN_PORT = 443;
const CLOSED_PORT = 33434;
const IDENT_BASE = 0x3000_0000;

function target(type: TargetType, dst: string, over: Partial<ProbeTarget> = {}): ProbeTarget {
  const family = dst.includes(":") ? 6 : 4;
  return {
    type,
    family,
    dst,
    dstPort: type === "ICMPping" ? 0 : type === "TCPsyn" ? OPEN_PORT : CLOSED_PORT,
    srcAddresses: null,
    srcPortA: 65000,
    srcPortZ: 65003,
    dscp: 0,
    dontFragment: true,
    ipPayloadSize: null,
    count: 8,
    intervalMs: 0,
    startMs: 0,
    timeoutMs: 100,
    ...over,
  };
}

const isProbe = (ip: IpFields) =>
  (ip.protocol === IPPROTO_TCP && ip.tcpFlags === TCP_SYN) ||
  ip.protocol === IPPROTO_UDP ||
  (ip.protocol === (ip.family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) && (ip.icmpType === 8 || ip.icmpType === 128));
const isReset = (ip: IpFields) => ip.protocol === IPPROTO_TCP && ip.tcpFlags === TCP_RST;

/** What a real host answers: SYN-ACK on the open port, RST-ACK on others, echo replies, port unreachable. */
function hostAnswer(s: SentFrame, b: AnswerBuilder): Uint8Array | null {
  const ip = s.ip;
  if (ip.protocol === IPPROTO_TCP) return ip.tcpFlags === TCP_SYN ? (ip.dstPort === OPEN_PORT ? b.synAck(ip) : b.rstAck(ip)) : null;
  if (ip.protocol === IPPROTO_UDP) return b.unreachable(ip, s.bytes);
  return isProbe(ip) ? b.echoReply(ip) : null;
}

/** A host answering every probe after `delayMs` (per destination when a function), except the probes `drop` names. */
function host(delayMs: number | ((s: SentFrame, k: number) => number), drop: (s: SentFrame, k: number) => boolean = () => false): Responder {
  let k = 0;
  return (s, b) => {
    if (!isProbe(s.ip)) return { replies: [] };
    const n = k++;
    const a = hostAnswer(s, b);
    if (!a || drop(s, n)) return { replies: [] };
    return { replies: [{ delayMs: typeof delayMs === "number" ? delayMs : delayMs(s, n), bytes: a }] };
  };
}

function engineOn(net: FakeNetwork, over: { maxProbesPerSecond?: number; abortFlag?: Int32Array } = {}): ProbeEngine {
  return new ProbeEngine(net, { maxProbesPerSecond: over.maxProbesPerSecond ?? 1e9, identBase: IDENT_BASE, abortFlag: over.abortFlag });
}

function slotsOf(r: BatchResult, t: number): number[] {
  const out: number[] = [];
  for (let s = r.targetStart[t]!; s < r.targetStart[t + 1]!; s++) out.push(s);
  return out;
}

describe("every type, both families, answered after 7 ms", () => {
  const cases: [TargetType, string, number][] = [
    ["TCPsyn", "198.18.1.2", REPLY_SYN_ACK],
    ["TCPsyn", "fd00:18:1::2", REPLY_SYN_ACK],
    ["ICMPping", "198.18.1.2", REPLY_ECHO],
    ["ICMPping", "fd00:18:1::2", REPLY_ECHO],
    ["UDPunreachable", "198.18.1.2", REPLY_PORT_UNREACHABLE],
    ["UDPunreachable", "fd00:18:1::2", REPLY_PORT_UNREACHABLE],
  ];
  for (const [type, dst, reply] of cases) {
    test(`${type} to ${dst}: every probe answered, RTT exactly 7 ms, reply ${reply}`, () => {
      const net = new FakeNetwork({ responder: host(7) });
      const r = engineOn(net).run([target(type, dst)]);
      expect(r.stats).toMatchObject({ sent: 8, answered: 8, sendErrors: 0, duplicates: 0, late: 0, txMissing: 0 });
      expect([...r.status]).toEqual(new Array(8).fill(SLOT_ANSWERED));
      expect([...r.reply]).toEqual(new Array(8).fill(reply));
      expect([...r.rttNs]).toEqual(new Array(8).fill(7_000_000));
      // Source ports rotate over the range for types with ports; ICMP has none.
      const ports = net.sentWhere(isProbe).map((s) => s.ip.srcPort);
      expect(ports).toEqual(type === "ICMPping" ? new Array(8).fill(0) : [65000, 65001, 65002, 65003, 65000, 65001, 65002, 65003]);
      // The batch ends when everything is answered, not at the timeout.
      expect(r.stats.durationMs).toBeLessThan(100);
    });
  }

  test("the capture filter has each type's fragment and ICMP errors for the types an error answers", () => {
    const net = new FakeNetwork({ responder: host(1) });
    const e = engineOn(net);
    e.run([target("ICMPping", "198.18.1.2")]);
    e.run([target("UDPunreachable", "fd00:18:1::2"), target("TCPsyn", "198.18.1.2")]);
    expect(net.filters[0]).toBe("(icmp and (icmp[0] == 8 or icmp[0] == 0))");
    expect(net.filters[1]).toContain("(ip and tcp and ((src portrange 65000-65003");
    expect(net.filters[1]).toContain("(udp and src portrange 65000-65003)");
    expect(net.filters[1]).toContain("(icmp and icmp[0] == 3)");
    expect(net.filters[1]).toContain("(icmp6 and ip6[40] == 1)");
    expect(net.filters[1]).not.toContain("ip6 and ip6[6] = 6");
  });
});

describe("TCP: the far host keeps nothing half-open", () => {
  test("a SYN-ACK gets one RST; a RST-ACK none; an unanswered SYN one at the end", () => {
    const net = new FakeNetwork({ responder: host(2, (s) => s.ip.dst[3] === 9) });
    const r = engineOn(net).run([
      target("TCPsyn", "198.18.1.2", { count: 4 }),
      target("TCPsyn", "198.18.1.3", { count: 4, dstPort: CLOSED_PORT }),
      target("TCPsyn", "198.18.1.9", { count: 4 }),
    ]);
    expect([...r.reply]).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0]);
    const resets = net.sentWhere(isReset).map((s) => formatAddress(4, s.ip.dst));
    expect(resets.sort()).toEqual(["198.18.1.2", "198.18.1.2", "198.18.1.2", "198.18.1.2", "198.18.1.9", "198.18.1.9", "198.18.1.9", "198.18.1.9"]);
    // The RST continues the SYN's sequence: seq + 1.
    const syns = net.sentWhere(isProbe);
    for (const rst of net.sentWhere(isReset)) {
      expect(syns.some((syn) => syn.ip.srcPort === rst.ip.srcPort && ((syn.ip.seq + 1) >>> 0) === rst.ip.seq)).toBe(true);
    }
  });

  test("a SYN with data is matched whether the stack acknowledges seq + 1 or seq + data + 1", () => {
    let n = 0;
    const net = new FakeNetwork({
      responder: (s, b) => (s.ip.tcpFlags === TCP_SYN ? { replies: [{ delayMs: 1, bytes: b.tcp(s.ip, TCP_SYN | TCP_ACK, { ackOffset: n++ % 2 === 0 ? 1 : 31 }) }] } : { replies: [] }),
    });
    const r = engineOn(net).run([target("TCPsyn", "198.18.1.2", { ipPayloadSize: 50 })]);
    expect(r.stats).toMatchObject({ sent: 8, answered: 8 });
    expect(r.matchFail[0]).toBe(0);
  });

  test("a SYN-ACK acknowledging none of our SYNs but in our window is a failed match; from another window it is not ours", () => {
    const net = new FakeNetwork({
      responder: (s, b) => {
        if (s.ip.tcpFlags !== TCP_SYN) return { replies: [] };
        return {
          replies: [
            { delayMs: 1, bytes: b.tcp(s.ip, TCP_SYN | TCP_ACK, { ack: (IDENT_BASE + 0x0fff_0000) >>> 0 }) },
            { delayMs: 1, bytes: b.tcp(s.ip, TCP_SYN | TCP_ACK, { ack: 0x5000_0001 }) },
            { delayMs: 2, bytes: b.synAck(s.ip) },
          ],
        };
      },
    });
    const r = engineOn(net).run([target("TCPsyn", "198.18.1.2", { count: 3 })]);
    expect(r.stats.answered).toBe(3);
    expect(r.matchFail[0]).toBe(3);
  });
});

describe("matching under disorder", () => {
  test("answers in reverse order each find their own probe: RTT per probe is its own delay", () => {
    // Probe k answered after 40 - 4k ms: the last probe's answer comes back first.
    const net = new FakeNetwork({ responder: host((_s, k) => 40 - 4 * k) });
    const r = engineOn(net).run([target("UDPunreachable", "198.18.1.2", { count: 8, intervalMs: 1 })]);
    expect([...r.rttNs]).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((k) => (40 - 4 * k) * 1e6));
  });

  test("a duplicated answer is counted once as an answer and once as a duplicate; the first one times the probe", () => {
    const net = new FakeNetwork({
      responder: (s, b) => {
        const a = hostAnswer(s, b);
        if (!a) return { replies: [] };
        // The third target's answers keep the batch open until the duplicates are in.
        if (s.ip.family === 6 && s.ip.dst[15] === 3) return { replies: [{ delayMs: 20, bytes: a }] };
        return { replies: [{ delayMs: 3, bytes: a }, { delayMs: 5, bytes: a }] };
      },
    });
    const r = engineOn(net).run([
      target("ICMPping", "fd00:18:1::2", { count: 5 }),
      target("TCPsyn", "198.18.1.2", { count: 5 }),
      target("ICMPping", "fd00:18:1::3", { count: 1 }),
    ]);
    expect(r.stats).toMatchObject({ sent: 11, answered: 11, duplicates: 10 });
    expect([...r.rttNs]).toEqual([...new Array(10).fill(3e6), 20e6]);
    // Duplicates of a SYN-ACK do not each draw a RST.
    expect(net.sentWhere(isReset)).toHaveLength(5);
  });

  test("answers to the wrong ports are port mismatches, never answers", () => {
    const net = new FakeNetwork({
      responder: (s, b) => (s.ip.tcpFlags === TCP_SYN ? { replies: [{ delayMs: 1, bytes: b.tcp(s.ip, TCP_SYN | TCP_ACK, { srcPort: 8443 }) }] } : { replies: [] }),
    });
    const r = engineOn(net).run([target("TCPsyn", "198.18.1.2", { count: 4 })]);
    expect(r.stats.answered).toBe(0);
    expect(r.portMismatch[0]).toBe(4);
    expect([...r.status]).toEqual(new Array(4).fill(SLOT_LOST));
  });

  test("an ICMP error from a router quoting a UDP probe answers it as unreachable; one quoting an echo request answers nothing", () => {
    const net = new FakeNetwork({
      responder: (s, b) => ({ replies: [{ delayMs: 2, bytes: b.unreachable(s.ip, s.bytes, { code: 1, from: s.ip.family === 4 ? "198.18.0.254" : "fd00:18::fe" }) }] }),
    });
    const r = engineOn(net).run([target("UDPunreachable", "198.18.1.2", { count: 3 }), target("ICMPping", "fd00:18:1::2", { count: 3 })]);
    expect([...r.reply]).toEqual([REPLY_UNREACHABLE, REPLY_UNREACHABLE, REPLY_UNREACHABLE, 0, 0, 0]);
    expect([...r.status.subarray(3)]).toEqual([SLOT_LOST, SLOT_LOST, SLOT_LOST]);
  });
});

describe("timeouts and late answers", () => {
  test("an answer after the target's timeout is lost, and counted late while the batch still waits for another target", () => {
    const net = new FakeNetwork({ responder: host((s) => (s.ip.dst[3] === 2 ? 150 : 120)) });
    const r = engineOn(net).run([
      target("ICMPping", "198.18.1.2", { count: 4, timeoutMs: 100 }),
      target("ICMPping", "198.18.1.3", { count: 4, timeoutMs: 300 }),
    ]);
    expect([...r.status]).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(r.stats.late).toBe(4);
    expect(r.stats.answered).toBe(4);
    // Four probes stayed unanswered: the batch lasts until the longest deadline.
    expect(r.stats.durationMs).toBe(300);
  });

  test("the wait for answers is counted from each target's last probe, not from the batch's start", () => {
    const net = new FakeNetwork({ responder: host(90) });
    const r = engineOn(net).run([target("TCPsyn", "198.18.1.2", { count: 5, intervalMs: 50, timeoutMs: 100 })]);
    // The last probe leaves at 200 ms and is answered at 290, inside its 100 ms.
    expect(r.stats.answered).toBe(5);
    expect(net.sentWhere(isProbe).map((s) => s.atMs - net.sent[0]!.atMs)).toEqual([0, 50, 100, 150, 200]);
  });

  test("answers arriving after the batch ended are not counted in the next one", () => {
    const net = new FakeNetwork({ responder: host((s) => (s.ip.dst[3] === 2 ? 500 : 1)) });
    const e = engineOn(net);
    const first = e.run([target("ICMPping", "198.18.1.2", { count: 4, timeoutMs: 50 })]);
    expect(first.stats.answered).toBe(0);
    expect(net.pending).toBeGreaterThan(0);
    const second = e.run([target("ICMPping", "198.18.1.3", { count: 4, timeoutMs: 50 })]);
    expect(second.stats).toMatchObject({ answered: 4, duplicates: 0, late: 0 });
  });
});

describe("what the prober itself fails at is never counted as network loss", () => {
  test("an unroutable target: every probe unsent, a send error, not lost; the others unaffected", () => {
    const net = new FakeNetwork({ responder: host(1), unroutable: new Set(["198.18.9.9"]) });
    const r = engineOn(net).run([target("UDPunreachable", "198.18.9.9", { count: 3 }), target("UDPunreachable", "198.18.1.2", { count: 3 })]);
    expect([...r.status]).toEqual([SLOT_UNSENT, SLOT_UNSENT, SLOT_UNSENT, SLOT_ANSWERED, SLOT_ANSWERED, SLOT_ANSWERED]);
    expect(r.stats).toMatchObject({ sent: 3, sendErrors: 3, unroutable: 3, answered: 3 });
    expect(r.unroutable).toEqual(["no route to 198.18.9.9", ""]);
  });

  test("a send call that fails: unsent, counted, and the reason given once per target", () => {
    const net = new FakeNetwork({ responder: host(1), sendFails: new Set(["fd00:18:1::7"]) });
    const r = engineOn(net).run([target("TCPsyn", "fd00:18:1::7", { count: 3 })]);
    expect([...r.status]).toEqual([SLOT_UNSENT, SLOT_UNSENT, SLOT_UNSENT]);
    expect(r.stats).toMatchObject({ sent: 0, sendErrors: 3, unroutable: 0 });
    expect(r.unroutable).toEqual(["fake send returned -1 of 60 bytes"]);
    // Nothing left, so nothing to close.
    expect(net.sentWhere(isReset)).toHaveLength(0);
  });

  test("an answer whose probe was never seen leaving is answered but untimed (txMissing)", () => {
    const inner = host(4);
    let k = 0;
    const net = new FakeNetwork({ responder: (s, b) => ({ ...inner(s, b), departure: k++ % 2 === 0 ? 0 : null }) });
    const r = engineOn(net).run([target("ICMPping", "198.18.1.2", { count: 4 })]);
    expect(r.stats).toMatchObject({ answered: 4, txMissing: 2 });
    expect([...r.rttNs].map((x) => (Number.isNaN(x) ? "untimed" : x))).toEqual([4e6, "untimed", 4e6, "untimed"]);
  });

  test("an answer timestamped before its probe left is out of order: answered, untimed, counted", () => {
    // The departures are seen 3 ms late, after the answers (1 ms); the second target's answer
    // (10 ms) keeps the batch open until they are.
    const inner = host((s) => (s.ip.dst[3] === 3 ? 10 : 1));
    const net = new FakeNetwork({ responder: (s, b) => ({ ...inner(s, b), departure: s.ip.dst[3] === 3 ? 0 : 3 }) });
    const r = engineOn(net).run([target("ICMPping", "198.18.1.2", { count: 2 }), target("ICMPping", "198.18.1.3", { count: 1 })]);
    expect(r.stats.answered).toBe(3);
    expect(r.timeOutOfOrder[0]).toBe(2);
    expect([...r.rttNs].map((x) => (Number.isNaN(x) ? "untimed" : x))).toEqual(["untimed", "untimed", 10e6]);
  });
});

describe("the schedule", () => {
  test("max_probes_per_second: one burst of 64, then the rate", () => {
    const net = new FakeNetwork({ responder: host(1) });
    const r = engineOn(net, { maxProbesPerSecond: 100 }).run([target("ICMPping", "198.18.1.2", { count: 164 })]);
    expect(r.stats.sent).toBe(164);
    const t = net.sentWhere(isProbe).map((s) => s.atMs - net.sent[0]!.atMs);
    expect(t[63]).toBe(0);
    // The 100 probes after the burst take a second at 100 per second.
    expect(t[163]! - t[64]!).toBeGreaterThanOrEqual(980);
    expect(t[163]! - t[64]!).toBeLessThanOrEqual(1010);
  });

  test("target starts and per-target intervals are kept; the worst send lag is measured", () => {
    const net = new FakeNetwork({ responder: host(1) });
    const r = engineOn(net).run([target("UDPunreachable", "198.18.1.2", { count: 3, intervalMs: 10, startMs: 25 }), target("UDPunreachable", "198.18.1.3", { count: 2, intervalMs: 7 })]);
    const at = (last: number) => net.sentWhere((ip) => ip.protocol === IPPROTO_UDP && ip.dst[3] === last).map((s) => s.atMs - net.sent[0]!.atMs);
    expect(at(3)).toEqual([0, 7]);
    expect(at(2)).toEqual([25, 35, 45]);
    expect(r.stats.sendLagMs).toBeLessThanOrEqual(1);
  });

  test("an abort ends the batch at once: what was sent is reported, the rest neither sent nor lost", () => {
    const abort = new Int32Array(new SharedArrayBuffer(4));
    let sent = 0;
    const net = new FakeNetwork({
      responder: (s, b) => {
        if (++sent === 3) Atomics.store(abort, 0, 1);
        return { replies: [{ delayMs: 1, bytes: b.echoReply(s.ip) }] };
      },
    });
    const r = engineOn(net, { abortFlag: abort }).run([target("ICMPping", "198.18.1.2", { count: 10, intervalMs: 100 })]);
    expect(r.stats).toMatchObject({ sent: 3, answered: 2, sendErrors: 0 });
    // The third probe left and was still awaited: lost. The seven never sent are neither.
    expect([...r.status]).toEqual([SLOT_ANSWERED, SLOT_ANSWERED, SLOT_LOST, ...new Array(7).fill(SLOT_UNSENT)]);
    expect(r.stats.durationMs).toBe(200);
  });
});

describe("slots", () => {
  test("source addresses rotate fastest, then source ports", () => {
    const net = new FakeNetwork({ responder: host(1) });
    const r = engineOn(net).run([target("TCPsyn", "198.18.1.2", { count: 6, srcAddresses: ["198.18.0.1", "198.18.0.2"], srcPortA: 40000, srcPortZ: 40001 })]);
    const sent = net.sentWhere(isProbe).map((s) => `${formatAddress(4, s.ip.src)}:${s.ip.srcPort}`);
    expect(sent).toEqual(["198.18.0.1:40000", "198.18.0.2:40000", "198.18.0.1:40001", "198.18.0.2:40001", "198.18.0.1:40000", "198.18.0.2:40000"]);
    expect([...r.srcIndex]).toEqual([0, 1, 0, 1, 0, 1]);
    expect([...r.srcPort]).toEqual([40000, 40000, 40001, 40001, 40000, 40000]);
    expect(slotsOf(r, 0)).toHaveLength(6);
  });

  test("the RST of an ACK-less answer is never sent: an ACK-less RST from the host is no answer", () => {
    const net = new FakeNetwork({
      responder: (s, b) => (s.ip.tcpFlags === TCP_SYN ? { replies: [{ delayMs: 1, bytes: b.tcp(s.ip, TCP_RST) }] } : { replies: [] }),
    });
    const r = engineOn(net).run([target("TCPsyn", "198.18.1.2", { count: 2, timeoutMs: 10 })]);
    expect(r.stats.answered).toBe(0);
  });
});

describe("what the engine gives a type beyond its packets", () => {
  /** Runs `body` with the module of `type` changed as `patch` says, then puts it back. */
  function withPatched<T>(type: TargetType, patch: Partial<ProbeType>, body: () => T): T {
    const mod = PROBE_TYPES[type] as unknown as Record<string, unknown>;
    const saved = Object.fromEntries(Object.keys(patch).map((k) => [k, mod[k]]));
    Object.assign(mod, patch);
    try {
      return body();
    } finally {
      Object.assign(mod, saved);
    }
  }

  test("each probe's flow (source address and port) and round in it: 2 sources x 3 ports make 6 flows, probe k is flow k mod 6", () => {
    const seen: [number, number, number][] = [];
    const salts = new Set<number>();
    const original: ProbeType["assignIdent"] = PROBE_TYPES.UDPunreachable.assignIdent;
    withPatched(
      "UDPunreachable",
      {
        assignIdent: (t, k, counter, flow) => {
          seen.push([k, flow.flow, flow.round]);
          salts.add(flow.salt);
          return original(t, k, counter, flow);
        },
      },
      () => {
        const net = new FakeNetwork({ responder: host(1) });
        const spec = target("UDPunreachable", "198.18.1.2", { count: 14, srcAddresses: ["198.18.0.1", "198.18.0.7"], srcPortA: 65000, srcPortZ: 65002 });
        const engine = engineOn(net);
        const r = engine.run([spec]);
        for (const [k, flow, round] of seen) {
          expect([flow, round]).toEqual([k % 6, Math.floor(k / 6)]);
          // The flow is the 5-tuple: every probe of a flow left from the same address and port.
          const first = seen.find((x) => x[1] === flow)![0];
          expect([r.srcIndex[k], r.srcPort[k]]).toEqual([r.srcIndex[first]!, r.srcPort[first]!]);
        }
        expect(seen).toHaveLength(14);
        // The identifiers the batch reports are the ones the probes carried.
        expect([...r.ident]).toEqual(net.sentWhere(isProbe).map((s) => s.ip.ipId));
        engine.run([spec]);
        // A salt drawn per batch.
        expect(salts.size).toBe(2);
      },
    );
  });

  test("an ICMP error is no direct answer: the type records nothing from it", () => {
    let calls = 0;
    withPatched("UDPunreachable", { answerValues: { count: 0, record: () => (calls++, 1e6) } }, () => {
      const r = engineOn(new FakeNetwork({ responder: host(7) })).run([target("UDPunreachable", "198.18.1.2", { count: 2 })]);
      expect(r.stats.answered).toBe(2);
      expect([...r.rttNs]).toEqual([7e6, 7e6]);
      expect(calls).toBe(0);
    });
  });

  test("the far end's hold time a type reads from an answer is taken off the RTT (and kept per slot); more than the RTT is a timestamp issue", () => {
    withPatched(
      "ICMPping",
      {
        answerValues: { count: 0, record: (o) => (o.icmpSeq % 2 === 0 ? 2_000_000 : 9_000_000) },
      },
      () => {
        const net = new FakeNetwork({ responder: host(7) });
        const r = engineOn(net).run([target("ICMPping", "198.18.1.2", { count: 4 })]);
        // Even probes held 2 ms, odd ones 9 ms: longer than the 7 ms round trip.
        expect([...r.rttNs]).toEqual([5e6, NaN, 5e6, NaN]);
        expect(r.timeOutOfOrder[0]).toBe(2);
        expect(r.values.length).toBe(4 * r.valueWidth);
        expect([0, 1, 2, 3].map((s) => r.values[s * r.valueWidth])).toEqual([2e6, 9e6, 2e6, 9e6]);
      },
    );
  });
});
