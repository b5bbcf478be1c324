/**
 * TWAMPlight on the network in memory (tests/support/fake-network.ts): the Sender packet as
 * RFC 5357 4.1.2 lays it out, reflectors (stateful: a counter per 5-tuple; stateless: the
 * sender's number echoed) answering as 4.2.1 lays theirs out, per-direction loss counted
 * exactly against seeded drops on each way, and the round trip without the reflector's hold.
 */
import { describe, expect, test } from "bun:test";
import { ProbeEngine, REPLY_REFLECTED, SLOT_ANSWERED, type BatchResult, type ProbeTarget } from "../../src/engine/probe-engine.ts";
import { summarizeSeries } from "../../src/engine/stats.ts";
import { formatAddress } from "../../src/packet/address.ts";
import { IPPROTO_UDP } from "../../src/packet/build.ts";
import { payloadLength, payloadU32, type IpFields } from "../../src/packet/parse.ts";
import { NTP_UNIX_OFFSET, REFLECTOR_HEADER, SENDER_ERROR_ESTIMATE } from "../../src/probes/twamp-light.ts";
import { FakeNetwork, type Responder, type SentFrame } from "../support/fake-network.ts";
import { mulberry32 } from "../support/prng.ts";

const REFLECTOR = "198.18.1.2";

function target(over: Partial<ProbeTarget> = {}): ProbeTarget {
  return {
    type: "TWAMPlight",
    family: 4,
    dst: REFLECTOR,
    dstPort: 862,
    srcAddresses: null,
    srcPortA: 65000,
    srcPortZ: 65003,
    dscp: 46,
    dontFragment: true,
    ipPayloadSize: null,
    count: 40,
    intervalMs: 1,
    startMs: 0,
    timeoutMs: 100,
    ...over,
  };
}

const isProbe = (ip: IpFields) => ip.protocol === IPPROTO_UDP && ip.dstPort === 862;

interface ReflectorOptions {
  /** Echo the sender's sequence number (stateless) instead of a counter per 5-tuple. */
  stateless?: boolean;
  /** The probe never reaches the reflector (k: the reflector's count of probes offered). */
  dropForward?: (k: number) => boolean;
  /** The reflected packet never comes back. */
  dropReverse?: (k: number) => boolean;
  /** Reflector hold, T3 - T2, in NTP fraction units (2^-32 s). */
  holdFraction?: number;
  delayMs?: number;
}

/** The reflector's packet for `sent` (RFC 5357 4.2.1, unauthenticated), built byte by byte from the RFC's layout. */
function reflect(sent: SentFrame, seq: number, t2: [number, number], t3: [number, number]): Uint8Array {
  const ip = sent.ip;
  const n = payloadLength(ip);
  const out = new Uint8Array(Math.max(n, REFLECTOR_HEADER));
  const v = new DataView(out.buffer);
  v.setUint32(0, seq);
  v.setUint32(4, t3[0]);
  v.setUint32(8, t3[1]);
  v.setUint16(12, 0x8001); // S: synchronised; multiplier 1
  v.setUint32(16, t2[0]);
  v.setUint32(20, t2[1]);
  v.setUint32(24, payloadU32(ip, 0));
  v.setUint32(28, payloadU32(ip, 4));
  v.setUint32(32, payloadU32(ip, 8));
  v.setUint16(36, payloadU32(ip, 10) & 0xffff);
  out[40] = ip.ttl;
  return out;
}

/** A reflector (stateful unless said otherwise) with drops on either way; counts what it dropped. */
function reflector(o: ReflectorOptions = {}) {
  const counters = new Map<string, number>();
  let offered = 0;
  const dropped = { forward: 0, reverse: 0 };
  const responder: Responder = (s, b) => {
    if (!isProbe(s.ip)) return { replies: [] };
    const k = offered++;
    if (o.dropForward?.(k)) {
      dropped.forward++;
      return { replies: [] };
    }
    const key = `${formatAddress(s.ip.family, s.ip.src)}:${s.ip.srcPort}`;
    const own = counters.get(key) ?? 0;
    counters.set(key, own + 1);
    const seq = o.stateless ? payloadU32(s.ip, 0) : own;
    const t2: [number, number] = [NTP_UNIX_OFFSET + 1_700_000_000, 0x1000_0000];
    const t3: [number, number] = [t2[0], t2[1] + (o.holdFraction ?? 0x0040_0000)];
    const bytes = b.udp(s.ip, reflect(s, seq, t2, t3));
    if (o.dropReverse?.(k)) {
      dropped.reverse++;
      return { replies: [] };
    }
    return { replies: [{ delayMs: o.delayMs ?? 5, bytes }] };
  };
  return { responder, dropped };
}

