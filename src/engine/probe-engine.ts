/**
 * The packet engine: sends the probes of a batch on schedule, captures both the probes leaving
 * and the answers coming back (on the "any" device, so an answer counts whatever interface it
 * returns on), matches them, and times each probe with the kernel's own timestamps of the two
 * frames. One thread does it all: a single Bun thread sustains more than the C yardstick's
 * two-thread closed loop here, and nothing crosses a thread per packet.
 */
import { edenGC } from "bun:jsc";
import type { TargetType } from "../config/schema.ts";
import { parseAddress, type Family } from "../packet/address.ts";
import { PacketSpec, writePacket } from "../packet/build.ts";
import { PARSE_OK, PARSE_TRUNCATED, ParsedFrame, parseFrame } from "../packet/parse.ts";
import type { ProbeType } from "../probes/probe-type.ts";
import { PROBE_CODE, PROBE_TYPE_LIST, PROBE_TYPES } from "../probes/registry.ts";
import {
  hashAddress,
  IDENT_WINDOW_BITS,
  MATCH_ANSWER,
  MATCH_DEPARTURE,
  MATCH_FAIL,
  MATCH_PORT_MISMATCH,
  ProbeMatcher,
  REPLY_NONE,
  SLOT_ANSWERED,
  SLOT_LOST,
  SLOT_UNSENT,
  type MatchTarget,
} from "./match.ts";
import type { ProbeNetwork, Route } from "./network.ts";

export {
  IDENT_WINDOW_BITS,
  REPLY_ECHO,
  REPLY_NAMES,
  REPLY_NONE,
  REPLY_PORT_UNREACHABLE,
  REPLY_REFLECTED,
  REPLY_RST_ACK,
  REPLY_SYN_ACK,
  REPLY_UNREACHABLE,
  SLOT_ANSWERED,
  SLOT_LOST,
  SLOT_UNSENT,
} from "./match.ts";

/** One destination address probed `count` times in a batch. */
export interface ProbeTarget {
  type: TargetType;
  family: Family;
  /** Literal address. */
  dst: string;
  /** Destination port (0 for a type without ports). */
  dstPort: number;
  /** Source addresses to rotate over; null: the kernel's preferred source for the route. */
  srcAddresses: string[] | null;
  /** Source port range, both ends included (types with ports). */
  srcPortA: number;
  srcPortZ: number;
  dscp: number;
  dontFragment: boolean;
  /** L4 header + data, as the spec's ip_payload_size; null: the header alone. */
  ipPayloadSize: number | null;
  count: number;
  /** Gap between two packets of this target. */
  intervalMs: number;
  /** When the first packet is due, from the start of the batch. */
  startMs: number;
  /** How long answers are awaited after the last packet. */
  timeoutMs: number;
}

/** What the thread starting an engine asks for: the network's settings and the engine's. */
export interface EngineOptions extends ProbeEngineOptions {
  /** Kernel ring of the capture handle: it absorbs bursts of answers while the thread sends. */
  captureBufferBytes: number;
  /** Send through raw IP sockets and let the kernel route (the spec's l3_raw_socket). */
  l3RawSocket: boolean;
  /**
   * An eventfd another thread signals after setting abortFlag, so a wait for answers ends at
   * once instead of at its deadline.
   */
  wakeFd?: number;
}

export interface ProbeEngineOptions {
  /** Global cap on probes per second. */
  maxProbesPerSecond: number;
  /**
   * Start of this engine's TCP sequence / probe identifier space: engines in different Workers
   * get disjoint spaces so their probes can never be mistaken for each other's.
   */
  identBase: number;
  /** Over a SharedArrayBuffer; non-zero once the batch in progress is to stop (the network's wait() wakes too). */
  abortFlag?: Int32Array;
}

/**
 * Figures of a batch. Every probe planned either left (sent) or did not (sendErrors): sent +
 * sendErrors is the number of probes of the batch, and only the sent ones can be answered or lost.
 * An aborted batch is the exception: the probes it never reached are SLOT_UNSENT and in neither.
 */
