/**
 * The engine's matching rule: which probe of the batch a decoded frame is (seen leaving) or
 * answers, if any. Kept apart from capture, sending and timing so that it can be fuzzed without
 * root or pcap (tests/engine/match-fuzz.test.ts, scripts/fuzz-frames.ts); the engine calls it
 * once per captured frame, so it allocates nothing: results are ints and fields of the matcher.
 *
 * The rule. A probe is slot s of target t: type, family, destination D, destination port P,
 * source port SP and identifier I (the type's assignIdent()). What identifies a probe and an
 * answer of each type is the type's own (src/probes/): here is what is common. A frame is
 *  - slot s seen leaving when it is addressed to D in t's family, its type's departureIdent() is
 *    I and, for a type with ports, its ports are SP -> P;
 *  - an answer to slot s when it comes in t's family and is
 *      from D, a direct answer of t's type (answerIdent()) carrying I or the type's altIdent(I),
 *        for a type whose answers have ports, P -> SP;
 *      a destination unreachable of the family's ICMP (v4 type 3, v6 type 1), from anyone,
 *        quoting a packet of the same family whose quotedIdent() is I, ports SP -> P, of a type
 *        an error answers (answeredByError);
 *  - counted against target t (a failed match) when it is a direct answer of a type counting
 *    strays, from t's destination, carrying an identifier in this engine's window that is none
 *    of its probes' (t: the first target of that type to that address);
 *  - counted against target t (a port mismatch) when it would answer a slot of t but its ports.
 * Among slots that fit (two probes of one flow can share a 16-bit IPv4 ID once it wraps), one
 * still waiting for its answer is preferred.
 */
import type { Family } from "../packet/address.ts";
import { ICMP4_PORT_UNREACH, ICMP4_UNREACH, ICMP6_PORT_UNREACH, ICMP6_UNREACH, IPPROTO_ICMP, IPPROTO_ICMPV6 } from "../packet/build.ts";
import type { IpFields, ParsedFrame } from "../packet/parse.ts";
import type { AnswerFields, FlowPosition, IdentCounter, ProbeTargetFields, ProbeType } from "../probes/probe-type.ts";
import { PROBE_TYPE_LIST } from "../probes/registry.ts";
import { REPLY_NONE, REPLY_PORT_UNREACHABLE, REPLY_UNREACHABLE, SLOT_ANSWERED } from "../probes/replies.ts";

export { REPLY_ECHO, REPLY_NAMES, REPLY_NONE, REPLY_PORT_UNREACHABLE, REPLY_REFLECTED, REPLY_RST_ACK, REPLY_SYN_ACK, REPLY_UNREACHABLE } from "../probes/replies.ts";

export { SLOT_ANSWERED, SLOT_LOST, SLOT_UNSENT } from "../probes/replies.ts";

// What a frame is to the batch (ProbeMatcher.classify).
/** None of ours: not a probe of the batch nor an answer to one. */
export const MATCH_NONE = 0;
/** Probe `slot` seen leaving. */
export const MATCH_DEPARTURE = 1;
/** An answer (`reply`) to probe `slot` of target `target`. */
export const MATCH_ANSWER = 2;
/** A direct answer from target `target`, in this engine's identifier window, answering none of its probes. */
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
export interface MatchTarget extends ProbeTargetFields {
  /** The probe type's code: its index in PROBE_TYPE_LIST. */
  readonly kind: number;
  /** Destination address (4 or 16 bytes used). */
  readonly dst: Uint8Array;
  /** hashAddress(dst, 0, family). */
  readonly dstHash: number;
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
  /** The last answer was a direct one (answerIdent()), not an ICMP error quoting the probe. */
  direct = false;

  slotTarget = new Int32Array(0);
  slotIdent = new Uint32Array(0);
  slotSrcPort = new Uint16Array(0);

