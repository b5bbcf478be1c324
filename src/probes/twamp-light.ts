/**
 * TWAMPlight: RFC 5357 unauthenticated TWAMP-Test without a control session (its Appendix I),
 * to a session-reflector on UDP port 862 (RFC 8545). The probe is a Sender packet (4.1.2):
 * sequence number, timestamp T1, error estimate, and zero padding so that the reflector's packet
 * (4.2.1, 41 bytes before its padding) has the probe's size. The reflector answers from the
 * probe's destination port to its source port, copying the sender's sequence number: that is
 * the identifier. What it adds, its receive (T2) and send (T3) timestamps and its own sequence
 * number, is recorded per probe: T3 - T2 is the reflector's hold, taken off the round trip, and
 * a stateful reflector's sequence numbers tell on which way a lost probe was lost.
 *
 * Every flow (source address and port: a reflector keeps a counter per 5-tuple) starts each
 * batch at a random sequence number, so a stateless reflector (it echoes the sender's number as
 * its own) is told apart from a stateful one, whose counter runs on its own.
 */
import { IPPROTO_UDP, UDP_HEADER } from "../packet/build.ts";
import { type IpFields, payloadLength, payloadU32 } from "../packet/parse.ts";
import { REPLY_REFLECTED, SLOT_ANSWERED, SLOT_LOST, SLOT_UNSENT } from "./replies.ts";
import type { ProbeType, SlotResults } from "./probe-type.ts";

/** Sender packet: sequence number (4), timestamp (8), error estimate (2), padding. */
const SENDER_HEADER = 14;
/** Reflector packet before its padding (4.2.1): a probe at least this long comes back as long. */
export const REFLECTOR_HEADER = 41;
// Offsets in the reflector's packet.
const R_SEQ = 0;
const R_TIMESTAMP = 4;
const R_RECEIVE = 16;
const R_SENDER_SEQ = 24;

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
export const NTP_UNIX_OFFSET = 2_208_988_800;
/**
 * Error estimate (4.1.2): S = 0 (the prober does not claim a synchronised clock: its round
 * trip comes from kernel timestamps, not from T1), Z = 0 (NTP format), scale 22 and multiplier
 * 1: 2^-10 s, a millisecond, the uncertainty of a user-space clock read.
 */
export const SENDER_ERROR_ESTIMATE = (22 << 8) | 1;

/** Values recorded per answered probe, after the reflector's hold (BatchResult.values). */
const V_REFLECTOR_SEQ = 1;

/** A reflector's packet, told from a sender's by its receive timestamp (a sender's padding is zeros there). */
function isReflected(o: IpFields): boolean {
  return o.protocol === IPPROTO_UDP && payloadLength(o) >= REFLECTOR_HEADER && (payloadU32(o, R_RECEIVE) !== 0 || payloadU32(o, R_RECEIVE + 4) !== 0);
}

/** The NTP timestamp at payload offset `b` less the one at `a`, in ns; NaN when either is unset (zero). */
function ntpDiffNs(o: IpFields, a: number, b: number): number {
  const as = payloadU32(o, a);
  const af = payloadU32(o, a + 4);
  const bs = payloadU32(o, b);
  const bf = payloadU32(o, b + 4);
  if ((as === 0 && af === 0) || (bs === 0 && bf === 0)) return NaN;
  return (bs - as) * 1e9 + ((bf - af) * 1e9) / 0x1_0000_0000;
}

/** 32 bits mixed from three (a random start per batch, target and flow). */
function mix(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ b;
  h = Math.imul(h ^ (h >>> 15), 0xc2b2ae35) ^ Math.imul(c + 1, 0x27d4eb2d);
  h = Math.imul(h ^ (h >>> 13), 0x85ebca6b);
  return (h ^ (h >>> 16)) >>> 0;
}

const nz = (v: number) => (Number.isNaN(v) ? 0 : v);

/**
 * Per-direction loss of one target's slots [from, to): for each flow, the losses between two
 * answers are split by the reflector's counter (it counts what reached it: a gap of n probes
 * with the counter advanced by m + 1 lost m on the way back and n - m on the way out). Losses
 * before a flow's first answer or after its last, across a counter that went backwards or
 * jumped too far (reordering, a restarted reflector), and every loss of a stateless reflector's
 * flow, have an unknown direction.
 */
