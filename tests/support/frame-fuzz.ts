/**
 * The frame fuzzer: valid probes and answers for a batch, mutated byte by byte and field by field,
 * through the product's decoder (src/packet/parse.ts) and matcher (src/engine/match.ts), each
 * verdict checked against a reference implementation of the matching rule written here from the
 * decoded fields, by a plain scan of every slot (no hash table, nothing shared with the matcher
 * but the decoded frame and the slots' identities).
 *
 * Counted as failures: an exception; a wrong match (a frame attributed to a slot, or counted
 * against a target, that the rule does not allow: addresses, ports, identifiers, sequence,
 * protocol, family, kind of answer, or an answered slot preferred to a waiting one that fits); a
 * missed match (a frame the rule attributes that the matcher does not); a decode that reads past
 * the captured length (the same frame decoded from an exact-length view and from a buffer with
 * junk after it must decode the same).
 *
 * Run small in CI (tests/engine/match-fuzz.test.ts) and full size by scripts/fuzz-frames.ts.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { Family } from "../../src/packet/address.ts";
import {
  ICMP4_ECHO_REPLY,
  ICMP4_PORT_UNREACH,
  ICMP4_TIME_EXCEEDED,
  ICMP4_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_PORT_UNREACH,
  ICMP6_TIME_EXCEEDED,
  ICMP6_UNREACH,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  LINK_RAW,
  PacketSpec,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  writeArpRequest,
  writeNeighbourSolicitation,
  writePacket,
} from "../../src/packet/build.ts";
import { DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW, PARSE_OK, ParsedFrame, parseFrame, type IpFields } from "../../src/packet/parse.ts";
import {
  hashAddress,
  IDENT_WINDOW_BITS,
  MATCH_ANSWER,
  MATCH_DEPARTURE,
  MATCH_FAIL,
  MATCH_NAMES,
  MATCH_NONE,
  MATCH_PORT_MISMATCH,
  ProbeMatcher,
  REPLY_ECHO,
  REPLY_NAMES,
  REPLY_PORT_UNREACHABLE,
  REPLY_RST_ACK,
  REPLY_SYN_ACK,
  REPLY_UNREACHABLE,
  SLOT_ANSWERED,
  SLOT_LOST,
  type MatchTarget,
} from "../../src/engine/match.ts";
import { PROBE_CODE, PROBE_TYPE_LIST } from "../../src/probes/registry.ts";

// The independent model below is written per type, for the three types it knows.
const KIND_TCP = PROBE_CODE.TCPsyn;
const KIND_ICMP = PROBE_CODE.ICMPping;
const KIND_UDP = PROBE_CODE.UDPunreachable;
import { readPcapFile } from "./pcap-file.ts";
import { mulberry32 } from "./prng.ts";

// ---------------------------------------------------------------------------------------------
// Random numbers: a seeded generator, so every failure replays from (seed, frame index).

export class Rng {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed >>> 0 || 0x9e3779b9);
  }
  /** 32 random bits. */
  u32(): number {
    return this.#next() * 4294967296;
  }
  /** 0 <= n < bound. */
  int(bound: number): number {
    return bound <= 0 ? 0 : Math.floor((this.u32() / 4294967296) * bound);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

// ---------------------------------------------------------------------------------------------
// A batch: targets and slots, identities given by the product's own ProbeMatcher.assign()

interface FuzzTarget extends MatchTarget {
  /** The probes' source address. */
  readonly src: Uint8Array;
  readonly srcPortA: number;
  readonly nPorts: number;
}

/** Addresses targets are drawn from: few, so that targets share destinations and sources. */
const V4_POOL = ["198.18.1.2", "198.18.1.3", "198.19.7.7", "127.0.0.1", "198.18.200.1"];
const V6_POOL = ["fd00:18:1::2", "fd00:18:1::3", "fd00:19:7::7", "::1", "fd00:18:200::1"];
const V4_SRC = ["198.18.1.1", "198.18.9.1"];
const V6_SRC = ["fd00:18:1::1", "fd00:18:9::1"];
/** A router that answers for others (its errors do not come from the destination). */
const ROUTER4 = "198.18.0.254";
const ROUTER6 = "fd00:18::fe";
const DST_PORTS = [33434, 8443, 80, 443, 53];

function addressBytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  if (text.includes(".")) {
    text.split(".").forEach((p, i) => (out[i] = Number(p)));
    return out;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const words = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  words.forEach((w, i) => {
    const v = parseInt(w, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

class Batch {
  readonly targets: FuzzTarget[] = [];
  /** First slot of each target, and the total after the last. */
  readonly firstSlot: number[] = [];
  slots = 0;
  status = new Uint8Array(0);
  identBase = 0;

  constructor(
    readonly matcher: ProbeMatcher,
    identBase: number,
    rng: Rng,
    icmpIdBase: number,
  ) {
    this.identBase = identBase;
    const n = 4 + rng.int(9);
    let icmpId = icmpIdBase;
    for (let t = 0; t < n; t++) {
      const kind = rng.pick([KIND_TCP, KIND_TCP, KIND_UDP, KIND_ICMP]);
      const family: Family = rng.chance(0.5) ? 4 : 6;
      const dst = addressBytes(rng.pick(family === 4 ? V4_POOL : V6_POOL));
      let dataLength = 0;
      if (kind === KIND_TCP && rng.chance(0.3)) dataLength = 1 + rng.int(64);
      if (kind === KIND_ICMP && rng.chance(0.5)) dataLength = rng.int(57);
      if (kind === KIND_UDP) dataLength = family === 6 ? 4 + rng.int(16) : rng.int(16);
      const nPorts = 1 + rng.int(16);
      this.targets.push({
        kind,
        family,
        dst,
        dstHash: hashAddress(dst, 0, family),
        dstPort: kind === KIND_ICMP ? 0 : rng.pick(DST_PORTS),
        dataLength,
        targetId: icmpId++ & 0xffff,
        count: 1 + rng.int(24),
        src: addressBytes(rng.pick(family === 4 ? V4_SRC : V6_SRC)),
        srcPortA: 1024 + rng.int(64000),
        nPorts,
      });
    }
    for (const t of this.targets) {
      this.firstSlot.push(this.slots);
      this.slots += t.count;
    }
    this.firstSlot.push(this.slots);
    this.status = new Uint8Array(this.slots);
    matcher.begin(this.targets, this.slots, this.status);
    for (let t = 0; t < n; t++) {
      const st = this.targets[t]!;
      for (let k = 0; k < st.count; k++) matcher.assign(this.firstSlot[t]! + k, t, k, st.srcPortA + (k % st.nPorts));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The reference rule, from decoded fields only (see the rule in src/engine/match.ts)

function sameAddr(a: Uint8Array, b: Uint8Array, family: Family): boolean {
  const n = family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function icmpProto(family: Family): number {
  return family === 4 ? 1 : 58;
}

/** Is o slot s (target t, identifier ident, source port sp) seen leaving? */
function isDepartureOf(o: IpFields, t: FuzzTarget, ident: number, sp: number): boolean {
  if (o.family !== t.family || !sameAddr(o.dst, t.dst, t.family)) return false;
  if (t.kind === KIND_TCP) return o.protocol === 6 && o.tcpFlags === TCP_SYN && o.seq === ident && o.srcPort === sp && o.dstPort === t.dstPort;
  if (t.kind === KIND_UDP) {
    const carried = t.family === 4 ? o.ipId : o.payloadTag;
    return o.protocol === 17 && carried === ident && o.srcPort === sp && o.dstPort === t.dstPort;
  }
  return o.protocol === icmpProto(t.family) && o.icmpType === (t.family === 4 ? 8 : 128) && ((o.icmpId << 16) | o.icmpSeq) >>> 0 === ident;
}

/** Answer verdicts of the reference for one slot. */
const FIT_NONE = 0;
/** Addresses, identifier and kind fit, ports do not. */
const FIT_PORTS_DIFFER = -1;

/**
 * Does the frame answer slot s? REPLY_* when it does, FIT_PORTS_DIFFER when only its ports are
 * wrong, FIT_NONE otherwise.
 */
function answerFit(p: ParsedFrame, t: FuzzTarget, ident: number, sp: number): number {
  const o = p.outer;
  if (o.family !== t.family) return FIT_NONE;
  if (o.protocol === 6) {
    if (t.kind !== KIND_TCP || !sameAddr(o.src, t.dst, t.family)) return FIT_NONE;
    const synAck = (o.tcpFlags & 0x12) === 0x12;
    const rstAck = (o.tcpFlags & 0x14) === 0x14;
    if (!synAck && !rstAck) return FIT_NONE;
    // An ACK takes a SYN's sequence number, plus the data for some stacks.
    const acked = (o.ack - 1) >>> 0;
    if (acked !== ident && !(t.dataLength > 0 && acked === (ident + t.dataLength) >>> 0)) return FIT_NONE;
    if (o.srcPort !== t.dstPort || o.dstPort !== sp) return FIT_PORTS_DIFFER;
    return synAck ? REPLY_SYN_ACK : REPLY_RST_ACK;
  }
  if (o.protocol !== icmpProto(o.family)) return FIT_NONE;
  if (o.icmpType === (o.family === 4 ? 0 : 129)) {
    if (t.kind !== KIND_ICMP || !sameAddr(o.src, t.dst, t.family)) return FIT_NONE;
    return ((o.icmpId << 16) | o.icmpSeq) >>> 0 === ident ? REPLY_ECHO : FIT_NONE;
  }
  if (o.icmpType !== (o.family === 4 ? 3 : 1) || !p.hasQuote) return FIT_NONE;
  const q = p.inner;
  if (q.family !== t.family || !sameAddr(q.dst, t.dst, t.family)) return FIT_NONE;
  if (t.kind === KIND_TCP) {
    if (q.protocol !== 6 || q.seq !== ident) return FIT_NONE;
  } else if (t.kind === KIND_UDP) {
    if (q.protocol !== 17 || (t.family === 4 ? q.ipId : q.payloadTag) !== ident) return FIT_NONE;
  } else {
    return FIT_NONE; // an echo request met an error: no answering host
  }
  if (q.srcPort !== sp || q.dstPort !== t.dstPort) return FIT_PORTS_DIFFER;
  return o.icmpCode === (o.family === 4 ? 3 : 4) ? REPLY_PORT_UNREACHABLE : REPLY_UNREACHABLE;
}

/** The target a TCP answer acknowledging none of the batch's SYNs is counted against, or -1. */
function matchFailTarget(p: ParsedFrame, b: Batch): number {
  const o = p.outer;
  if (o.protocol !== 6 || ((o.tcpFlags & 0x12) !== 0x12 && (o.tcpFlags & 0x14) !== 0x14)) return -1;
  const acked = (o.ack - 1) >>> 0;
  if (acked >>> IDENT_WINDOW_BITS !== b.identBase >>> IDENT_WINDOW_BITS) return -1;
  for (let t = 0; t < b.targets.length; t++) {
    const st = b.targets[t]!;
    if (st.kind === KIND_TCP && st.family === o.family && sameAddr(st.dst, o.src, o.family)) return t;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Frame building

/** Where the fields of a built frame are, for structure-aware mutations. */
interface Layout {
  dlt: number;
  /** Offset of the outer IP header, of its L4 header; of the quoted IP packet and its L4 (-1: none). */
  ip: number;
  l4: number;
  qip: number;
  ql4: number;
  family: Family;
  qfamily: Family;
  len: number;
}

const DLTS = [DLT_LINUX_SLL2, DLT_LINUX_SLL2, DLT_LINUX_SLL, DLT_EN10MB, DLT_RAW];

function linkLength(dlt: number): number {
  return dlt === DLT_LINUX_SLL2 ? 20 : dlt === DLT_LINUX_SLL ? 16 : dlt === DLT_EN10MB ? 14 : 0;
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

function put32(b: Uint8Array, o: number, v: number): void {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
}

function get16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function get32(b: Uint8Array, o: number): number {
  return ((get16(b, o) << 16) | get16(b, o + 2)) >>> 0;
}

/** Writes a link header for an IP packet of `family` at buf[0..linkLength(dlt)). */
function writeLink(buf: Uint8Array, dlt: number, etherType: number, rng: Rng): void {
  if (dlt === DLT_LINUX_SLL2) {
    put16(buf, 0, etherType);
    put16(buf, 2, 0);
    put32(buf, 4, 1 + rng.int(8)); // ifindex
    put16(buf, 8, 1); // ARPHRD_ETHER
    buf[10] = rng.pick([0, 4]); // to us, or outgoing
    buf[11] = 6;
    for (let i = 12; i < 20; i++) buf[i] = i < 18 ? rng.int(256) : 0;
  } else if (dlt === DLT_LINUX_SLL) {
    put16(buf, 0, rng.pick([0, 4]));
    put16(buf, 2, 1);
    put16(buf, 4, 6);
    for (let i = 6; i < 14; i++) buf[i] = i < 12 ? rng.int(256) : 0;
    put16(buf, 14, etherType);
  } else if (dlt === DLT_EN10MB) {
    for (let i = 0; i < 12; i++) buf[i] = rng.int(256);
    put16(buf, 12, etherType);
  }
}

export type FrameKind = "departure" | "answer" | "error-quoting-echo" | "time-exceeded" | "foreign-answer" | "noise" | "fixture";

class Builder {
  readonly spec = new PacketSpec();
  readonly probe = new Uint8Array(2048);
  readonly ip = new Uint8Array(4096);
  probeLength = 0;

  /** Writes slot s's probe as the engine would (IP packet, no link header) into this.probe. */
  writeProbe(b: Batch, s: number): void {
    const m = b.matcher;
    const t = m.slotTarget[s]!;
    const st = b.targets[t]!;
    const p = this.spec;
    p.link = LINK_RAW;
    p.family = st.family;
    p.src.set(st.src);
    p.dst.set(st.dst);
    p.tos = 0;
    p.dontFragment = true;
    p.hopLimit = 64;
    p.flowLabel = 0;
    p.payloadLength = st.dataLength;
    p.payloadTag = -1;
    p.quote = null;
    p.ipId = 1;
    // The product's own packet filling: what the fuzzer checks is the matching of these frames.
    PROBE_TYPE_LIST[st.kind]!.fill(p, st, m.slotIdent[s]!, m.slotSrcPort[s]!);
    this.probeLength = writePacket(this.probe, p);
  }

  /** An answer to slot s as a host or router would send it; returns its IP length in this.ip. */
  writeAnswer(b: Batch, s: number, rng: Rng, kind: FrameKind): number {
    const m = b.matcher;
    const st = b.targets[m.slotTarget[s]!]!;
    const ident = m.slotIdent[s]!;
    const p = this.spec;
    p.link = LINK_RAW;
    p.family = st.family;
    p.dst.set(st.src);
    p.src.set(st.dst);
    p.tos = 0;
    p.hopLimit = 64;
    p.ipId = rng.int(65536);
    p.flowLabel = 0;
    p.payloadTag = -1;
    p.payloadLength = 0;
    p.quote = null;
    if (kind === "foreign-answer") {
      // A SYN-ACK from a TCP target's address for a SYN of another engine (another window).
      p.protocol = IPPROTO_TCP;
      p.srcPort = st.dstPort;
      p.dstPort = m.slotSrcPort[s]!;
      p.seq = rng.u32();
      const window = ((b.identBase >>> IDENT_WINDOW_BITS) + 1 + rng.int(15)) & 0xf;
      p.ack = ((((window << IDENT_WINDOW_BITS) >>> 0) | rng.int(1 << IDENT_WINDOW_BITS)) + 1) >>> 0;
      p.tcpFlags = rng.chance(0.5) ? TCP_SYN | TCP_ACK : TCP_RST | TCP_ACK;
      return writePacket(this.ip, p);
    }
    const error = kind === "error-quoting-echo" || kind === "time-exceeded" || (st.kind !== KIND_ICMP && (st.kind === KIND_UDP || rng.chance(0.2)));
    if (!error && st.kind === KIND_TCP) {
      p.protocol = IPPROTO_TCP;
      p.srcPort = st.dstPort;
      p.dstPort = m.slotSrcPort[s]!;
      p.seq = rng.u32();
      p.ack = (ident + 1 + (st.dataLength > 0 && rng.chance(0.5) ? st.dataLength : 0)) >>> 0;
      p.tcpFlags = rng.chance(0.5) ? TCP_SYN | TCP_ACK : TCP_RST | TCP_ACK;
      return writePacket(this.ip, p);
    }
    if (!error) {
      p.protocol = IPPROTO_ICMP;
      p.icmpType = st.family === 4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY;
      p.icmpCode = 0;
      p.icmpId = ident >>> 16;
      p.icmpSeq = ident & 0xffff;
      p.payloadLength = st.dataLength;
      return writePacket(this.ip, p);
    }
    // An ICMP error quoting the probe: from the destination, or from a router on the way.
    this.writeProbe(b, s);
    if (rng.chance(0.3)) p.src.set(addressBytes(st.family === 4 ? ROUTER4 : ROUTER6));
    p.protocol = IPPROTO_ICMP;
    if (kind === "time-exceeded") {
      p.icmpType = st.family === 4 ? ICMP4_TIME_EXCEEDED : ICMP6_TIME_EXCEEDED;
      p.icmpCode = 0;
    } else {
      p.icmpType = st.family === 4 ? ICMP4_UNREACH : ICMP6_UNREACH;
      const port = st.family === 4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH;
      p.icmpCode = rng.chance(0.7) ? port : rng.int(16);
    }
    p.quote = this.probe;
    // IPv4 errors quote the header and 8 bytes at least (RFC 792), often all; IPv6 as much as fits.
    const minimum = (st.family === 4 ? 20 : 40) + 8;
    p.quoteLength = st.family === 4 && rng.chance(0.5) ? Math.min(minimum, this.probeLength) : this.probeLength;
    return writePacket(this.ip, p);
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations

const PROTOCOLS = [1, 6, 17, 58, 0, 43, 44, 60, 51];
const TCP_FLAGS = [TCP_SYN, TCP_SYN | TCP_ACK, TCP_RST | TCP_ACK, TCP_RST, TCP_ACK, TCP_FIN | TCP_ACK, 0x16, 0xff, 0];
const ICMP_TYPES = [0, 3, 8, 11, 1, 128, 129, 135, 136, 4, 5];
const EXT_HEADERS = [0, 60, 43, 44];

/** Inserts n bytes at offset `at` of frame[0..len): returns the new length. */
function insertBytes(f: Uint8Array, len: number, at: number, n: number): number {
  f.copyWithin(at + n, at, len);
  return len + n;
}

/** An IPv6 extension header (8 bytes) in front of the L4 header of the IPv6 packet at `ip`. */
function insertExtension(f: Uint8Array, L: Layout, ip: number, rng: Rng, fixLength: boolean): void {
  const type = rng.pick(EXT_HEADERS);
  const at = ip + 40;
  L.len = insertBytes(f, L.len, at, 8);
  f[at] = f[ip + 6]!; // the next header moves into the extension
  f[at + 1] = 0;
  if (type === 44) {
    // Fragment: offset 0 and more-fragments, or a later fragment.
    put16(f, at + 2, rng.chance(0.5) ? 1 : (1 + rng.int(100)) << 3);
    put32(f, at + 4, rng.u32());
  } else {
    f[at + 2] = 1; // PadN over the remaining 6 bytes
    f[at + 3] = 4;
    for (let i = 4; i < 8; i++) f[at + i] = 0;
  }
  f[ip + 6] = type;
  if (fixLength) put16(f, ip + 4, get16(f, ip + 4) + 8);
  if (ip === L.ip) {
    if (L.qip >= 0) {
      L.qip += 8;
      L.ql4 += 8;
    }
    L.l4 += 8;
  } else {
    L.ql4 += 8;
  }
  // The outer packet's length covers what was inserted in the quote.
  if (ip !== L.ip && L.family === 6) put16(f, L.ip + 4, get16(f, L.ip + 4) + 8);
  if (ip !== L.ip && L.family === 4) put16(f, L.ip + 2, get16(f, L.ip + 2) + 8);
}

/** One mutation of the frame in f, described by L (lengths and offsets updated). */
function mutate(f: Uint8Array, L: Layout, rng: Rng, b: Batch): void {
  const quoted = L.qip >= 0 && rng.chance(0.4);
  const ip = quoted ? L.qip : L.ip;
  const l4 = quoted ? L.ql4 : L.l4;
  const family = quoted ? L.qfamily : L.family;
  const within = (o: number) => o >= 0 && o < L.len;
  switch (rng.int(18)) {
    case 0: {
      // A bit flipped anywhere.
      if (L.len > 0) f[rng.int(L.len)]! ^= 1 << rng.int(8);
      break;
    }
    case 1: {
      // A byte anywhere, or in the headers.
      const o = rng.chance(0.5) ? rng.int(L.len) : l4 + rng.int(24);
      if (within(o)) f[o] = rng.int(256);
      break;
    }
    case 2: {
      // Truncated, often inside a header or the quote.
      const to = rng.chance(0.5) ? rng.int(L.len + 1) : Math.max(0, Math.min(L.len, l4 + rng.int(24) - 8));
      L.len = to;
      break;
    }
    case 3: {
      // Trailing bytes (link-layer padding, trailers).
      const n = 1 + rng.int(32);
      for (let i = 0; i < n; i++) f[L.len + i] = rng.int(256);
      L.len += n;
      break;
    }
    case 4: {
      // Length fields: IPv4 total length or IHL, IPv6 payload length.
      if (!within(ip + 5)) break;
      if (family === 4) {
        if (rng.chance(0.3)) f[ip] = (f[ip]! & 0xf0) | rng.int(16);
        else put16(f, ip + 2, rng.chance(0.5) ? rng.int(65536) : Math.max(0, get16(f, ip + 2) + rng.int(41) - 20));
      } else {
        put16(f, ip + 4, rng.chance(0.5) ? rng.int(65536) : Math.max(0, get16(f, ip + 4) + rng.int(41) - 20));
      }
      break;
    }
    case 5: {
      // Checksums: IPv4 header, TCP, UDP or ICMP.
      const o = rng.pick([family === 4 ? ip + 10 : l4 + 2, l4 + 16, l4 + 6, l4 + 2]);
      if (within(o + 1)) put16(f, o, rng.int(65536));
      break;
    }
    case 6: {
      // Ports: random, off by one, or another target's.
      const o = l4 + (rng.chance(0.5) ? 0 : 2);
      if (!within(o + 1)) break;
      const other = b.targets[rng.int(b.targets.length)]!;
      const v = rng.int(3) === 0 ? rng.int(65536) : rng.int(2) === 0 ? (get16(f, o) + (rng.chance(0.5) ? 1 : 65535)) & 0xffff : rng.chance(0.5) ? other.dstPort : other.srcPortA + rng.int(other.nPorts);
      put16(f, o, v);
      break;
    }
    case 7: {
      // TCP sequence or acknowledgement: off by one, by a target's data length, random, or another slot's.
      const o = l4 + (rng.chance(0.5) ? 4 : 8);
      if (!within(o + 3)) break;
      const cur = get32(f, o);
      const other = b.targets[rng.int(b.targets.length)]!;
      const slot = rng.int(b.slots);
      const choices = [
        (cur + 1) >>> 0,
        (cur - 1) >>> 0,
        (cur + other.dataLength) >>> 0,
        (cur - other.dataLength) >>> 0,
        rng.u32(),
        (b.matcher.slotIdent[slot]! + (o === l4 + 8 ? 1 : 0)) >>> 0,
      ];
      put32(f, o, rng.pick(choices));
      break;
    }
    case 8: {
      // ICMP identifier or sequence; IPv4 ID; the IPv6 UDP payload tag.
      const slot = rng.int(b.slots);
      const ident = b.matcher.slotIdent[slot]!;
      const which = rng.int(4);
      if (which === 0 && within(l4 + 5)) put16(f, l4 + 4, rng.chance(0.5) ? ident >>> 16 : rng.int(65536));
      else if (which === 1 && within(l4 + 7)) put16(f, l4 + 6, rng.chance(0.5) ? ident & 0xffff : (get16(f, l4 + 6) + 1) & 0xffff);
      else if (which === 2 && family === 4 && within(ip + 5)) put16(f, ip + 4, rng.chance(0.5) ? ident & 0xffff : rng.int(65536));
      else if (within(l4 + 11)) put32(f, l4 + 8, rng.chance(0.5) ? ident : rng.u32());
      break;
    }
    case 9: {
      // TCP flags.
      if (within(l4 + 13)) f[l4 + 13] = rng.pick(TCP_FLAGS);
      break;
    }
    case 10: {
      // ICMP type or code.
      if (!within(l4 + 1)) break;
      if (rng.chance(0.6)) f[l4] = rng.pick(ICMP_TYPES);
      else f[l4 + 1] = rng.int(16);
      break;
    }
    case 11: {
      // The protocol / next header.
      const o = family === 4 ? ip + 9 : ip + 6;
      if (within(o)) f[o] = rng.pick(PROTOCOLS);
      break;
    }
    case 12: {
      // The IP version, 4 <-> 6 (the link header then contradicts it, or not for the quote).
      if (within(ip)) f[ip] = (f[ip]! & 0x0f) | ((f[ip]! >> 4 === 4 ? 6 : 4) << 4);
      break;
    }
    case 13: {
      // An address: another target's destination, a pool address, or random bytes.
      const srcAt = family === 4 ? ip + 12 : ip + 8;
      const dstAt = family === 4 ? ip + 16 : ip + 24;
      const o = rng.chance(0.5) ? srcAt : dstAt;
      const n = family === 4 ? 4 : 16;
      if (!within(o + n - 1)) break;
      const other = b.targets[rng.int(b.targets.length)]!;
      for (let i = 0; i < n; i++) f[o + i] = rng.chance(0.1) ? rng.int(256) : other.dst[i]!;
      break;
    }
    case 14: {
      // An IPv6 extension header before the L4 header, length fixed or not.
      if (family === 6 && within(ip + 40)) insertExtension(f, L, ip, rng, rng.chance(0.7));
      break;
    }
    case 15: {
      // The link header: ethertype / protocol / packet type.
      if (L.dlt === DLT_LINUX_SLL2 && L.len >= 11) {
        if (rng.chance(0.5)) put16(f, 0, rng.pick([0x0800, 0x86dd, 0x0806, 0x8100, rng.int(65536)]));
        else f[10] = rng.int(8);
      } else if (L.dlt === DLT_LINUX_SLL && L.len >= 16) {
        put16(f, 14, rng.pick([0x0800, 0x86dd, 0x0806, rng.int(65536)]));
      } else if (L.dlt === DLT_EN10MB && L.len >= 14) {
        put16(f, 12, rng.pick([0x0800, 0x86dd, 0x0806, 0x8100]));
      }
      break;
    }
    case 16: {
      // A byte deleted or inserted: every field after it moves.
      const at = rng.int(L.len + 1);
      if (rng.chance(0.5) && L.len > 0) {
        f.copyWithin(at, at + 1, L.len);
        L.len--;
      } else {
        L.len = insertBytes(f, L.len, at, 1);
        f[at] = rng.int(256);
      }
      break;
    }
    case 17: {
      // The quote: cut to its IP header and a few bytes, or its L4 fields scrambled.
      if (L.qip < 0) break;
      if (rng.chance(0.5)) L.len = Math.min(L.len, L.qip + rng.int(48));
      else if (within(L.ql4 + 7)) for (let i = 0; i < 8; i++) if (rng.chance(0.25)) f[L.ql4 + i] = rng.int(256);
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The run

export interface FuzzOptions {
  seed: number;
  count: number;
  /** New batch (targets, slots, identifiers) every this many frames. */
  batchFrames?: number;
  /** Called with progress every `progressEvery` frames. */
  onProgress?: (done: number) => void;
  progressEvery?: number;
}

export interface FuzzFailure {
  frame: number;
  what: string;
  detail: string;
  hex: string;
  dlt: number;
}

export interface FuzzReport {
  seed: number;
  frames: number;
  ms: number;
  /** Everything: building, mutating, decoding twice, matching, checking. */
  framesPerSecond: number;
  /** parseFrame + classify alone (timed around them, clock reads included). */
  decodeMatchPerSecond: number;
  exceptions: number;
  /** Attributed to a slot or a target the rule does not allow. */
  wrongMatches: number;
  /** The rule attributes the frame; the matcher did not. */
  missedMatches: number;
  /** Decoded differently with junk after the captured length. */
  readsPastEnd: number;
  /** Unmutated valid frames (departures and answers) that matched the slot they were built for. */
  validBuilt: number;
  validMatched: number;
  /** Verdicts of the matcher, by kind (departure:tcp, answer:syn-ack, match-fail, ...). */
  matches: Record<string, number>;
  /** parseFrame statuses. */
  parse: Record<string, number>;
  failures: FuzzFailure[];
}

const PARSE_NAMES = ["ok", "truncated", "ignored", "malformed"];
const KIND_NAMES = ["tcp", "icmp", "udp"];

function hexOf(f: Uint8Array, len: number): string {
  let s = "";
  for (let i = 0; i < len; i++) s += f[i]!.toString(16).padStart(2, "0");
  return s;
}

/** Frames of the kernel-recorded fixtures (loopback captures of every probe type), as a seed corpus. */
function fixtureFrames(): { dlt: number; data: Uint8Array }[] {
  const dir = join(import.meta.dir, "..", "fixtures", "pcap");
  const out: { dlt: number; data: Uint8Array }[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.endsWith(".pcap")) continue;
    const f = readPcapFile(join(dir, name));
    for (const r of f.records) out.push({ dlt: f.linktype, data: r.data });
  }
  return out;
}

/** A fingerprint of a decode (status and every field the matcher reads), to compare two decodes. */
function fingerprint(st: number, p: ParsedFrame): number {
  let h = Math.imul(st + 1, 0x9e3779b1);
  const mix = (v: number) => (h = Math.imul(h ^ (v | 0), 0x01000193));
  if (st !== PARSE_OK) return h >>> 0;
  for (const f of p.hasQuote ? [p.outer, p.inner] : [p.outer]) {
    mix(f.family);
    mix(f.protocol);
    mix(f.srcPort);
    mix(f.dstPort);
    mix(f.tcpFlags);
    mix(f.seq);
    mix(f.ack);
    mix(f.icmpType);
    mix(f.icmpCode);
    mix(f.icmpId);
    mix(f.icmpSeq);
    mix(f.ipId);
    mix(f.payloadTag);
    mix(f.end);
    for (let i = 0; i < 16; i++) mix(f.src[i]! | (f.dst[i]! << 8));
  }
  mix(p.hasQuote ? 1 : 0);
  mix(p.packetType);
  return h >>> 0;
}

export function runFrameFuzz(opts: FuzzOptions): FuzzReport {
  const rng = new Rng(opts.seed);
  const batchFrames = opts.batchFrames ?? 2000;
  const fixtures = fixtureFrames();
  const builder = new Builder();
  const parsed = new ParsedFrame();
  const shadow = new ParsedFrame();
  // Frames are built in `frame`; the decoder reads an exact-length view of it, then a copy in
  // `padded` followed by junk.
  const frame = new Uint8Array(8192);
  const padded = new Uint8Array(8192 + 256);
  const report: FuzzReport = {
    seed: opts.seed,
    frames: 0,
    ms: 0,
    framesPerSecond: 0,
    decodeMatchPerSecond: 0,
    exceptions: 0,
    wrongMatches: 0,
    missedMatches: 0,
    readsPastEnd: 0,
    validBuilt: 0,
    validMatched: 0,
    matches: {},
    parse: {},
    failures: [],
  };
  const count = (map: Record<string, number>, key: string) => (map[key] = (map[key] ?? 0) + 1);
  // The first few failures of each sort, to replay.
  const kept: Record<string, number> = {};
  const fail = (i: number, what: string, detail: string, L: Layout) => {
    if ((kept[what] = (kept[what] ?? 0) + 1) <= 5) report.failures.push({ frame: i, what, detail, hex: hexOf(frame, L.len), dlt: L.dlt });
  };
  let matcher = new ProbeMatcher(0);
  let batch: Batch | null = null;
  const L: Layout = { dlt: 0, ip: 0, l4: 0, qip: -1, ql4: -1, family: 4, qfamily: 4, len: 0 };
  let decodeMatchMs = 0;
  const t0 = performance.now();
  for (let i = 0; i < opts.count; i++) {
    if (i % batchFrames === 0) {
      // Now and then a fresh matcher (another engine: its own identifier window), else the same
      // one reused, as an engine reuses its tables across batches.
      const identBase = ((rng.int(16) << IDENT_WINDOW_BITS) >>> 0) + rng.int(1 << 20);
      if (batch === null || rng.chance(0.3)) matcher = new ProbeMatcher(identBase);
      batch = new Batch(matcher, batch === null || matcher !== batch.matcher ? identBase : batch.identBase, rng, rng.int(65536));
    }
    const b = batch!;
    if (opts.onProgress && i % (opts.progressEvery ?? 100_000) === 0 && i > 0) opts.onProgress(i);
    // Slot states as a batch goes: some answered, some waiting (the matcher prefers waiting ones).
    if (rng.chance(0.01)) for (let s = 0; s < b.slots; s++) b.status[s] = rng.chance(0.5) ? SLOT_ANSWERED : SLOT_LOST;

    // Build a frame.
    const s = rng.int(b.slots);
    const st = b.targets[b.matcher.slotTarget[s]!]!;
    const r = rng.int(100);
    const kind: FrameKind =
      r < 30 ? "departure" : r < 80 ? "answer" : r < 84 ? "error-quoting-echo" : r < 87 ? "time-exceeded" : r < 90 ? "foreign-answer" : r < 95 ? "noise" : "fixture";
    L.dlt = rng.pick(DLTS);
    L.qip = L.ql4 = -1;
    let ipLen: number;
    let ipBytes: Uint8Array;
    if (kind === "fixture") {
      const fx = rng.pick(fixtures);
      L.dlt = fx.dlt;
      const ll = linkLength(fx.dlt);
      frame.set(fx.data.subarray(0, Math.min(fx.data.length, frame.length)));
      L.len = fx.data.length;
      L.ip = ll;
      L.family = fx.data[ll]! >> 4 === 6 ? 6 : 4;
      L.l4 = ll + (L.family === 4 ? (fx.data[ll]! & 0x0f) * 4 : 40);
      ipLen = -1;
      ipBytes = frame;
    } else if (kind === "noise") {
      // ARP or a neighbour solicitation (Ethernet), or a packet from a stranger.
      const which = rng.int(3);
      if (which < 2) {
        L.dlt = DLT_EN10MB;
        const mac = Uint8Array.of(2, 0, 0, 0, 0, 1);
        L.len = which === 0 ? writeArpRequest(frame, mac, st.src, st.dst) : writeNeighbourSolicitation(frame, mac, addressBytes(V6_SRC[0]!), st.dst);
        L.ip = 14;
        L.l4 = which === 0 ? 14 : 54;
        L.family = which === 0 ? 4 : 6;
        ipLen = -1;
        ipBytes = frame;
      } else {
        builder.writeProbe(b, s);
        builder.spec.src.set(addressBytes(st.family === 4 ? ROUTER4 : ROUTER6));
        builder.spec.dst.set(addressBytes(st.family === 4 ? V4_SRC[1]! : V6_SRC[1]!));
        ipLen = writePacket(builder.ip, builder.spec);
        ipBytes = builder.ip;
      }
    } else if (kind === "departure") {
      builder.writeProbe(b, s);
      ipLen = builder.probeLength;
      ipBytes = builder.probe;
    } else {
      let answered = s;
      if (kind === "error-quoting-echo") {
        // An error for an ICMP probe of the batch, if there is one.
        const icmp = b.targets.findIndex((t) => t.kind === KIND_ICMP);
        if (icmp >= 0) answered = b.firstSlot[icmp]! + rng.int(b.targets[icmp]!.count);
      }
      if (kind === "foreign-answer") {
        const tcp = b.targets.findIndex((t) => t.kind === KIND_TCP);
        if (tcp >= 0) answered = b.firstSlot[tcp]! + rng.int(b.targets[tcp]!.count);
      }
      ipLen = builder.writeAnswer(b, answered, rng, kind);
      ipBytes = builder.ip;
    }
    if (ipLen >= 0) {
      const ll = linkLength(L.dlt);
      const v6 = ipBytes[0]! >> 4 === 6;
      writeLink(frame, L.dlt, v6 ? 0x86dd : 0x0800, rng);
      frame.set(ipBytes.subarray(0, ipLen), ll);
      L.len = ll + ipLen;
      L.ip = ll;
      L.family = v6 ? 6 : 4;
      L.l4 = ll + (v6 ? 40 : 20);
      const outerProto = v6 ? frame[ll + 6] : frame[ll + 9];
      const t = frame[L.l4];
      const isError = (outerProto === 1 && (t === 3 || t === 11)) || (outerProto === 58 && (t === 1 || t === 3));
      if (isError && ipLen > (v6 ? 48 : 28)) {
        L.qip = L.l4 + 8;
        L.qfamily = frame[L.qip]! >> 4 === 6 ? 6 : 4;
        L.ql4 = L.qip + (L.qfamily === 4 ? 20 : 40);
      }
    }

    // Mutate: a fifth of the frames go through as built.
    const mutations = rng.chance(0.2) ? 0 : 1 + rng.int(4);
    for (let k = 0; k < mutations; k++) mutate(frame, L, rng, b);
    const len = L.len;

    // Drawn whatever the verdict, so that a seed gives the same frames to any matcher.
    const recordAnswer = rng.chance(0.5);
    const junk = rng.u32();

    // Decode and match.
    let st1: number;
    let verdict: number;
    const view = frame.subarray(0, len);
    try {
      const d0 = performance.now();
      st1 = parseFrame(view, len, L.dlt, parsed);
      verdict = st1 === PARSE_OK ? b.matcher.classify(parsed) : MATCH_NONE;
      decodeMatchMs += performance.now() - d0;
    } catch (e) {
      report.exceptions++;
      fail(i, "exception", e instanceof Error ? `${e.message} ${e.stack?.split("\n")[1] ?? ""}` : String(e), L);
      report.frames++;
      continue;
    }
    count(report.parse, PARSE_NAMES[st1] ?? String(st1));
    report.frames++;

    // The same frame with junk after it decodes the same.
    padded.set(frame.subarray(0, len));
    for (let k = 0; k < 64; k++) padded[len + k] = (Math.imul(junk ^ k, 0x9e3779b1) >>> 24) & 0xff;
    let st2: number;
    try {
      st2 = parseFrame(padded, len, L.dlt, shadow);
    } catch (e) {
      report.exceptions++;
      fail(i, "exception (padded)", e instanceof Error ? e.message : String(e), L);
      continue;
    }
    if (fingerprint(st1, parsed) !== fingerprint(st2, shadow)) {
      report.readsPastEnd++;
      fail(i, "read past the frame", `status ${st1} vs ${st2}`, L);
    }

    // The verdict against the reference rule.
    const m = b.matcher;
    let fitFull = -1;
    let fitFullWaiting = -1;
    let fitPorts = -1;
    let departs = -1;
    if (st1 === PARSE_OK) {
      for (let x = 0; x < b.slots; x++) {
        const tx = b.targets[m.slotTarget[x]!]!;
        const ident = m.slotIdent[x]!;
        const sp = m.slotSrcPort[x]!;
        if (departs < 0 && isDepartureOf(parsed.outer, tx, ident, sp)) departs = x;
        const a = answerFit(parsed, tx, ident, sp);
        if (a > 0) {
          if (fitFull < 0) fitFull = x;
          if (fitFullWaiting < 0 && b.status[x] !== SLOT_ANSWERED) fitFullWaiting = x;
        } else if (a === FIT_PORTS_DIFFER && fitPorts < 0) {
          fitPorts = x;
        }
      }
    }
    let label: string = MATCH_NAMES[verdict] ?? String(verdict);
    if (verdict === MATCH_DEPARTURE) {
      const x = m.slot;
      label = `departure:${KIND_NAMES[b.targets[m.slotTarget[x]!]!.kind]}`;
      if (x < 0 || x >= b.slots || !isDepartureOf(parsed.outer, b.targets[m.slotTarget[x]!]!, m.slotIdent[x]!, m.slotSrcPort[x]!)) {
        report.wrongMatches++;
        fail(i, "wrong departure", `slot ${x}`, L);
      }
    } else if (verdict === MATCH_ANSWER) {
      const x = m.slot;
      label = `answer:${REPLY_NAMES[m.reply] ?? m.reply}`;
      const want = x >= 0 && x < b.slots ? answerFit(parsed, b.targets[m.slotTarget[x]!]!, m.slotIdent[x]!, m.slotSrcPort[x]!) : FIT_NONE;
      if (want <= 0 || want !== m.reply || m.target !== m.slotTarget[x]) {
        report.wrongMatches++;
        fail(i, "wrong answer", `slot ${x} reply ${REPLY_NAMES[m.reply]}, the rule says ${want > 0 ? REPLY_NAMES[want] : want === FIT_PORTS_DIFFER ? "ports differ" : "no fit"}`, L);
      } else if (b.status[x] === SLOT_ANSWERED && fitFullWaiting >= 0) {
        report.wrongMatches++;
        fail(i, "answered slot preferred", `slot ${x} answered, slot ${fitFullWaiting} waiting fits`, L);
      }
      // The engine records it: the next copy of this answer is a duplicate.
      if (recordAnswer) b.status[x] = SLOT_ANSWERED;
    } else if (verdict === MATCH_PORT_MISMATCH) {
      // Only a slot of that target whose identity fits but whose ports do not, and no slot fitting whole.
      let ok = fitFull < 0;
      if (ok) {
        ok = false;
        for (let x = b.firstSlot[m.target]!; x < b.firstSlot[m.target + 1]!; x++) {
          if (answerFit(parsed, b.targets[m.target]!, m.slotIdent[x]!, m.slotSrcPort[x]!) === FIT_PORTS_DIFFER) ok = true;
        }
      }
      if (!ok) {
        report.wrongMatches++;
        fail(i, "wrong port mismatch", `target ${m.target}; a slot fits whole: ${fitFull}`, L);
      }
    } else if (verdict === MATCH_FAIL) {
      const want = fitFull < 0 && fitPorts < 0 ? matchFailTarget(parsed, b) : -1;
      if (want !== m.target) {
        report.wrongMatches++;
        fail(i, "wrong match-fail", `target ${m.target}, the rule says ${want}`, L);
      }
    } else if (verdict === MATCH_NONE && st1 === PARSE_OK) {
      const shouldFail = fitFull < 0 && fitPorts < 0 ? matchFailTarget(parsed, b) : -1;
      if (departs >= 0 || fitFull >= 0 || fitPorts >= 0 || shouldFail >= 0) {
        report.missedMatches++;
        fail(i, "missed", `departure ${departs}, answer ${fitFull}, ports differ ${fitPorts}, match-fail ${shouldFail}`, L);
      }
    }
    count(report.matches, label);
    if (mutations === 0 && (kind === "departure" || kind === "answer")) {
      report.validBuilt++;
      const expected = kind === "departure" ? MATCH_DEPARTURE : MATCH_ANSWER;
      if (verdict === expected) report.validMatched++;
      else fail(i, "valid frame not matched", `${kind} of slot ${s}: ${MATCH_NAMES[verdict]}`, L);
    }
  }
  report.ms = performance.now() - t0;
  report.framesPerSecond = report.frames / (report.ms / 1000);
  report.decodeMatchPerSecond = report.frames / (decodeMatchMs / 1000);
  return report;
}

/** The report as lines of text. */
export function formatReport(r: FuzzReport): string {
  const lines = [
    `seed ${r.seed}: ${r.frames.toLocaleString("en-US")} frames in ${(r.ms / 1000).toFixed(2)} s: ${Math.round(r.framesPerSecond).toLocaleString("en-US")} frames/s in all (build, mutate, decode twice, match, check), ${Math.round(r.decodeMatchPerSecond).toLocaleString("en-US")} frames/s through decode + match alone`,
    `exceptions ${r.exceptions}, wrong matches ${r.wrongMatches}, missed matches ${r.missedMatches}, reads past the frame ${r.readsPastEnd}`,
    `valid frames matched as built: ${r.validMatched} of ${r.validBuilt}`,
    `decode: ${Object.entries(r.parse).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `matches: ${Object.entries(r.matches).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ")}`,
  ];
  for (const f of r.failures) lines.push(`  frame ${f.frame}: ${f.what}: ${f.detail} (dlt ${f.dlt}) ${f.hex}`);
  return lines.join("\n");
}
