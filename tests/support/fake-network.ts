/**
 * A network in memory for the engine (src/engine/network.ts): every frame the engine sends is
 * decoded, shown back to it as its own departure, and handed to a responder that decides what
 * comes back and when, built with the product's packet writer. Time is virtual: it moves only
 * when the engine waits, so delays, timeouts and late answers are exact and no test sleeps.
 * Nothing here needs root, libpcap or a network namespace.
 */
import type { ProbeNetwork, Route } from "../../src/engine/network.ts";
import { formatAddress, parseAddress, type Family } from "../../src/packet/address.ts";
import {
  ICMP4_ECHO_REPLY,
  ICMP4_PORT_UNREACH,
  ICMP4_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_PORT_UNREACH,
  ICMP6_UNREACH,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LINK_RAW,
  PacketSpec,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  writePacket,
} from "../../src/packet/build.ts";
import { DLT_RAW, PARSE_OK, ParsedFrame, parseFrame, type IpFields } from "../../src/packet/parse.ts";

/** A frame the engine sent, decoded, with the virtual time it left. */
export interface SentFrame {
  readonly atMs: number;
  readonly bytes: Uint8Array;
  readonly ip: IpFields;
}

/** What comes back for one frame sent: frames (IP packets) after a delay. */
export interface Reply {
  readonly delayMs: number;
  readonly bytes: Uint8Array;
}

/**
 * Decides what a sent frame brings back. `departure` is when the capture sees the frame leave,
 * relative to its send (0; null: never seen, as when the capture ring dropped it).
 */
export type Responder = (sent: SentFrame, build: AnswerBuilder) => { replies: Reply[]; departure?: number | null };

export interface FakeNetworkOptions {
  responder: Responder;
  /** Destinations with no route: the engine must count their probes as send errors. */
  unroutable?: ReadonlySet<string>;
  /** Destinations whose sends fail (the call returns -1). */
  sendFails?: ReadonlySet<string>;
}

const SOURCE: Record<Family, string> = { 4: "198.18.0.1", 6: "fd00:18::1" };

interface Queued {
  atMs: number;
  bytes: Uint8Array;
}

export class FakeNetwork implements ProbeNetwork {
  readonly sent: SentFrame[] = [];
  readonly filters: string[] = [];
  frame = new Uint8Array(65600);
  caplen = 0;
  readonly datalink = DLT_RAW;
  tsSec = 0;
  tsNsec = 0;
  drops = 0;
  closed = false;

  #now = 1000;
  #queue: Queued[] = [];
  /** Virtual ms 0 is this many seconds after the epoch: timestamps look like a kernel's. */
  readonly #epochSec = Math.floor(Date.now() / 1000) - 10;
  readonly #build = new AnswerBuilder();

  constructor(private readonly opts: FakeNetworkOptions) {}

  refresh(): void {}

  route(family: Family, dst: string, src: string | null): Route {
    const bytes = new Uint8Array(16);
    bytes.set(parseAddress(src ?? SOURCE[family])!.bytes);
    const unroutable = this.opts.unroutable?.has(dst) ?? false;
    return {
      mode: unroutable ? "unroutable" : "fake",
      link: LINK_RAW,
      srcMac: new Uint8Array(6),
      dstMac: new Uint8Array(6),
      src: bytes,
      reason: unroutable ? `no route to ${dst}` : "",
    };
  }

