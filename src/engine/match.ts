/**
 * The engine's matching rule: which probe of the batch a decoded frame is (seen leaving) or
 * answers, if any. Kept apart from capture, sending and timing so that it can be fuzzed without
 * root or pcap (tests/engine/match-fuzz.test.ts, scripts/fuzz-frames.ts); the engine calls it
 * once per captured frame, so it allocates nothing: results are ints and fields of the matcher.
 *
 * The rule. A probe is slot s of target t: kind, family, destination D, destination port P,
 * source port SP and identifier I (see assign()). A frame is
 *  - slot s seen leaving when it is addressed to D in t's family and is
 *      TCP: flags exactly SYN, sequence I, ports SP -> P;
 *      UDP: ports SP -> P, and I in the IPv4 ID (IPv4) or the first 4 payload bytes (IPv6);
 *      ICMP: an echo request of the family's ICMP (v4 type 8, v6 type 128), id << 16 | seq = I;
 *  - an answer to slot s when it comes in t's family and is
 *      TCP from D: SYN+ACK or RST+ACK, ports P -> SP, acknowledging I + 1 or, for a SYN carrying
 *        data, I + data + 1 (stacks differ);
 *      ICMP from D: an echo reply of the family's ICMP (v4 type 0, v6 type 129), id << 16 | seq = I;
 *      a destination unreachable of the family's ICMP (v4 type 3, v6 type 1), from anyone,
 *        quoting a packet of the same family that is the TCP or UDP probe as it left (above;
 *        TCP: ports and sequence only, all an error is sure to quote).
 *    An error quoting an echo request is not an answer: the request met no answering host.
 *  - counted against TCP target t (a failed match) when it is a SYN+ACK or RST+ACK from t's
 *    destination, acknowledging a number in this engine's identifier window but none of its SYNs
 *    (t: the first TCP target to that address);
 *  - counted against target t (a port mismatch) when it would answer a slot of t but its ports.
 * Among slots that fit (two probes of one flow can share a 16-bit IPv4 ID once it wraps), one
 * still waiting for its answer is preferred.
 */
import type { Family } from "../packet/address.ts";
import {
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_PORT_UNREACH,
  ICMP4_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PORT_UNREACH,
  ICMP6_UNREACH,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
} from "../packet/build.ts";
import type { IpFields, ParsedFrame } from "../packet/parse.ts";

export const KIND_TCP = 0;
export const KIND_ICMP = 1;
export const KIND_UDP = 2;

/** Slot states after a batch. */
export const SLOT_LOST = 0;
export const SLOT_ANSWERED = 1;
/** Never left: no route, unresolved next hop, or the send call failed. Neither sent nor lost. */
export const SLOT_UNSENT = 2;

/** What answered a probe. */
export const REPLY_NONE = 0;
export const REPLY_SYN_ACK = 1;
export const REPLY_RST_ACK = 2;
export const REPLY_ECHO = 3;
export const REPLY_PORT_UNREACHABLE = 4;
/** Any other destination-unreachable code (host, network, administratively prohibited). */
export const REPLY_UNREACHABLE = 5;
export const REPLY_NAMES = ["none", "syn-ack", "rst-ack", "echo-reply", "port-unreachable", "unreachable"] as const;

// What a frame is to the batch (ProbeMatcher.classify).
/** None of ours: not a probe of the batch nor an answer to one. */
export const MATCH_NONE = 0;
/** Probe `slot` seen leaving. */
export const MATCH_DEPARTURE = 1;
/** An answer (`reply`) to probe `slot` of target `target`. */
export const MATCH_ANSWER = 2;
/** A TCP answer from TCP target `target`, in this engine's identifier window, acknowledging none of its SYNs. */
export const MATCH_FAIL = 3;
/** An answer to a probe of target `target` whose ports are not the probe's. */
export const MATCH_PORT_MISMATCH = 4;
export const MATCH_NAMES = ["none", "departure", "answer", "match-fail", "port-mismatch"] as const;