export interface BatchStats {
  /** Probes that left: handed to the interface (or the raw socket) whole. */
  sent: number;
  /** Probes that did not leave (no route, unresolved next hop, the send call failed): the prober's failure, not the network's loss. */
  sendErrors: number;
  /** Of sendErrors, those whose target had no usable route when the batch started. */
  unroutable: number;
  /** RSTs (closing answered TCP probes) that could not be sent: not probes, no part of sent or sendErrors. */
  resetErrors: number;
  answered: number;
  /** Frames the kernel dropped from the capture ring during the batch (pcap_stats). */
  captureDropped: number;
  /** Answers whose probe's own departure was not captured: no kernel RTT for them. */
  txMissing: number;
  duplicates: number;
  late: number;
  truncated: number;
  /** Worst delay between a probe's schedule and its departure, ms. */
  sendLagMs: number;
  /** From the batch's start to the last probe sent, ms. */
  sendMs: number;
  durationMs: number;
}

/**
 * Results of one batch. Slot arrays are views into the engine's buffers: valid until the next
 * run(). Slots of target t are [targetStart[t], targetStart[t + 1]).
 */
export interface BatchResult {
  targetStart: Int32Array;
  /** Per target: its type's code (PROBE_CODE, its index in PROBE_TYPE_LIST). */
  kind: Uint8Array;
  status: Uint8Array;
  reply: Uint8Array;
  /** Kernel RTT in ns; NaN when lost or not timed. */
  rttNs: Float64Array;
  srcPort: Uint16Array;
  srcIndex: Uint16Array;
  /** Per target: direct answers from the target that matched no probe (tcpsyn_match_ack_fail_count). */
  matchFail: Uint32Array;
  /** Per target: answers whose ports did not match their probe's. */
  portMismatch: Uint32Array;
  /** Per target: answers timestamped before their probe left (app_time_ooo_total). */
  timeOutOfOrder: Uint32Array;
  /** Per target: why its probes could not leave, or "" when they did. */
  unroutable: string[];
  /** Per slot: the identifier the probe carried (its type's assignIdent()). */
  ident: Uint32Array;
  /**
   * Per slot, `valueWidth` numbers from slot s * valueWidth: how long the far end held the probe
   * (ns, already taken off rttNs), then the values its type's answerValues recorded from the
   * answer (NaN when none). Empty when no target of the batch has a type recording values.
   */
  values: Float64Array;
  valueWidth: number;
  stats: BatchStats;
}

/**
 * Numbers per slot in BatchResult.values: the far end's hold time, then the most any type
 * records.
 */
export const SLOT_VALUE_WIDTH = 1 + Math.max(0, ...PROBE_TYPE_LIST.map((t) => t.answerValues?.count ?? 0));

/** Figures of a batch that has not run (or had nothing to send). */
export function emptyBatchStats(): BatchStats {
  return {
    sent: 0,
    sendErrors: 0,
    unroutable: 0,
    resetErrors: 0,
    answered: 0,
    captureDropped: 0,
    txMissing: 0,
    duplicates: 0,
    late: 0,
    truncated: 0,
    sendLagMs: 0,
    sendMs: 0,
    durationMs: 0,
  };
}

interface TargetState extends MatchTarget {
  type: ProbeType;
  tos: number;
  df: boolean;
  routes: Route[];
  srcs: Uint8Array[];
  timeoutMs: number;
  intervalMs: number;
  startMs: number;
  firstSlot: number;
  /** Probes that have left (or could not leave) so far, and when the last one did. */
  done: number;
  lastSendMs: number;
  /** Why the first of its probes that could not be sent failed, or "". */
  sendError: string;
}

/** Slot flags: the probe left; its departure was captured. */
const FLAG_SENT = 1;
const FLAG_TX_SEEN = 2;