  readonly #types: readonly ProbeType[];
  #capacity = 0;
  #table = new Int32Array(0);
  #tableMask = 0;
  #targets: readonly MatchTarget[] = [];
  /** The engine's slot states, read to prefer a slot still waiting. */
  #status: Uint8Array = EMPTY_STATUS;
  /** First target of each (type counting strays, destination), for MATCH_FAIL. */
  #strayTarget = new Map<number, number>();
  /** The identifier space of types drawing from the engine's window: continues across batches. */
  readonly #counter: IdentCounter;
  readonly #window: number;
  readonly #answer: AnswerFields = { reply: REPLY_NONE };
  readonly #flow: FlowPosition = { flow: 0, round: 0, salt: 0 };

  constructor(identBase: number, types: readonly ProbeType[] = PROBE_TYPE_LIST) {
    this.#types = types;
    this.#counter = { next: identBase >>> 0 };
    this.#window = identBase >>> IDENT_WINDOW_BITS;
  }

  /**
   * Starts a batch of `slots` probes of `targets`, every slot then given its identity by
   * assign(). `status` is the engine's slot states, read (never written) by classify().
   */
  begin(targets: readonly MatchTarget[], slots: number, status: Uint8Array): void {
    this.#targets = targets;
    this.#status = status;
    this.#flow.salt = (Math.random() * 0x1_0000_0000) >>> 0;
    if (slots > this.#capacity) {
      const cap = Math.max(slots, 1024);
      this.#capacity = cap;
      this.slotTarget = new Int32Array(cap);
      this.slotIdent = new Uint32Array(cap);
      this.slotSrcPort = new Uint16Array(cap);
    }
    this.#strayTarget = new Map();
    // Open addressing at most half full; a probe with a second identifier takes two entries.
    let entries = slots;
    for (let t = 0; t < targets.length; t++) {
      const st = targets[t]!;
      const type = this.#types[st.kind]!;
      const key = this.#strayKey(st.kind, st.dstHash);
      if (type.strayAnswers && !this.#strayTarget.has(key)) this.#strayTarget.set(key, t);
      if (type.altIdent(0, st) !== 0) entries += st.count;
    }
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
   * Gives slot s, probe k of target t sent from srcPort (the `round`-th probe of the target's
   * flow `flow`), the identifier its answer will carry back.
   */
  assign(s: number, t: number, k: number, srcPort: number, flow = 0, round = k): void {
    const st = this.#targets[t]!;
    const type = this.#types[st.kind]!;
    this.#flow.flow = flow;
    this.#flow.round = round;
    const ident = type.assignIdent(st, k, this.#counter, this.#flow);
    this.slotTarget[s] = t;
    this.slotSrcPort[s] = srcPort;
    this.slotIdent[s] = ident;
    this.#insert(ident, st, s);
    const alt = type.altIdent(ident, st);
    if (alt !== ident) this.#insert(alt, st, s);
  }

  #strayKey(kind: number, dstHash: number): number {
    return (dstHash ^ Math.imul(kind + 1, 0x9e3779b1)) >>> 0;
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
   * The slot of a `kind` probe to `addr` whose identifier is `ident` (or, for an answer, whose
   * second identifier is), or -1. Ports are the caller's to check, so that a mismatch can be
   * counted.
   */
  #lookup(kind: number, ident: number, answer: boolean, family: Family, addr: Uint8Array): number {
    const h = hashAddress(addr, 0, family);
    const type = this.#types[kind]!;
    let firstAnswered = -1;
    for (let i = this.#hash(kind, ident, h); ; i = (i + 1) & this.#tableMask) {
      const e = this.#table[i]!;
      if (e === 0) return firstAnswered;
      const s = e - 1;
      const st = this.#targets[this.slotTarget[s]!]!;
      if (st.kind !== kind) continue;
      const own = this.slotIdent[s]!;
      if (own !== ident && !(answer && type.altIdent(own, st) === ident)) continue;
      if (st.family !== family || st.dstHash !== h || !sameAddress(st.dst, addr, family)) continue;
      if (this.#status[s] !== SLOT_ANSWERED) return s;
      if (firstAnswered < 0) firstAnswered = s;
    }
  }

  /** What the decoded frame `p` (parseFrame returned PARSE_OK) is to the batch: MATCH_*. */
  classify(p: ParsedFrame): number {
    this.slot = -1;
    this.target = -1;
    this.reply = REPLY_NONE;
    this.direct = false;
    // Told apart by content, not direction: on loopback libpcap keeps only the incoming copy of
    // every packet, our probes included.
    if (this.#departure(p.outer)) return MATCH_DEPARTURE;
    return this.#arrival(p);
  }

  /** Whether o is one of the batch's probes leaving (then slot and target are set). */
  #departure(o: IpFields): boolean {
    const types = this.#types;
    for (let kind = 0; kind < types.length; kind++) {
      const type = types[kind]!;
      const ident = type.departureIdent(o);
      if (ident < 0) continue;
      const s = this.#lookup(kind, ident, false, o.family, o.dst);
      if (s < 0) continue;
      const t = this.slotTarget[s]!;
      if (type.rotatesPorts && (o.srcPort !== this.slotSrcPort[s] || o.dstPort !== this.#targets[t]!.dstPort)) continue;
      this.slot = s;
      this.target = t;
      return true;
    }
    return false;
  }

  #arrival(p: ParsedFrame): number {
    const o = p.outer;
    const types = this.#types;
    for (let kind = 0; kind < types.length; kind++) {
      const type = types[kind]!;
      const ident = type.answerIdent(o, this.#answer);
      if (ident < 0) continue;
      const s = this.#lookup(kind, ident, true, o.family, o.src);
      if (s >= 0) {
        const ports = !type.answerPortsMatch || (o.srcPort === this.#targets[this.slotTarget[s]!]!.dstPort && o.dstPort === this.slotSrcPort[s]);
        this.direct = true;
        return this.#answered(s, ports, this.#answer.reply);
      }
      if (!type.strayAnswers) continue;
      // An answer from one of our targets that answers none of our probes. Engines in other
      // Workers may probe the same address (two targets, one host): their answers carry
      // identifiers in their own window and are theirs to match.
      const t = this.#strayTarget.get(this.#strayKey(kind, hashAddress(o.src, 0, o.family)));
      if (t === undefined || ident >>> IDENT_WINDOW_BITS !== this.#window) continue;
      const st = this.#targets[t]!;
      if (st.family !== o.family || !sameAddress(st.dst, o.src, o.family)) continue;
      this.target = t;
      return MATCH_FAIL;
    }
    return this.#error(p);
  }

  /** A destination unreachable error, matched by the probe it quotes, whoever sent it. */
  #error(p: ParsedFrame): number {
    const o = p.outer;
    const v4 = o.family === 4;
    // The family's own ICMP: an ICMPv4 message in IPv6 (or the reverse) is nobody's answer.
    if (o.protocol !== (v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) || o.icmpType !== (v4 ? ICMP4_UNREACH : ICMP6_UNREACH) || !p.hasQuote) {
      return MATCH_NONE;
    }
    // Routers and hosts answering for a local route send errors from their own address.
    const q = p.inner;
    if (q.family !== o.family) return MATCH_NONE;
    const types = this.#types;
    for (let kind = 0; kind < types.length; kind++) {
      const type = types[kind]!;
      if (!type.answeredByError) continue;
      const ident = type.quotedIdent(q);
      if (ident < 0) continue;
      const s = this.#lookup(kind, ident, false, q.family, q.dst);
      if (s < 0) continue;
      const ports = !type.rotatesPorts || (q.srcPort === this.slotSrcPort[s] && q.dstPort === this.#targets[this.slotTarget[s]!]!.dstPort);
      const portUnreachable = o.icmpCode === (v4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH);
      return this.#answered(s, ports, portUnreachable ? REPLY_PORT_UNREACHABLE : REPLY_UNREACHABLE);
    }
    return MATCH_NONE;
  }

  #answered(s: number, portsMatch: boolean, reply: number): number {
    this.target = this.slotTarget[s]!;
    if (!portsMatch) return MATCH_PORT_MISMATCH;
    this.slot = s;
    this.reply = reply;
    return MATCH_ANSWER;
  }
}