/**
 * Engines of one process start their identifiers in distinct 2^28 windows (EngineOptions.identBase):
 * the window of an acknowledgement tells whose SYN it answers.
 */
export const IDENT_WINDOW_BITS = 28;

/** What the matcher needs of a target (the engine's per-target state has these and more). */
export interface MatchTarget {
  readonly kind: number;
  readonly family: Family;
  /** Destination address (4 or 16 bytes used). */
  readonly dst: Uint8Array;
  /** hashAddress(dst, 0, family). */
  readonly dstHash: number;
  readonly dstPort: number;
  /** Data bytes after the L4 header. */
  readonly dataLength: number;
  /** ICMP echo identifier of the target's probes. */
  readonly icmpId: number;
  /** Probes of the target in the batch. */
  readonly count: number;
}

export function hashAddress(b: Uint8Array, off: number, family: Family): number {
  let h = 0x811c9dc5;
  const n = family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ b[off + i]!, 0x01000193);
  return h >>> 0;
}

function sameAddress(a: Uint8Array, b: Uint8Array, family: Family): boolean {
  const n = family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The ICMP protocol of a family: an ICMPv4 message in IPv6 (or the reverse) is nobody's answer. */
function icmpOf(family: Family): number {
  return family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
}

const EMPTY_STATUS = new Uint8Array(0);

/**
 * Per-slot identity (target, identifier, source port) and the table that finds a slot by what a
 * frame carries back. One per engine, reused across batches; typed arrays grown as needed.
 */
export class ProbeMatcher {
  /** Results of the last classify(): the slot, its target, and the kind of answer. */
  slot = -1;
  target = -1;
  reply = REPLY_NONE;

  slotTarget = new Int32Array(0);
  slotIdent = new Uint32Array(0);
  slotSrcPort = new Uint16Array(0);

  #capacity = 0;
  #table = new Int32Array(0);
  #tableMask = 0;
  #targets: readonly MatchTarget[] = [];
  /** The engine's slot states, read to prefer a slot still waiting. */
  #status: Uint8Array = EMPTY_STATUS;
  /** First TCP target of each destination (by address hash), for MATCH_FAIL. */
  #tcpByAddress = new Map<number, number>();
  /** Next TCP sequence number / UDP identifier: continues across batches. */
  #ident: number;
  readonly #window: number;

  constructor(identBase: number) {
    this.#ident = identBase >>> 0;
    this.#window = identBase >>> IDENT_WINDOW_BITS;
  }

  /**
   * Starts a batch of `slots` probes of `targets`, every slot then given its identity by
   * assign(). `status` is the engine's slot states, read (never written) by classify().
   */
  begin(targets: readonly MatchTarget[], slots: number, status: Uint8Array): void {
    this.#targets = targets;
    this.#status = status;
    if (slots > this.#capacity) {
      const cap = Math.max(slots, 1024);
      this.#capacity = cap;
      this.slotTarget = new Int32Array(cap);
      this.slotIdent = new Uint32Array(cap);
      this.slotSrcPort = new Uint16Array(cap);
    }
    this.#tcpByAddress = new Map();
    for (let t = 0; t < targets.length; t++) {
      const st = targets[t]!;
      if (st.kind === KIND_TCP && !this.#tcpByAddress.has(st.dstHash)) this.#tcpByAddress.set(st.dstHash, t);
    }
    // Open addressing at most half full; a TCP SYN with data takes two entries.
    let entries = slots;
    for (const st of targets) if (st.kind === KIND_TCP && st.dataLength > 0) entries += st.count;
    let size = 1024;
    while (size < entries * 2) size <<= 1;
    if (size > this.#table.length) {
      this.#table = new Int32Array(size);
      this.#tableMask = size - 1;
    } else {
      this.#table.fill(0);
    }
  }

  /**
   * Gives slot s, probe k of target t sent from srcPort, the identifier its answer will carry back:
   *  TCP: the SYN's sequence number, unique in the engine's space and advanced past the data,
   *       because some stacks acknowledge seq + 1 and others seq + data + 1;
   *  ICMP: identifier (per target) and sequence (per packet);
   *  UDP: the IPv4 ID, or for IPv6 a tag in the payload, both quoted back by the ICMP error.
   */
  assign(s: number, t: number, k: number, srcPort: number): void {
    const st = this.#targets[t]!;
    let ident: number;
    let alt: number;
    if (st.kind === KIND_TCP) {
      ident = this.#ident;
      alt = (ident + st.dataLength) >>> 0;
      this.#ident = (this.#ident + 1 + st.dataLength) >>> 0;
    } else if (st.kind === KIND_ICMP) {
      ident = alt = ((st.icmpId << 16) | (k & 0xffff)) >>> 0;
    } else {
      const n = this.#ident;
      this.#ident = (this.#ident + 1) >>> 0;
      ident = alt = st.family === 4 ? n & 0xffff : n;
    }
    this.slotTarget[s] = t;
    this.slotSrcPort[s] = srcPort;
    this.slotIdent[s] = ident;
    this.#insert(ident, st, s);
    if (alt !== ident) this.#insert(alt, st, s);
  }

  #hash(kind: number, ident: number, dstHash: number): number {
    return (Math.imul((ident ^ Math.imul(kind + 1, 0x27d4eb2d) ^ dstHash) >>> 0, 0x9e3779b1) >>> 0) & this.#tableMask;
  }

  #insert(ident: number, st: MatchTarget, s: number): void {
    let i = this.#hash(st.kind, ident, st.dstHash);
    while (this.#table[i] !== 0) i = (i + 1) & this.#tableMask;
    this.#table[i] = s + 1;
  }

  /**
   * The slot of a `kind` probe to `addr` whose identifier is `ident` (or, for an acknowledgement
   * of a TCP SYN with data, whose identifier + data is), or -1. Ports are the caller's to check,
   * so that a mismatch can be counted.
   */
  #lookup(kind: number, ident: number, acked: boolean, family: Family, addr: Uint8Array): number {
    const h = hashAddress(addr, 0, family);
    let firstAnswered = -1;
    for (let i = this.#hash(kind, ident, h); ; i = (i + 1) & this.#tableMask) {
      const e = this.#table[i]!;
      if (e === 0) return firstAnswered;
      const s = e - 1;
      const st = this.#targets[this.slotTarget[s]!]!;
      const own = this.slotIdent[s]!;
      if (own !== ident && !(acked && st.kind === KIND_TCP && ((own + st.dataLength) >>> 0) === ident)) continue;
      if (st.kind !== kind || st.family !== family || st.dstHash !== h || !sameAddress(st.dst, addr, family)) continue;
      if (this.#status[s] !== SLOT_ANSWERED) return s;
      if (firstAnswered < 0) firstAnswered = s;
    }
  }

  /** What the decoded frame `p` (parseFrame returned PARSE_OK) is to the batch: MATCH_*. */
  classify(p: ParsedFrame): number {
    this.slot = -1;
    this.target = -1;
    this.reply = REPLY_NONE;
    const o = p.outer;
    const kind = this.#departureKind(o);
    // Told apart by content, not direction: on loopback libpcap keeps only the incoming copy of
    // every packet, our probes included.
    if (kind >= 0) return this.#departure(o, kind);
    return this.#arrival(p);
  }

  /** The kind of probe o is shaped like (whoever sent it), or -1. */
  #departureKind(o: IpFields): number {
    if (o.protocol === IPPROTO_TCP) return o.tcpFlags === TCP_SYN ? KIND_TCP : -1;
    if (o.protocol === IPPROTO_UDP) return KIND_UDP;
    if (o.protocol === icmpOf(o.family) && o.icmpType === (o.family === 4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST)) return KIND_ICMP;
    return -1;
  }

  /** The identifier a packet shaped like a `kind` probe carries, or -1 when it carries none. */
  #probeIdent(q: IpFields, kind: number): number {
    if (kind === KIND_TCP) return q.seq;
    if (kind === KIND_ICMP) return ((q.icmpId << 16) | q.icmpSeq) >>> 0;
    if (q.family === 4) return q.ipId;
    return q.payloadTag;
  }

  #departure(o: IpFields, kind: number): number {
    const ident = this.#probeIdent(o, kind);
    if (ident < 0) return MATCH_NONE;
    const s = this.#lookup(kind, ident, false, o.family, o.dst);
    if (s < 0) return MATCH_NONE;
    const t = this.slotTarget[s]!;
    if (kind !== KIND_ICMP && (o.srcPort !== this.slotSrcPort[s] || o.dstPort !== this.#targets[t]!.dstPort)) return MATCH_NONE;
    this.slot = s;
    this.target = t;
    return MATCH_DEPARTURE;
  }

  #arrival(p: ParsedFrame): number {
    const o = p.outer;
    if (o.protocol === IPPROTO_TCP) {
      const f = o.tcpFlags;
      const synAck = (f & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK);
      const rstAck = (f & (TCP_RST | TCP_ACK)) === (TCP_RST | TCP_ACK);
      if (!synAck && !rstAck) return MATCH_NONE;
      const acked = (o.ack - 1) >>> 0;
      const s = this.#lookup(KIND_TCP, acked, true, o.family, o.src);
      if (s < 0) {
        // An answer from one of our TCP targets that acknowledges none of our SYNs. Engines in
        // other Workers may probe the same address (two targets, one host): their answers
        // acknowledge sequence numbers in their own window and are theirs to match.
        const t = this.#tcpByAddress.get(hashAddress(o.src, 0, o.family));
        if (t === undefined || acked >>> IDENT_WINDOW_BITS !== this.#window) return MATCH_NONE;
        const st = this.#targets[t]!;
        if (st.family !== o.family || !sameAddress(st.dst, o.src, o.family)) return MATCH_NONE;
        this.target = t;
        return MATCH_FAIL;
      }
      return this.#answer(s, o.srcPort === this.#targets[this.slotTarget[s]!]!.dstPort && o.dstPort === this.slotSrcPort[s], synAck ? REPLY_SYN_ACK : REPLY_RST_ACK);
    }
    if (o.protocol !== icmpOf(o.family)) return MATCH_NONE;
    const v4 = o.family === 4;
    if (o.icmpType === (v4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY)) {
      const s = this.#lookup(KIND_ICMP, ((o.icmpId << 16) | o.icmpSeq) >>> 0, false, o.family, o.src);
      return s < 0 ? MATCH_NONE : this.#answer(s, true, REPLY_ECHO);
    }
    if (o.icmpType !== (v4 ? ICMP4_UNREACH : ICMP6_UNREACH) || !p.hasQuote) return MATCH_NONE;
    // A destination unreachable error, matched by the probe it quotes, whoever sent it: routers
    // and hosts answering for a local route send errors from their own address.
    const q = p.inner;
    if (q.family !== o.family) return MATCH_NONE;
    let kind: number;
    if (q.protocol === IPPROTO_TCP) kind = KIND_TCP;
    else if (q.protocol === IPPROTO_UDP) kind = KIND_UDP;
    else return MATCH_NONE; // an echo request that met an error did not reach an answering host: loss
    const ident = this.#probeIdent(q, kind);
    if (ident < 0) return MATCH_NONE;
    const s = this.#lookup(kind, ident, false, q.family, q.dst);
    if (s < 0) return MATCH_NONE;
    const portsMatch = q.srcPort === this.slotSrcPort[s] && q.dstPort === this.#targets[this.slotTarget[s]!]!.dstPort;
    const portUnreachable = o.icmpCode === (v4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH);
    return this.#answer(s, portsMatch, portUnreachable ? REPLY_PORT_UNREACHABLE : REPLY_UNREACHABLE);
  }

  #answer(s: number, portsMatch: boolean, reply: number): number {
    this.target = this.slotTarget[s]!;
    if (!portsMatch) return MATCH_PORT_MISMATCH;
    this.slot = s;
    this.reply = reply;
    return MATCH_ANSWER;
  }
}