  send(_route: Route, frame: Uint8Array, len: number): number {
    const bytes = frame.slice(0, len);
    const p = new ParsedFrame();
    if (parseFrame(bytes, len, DLT_RAW, p) !== PARSE_OK) throw new Error("the engine sent a frame its own decoder refuses");
    if (this.opts.sendFails?.has(formatAddress(p.outer.family, p.outer.dst))) return -1;
    const sent: SentFrame = { atMs: this.#now, bytes, ip: p.outer };
    this.sent.push(sent);
    const { replies, departure = 0 } = this.opts.responder(sent, this.#build);
    if (departure !== null) this.#enqueue(this.#now + departure, bytes);
    for (const r of replies) this.#enqueue(this.#now + r.delayMs, r.bytes);
    return len;
  }

  sendFailure(_route: Route, result: number, len: number): string {
    return `fake send returned ${result} of ${len} bytes`;
  }

  setFilter(filter: string): void {
    this.filters.push(filter);
  }

  next(): boolean {
    const q = this.#queue[0];
    if (!q || q.atMs > this.#now) return false;
    this.#queue.shift();
    this.frame.set(q.bytes);
    this.caplen = q.bytes.length;
    const ns = Math.round(q.atMs * 1e6);
    this.tsSec = this.#epochSec + Math.floor(ns / 1e9);
    this.tsNsec = ns % 1e9;
    return true;
  }

  captureDrops(): number {
    return this.drops;
  }

  wait(ms: number): void {
    const due = this.#queue[0]?.atMs ?? Infinity;
    this.#now = Math.max(this.#now, Math.min(this.#now + ms, due));
  }

  now(): number {
    return this.#now;
  }

  close(): void {
    this.closed = true;
  }

  /** Frames still queued (answers that arrive after the batch ended). */
  get pending(): number {
    return this.#queue.length;
  }

  /** The decoded frames sent matching `what` (for example TCP resets). */
  sentWhere(what: (ip: IpFields) => boolean): SentFrame[] {
    return this.sent.filter((s) => what(s.ip));
  }

  #enqueue(atMs: number, bytes: Uint8Array): void {
    const q = { atMs, bytes };
    // Insertion keeps the queue in time order, ties in the order they were queued.
    let i = this.#queue.length;
    while (i > 0 && this.#queue[i - 1]!.atMs > atMs) i--;
    this.#queue.splice(i, 0, q);
  }
}

/** Answers as a far host or router writes them, from the probe they answer. */
export class AnswerBuilder {
  readonly #spec = new PacketSpec();
  readonly #buf = new Uint8Array(65600);

  #begin(p: IpFields, from?: string): PacketSpec {
    const s = this.#spec;
    s.link = LINK_RAW;
    s.family = p.family;
    s.src.fill(0).set(from ? parseAddress(from)!.bytes : p.dst.subarray(0, p.family === 4 ? 4 : 16));
    s.dst.fill(0).set(p.src.subarray(0, p.family === 4 ? 4 : 16));
    s.tos = 0;
    s.dontFragment = true;
    s.ipId = 0;
    s.flowLabel = 0;
    s.hopLimit = 64;
    s.payloadLength = 0;
    s.payloadTag = -1;
    s.payloadHeadLength = 0;
    s.quote = null;
    s.quoteLength = 0;
    return s;
  }

  #out(): Uint8Array {
    return this.#buf.slice(0, writePacket(this.#buf, this.#spec));
  }

  /** A TCP answer to a SYN: flags SYN+ACK (open) or RST+ACK (closed), acknowledging `ackOffset` past seq (1, or 1 + data). */
  tcp(p: IpFields, flags: number, opts: { ackOffset?: number; srcPort?: number; dstPort?: number; ack?: number } = {}): Uint8Array {
    const s = this.#begin(p);
    s.protocol = IPPROTO_TCP;
    s.srcPort = opts.srcPort ?? p.dstPort;
    s.dstPort = opts.dstPort ?? p.srcPort;
    s.seq = 0x1234;
    s.ack = opts.ack ?? (p.seq + (opts.ackOffset ?? 1)) >>> 0;
    s.tcpFlags = flags;
    return this.#out();
  }

  synAck(p: IpFields): Uint8Array {
    return this.tcp(p, TCP_SYN | TCP_ACK);
  }

  rstAck(p: IpFields): Uint8Array {
    return this.tcp(p, TCP_RST | TCP_ACK);
  }

  echoReply(p: IpFields): Uint8Array {
    const s = this.#begin(p);
    s.protocol = IPPROTO_ICMP;
    s.icmpType = p.family === 4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY;
    s.icmpCode = 0;
    s.icmpId = p.icmpId;
    s.icmpSeq = p.icmpSeq;
    return this.#out();
  }

  /** A UDP datagram back from the probe's destination port to its source port, carrying `payload`. */
  udp(p: IpFields, payload: Uint8Array, opts: { srcPort?: number; dstPort?: number } = {}): Uint8Array {
    const s = this.#begin(p);
    s.protocol = IPPROTO_UDP;
    s.srcPort = opts.srcPort ?? p.dstPort;
    s.dstPort = opts.dstPort ?? p.srcPort;
    s.payloadLength = payload.length;
    s.payloadHead.set(payload.subarray(0, s.payloadHead.length));
    s.payloadHeadLength = Math.min(payload.length, s.payloadHead.length);
    return this.#out();
  }

  /** A destination unreachable quoting the probe (`probe` its bytes): port unreachable unless `code` says otherwise. */
  unreachable(p: IpFields, probe: Uint8Array, opts: { code?: number; from?: string } = {}): Uint8Array {
    const s = this.#begin(p, opts.from);
    s.protocol = IPPROTO_ICMP;
    const v4 = p.family === 4;
    s.icmpType = v4 ? ICMP4_UNREACH : ICMP6_UNREACH;
    s.icmpCode = opts.code ?? (v4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH);
    // RFC 792 quotes the header and 8 bytes; RFC 4443 as much as fits: both at least that.
    s.quote = probe;
    s.quoteLength = Math.min(probe.length, (v4 ? 20 : 40) + 8 + 4);
    return this.#out();
  }
}