function run(net: FakeNetwork, targets: ProbeTarget[]): BatchResult {
  return new ProbeEngine(net, { maxProbesPerSecond: 1e9, identBase: 0x3000_0000 }).run(targets);
}

/** The series of one target: [forward, reverse, unknown], reflector percentiles. */
function directions(r: BatchResult): { sent: number; lost: number; extra: number[][] } {
  const [s] = summarizeSeries(r, [0], 1, [50, 99], []);
  return { sent: s!.sent, lost: s!.lost, extra: s!.extra };
}

describe("the Sender packet (RFC 5357 4.1.2)", () => {
  test("sequence number, T1 from the wall clock, error estimate, zero padding to the reflector's size; TTL 255, DSCP kept", () => {
    const net = new FakeNetwork({ responder: reflector().responder });
    const before = Date.now() / 1000 + NTP_UNIX_OFFSET;
    const r = run(net, [target({ count: 8, srcPortZ: 65001 })]);
    const after = Date.now() / 1000 + NTP_UNIX_OFFSET;
    const probes = net.sentWhere(isProbe);
    expect(probes).toHaveLength(8);
    for (const [k, p] of probes.entries()) {
      const ip = p.ip;
      expect(payloadLength(ip)).toBe(REFLECTOR_HEADER);
      expect(payloadU32(ip, 0)).toBe(r.ident[k]!);
      const t1 = payloadU32(ip, 4) + payloadU32(ip, 8) / 2 ** 32;
      expect(t1).toBeGreaterThanOrEqual(before - 0.001);
      expect(t1).toBeLessThanOrEqual(after + 0.001);
      expect(payloadU32(ip, 10) & 0xffff).toBe(SENDER_ERROR_ESTIMATE);
      for (let off = 14; off + 4 <= REFLECTOR_HEADER; off += 4) expect(payloadU32(ip, off)).toBe(0);
      expect(ip.ttl).toBe(255);
      expect(ip.tos).toBe(46 << 2);
      expect(ip.dstPort).toBe(862);
    }
    // Each flow (source port) counts up by one from its own start.
    for (const port of [65000, 65001]) {
      const seqs = probes.filter((p) => p.ip.srcPort === port).map((p) => payloadU32(p.ip, 0));
      expect(seqs).toEqual(seqs.map((_, i) => (seqs[0]! + i) >>> 0));
    }
    // A larger ip_payload_size pads further.
    const big = new FakeNetwork({ responder: reflector().responder });
    run(big, [target({ count: 1, ipPayloadSize: 200 })]);
    expect(payloadLength(big.sentWhere(isProbe)[0]!.ip)).toBe(192);
  });

  test("each flow starts at a random sequence number in every batch", () => {
    const starts = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const net = new FakeNetwork({ responder: reflector().responder });
      run(net, [target({ count: 1 })]);
      starts.add(payloadU32(net.sentWhere(isProbe)[0]!.ip, 0));
    }
    expect(starts.size).toBe(4);
  });
});

