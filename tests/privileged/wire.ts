/**
 * What the end-to-end tests compare the engine with: packets decoded from a tcpdump capture taken
 * at the far end of the path (inside the test host, or on the TUN device), paired probe with
 * answer, and set against the engine's BatchResult slot by slot.
 *
 * The decoder here is deliberately independent of src/packet/parse.ts: a bug in the product's
 * parser must not be able to hide itself by decoding the evidence the same wrong way.
 */
import { expect } from "bun:test";
import { SLOT_ANSWERED, SLOT_UNSENT, REPLY_NAMES, type BatchResult, type ProbeTarget } from "../../src/engine/probe-engine.ts";
import { timestampNs, type PcapRecord } from "../support/pcap-file.ts";

// ---------------------------------------------------------------------------------------------
// Decoding

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

export interface WirePacket {
  /** Kernel timestamp, ns since the epoch (exact). */
  t: bigint;
  family: 4 | 6;
  src: string;
  dst: string;
  /** IPv4 TOS byte or IPv6 traffic class. */
  tos: number;
  /** IPv4 don't-fragment bit (false for IPv6). */
  df: boolean;
  ipId: number;
  flowLabel: number;
  ttl: number;
  /** 6, 17, 1 or 58; other protocols are not decoded. */
  proto: number;
  sport: number;
  dport: number;
  flags: number;
  seq: number;
  ack: number;
  window: number;
  icmpType: number;
  icmpCode: number;
  icmpId: number;
  icmpSeq: number;
  /** First 4 bytes after the UDP header, big-endian, or null. */
  tag: number | null;
  /** L4 payload length (after the TCP/UDP/ICMP header). */
  dataLength: number;
  /** The packet an ICMP destination-unreachable quotes, or null. */
  quote: WirePacket | null;
}

const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

function v6Text(b: Uint8Array, o: number): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(u16(b, o + i));
  return formatV6(words);
}

