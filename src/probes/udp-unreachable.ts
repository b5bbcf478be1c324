/**
 * UDPunreachable: a datagram aimed at a closed port; the far host's ICMP port unreachable
 * answers it, quoting the datagram. The identifier travels in what every error quotes: the
 * IPv4 ID, or for IPv6 (whose header has no ID, and whose flow label must stay fixed per flow)
 * the first 4 bytes of the payload.
 */
import { IPPROTO_UDP, UDP_HEADER } from "../packet/build.ts";
import type { IpFields } from "../packet/parse.ts";
import type { ProbeType } from "./probe-type.ts";

function carriedIdent(q: IpFields): number {
  if (q.protocol !== IPPROTO_UDP) return -1;
  return q.family === 4 ? q.ipId : q.payloadTag;
}

export const udpUnreachable = {
  type: "UDPunreachable",
  name: "udp",
  aliases: [],
  title: "UDP",
  metrics: { prefix: "udp_unreachable", what: "udp unreachable probing", matchAckFail: false, legacyCountNames: true },
  headerBytes: UDP_HEADER,
  // 33434: the traceroute port, closed on hosts by convention.
  port: { use: "required", cliDefault: 33434, note: "a closed port" },
  rotatesPorts: true,
  stampsSendTime: false,
  minDataBytes: (family) => (family === 6 ? 4 : 0),

  assignIdent(t, _k, counter) {
    const n = counter.next;
    counter.next = (n + 1) >>> 0;
    return t.family === 4 ? n & 0xffff : n;
  },
  altIdent: (ident) => ident,
  fill(p, t, ident, srcPort) {
    p.protocol = IPPROTO_UDP;
    p.srcPort = srcPort;
    p.dstPort = t.dstPort;
    if (t.family === 4) p.ipId = ident;
    else p.payloadTag = ident;
  },
  close: null,

  // Its probes leaving; the answers are ICMP errors, captured by the engine for every type.
  captureFilter: (c) => `(udp and src portrange ${c.portLo}-${c.portHi})`,

  departureIdent: carriedIdent,
  answerIdent: () => -1,
  answerPortsMatch: true,
  answeredByError: true,
  quotedIdent: carriedIdent,
  strayAnswers: false,
  answerValues: null,
  seriesMetrics: null,
} as const satisfies ProbeType;