describe("answers from a reflector", () => {
  test("every probe answered: reply 'reflected', the round trip is T4 - T1 less T3 - T2, the reflector's hold reported", () => {
    // Hold: 2^22 / 2^32 s = 1/1024 s (exact in binary); one way 5 ms of virtual time.
    const net = new FakeNetwork({ responder: reflector({ holdFraction: 0x0040_0000, delayMs: 5 }).responder });
    const r = run(net, [target({ count: 12 })]);
    expect(r.stats).toMatchObject({ sent: 12, answered: 12, txMissing: 0 });
    expect([...r.reply]).toEqual(new Array(12).fill(REPLY_REFLECTED));
    for (const v of r.rttNs) expect(v).toBeCloseTo(5e6 - 1e9 / 1024, 3);
    const d = directions(r);
    expect(d.extra).toEqual([[0], [0], [0], [1 / 1024, 1 / 1024]]);
  });

  test("stateful reflector: forward and reverse loss counted exactly against seeded drops; forward + reverse + unknown = loss", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rnd = mulberry32(seed);
      const fwd = new Set<number>();
      const rev = new Set<number>();
      // One flow (one source port) so that the probes' order is the reflector's; the first and
      // last probes are answered, so every loss lies between two answers and has a direction.
      const n = 60;
      for (let k = 1; k < n - 1; k++) {
        const x = rnd();
        if (x < 0.1) fwd.add(k);
        else if (x < 0.2) rev.add(k);
      }
      const refl = reflector({ dropForward: (k) => fwd.has(k), dropReverse: (k) => rev.has(k) });
      const r = run(new FakeNetwork({ responder: refl.responder }), [target({ count: n, srcPortZ: 65000 })]);
      const d = directions(r);
      expect({ seed, lost: d.lost, forward: d.extra[0], reverse: d.extra[1], unknown: d.extra[2] }).toEqual({
        seed,
        lost: fwd.size + rev.size,
        forward: [refl.dropped.forward],
        reverse: [refl.dropped.reverse],
        unknown: [0],
      });
    }
  });

  test("losses at a flow's ends have no known direction; four flows each with their own counter", () => {
    // Flows rotate over 4 source ports; each flow's first and last probe are lost (one of each way).
    const n = 40;
    const ends = new Set([0, 1, 2, 3, n - 4, n - 3, n - 2, n - 1]);
    const middle = new Set([8, 13, 22]);
    const refl = reflector({ dropForward: (k) => (ends.has(k) && k % 2 === 0) || k === 8, dropReverse: (k) => (ends.has(k) && k % 2 === 1) || k === 13 || k === 22 });
    const r = run(new FakeNetwork({ responder: refl.responder }), [target({ count: n })]);
    const d = directions(r);
    expect(middle.size + ends.size).toBe(d.lost);
    expect(d.extra.slice(0, 3)).toEqual([[1], [2], [8]]);
  });

  test("stateless reflector (it echoes the sender's number): every loss of unknown direction, forward and reverse absent", () => {
    const refl = reflector({ stateless: true, dropForward: (k) => k === 5, dropReverse: (k) => k === 9 });
    const r = run(new FakeNetwork({ responder: refl.responder }), [target({ count: 20 })]);
    const d = directions(r);
    expect(d.lost).toBe(2);
    expect(d.extra.slice(0, 3)).toEqual([[], [], [2]]);
  });

  test("nothing answered: absent directions, no reflector time; a port unreachable is no answer", () => {
    const net = new FakeNetwork({ responder: (s, b) => (isProbe(s.ip) ? { replies: [{ delayMs: 1, bytes: b.unreachable(s.ip, s.bytes) }] } : { replies: [] }) });
    const r = run(net, [target({ count: 6, timeoutMs: 20 })]);
    expect(r.stats.answered).toBe(0);
    expect([...r.status].every((s) => s !== SLOT_ANSWERED)).toBe(true);
    expect(directions(r).extra).toEqual([[], [], [6], []]);
  });

  test("a reflector's packet to other ports is a port mismatch; a sender packet coming back unchanged (a UDP echo) is no answer", () => {
    const net = new FakeNetwork({
      responder: (s, b) => {
        if (!isProbe(s.ip)) return { replies: [] };
        const reflected = reflect(s, 1, [NTP_UNIX_OFFSET + 1, 0], [NTP_UNIX_OFFSET + 1, 1]);
        const echo = s.bytes.subarray(s.ip.payloadOffset, s.ip.end);
        return { replies: [{ delayMs: 1, bytes: b.udp(s.ip, reflected, { srcPort: 4000 }) }, { delayMs: 1, bytes: b.udp(s.ip, echo) }] };
      },
    });
    const r = run(net, [target({ count: 4, timeoutMs: 20 })]);
    expect(r.stats.answered).toBe(0);
    expect(r.portMismatch[0]).toBe(4);
  });
});
