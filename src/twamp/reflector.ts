/**
 * A TWAMP-Test session-reflector's packet (RFC 5357 4.2.1, unauthenticated mode), pure: what
 * `netprobify responder` sends back for a Sender packet, and the sequence counter it keeps per
 * sender 5-tuple (stateful reflection: its own count of the packets it reflected, from 0).
 * Sockets and clocks are the responder's (src/cli/responder.ts).
 */
import { put16, put32 } from "../packet/build.ts";

/** Sender packet (4.1.2): sequence number, timestamp, error estimate. */
export const SENDER_MIN = 14;
/** Reflector packet before its padding. */
export const REFLECTED_HEADER = 41;
/** Seconds from 1900 (NTP) to 1970 (Unix). */
export const NTP_UNIX_OFFSET = 2_208_988_800;

/** An NTP timestamp (RFC 5905: 32-bit seconds since 1900, 32-bit fraction). */
export interface NtpTime {
  sec: number;
  frac: number;
}

/** A CLOCK_REALTIME reading (seconds and nanoseconds since 1970) as an NTP timestamp, into `out` (no allocation). */
export function ntpFromUnix(sec: number, nsec: number, out: NtpTime): NtpTime {
  out.sec = (sec + NTP_UNIX_OFFSET) >>> 0;
  out.frac = Math.floor((nsec * 0x1_0000_0000) / 1e9) >>> 0;
  return out;
}

/** Writes the reflector's send timestamp (T3) into a packet writeReflected made. */
export function stampSent(out: Uint8Array, sent: NtpTime): void {
  put32(out, 4, sent.sec);
  put32(out, 8, sent.frac);
}

/**
 * The error estimate (4.1.2): S when the clock is synchronised to an external source, Z = 0
 * (NTP format), scale and multiplier for about 1 ms (2^-10 s): what an NTP-disciplined clock
 * is typically within (the timestamps themselves are the kernel's, to the nanosecond).
 */
export function errorEstimate(synchronised: boolean): number {
  return (synchronised ? 0x8000 : 0) | (22 << 8) | 1;
}

/**
 * Writes the reflector's packet for the Sender packet `rx[0..len)` into `out` and returns its
 * length: the sender's size (the padding truncated by 27 bytes, as 4.2.1 asks, so both ways
 * carry the same size), at least 41 bytes. -1 when `rx` is shorter than a Sender packet.
 */
export function writeReflected(
  rx: Uint8Array,
  len: number,
  out: Uint8Array,
  seq: number,
  received: NtpTime,
  sent: NtpTime | null,
  error: number,
  senderTtl: number,
): number {
  if (len < SENDER_MIN) return -1;
  const n = Math.max(len, REFLECTED_HEADER);
  out.fill(0, 0, n);
  put32(out, 0, seq >>> 0);
  // T3, when not given here, is stamped by stampSent just before the send.
  if (sent) stampSent(out, sent);
  put16(out, 12, error);
  // 14-15: MBZ
  put32(out, 16, received.sec);
  put32(out, 20, received.frac);
  // Sender Sequence Number, Timestamp and Error Estimate: the sender's 14 bytes as they came.
  for (let i = 0; i < SENDER_MIN; i++) out[24 + i] = rx[i]!;
  // 38-39: MBZ
  out[40] = senderTtl & 0xff;
  return n;
}

/**
 * Sequence counters per sender (address and port: the UDP socket's 5-tuple once the local side
 * is fixed), bounded: past `max` senders the one unheard of longest is forgotten (its counter
 * restarts, which a prober reads as an unknown direction, never as a wrong one).
 */
export class SenderCounters {
  readonly #next = new Map<string | number, number>();
  constructor(private readonly max = 65_536) {}

  /** The sequence number for the next packet of `sender`, advancing its counter. */
  take(sender: string | number): number {
    const n = this.#next.get(sender);
    if (n !== undefined) this.#next.delete(sender);
    else if (this.#next.size >= this.max) this.#next.delete(this.#next.keys().next().value!);
    // Re-inserted: the Map's order is then least recently heard first.
    this.#next.set(sender, ((n ?? 0) + 1) >>> 0);
    return n ?? 0;
  }

  get size(): number {
    return this.#next.size;
  }
}
