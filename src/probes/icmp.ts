/**
 * ICMPping: an echo request; the echo reply answers it. The identifier is the echo's identifier
 * (one per target) and sequence number (one per packet). It has no ports, so no ECMP paths of
 * its own, and an ICMP error quoting it is not an answer: the request met no answering host.
 */
import { ICMP4_ECHO_REPLY, ICMP4_ECHO_REQUEST, ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, ICMP_HEADER, IPPROTO_ICMP, IPPROTO_ICMPV6 } from "../packet/build.ts";
import type { IpFields } from "../packet/parse.ts";
import { REPLY_ECHO } from "./replies.ts";
import type { ProbeType } from "./probe-type.ts";

/** The family's own ICMP: an ICMPv4 message in IPv6 (or the reverse) is nobody's echo. */
function isIcmpType(o: IpFields, v4Type: number, v6Type: number): boolean {
  return o.family === 4 ? o.protocol === IPPROTO_ICMP && o.icmpType === v4Type : o.protocol === IPPROTO_ICMPV6 && o.icmpType === v6Type;
}

export const icmpPing = {
  type: "ICMPping",
  name: "icmp",
  aliases: ["ping", "echo"],
  title: "ICMP echo",
  metrics: { prefix: "icmp", what: "ICMP ping probing", matchAckFail: false, legacyCountNames: true },
  headerBytes: ICMP_HEADER,
  port: { use: "none" },
  rotatesPorts: false,
  stampsSendTime: false,
  minDataBytes: () => 0,

  assignIdent: (t, k) => ((t.targetId << 16) | (k & 0xffff)) >>> 0,
  altIdent: (ident) => ident,
  fill(p, t, ident) {
    p.protocol = IPPROTO_ICMP;
    p.icmpType = t.family === 4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST;
    p.icmpCode = 0;
    p.icmpId = ident >>> 16;
    p.icmpSeq = ident & 0xffff;
    p.srcPort = 0;
    p.dstPort = 0;
  },
  close: null,

  captureFilter(c) {
    const parts: string[] = [];
    if (c.v4) parts.push(`(icmp and (icmp[0] == ${ICMP4_ECHO_REQUEST} or icmp[0] == ${ICMP4_ECHO_REPLY}))`);
    if (c.v6) parts.push(`(icmp6 and (ip6[40] == ${ICMP6_ECHO_REQUEST} or ip6[40] == ${ICMP6_ECHO_REPLY}))`);
    return parts.join(" or ");
  },

  departureIdent: (o) => (isIcmpType(o, ICMP4_ECHO_REQUEST, ICMP6_ECHO_REQUEST) ? ((o.icmpId << 16) | o.icmpSeq) >>> 0 : -1),
  answerIdent(o, out) {
    if (!isIcmpType(o, ICMP4_ECHO_REPLY, ICMP6_ECHO_REPLY)) return -1;
    out.reply = REPLY_ECHO;
    return ((o.icmpId << 16) | o.icmpSeq) >>> 0;
  },
  answerPortsMatch: false,
  answeredByError: false,
  quotedIdent: () => -1,
  strayAnswers: false,
  answerValues: null,
  seriesMetrics: null,
} as const satisfies ProbeType;