/** RFC 5952 text: longest run (2 or more) of zero words as "::", lowercase, no leading zeros. */
function formatV6(words: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** The canonical text of an address, so that targets and decoded packets compare as strings. */
export function canon(address: string): string {
  if (!address.includes(":")) return address;
  const [head, tail] = address.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const parts = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return formatV6(parts.map((p) => parseInt(p, 16)));
}

function decodeIp(b: Uint8Array, off: number, end: number, t: bigint, quoted: boolean): WirePacket | null {
  if (end - off < 20) return null;
  const version = b[off]! >> 4;
  const p: WirePacket = {
    t,
    family: 4,
    src: "",
    dst: "",
    tos: 0,
    df: false,
    ipId: 0,
    flowLabel: 0,
    ttl: 0,
    proto: 0,
    sport: 0,
    dport: 0,
    flags: 0,
    seq: 0,
    ack: 0,
    window: 0,
    icmpType: -1,
    icmpCode: -1,
    icmpId: 0,
    icmpSeq: 0,
    tag: null,
    dataLength: 0,
    quote: null,
  };
  let l4: number;
  let l4End = end;
  if (version === 4) {
    const ihl = (b[off]! & 0x0f) * 4;
    if (ihl < 20 || end - off < ihl) return null;
    p.tos = b[off + 1]!;
    if (!quoted) l4End = Math.min(end, off + u16(b, off + 2));
    p.ipId = u16(b, off + 4);
    p.df = (b[off + 6]! & 0x40) !== 0;
    p.ttl = b[off + 8]!;
    p.proto = b[off + 9]!;
    p.src = [...b.subarray(off + 12, off + 16)].join(".");
    p.dst = [...b.subarray(off + 16, off + 20)].join(".");
    l4 = off + ihl;
  } else if (version === 6) {
    if (end - off < 40) return null;
    p.family = 6;
    const w = u32(b, off);
    p.tos = (w >>> 20) & 0xff;
    p.flowLabel = w & 0xfffff;
    if (!quoted) l4End = Math.min(end, off + 40 + u16(b, off + 4));
    p.proto = b[off + 6]!;
    p.ttl = b[off + 7]!;
    p.src = v6Text(b, off + 8);
    p.dst = v6Text(b, off + 24);
    l4 = off + 40;
  } else {
    return null;
  }
  const avail = l4End - l4;
  if (p.proto === 6) {
    if (avail < 8) return null;
    p.sport = u16(b, l4);
    p.dport = u16(b, l4 + 2);
    p.seq = u32(b, l4 + 4);
    if (avail >= 16) {
      p.ack = u32(b, l4 + 8);
      p.flags = b[l4 + 13]!;
      p.window = u16(b, l4 + 14);
      p.dataLength = Math.max(0, avail - (b[l4 + 12]! >> 4) * 4);
    }
  } else if (p.proto === 17) {
    if (avail < 8) return null;
    p.sport = u16(b, l4);
    p.dport = u16(b, l4 + 2);
    p.dataLength = avail - 8;
    if (avail >= 12) p.tag = u32(b, l4 + 8);
  } else if (p.proto === 1 || p.proto === 58) {
    if (avail < 8) return null;
    p.icmpType = b[l4]!;
    p.icmpCode = b[l4 + 1]!;
    p.icmpId = u16(b, l4 + 4);
    p.icmpSeq = u16(b, l4 + 6);
    p.dataLength = avail - 8;
    const unreachable = (p.proto === 1 && p.icmpType === 3) || (p.proto === 58 && p.icmpType === 1);
    if (unreachable && !quoted) p.quote = decodeIp(b, l4 + 8, l4End, t, true);
  } else {
    return null;
  }
  return p;
}

/** Decodes the IP packets of a capture (Ethernet, raw IP, Linux cooked v1/v2); skips the rest. */
export function decodeCapture(records: PcapRecord[], linktype: number): WirePacket[] {
  const out: WirePacket[] = [];
  for (const r of records) {
    const d = r.data;
    let off: number;
    if (linktype === 1) {
      let ethertype = u16(d, 12);
      off = 14;
      if (ethertype === 0x8100) {
        ethertype = u16(d, 16);
        off = 18;
      }
      if (ethertype !== 0x0800 && ethertype !== 0x86dd) continue;
    } else if (linktype === 101 || linktype === 12 || linktype === 14) {
      off = 0;
    } else if (linktype === 113) {
      off = 16;
    } else if (linktype === 276) {
      off = 20;
    } else {
      throw new Error(`capture linktype ${linktype} is not decoded here`);
    }
    const p = decodeIp(d, off, d.byteLength, timestampNs(r), false);
    if (p) out.push(p);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Probes and answers

export type Kind = ProbeTarget["type"];

/** Is p one of the target's probes (as the prober sends them)? */
export function isProbe(p: WirePacket, t: ProbeTarget): boolean {
  if (p.family !== t.family || p.dst !== canon(t.dst)) return false;
  if (t.type === "TCPsyn") return p.proto === 6 && p.flags === TCP_SYN && p.dport === t.dstPort;
  if (t.type === "UDPunreachable") return p.proto === 17 && p.dport === t.dstPort;
  return t.family === 4 ? p.proto === 1 && p.icmpType === 8 : p.proto === 58 && p.icmpType === 128;
}

/** Identifies one probe: what its answer carries back. */
export function probeKey(p: WirePacket, kind: Kind): string {
  if (kind === "TCPsyn") return `${p.dst}|${p.sport}|${p.seq}`;
  if (kind === "ICMPping") return `${p.dst}|${p.icmpId}|${p.icmpSeq}`;
  return `${p.dst}|${p.sport}|${p.family === 4 ? p.ipId : p.tag}`;
}

export type AnswerName = "syn-ack" | "rst-ack" | "echo-reply" | "port-unreachable" | "unreachable";

/** When p answers a probe of this kind: the probe's key and what the answer is. */
export function answerOf(p: WirePacket, kind: Kind, family: 4 | 6): { key: string; name: AnswerName } | null {
  if (p.family !== family) return null;
  if (kind === "TCPsyn") {
    if (p.proto !== 6) return null;
    const synAck = (p.flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK);
    const rstAck = (p.flags & (TCP_RST | TCP_ACK)) === (TCP_RST | TCP_ACK);
    if (!synAck && !rstAck) return null;
    return { key: `${p.src}|${p.dport}|${(p.ack - 1) >>> 0}`, name: synAck ? "syn-ack" : "rst-ack" };
  }
  if (kind === "ICMPping") {
    const reply = family === 4 ? p.proto === 1 && p.icmpType === 0 : p.proto === 58 && p.icmpType === 129;
    return reply ? { key: `${p.src}|${p.icmpId}|${p.icmpSeq}`, name: "echo-reply" } : null;
  }
  const q = p.quote;
  if (!q || q.proto !== 17) return null;
  const port = family === 4 ? p.icmpCode === 3 : p.icmpCode === 4;
  return { key: `${q.dst}|${q.sport}|${q.family === 4 ? q.ipId : q.tag}`, name: port ? "port-unreachable" : "unreachable" };
}

/** A RST (without ACK) for the probe's connection, as the prober sends after a SYN. */
export function isResetFor(p: WirePacket, probe: WirePacket): boolean {
  return (
    p.proto === 6 &&
    p.family === probe.family &&
    (p.flags & (TCP_RST | TCP_ACK)) === TCP_RST &&
    p.src === probe.src &&
    p.dst === probe.dst &&
    p.sport === probe.sport &&
    p.dport === probe.dport &&
    p.seq === ((probe.seq + 1 + probe.dataLength) >>> 0)
  );
}

// ---------------------------------------------------------------------------------------------
// One target: engine against wire

export interface Pair {
  slot: number;
  /** Engine's kernel-timestamp RTT, ns. */
  engineNs: number;
  /** Capture's RTT for the same probe (probe seen -> answer seen), ns. */
  wireNs: number;
}

export interface TargetCheck {
  label: string;
  count: number;
  engine: { sent: number; answered: number; lost: number; unsent: number; timed: number; replies: Record<string, number> };
  wire: {
    probes: number;
    /** Probes seen more than once (same key). */
    duplicates: number;
    answers: number;
    replies: Record<string, number>;
    /** RSTs carrying the probe's own DSCP: the prober's (the kernel's own RSTs carry TOS 0). */
    proberResets: number;
    otherResets: number;
    /** RSTs of any origin after a probe answered by RST-ACK. */
    resetsAfterRstAck: number;
  };
  /** Slots whose source port is not the one the capture saw on the k-th probe of the target. */
  srcPortMismatch: number;
  /** Source port of each probe seen, in order. */
  wirePorts: number[];
  /** The probes seen, in order. */
  wireProbes: WirePacket[];
  pairs: Pair[];
}

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

/**
 * Sets target t of a batch against the capture. Slot k of the target is paired with the k-th of
 * its probes seen on the wire: the engine sends one target's probes in slot order.
 */
export function checkTarget(r: BatchResult, t: number, target: ProbeTarget, pkts: WirePacket[], label: string): TargetCheck {
  const from = r.targetStart[t]!;
  const to = r.targetStart[t + 1]!;
  const engine = { sent: 0, answered: 0, lost: 0, unsent: 0, timed: 0, replies: {} as Record<string, number> };
  for (let s = from; s < to; s++) {
    if (r.status[s] === SLOT_UNSENT) {
      engine.unsent++;
      continue;
    }
    engine.sent++;
    if (r.status[s] === SLOT_ANSWERED) {
      engine.answered++;
      count(engine.replies, REPLY_NAMES[r.reply[s]!] ?? `reply ${r.reply[s]}`);
      if (!Number.isNaN(r.rttNs[s]!)) engine.timed++;
    } else {
      engine.lost++;
    }
  }
  const probes = pkts.filter((p) => isProbe(p, target));
  const byKey = new Map<string, WirePacket>();
  let duplicates = 0;
  for (const p of probes) {
    const k = probeKey(p, target.type);
    if (byKey.has(k)) duplicates++;
    else byKey.set(k, p);
  }
  const answerByKey = new Map<string, WirePacket>();
  const replies: Record<string, number> = {};
  const rstAcked = new Set<string>();
  for (const p of pkts) {
    const a = answerOf(p, target.type, target.family);
    if (!a || !byKey.has(a.key) || answerByKey.has(a.key)) continue;
    answerByKey.set(a.key, p);
    count(replies, a.name);
    if (a.name === "rst-ack") rstAcked.add(a.key);
  }
  let proberResets = 0;
  let otherResets = 0;
  let resetsAfterRstAck = 0;
  if (target.type === "TCPsyn") {
    const tos = (target.dscp & 63) << 2;
    for (const [key, probe] of byKey) {
      for (const p of pkts) {
        if (!isResetFor(p, probe)) continue;
        if (rstAcked.has(key)) resetsAfterRstAck++;
        else if (tos !== 0 && p.tos === tos) proberResets++;
        else otherResets++;
      }
    }
  }
  const pairs: Pair[] = [];
  let srcPortMismatch = 0;
  for (let s = from; s < to; s++) {
    const probe = probes[s - from];
    if (!probe) break;
    if (target.type !== "ICMPping" && probe.sport !== r.srcPort[s]) srcPortMismatch++;
    const answer = answerByKey.get(probeKey(probe, target.type));
    if (!answer || r.status[s] !== SLOT_ANSWERED || Number.isNaN(r.rttNs[s]!)) continue;
    pairs.push({ slot: s, engineNs: r.rttNs[s]!, wireNs: Number(answer.t - probe.t) });
  }
  return {
    label,
    count: to - from,
    engine,
    wire: { probes: probes.length, duplicates, answers: answerByKey.size, replies, proberResets, otherResets, resetsAfterRstAck },
    srcPortMismatch,
    wirePorts: probes.map((p) => p.sport),
    wireProbes: probes,
    pairs,
  };
}

/**
 * The checks every "answered" target must pass: every probe left (engine) and arrived (wire),
 * exactly once; every one was answered on the wire and matched by the engine with the expected
 * kind of answer; and every answered probe has a kernel RTT.
 */
export function expectAllAnswered(c: TargetCheck, reply: AnswerName): void {
  const n = c.count;
  expect({ target: c.label, engine: c.engine }).toEqual({
    target: c.label,
    engine: { sent: n, answered: n, lost: 0, unsent: 0, timed: n, replies: { [reply]: n } },
  });
  expect({ target: c.label, probes: c.wire.probes, duplicates: c.wire.duplicates, answers: c.wire.answers, replies: c.wire.replies }).toEqual({
    target: c.label,
    probes: n,
    duplicates: 0,
    answers: n,
    replies: { [reply]: n },
  });
  expect({ target: c.label, srcPortMismatch: c.srcPortMismatch, pairs: c.pairs.length }).toEqual({ target: c.label, srcPortMismatch: 0, pairs: n });
}

// ---------------------------------------------------------------------------------------------
// RTT against the capture

export interface RttBounds {
  /** Smallest allowed engine - wire difference per probe, ns (0 when the capture is downstream). */
  minDiffNs: number;
  /** Largest allowed difference per probe, ns. */
  maxDiffNs: number;
  /** Largest allowed median |difference|, ns. */
  p50AbsDiffNs: number;
}

export interface RttFigures {
  n: number;
  engineP50Us: number;
  wireP50Us: number;
  diffMinUs: number;
  diffP50Us: number;
  diffMaxUs: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = (s.length - 1) / 2;
  return (s[Math.floor(m)]! + s[Math.ceil(m)]!) / 2;
}

export function rttFigures(pairs: Pair[]): RttFigures {
  const diffs = pairs.map((p) => p.engineNs - p.wireNs);
  const us = (ns: number) => Math.round(ns / 100) / 10;
  return {
    n: pairs.length,
    engineP50Us: us(median(pairs.map((p) => p.engineNs))),
    wireP50Us: us(median(pairs.map((p) => p.wireNs))),
    diffMinUs: us(Math.min(...diffs)),
    diffP50Us: us(median(diffs)),
    diffMaxUs: us(Math.max(...diffs)),
  };
}

/** Every pair within the per-probe bounds, and the median difference within its bound. */
export function expectRttWithin(label: string, pairs: Pair[], b: RttBounds): RttFigures {
  expect(pairs.length).toBeGreaterThan(0);
  const outside = pairs
    .filter((p) => p.engineNs - p.wireNs < b.minDiffNs || p.engineNs - p.wireNs > b.maxDiffNs)
    .map((p) => ({ slot: p.slot, engineUs: p.engineNs / 1000, wireUs: p.wireNs / 1000 }));
  expect({ target: label, outside }).toEqual({ target: label, outside: [] });
  const p50 = median(pairs.map((p) => Math.abs(p.engineNs - p.wireNs)));
  expect({ target: label, p50AbsDiffWithinBound: p50 <= b.p50AbsDiffNs, p50AbsDiffUs: p50 / 1000 }).toEqual({
    target: label,
    p50AbsDiffWithinBound: true,
    p50AbsDiffUs: p50 / 1000,
  });
  return rttFigures(pairs);
}