const SEND_BURST = 64;
/** Targets resolved between two young-generation collections in a batch's preparation. */
const EGRESS_GC_EVERY = 500;
/**
 * Longest single wait for answers. Every wake-up of a Bun thread costs CPU (20 a second cost
 * 0.5% of a core here), so the engine blocks in poll() rather than returning to the event loop.
 */
const MAX_POLL_MS = 1000;

/**
 * Sends the probes of a batch on schedule, captures both the probes leaving and the answers
 * coming back, matches them, and times each probe with the network's timestamps of the two
 * frames. What a probe of each type is comes from its module (src/probes/).
 */
export class ProbeEngine {
  readonly #net: ProbeNetwork;
  readonly #spec = new PacketSpec();
  readonly #frame = new Uint8Array(65600);
  readonly #parsed = new ParsedFrame();
  /** Per-slot identity (target, identifier, source port) and the rule that matches frames to slots. */
  readonly #match: ProbeMatcher;
  #filter = "";
  #ipId = 1;
  /** Next targetId (the ICMP echo identifier): distinct between targets, per engine. */
  #targetId: number;

  // Per-slot state, grown as needed and reused across batches: 23 bytes a slot (10 of them in the
  // matcher), plus 8 to 16 for the match table (up to a million slots in a Worker for 10,000
  // targets x 100).
  #capacity = 0;
  #slotSrcIndex = new Uint16Array(0);
  #slotStatus = new Uint8Array(0);
  #slotReply = new Uint8Array(0);
  #slotFlags = new Uint8Array(0);
  /**
   * One time per slot, by its flags: the departure's kernel timestamp (TX_SEEN alone), the
   * answer's (answered, departure not seen yet), then the RTT once both are known; the result's
   * rttNs is this array, NaN where there is no RTT.
   */
  #slotTime = new Float64Array(0);
  /** BatchResult.values: sized only for batches with a type recording answer values. */
  #slotValues = new Float64Array(0);
  #valuesUsed = false;
  // Send schedule: a binary min-heap of targets by the due time of their next probe (ties by
  // target index, so a target's burst stays together), instead of a sorted array per slot.
  #heap = new Int32Array(0);
  #heapSize = 0;
  #due = new Float64Array(0);
  #resets = new Int32Array(1024);
  #resetCount = 0;

  #targets: TargetState[] = [];
  #total = 0;
  #pending = 0;
  #epochSec = 0;
  #t0 = 0;
  #matchFail = new Uint32Array(0);
  #portMismatch = new Uint32Array(0);
  #timeOoo = new Uint32Array(0);
  #stats: BatchStats = emptyBatchStats();

  constructor(
    network: ProbeNetwork,
    private readonly opts: ProbeEngineOptions,
  ) {
    this.#net = network;
    this.#match = new ProbeMatcher(opts.identBase);
    this.#targetId = (opts.identBase >>> 16) & 0xffff;
  }