function foldDirections(r: SlotResults, from: number, to: number, acc: Float64Array): void {
  if (to <= from) return;
  const w = r.valueWidth;
  // Flows (address and port) repeat in send order: the period is where the first one comes back.
  let period = to - from;
  for (let s = from + 1; s < to; s++) {
    if (r.srcIndex[s] === r.srcIndex[from] && r.srcPort[s] === r.srcPort[from]) {
      period = s - from;
      break;
    }
  }
  let forward = 0;
  let reverse = 0;
  let unknown = 0;
  let stateful = false;
  for (let f = from; f < from + period; f++) {
    let flowStateful = false;
    for (let s = f; s < to; s += period) {
      if (r.status[s] === SLOT_ANSWERED && r.values[s * w + V_REFLECTOR_SEQ] !== r.ident[s]) flowStateful = true;
    }
    stateful ||= flowStateful;
    let last = -1;
    let gap = 0;
    for (let s = f; s < to; s += period) {
      const st = r.status[s];
      if (st === SLOT_UNSENT) continue;
      if (st === SLOT_LOST) {
        gap++;
        continue;
      }
      const seq = r.values[s * w + V_REFLECTOR_SEQ]!;
      const reflectedLost = last < 0 || Number.isNaN(seq) ? -1 : ((seq - last) >>> 0) - 1;
      if (gap > 0) {
        if (!flowStateful || reflectedLost < 0 || reflectedLost > gap) {
          unknown += gap;
        } else {
          reverse += reflectedLost;
          forward += gap - reflectedLost;
        }
      }
      gap = 0;
      last = Number.isNaN(seq) ? -1 : seq;
    }
    unknown += gap;
  }
  if (stateful) {
    acc[0] = nz(acc[0]!) + forward;
    acc[1] = nz(acc[1]!) + reverse;
  }
  acc[2] = nz(acc[2]!) + unknown;
}

export const twampLight = {
  type: "TWAMPlight",
  name: "twamp",
  aliases: ["twamp-light"],
  title: "TWAMP-light",
  metrics: { prefix: "twamp", what: "TWAMP-light probing", matchAckFail: false, legacyCountNames: false },
  headerBytes: UDP_HEADER,
  port: { use: "default", value: 862 },
  rotatesPorts: true,
  stampsSendTime: true,
  // 27 bytes of padding after the 14 of the sender packet: the reflector's packet fits in it.
  minDataBytes: () => REFLECTOR_HEADER,

  assignIdent: (t, _k, _counter, flow) => (mix(flow.salt, t.targetId, flow.flow) + flow.round) >>> 0,
  altIdent: (ident) => ident,
  fill(p, t, ident, srcPort) {
    p.protocol = IPPROTO_UDP;
    p.srcPort = srcPort;
    p.dstPort = t.dstPort;
    // RFC 5357 4.1.2: TTL 255, so the reflector's copy of it shows the hops on the way out.
    p.hopLimit = 255;
    const h = p.payloadHead;
    const ntpSec = p.sendSec + NTP_UNIX_OFFSET;
    const frac = Math.floor((p.sendNsec * 0x1_0000_0000) / 1e9);
    h[0] = ident >>> 24;
    h[1] = (ident >>> 16) & 0xff;
    h[2] = (ident >>> 8) & 0xff;
    h[3] = ident & 0xff;
    h[4] = (ntpSec >>> 24) & 0xff;
    h[5] = (ntpSec >>> 16) & 0xff;
    h[6] = (ntpSec >>> 8) & 0xff;
    h[7] = ntpSec & 0xff;
    h[8] = frac >>> 24;
    h[9] = (frac >>> 16) & 0xff;
    h[10] = (frac >>> 8) & 0xff;
    h[11] = frac & 0xff;
    h[12] = SENDER_ERROR_ESTIMATE >>> 8;
    h[13] = SENDER_ERROR_ESTIMATE & 0xff;
    p.payloadHeadLength = SENDER_HEADER;
  },
  close: null,

  // Its probes leaving and the reflectors' packets coming back to the same ports.
  captureFilter: (c) => `(udp and (src portrange ${c.portLo}-${c.portHi} or dst portrange ${c.portLo}-${c.portHi}))`,

  departureIdent: (o) => (o.protocol === IPPROTO_UDP && !isReflected(o) ? payloadU32(o, 0) : -1),
  answerIdent(o, out) {
    if (!isReflected(o)) return -1;
    out.reply = REPLY_REFLECTED;
    return payloadU32(o, R_SENDER_SEQ);
  },
  answerPortsMatch: true,
  // A port unreachable says no reflector listens: the probe is lost, not answered.
  answeredByError: false,
  quotedIdent: () => -1,
  strayAnswers: false,
  answerValues: {
    count: 1,
    record(o, out, at) {
      // The engine writes the hold before the type's values: this is values[V_REFLECTOR_SEQ].
      out[at] = payloadU32(o, R_SEQ);
      return ntpDiffNs(o, R_RECEIVE, R_TIMESTAMP);
    },
  },
  seriesMetrics: {
    families: [
      {
        kind: "counter",
        name: "forward_loss_total",
        help: "number of packets lost on the way to the reflector using TWAMP-light probing (from a stateful reflector's sequence numbers).",
      },
      {
        kind: "counter",
        name: "reverse_loss_total",
        help: "number of packets lost on the way back from the reflector using TWAMP-light probing (from a stateful reflector's sequence numbers).",
      },
      {
        kind: "counter",
        name: "unknown_direction_loss_total",
        help: "number of lost packets whose direction no answer revealed (a flow's first or last, or a stateless reflector's) using TWAMP-light probing.",
      },
      {
        kind: "percentiles",
        name: "reflector_seconds",
        help: "percentile of the time the reflector held the packets (its send timestamp less its receive timestamp), in seconds, using TWAMP-light probing.",
        value: 0,
        scale: 1e-9,
      },
    ],
    fold: foldDirections,
  },
} as const satisfies ProbeType;
