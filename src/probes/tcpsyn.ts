/**
 * TCPsyn: a SYN to an open (or closed) port; a SYN+ACK or a RST+ACK answers it, and a RST closes
 * the half-open connection so the far host keeps nothing. The identifier is the SYN's sequence
 * number, drawn from the engine's window, which the answer acknowledges.
 */
import { IPPROTO_TCP, TCP_ACK, TCP_HEADER, TCP_RST, TCP_SYN } from "../packet/build.ts";
import { REPLY_RST_ACK, REPLY_SYN_ACK } from "./replies.ts";
import type { ProbeType } from "./probe-type.ts";

export const tcpSyn = {
  type: "TCPsyn",
  name: "tcpsyn",
  aliases: ["tcp", "syn"],
  title: "TCP SYN",
  metrics: { prefix: "tcpsyn", what: "tcp syn stealth probing", matchAckFail: true, legacyCountNames: true },
  headerBytes: TCP_HEADER,
  port: { use: "required" },
  rotatesPorts: true,
  stampsSendTime: false,
  minDataBytes: () => 0,

  assignIdent(t, _k, counter) {
    // Advanced past the data: stacks acknowledge seq + 1 or seq + data + 1, and both must stay
    // unique in the engine's space.
    const ident = counter.next;
    counter.next = (ident + 1 + t.dataLength) >>> 0;
    return ident;
  },
  altIdent: (ident, t) => (ident + t.dataLength) >>> 0,
  fill(p, t, ident, srcPort) {
    p.protocol = IPPROTO_TCP;
    p.srcPort = srcPort;
    p.dstPort = t.dstPort;
    p.seq = ident;
    p.ack = 0;
    p.tcpFlags = TCP_SYN;
  },
  close: {
    fill(p, t, ident, srcPort) {
      p.protocol = IPPROTO_TCP;
      p.srcPort = srcPort;
      p.dstPort = t.dstPort;
      p.seq = (ident + 1 + t.dataLength) >>> 0;
      p.ack = 0;
      p.tcpFlags = TCP_RST;
      p.payloadLength = 0;
    },
    closesAfter: (reply) => reply === REPLY_SYN_ACK,
  },

  captureFilter(c) {
    // Only this engine's SYNs (sequence number in its window) and the answers acknowledging
    // them: Workers sharing a port range then do not each copy and parse all the others'
    // traffic. libpcap's tcp[] reaches IPv4 only; for IPv6 the offsets assume no extension
    // header, as the prober's own packets have none.
    const src = `src portrange ${c.portLo}-${c.portHi}`;
    const dst = `dst portrange ${c.portLo}-${c.portHi}`;
    const m = c.windowMask;
    const w = c.window;
    const parts: string[] = [];
    if (c.v4) parts.push(`(ip and tcp and ((${src} and (tcp[4:4] & ${m}) = ${w}) or (${dst} and ((tcp[8:4] - 1) & ${m}) = ${w})))`);
    if (c.v6) parts.push(`(ip6 and ip6[6] = 6 and ((${src} and (ip6[44:4] & ${m}) = ${w}) or (${dst} and ((ip6[48:4] - 1) & ${m}) = ${w})))`);
    return parts.join(" or ");
  },

  departureIdent: (o) => (o.protocol === IPPROTO_TCP && o.tcpFlags === TCP_SYN ? o.seq : -1),
  answerIdent(o, out) {
    if (o.protocol !== IPPROTO_TCP) return -1;
    const f = o.tcpFlags;
    if ((f & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) out.reply = REPLY_SYN_ACK;
    else if ((f & (TCP_RST | TCP_ACK)) === (TCP_RST | TCP_ACK)) out.reply = REPLY_RST_ACK;
    else return -1;
    return (o.ack - 1) >>> 0;
  },
  answerPortsMatch: true,
  answeredByError: true,
  // An error is sure to quote the ports and the sequence number only (8 bytes of TCP).
  quotedIdent: (q) => (q.protocol === IPPROTO_TCP ? q.seq : -1),
  strayAnswers: true,
  answerValues: null,
  seriesMetrics: null,
} as const satisfies ProbeType;