  /**
   * Runs one batch: every packet of every target, then the wait for answers. The calling thread
   * is blocked for the whole batch (in poll() while nothing is due): run it in a Worker.
   */
  run(targets: ProbeTarget[]): BatchResult {
    const targetStart = this.#prepare(targets);
    const heap = this.#heap;
    const due = this.#due;
    const total = this.#total;
    const rate = this.opts.maxProbesPerSecond;
    const net = this.#net;
    const abort = this.opts.abortFlag;
    const dropsBefore = net.captureDrops();
    this.#epochSec = Math.floor(Date.now() / 1000);
    this.#t0 = net.now();
    let next = 0;
    let aborted = false;
    for (;;) {
      let now = net.now() - this.#t0;
      let burst = 0;
      // The heap holds every target with probes left: it is empty once `next` reaches total.
      while (next < total) {
        const t = heap[0]!;
        const dueMs = due[t]!;
        if (dueMs > now) break;
        // Token bucket: one burst of credit, then `rate` probes per second.
        if (next >= (rate * now) / 1000 + SEND_BURST) break;
        // Lag is measured against a schedule: a paced target's every probe, an unpaced one's
        // first (its burst has no schedule beyond its start).
        const st = this.#targets[t]!;
        if (st.intervalMs > 0 || st.done === 0) {
          const lag = now - dueMs;
          if (lag > this.#stats.sendLagMs) this.#stats.sendLagMs = lag;
        }
        this.#send(st.firstSlot + st.done);
        // #send counted the probe in st.done: the target's next probe, or none.
        if (st.done === st.count) {
          heap[0] = heap[--this.#heapSize]!;
        } else {
          due[t] = st.startMs + st.done * st.intervalMs;
        }
        if (this.#heapSize > 0) this.#siftDown(0);
        next++;
        if (next === total) this.#stats.sendMs = this.#net.now() - this.#t0;
        if (++burst === SEND_BURST) {
          this.#drain();
          this.#flushResets();
          burst = 0;
          now = this.#net.now() - this.#t0;
        }
      }
      this.#drain();
      this.#flushResets();
      now = this.#net.now() - this.#t0;
      // Answers are awaited `timeout` after each target's last probe actually left.
      const lastDeadline = next === total ? this.#lastDeadline() : Infinity;
      if (next === total && (this.#pending === 0 || now >= lastDeadline)) break;
      if (abort && Atomics.load(abort, 0) !== 0) {
        aborted = true;
        break;
      }
      let wait: number;
      if (next < total) {
        const byRate = ((next - SEND_BURST + 1) * 1000) / rate - now;
        wait = Math.max(due[heap[0]!]! - now, byRate);
      } else {
        wait = lastDeadline - now;
      }
      if (wait > 0) net.wait(Math.min(Math.ceil(wait), MAX_POLL_MS));
    }
    this.#drain();
    // Probes an abort kept from leaving never left: neither sent nor lost, nor a send error.
    if (aborted) for (let s = 0; s < total; s++) if (!(this.#slotFlags[s]! & FLAG_SENT)) this.#slotStatus[s] = SLOT_UNSENT;
    // A probe left unanswered may have been answered on a path we never saw: closed too.
    for (let s = 0; s < total; s++) {
      if (this.#slotFlags[s]! & FLAG_SENT && this.#slotStatus[s] !== SLOT_ANSWERED && this.#targets[this.#match.slotTarget[s]!]!.type.close) {
        this.#queueReset(s);
      }
    }
    this.#flushResets();
    this.#stats.captureDropped = net.captureDrops() - dropsBefore;
    this.#stats.durationMs = this.#net.now() - this.#t0;
    return this.#result(targetStart, targets.length);
  }

  #prepare(targets: ProbeTarget[]): Int32Array {
    this.#net.refresh();
    this.#stats = emptyBatchStats();
    const targetStart = new Int32Array(targets.length + 1);
    let total = 0;
    for (let t = 0; t < targets.length; t++) {
      targetStart[t] = total;
      total += targets[t]!.count;
    }
    targetStart[targets.length] = total;
    this.#ensureCapacity(total);
    this.#total = total;
    this.#pending = 0;
    this.#matchFail = new Uint32Array(targets.length);
    this.#portMismatch = new Uint32Array(targets.length);
    this.#timeOoo = new Uint32Array(targets.length);
    this.#targets = targets.map((t, i) => {
      // A route lookup leaves a few KB of garbage per target (25 MB for 5,000 measured): a
      // young-generation collection now and then (a few ms) keeps that from piling up into the
      // Worker's footprint (8 MB instead of 25 measured).
      if (i % EGRESS_GC_EVERY === EGRESS_GC_EVERY - 1) edenGC();
      return this.#targetState(t, targetStart[i]!);
    });
    this.#slotStatus.fill(SLOT_LOST, 0, total);
    this.#slotReply.fill(REPLY_NONE, 0, total);
    this.#slotFlags.fill(0, 0, total);
    this.#valuesUsed = this.#targets.some((t) => t.type.answerValues !== null);
    if (this.#valuesUsed) {
      if (this.#slotValues.length < total * SLOT_VALUE_WIDTH) this.#slotValues = new Float64Array(Math.max(total, 1024) * SLOT_VALUE_WIDTH);
      this.#slotValues.fill(NaN, 0, total * SLOT_VALUE_WIDTH);
    }
    this.#match.begin(this.#targets, total, this.#slotStatus);
    for (let t = 0; t < targets.length; t++) {
      const spec = targets[t]!;
      const st = this.#targets[t]!;
      const nPorts = spec.srcPortZ - spec.srcPortA + 1;
      const nSrc = st.srcs.length;
      // Packet k: the source address rotates fastest; the port advances each time it wraps. So
      // the flows (address and port) repeat every nSrc x nPorts packets.
      const flows = nSrc * nPorts;
      for (let k = 0; k < spec.count; k++) {
        const s = targetStart[t]! + k;
        this.#slotSrcIndex[s] = k % nSrc;
        this.#match.assign(s, t, k, spec.srcPortA + (Math.floor(k / nSrc) % nPorts), k % flows, Math.floor(k / flows));
      }
    }
    this.#schedule(targets.length);
    this.#setFilter(targets);
    // Frames left from an earlier batch would only be counted as strays.
    while (this.#net.next()) {}
    return targetStart;
  }

  /** Every target with probes to send, in the heap by the due time of its first one. */
  #schedule(n: number): void {
    if (this.#heap.length < n) {
      this.#heap = new Int32Array(n);
      this.#due = new Float64Array(n);
    }
    let size = 0;
    for (let t = 0; t < n; t++) {
      const st = this.#targets[t]!;
      if (st.count === 0) continue;
      this.#due[t] = st.startMs;
      this.#heap[size++] = t;
    }
    this.#heapSize = size;
    for (let i = (size >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  /** Restores the heap below i: earlier due time first, then lower target index. */
  #siftDown(i: number): void {
    const heap = this.#heap;
    const due = this.#due;
    const size = this.#heapSize;
    const t = heap[i]!;
    const d = due[t]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) break;
      let c = l;
      let ct = heap[l]!;
      let cd = due[ct]!;
      const r = l + 1;
      if (r < size) {
        const rt = heap[r]!;
        const rd = due[rt]!;
        if (rd < cd || (rd === cd && rt < ct)) {
          c = r;
          ct = rt;
          cd = rd;
        }
      }
      if (d < cd || (d === cd && t < ct)) break;
      heap[i] = ct;
      i = c;
    }
    heap[i] = t;
  }

  #lastDeadline(): number {
    let m = 0;
    for (const t of this.#targets) m = Math.max(m, t.lastSendMs + t.timeoutMs);
    return m;
  }

  #targetState(t: ProbeTarget, firstSlot: number): TargetState {
    const dst = parseAddress(t.dst);
    if (!dst || dst.family !== t.family) throw new Error(`target ${t.dst} is not an IPv${t.family} address`);
    if (t.count > 2097151) throw new Error(`target ${t.dst}: ${t.count} packets exceed one batch`);
    const type = PROBE_TYPES[t.type];
    const header = type.headerBytes;
    const dataLength = Math.max(0, (t.ipPayloadSize ?? header) - header, type.minDataBytes(t.family));
    const srcTexts = t.srcAddresses && t.srcAddresses.length > 0 ? t.srcAddresses : [null];
    const routes = srcTexts.map((src) => this.#net.route(t.family, t.dst, src));
    return {
      type,
      kind: PROBE_CODE[t.type],
      family: t.family,
      dst: dst.bytes,
      dstHash: hashAddress(dst.bytes, 0, t.family),
      dstPort: t.dstPort,
      tos: (t.dscp & 63) << 2,
      df: t.dontFragment,
      dataLength,
      targetId: this.#targetId++ & 0xffff,
      routes,
      srcs: routes.map((r) => r.src),
      count: t.count,
      timeoutMs: t.timeoutMs,
      intervalMs: t.intervalMs,
      startMs: t.startMs,
      firstSlot,
      done: 0,
      lastSendMs: 0,
      sendError: "",
    };
  }

  #ensureCapacity(n: number): void {
    if (n <= this.#capacity) {
      return;
    }
    const cap = Math.max(n, 1024);
    this.#capacity = cap;
    this.#slotSrcIndex = new Uint16Array(cap);
    this.#slotStatus = new Uint8Array(cap);
    this.#slotReply = new Uint8Array(cap);
    this.#slotFlags = new Uint8Array(cap);
    this.#slotTime = new Float64Array(cap);
  }

  /**
   * Each type's fragment for its targets of the batch (ports, families), and ICMP errors for the
   * families whose probes an error can answer.
   */
  #setFilter(targets: ProbeTarget[]): void {
    const n = PROBE_TYPE_LIST.length;
    const lo = new Array<number>(n).fill(65536);
    const hi = new Array<number>(n).fill(0);
    const v4 = new Array<boolean>(n).fill(false);
    const v6 = new Array<boolean>(n).fill(false);
    for (const t of targets) {
      const k = PROBE_CODE[t.type];
      if (t.family === 4) v4[k] = true;
      else v6[k] = true;
      lo[k] = Math.min(lo[k]!, t.srcPortA);
      hi[k] = Math.max(hi[k]!, t.srcPortZ);
    }
    const windowMask = `0x${((((1 << (32 - IDENT_WINDOW_BITS)) - 1) << IDENT_WINDOW_BITS) >>> 0).toString(16)}`;
    const window = `0x${(((this.opts.identBase >>> IDENT_WINDOW_BITS) << IDENT_WINDOW_BITS) >>> 0).toString(16)}`;
    const parts: string[] = [];
    let errors4 = false;
    let errors6 = false;
    PROBE_TYPE_LIST.forEach((type, k) => {
      if (!v4[k] && !v6[k]) return;
      const part = type.captureFilter({ portLo: lo[k]!, portHi: hi[k]!, windowMask, window, v4: v4[k]!, v6: v6[k]! });
      if (part) parts.push(part);
      if (type.answeredByError) {
        errors4 ||= v4[k]!;
        errors6 ||= v6[k]!;
      }
    });
    // Destination unreachable, whoever sends it (ICMPv4 type 3, ICMPv6 type 1).
    if (errors4) parts.push("(icmp and icmp[0] == 3)");
    if (errors6) parts.push("(icmp6 and ip6[40] == 1)");
    const filter = parts.length > 0 ? parts.join(" or ") : "ether proto 0xfffe";
    if (filter !== this.#filter) {
      this.#net.setFilter(filter);
      this.#filter = filter;
    }
  }

  #send(s: number): void {
    const st = this.#targets[this.#match.slotTarget[s]!]!;
    const route = st.routes[this.#slotSrcIndex[s]!]!;
    // Only the last probe's departure time is ever read (the target's deadline): the clock is
    // read once per target, not once per packet.
    if (++st.done === st.count) st.lastSendMs = this.#net.now() - this.#t0;
    // A probe that cannot leave is the prober's failure: counted as a send error, never as sent
    // (and so never as lost).
    if (route.mode === "unroutable") {
      this.#slotStatus[s] = SLOT_UNSENT;
      this.#stats.unroutable++;
      this.#stats.sendErrors++;
      return;
    }
    const len = this.#writeProbe(s, st, route, false);
    const r = this.#net.send(route, this.#frame, len);
    if (r !== len) {
      this.#slotStatus[s] = SLOT_UNSENT;
      this.#stats.sendErrors++;
      // The first failure of a target says why (an interface gone mid-batch, a full buffer):
      // reported with the target, as an unroutable one is.
      if (st.sendError === "") st.sendError = this.#net.sendFailure(route, r, len);
      return;
    }
    this.#slotFlags[s] = FLAG_SENT;
    this.#stats.sent++;
    this.#pending++;
  }

  /** Writes slot s's probe (or, `close`, the packet that closes it) into the frame buffer. */
  #writeProbe(s: number, st: TargetState, route: Route, close: boolean): number {
    const p = this.#spec;
    p.link = route.link;
    p.srcMac.set(route.srcMac);
    p.dstMac.set(route.dstMac);
    p.family = st.family;
    p.src.set(st.srcs[this.#slotSrcIndex[s]!]!);
    p.dst.set(st.dst);
    p.tos = st.tos;
    p.dontFragment = st.df;
    p.ipId = this.#ipId;
    this.#ipId = (this.#ipId + 1) & 0xffff;
    p.hopLimit = 64;
    p.payloadLength = st.dataLength;
    p.payloadTag = -1;
    p.payloadHeadLength = 0;
    p.quote = null;
    if (st.type.stampsSendTime) this.#wallClock(p);
    const ident = this.#match.slotIdent[s]!;
    const sport = this.#match.slotSrcPort[s]!;
    if (close) st.type.close!.fill(p, st, ident, sport);
    else st.type.fill(p, st, ident, sport);
    // RFC 6437/6438: the flow label is an ECMP hash input, so it is a function of the flow
    // (addresses, protocol, ports) and never of the packet: each source port keeps its path.
    p.flowLabel = st.family === 6 ? this.#flowLabel(st, p) : 0;
    return writePacket(this.#frame, p);
  }

  /**
   * The wall clock into p.sendSec and sendNsec: performance.timeOrigin + now() keeps a fraction
   * of a microsecond, where Date.now() has milliseconds.
   */
  #wallClock(p: PacketSpec): void {
    const ms = performance.timeOrigin + performance.now();
    const sec = Math.floor(ms / 1000);
    p.sendSec = sec;
    p.sendNsec = Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6));
  }

  #flowLabel(st: TargetState, p: PacketSpec): number {
    let h = hashAddress(p.src, 0, 6) ^ st.dstHash;
    h = Math.imul(h ^ p.protocol, 0x01000193);
    h = Math.imul(h ^ ((p.srcPort << 16) | p.dstPort), 0x01000193);
    return (h ^ (h >>> 20)) & 0xfffff || 1;
  }

  #queueReset(s: number): void {
    if (this.#resetCount === this.#resets.length) this.#flushResets();
    this.#resets[this.#resetCount++] = s;
  }

  #flushResets(): void {
    for (let i = 0; i < this.#resetCount; i++) {
      const s = this.#resets[i]!;
      const st = this.#targets[this.#match.slotTarget[s]!]!;
      const route = st.routes[this.#slotSrcIndex[s]!]!;
      const len = this.#writeProbe(s, st, route, true);
      if (this.#net.send(route, this.#frame, len) !== len) this.#stats.resetErrors++;
    }
    this.#resetCount = 0;
  }

  #drain(): void {
    const h = this.#net;
    const p = this.#parsed;
    const m = this.#match;
    while (h.next()) {
      const st = parseFrame(h.frame, h.caplen, h.datalink, p);
      if (st !== PARSE_OK) {
        if (st === PARSE_TRUNCATED) this.#stats.truncated++;
        continue;
      }
      const ts = (h.tsSec - this.#epochSec) * 1e9 + h.tsNsec;
      switch (m.classify(p)) {
        case MATCH_DEPARTURE:
          this.#onDeparture(m.slot, ts);
          break;
        case MATCH_ANSWER:
          if (this.#answer(m.slot, m.target, m.reply, ts) && this.#targets[m.target]!.type.close?.closesAfter(m.reply)) this.#queueReset(m.slot);
          break;
        case MATCH_FAIL:
          this.#matchFail[m.target]!++;
          break;
        case MATCH_PORT_MISMATCH:
          this.#portMismatch[m.target]!++;
          break;
      }
    }
  }

  /** Probe s seen leaving: its kernel timestamp starts the RTT. */
  #onDeparture(s: number, ts: number): void {
    // The first sighting is the departure: on a bridge the frame shows again on the port.
    const f = this.#slotFlags[s]!;
    if (f & FLAG_TX_SEEN) return;
    this.#slotFlags[s] = f | FLAG_TX_SEEN;
    // Answered already (its frame came first): what the slot holds is the answer's time.
    this.#slotTime[s] = this.#slotStatus[s] === SLOT_ANSWERED ? this.#slotTime[s]! - ts : ts;
  }

  /** Records an answer; returns false for a duplicate or an answer after the target's timeout. */
  #answer(s: number, t: number, reply: number, ts: number): boolean {
    if (this.#slotStatus[s] === SLOT_ANSWERED) {
      this.#stats.duplicates++;
      return false;
    }
    if (!(this.#slotFlags[s]! & FLAG_SENT)) return false;
    const st = this.#targets[t]!;
    if (st.done === st.count && this.#net.now() - this.#t0 > st.lastSendMs + st.timeoutMs) {
      this.#stats.late++;
      return false;
    }
    this.#slotStatus[s] = SLOT_ANSWERED;
    this.#slotReply[s] = reply;
    const values = st.type.answerValues;
    // Only a direct answer carries the type's values: an ICMP error is the network's.
    if (values && this.#match.direct) {
      const at = s * SLOT_VALUE_WIDTH;
      const held = values.record(this.#parsed.outer, this.#slotValues, at + 1);
      this.#slotValues[at] = Number.isFinite(held) ? held : 0;
    }
    // RTT at once when the departure was seen, else the answer's time until it is.
    this.#slotTime[s] = this.#slotFlags[s]! & FLAG_TX_SEEN ? ts - this.#slotTime[s]! : ts;
    this.#pending--;
    this.#stats.answered++;
    return true;
  }

  #result(targetStart: Int32Array, nTargets: number): BatchResult {
    const total = this.#total;
    // In place: a slot's time becomes its RTT, or NaN.
    const rtt = this.#slotTime.subarray(0, total);
    for (let s = 0; s < total; s++) {
      if (this.#slotStatus[s] !== SLOT_ANSWERED) {
        rtt[s] = NaN;
      } else if (!(this.#slotFlags[s]! & FLAG_TX_SEEN)) {
        this.#stats.txMissing++;
        rtt[s] = NaN;
      } else {
        // The far end's hold (answerValues) is not the network's: taken off.
        // (NaN when the answer recorded nothing: an ICMP error).
        const held = this.#valuesUsed ? this.#slotValues[s * SLOT_VALUE_WIDTH]! : 0;
        if (held > 0) rtt[s] = rtt[s]! - held;
        // Answered before its departure, or a far end whose clock ran faster than ours: a
        // timestamp issue either way.
        if (rtt[s]! < 0) {
          this.#timeOoo[this.#match.slotTarget[s]!]!++;
          rtt[s] = NaN;
        }
      }
    }
    const unroutable: string[] = [];
    for (let t = 0; t < nTargets; t++) {
      const st = this.#targets[t]!;
      const bad = st.routes.find((r) => r.mode === "unroutable");
      unroutable.push(bad ? bad.reason : st.sendError);
    }
    return {
      targetStart,
      kind: Uint8Array.from(this.#targets, (t) => t.kind),
      status: this.#slotStatus.subarray(0, total),
      reply: this.#slotReply.subarray(0, total),
      rttNs: rtt,
      srcPort: this.#match.slotSrcPort.subarray(0, total),
      srcIndex: this.#slotSrcIndex.subarray(0, total),
      matchFail: this.#matchFail,
      portMismatch: this.#portMismatch,
      timeOutOfOrder: this.#timeOoo,
      unroutable,
      ident: this.#match.slotIdent.subarray(0, total),
      values: this.#valuesUsed ? this.#slotValues.subarray(0, total * SLOT_VALUE_WIDTH) : new Float64Array(0),
      valueWidth: SLOT_VALUE_WIDTH,
      stats: this.#stats,
    };
  }

  close(): void {
    this.#net.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
