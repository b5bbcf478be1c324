/**
 * Frame writers. Every function writes into a caller-owned buffer and returns the length: the
 * engine reuses one buffer for every probe, so nothing is allocated per packet. Lengths and
 * checksums are always computed; layouts follow RFC 791, 8200, 793, 768, 792 and 4443.
 */
import { finish, pseudoHeaderSum, sum16 } from "./checksum.ts";
import type { Family } from "./address.ts";

export const LINK_ETHERNET = 0;
/** No link header: tun, wireguard, raw IP sockets. */
export const LINK_RAW = 1;
export type LinkKind = typeof LINK_ETHERNET | typeof LINK_RAW;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_ARP = 0x0806;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export const ICMP4_ECHO_REPLY = 0;
export const ICMP4_UNREACH = 3;
export const ICMP4_ECHO_REQUEST = 8;
export const ICMP4_TIME_EXCEEDED = 11;
export const ICMP6_UNREACH = 1;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;
export const ICMP6_NEIGHBOUR_SOLICIT = 135;
export const ICMP6_NEIGHBOUR_ADVERT = 136;
/** Port unreachable: code 3 of ICMPv4 type 3, code 4 of ICMPv6 type 1. */
export const ICMP4_PORT_UNREACH = 3;
export const ICMP6_PORT_UNREACH = 4;

/** L4 header sizes: the smallest ip_payload_size of each probe type. */
export const TCP_HEADER = 20;
export const UDP_HEADER = 8;
export const ICMP_HEADER = 8;

/** Room for a probe's own payload header (PacketSpec.payloadHead). */
export const PAYLOAD_HEAD_BYTES = 128;

/**
 * Everything one packet needs. One instance is reused for every packet of a run: the writer
 * reads it, never keeps it.
 */
export class PacketSpec {
  link: LinkKind = LINK_ETHERNET;
  readonly srcMac = new Uint8Array(6);
  readonly dstMac = new Uint8Array(6);
  family: Family = 4;
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  /** DSCP << 2 (the ECN bits stay 0). */
  tos = 0;
  dontFragment = true;
  ipId = 0;
  /** IPv6 flow label, 20 bits. */
  flowLabel = 0;
  hopLimit = 64;
  /** IPPROTO_TCP, IPPROTO_UDP, or IPPROTO_ICMP (ICMPv6 when family is 6). */
  protocol = IPPROTO_TCP;
  srcPort = 0;
  dstPort = 0;
  seq = 0;
  ack = 0;
  tcpFlags = TCP_SYN;
  window = 64240;
  icmpType = ICMP4_ECHO_REQUEST;
  icmpCode = 0;
  icmpId = 0;
  icmpSeq = 0;
  /** Bytes after the L4 header. */
  payloadLength = 0;
  /** When >= 0, written big-endian in the first 4 payload bytes (needs payloadLength >= 4). */
  payloadTag = -1;
  /**
   * The first `payloadHeadLength` bytes of the payload (the rest is zeros), for a type whose
   * probe carries a header of its own (a TWAMP-Test sender packet); written before the checksum.
   * The type fills it in place: no buffer per packet.
   */
  readonly payloadHead = new Uint8Array(PAYLOAD_HEAD_BYTES);
  payloadHeadLength = 0;
  /** Wall-clock time of the send (Unix seconds and nanoseconds), set by the sender for types that stamp their probes. */
  sendSec = 0;
  sendNsec = 0;
  /** ICMP errors: the offending packet, quoted after the 8-byte ICMP header. */
  quote: Uint8Array | null = null;
  quoteLength = 0;
}

export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

function l4HeaderLength(s: PacketSpec): number {
  if (s.protocol === IPPROTO_TCP) return TCP_HEADER;
  if (s.protocol === IPPROTO_UDP) return UDP_HEADER;
  return ICMP_HEADER;
}

/** Total frame length writePacket() will produce for this spec. */
export function frameLength(s: PacketSpec): number {
  const link = s.link === LINK_ETHERNET ? 14 : 0;
  const ip = s.family === 4 ? 20 : 40;
  const body = s.quote !== null ? s.quoteLength : s.payloadLength;
  return link + ip + l4HeaderLength(s) + body;
}

/**
 * Writes the whole frame (link header if any, IP header, L4 header, payload) at buf[0] and returns
 * its length. The payload is zeros except for the optional tag or quote.
 */
export function writePacket(buf: Uint8Array, s: PacketSpec): number {
  let o = 0;
  if (s.link === LINK_ETHERNET) {
    buf.set(s.dstMac, 0);
    buf.set(s.srcMac, 6);
    put16(buf, 12, s.family === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
    o = 14;
  }
  const l4Len = l4HeaderLength(s) + (s.quote !== null ? s.quoteLength : s.payloadLength);
  const wireProto = s.protocol === IPPROTO_ICMP && s.family === 6 ? IPPROTO_ICMPV6 : s.protocol;
  const ipLen = s.family === 4 ? 20 : 40;
  if (s.family === 4) {
    buf[o] = 0x45;
    buf[o + 1] = s.tos;
    put16(buf, o + 2, 20 + l4Len);
    put16(buf, o + 4, s.ipId);
    put16(buf, o + 6, s.dontFragment ? 0x4000 : 0);
    buf[o + 8] = s.hopLimit;
    buf[o + 9] = wireProto;
    put16(buf, o + 10, 0);
    // Byte copies rather than set(subarray()): a subarray is an object, and this runs per packet.
    for (let i = 0; i < 4; i++) {
      buf[o + 12 + i] = s.src[i]!;
      buf[o + 16 + i] = s.dst[i]!;
    }
    put16(buf, o + 10, finish(sum16(buf, o, 20)));
  } else {
    put32(buf, o, (6 << 28) | (s.tos << 20) | (s.flowLabel & 0xfffff));
    put16(buf, o + 4, l4Len);
    buf[o + 6] = wireProto;
    buf[o + 7] = s.hopLimit;
    buf.set(s.src, o + 8);
    buf.set(s.dst, o + 24);
  }
  const l4 = o + ipLen;
  const bodyOff = l4 + l4HeaderLength(s);
  if (s.quote !== null) {
    buf.set(s.quote.subarray(0, s.quoteLength), bodyOff);
  } else {
    buf.fill(0, bodyOff, bodyOff + s.payloadLength);
    if (s.payloadTag >= 0 && s.payloadLength >= 4) put32(buf, bodyOff, s.payloadTag);
    const head = Math.min(s.payloadHeadLength, s.payloadLength);
    for (let i = 0; i < head; i++) buf[bodyOff + i] = s.payloadHead[i]!;
  }
  let checksumAt: number;
  let sum: number;
  if (s.protocol === IPPROTO_TCP) {
    put16(buf, l4, s.srcPort);
    put16(buf, l4 + 2, s.dstPort);
    put32(buf, l4 + 4, s.seq);
    put32(buf, l4 + 8, s.ack);
    buf[l4 + 12] = 5 << 4;
    buf[l4 + 13] = s.tcpFlags;
    put16(buf, l4 + 14, s.window);
    put32(buf, l4 + 16, 0); // checksum and urgent pointer
    checksumAt = l4 + 16;
    sum = pseudoHeaderSum(s.family, s.src, s.dst, IPPROTO_TCP, l4Len);
  } else if (s.protocol === IPPROTO_UDP) {
    put16(buf, l4, s.srcPort);
    put16(buf, l4 + 2, s.dstPort);
    put16(buf, l4 + 4, l4Len);
    put16(buf, l4 + 6, 0);
    checksumAt = l4 + 6;
    sum = pseudoHeaderSum(s.family, s.src, s.dst, IPPROTO_UDP, l4Len);
  } else {
    buf[l4] = s.icmpType;
    buf[l4 + 1] = s.icmpCode;
    put16(buf, l4 + 2, 0);
    // Echo: identifier and sequence; errors: unused (zero), or the MTU for "fragmentation needed".
    put16(buf, l4 + 4, s.quote !== null ? 0 : s.icmpId);
    put16(buf, l4 + 6, s.quote !== null ? 0 : s.icmpSeq);
    checksumAt = l4 + 2;
    // ICMPv4 covers only the message; ICMPv6 adds the pseudo-header.
    sum = s.family === 6 ? pseudoHeaderSum(6, s.src, s.dst, IPPROTO_ICMPV6, l4Len) : 0;
  }
  let c = finish(sum16(buf, l4, l4Len, sum));
  // A computed UDP checksum of zero is sent as all ones (zero means "no checksum").
  if (c === 0 && s.protocol === IPPROTO_UDP) c = 0xffff;
  put16(buf, checksumAt, c);
  return bodyOff + (s.quote !== null ? s.quoteLength : s.payloadLength);
}

/** ARP request (RFC 826) for `target`, broadcast on Ethernet. Returns the frame length (42). */
export function writeArpRequest(buf: Uint8Array, srcMac: Uint8Array, src: Uint8Array, target: Uint8Array): number {
  buf.fill(0xff, 0, 6);
  buf.set(srcMac.subarray(0, 6), 6);
  put16(buf, 12, ETHERTYPE_ARP);
  put16(buf, 14, 1); // hardware: Ethernet
  put16(buf, 16, ETHERTYPE_IPV4);
  buf[18] = 6;
  buf[19] = 4;
  put16(buf, 20, 1); // request
  buf.set(srcMac.subarray(0, 6), 22);
  buf.set(src.subarray(0, 4), 28);
  buf.fill(0, 32, 38);
  buf.set(target.subarray(0, 4), 38);
  return 42;
}

/**
 * IPv6 neighbour solicitation (RFC 4861 section 4.3) for `target`, sent to its solicited-node
 * multicast address with our link-layer address option. Returns the frame length (86).
 */
export function writeNeighbourSolicitation(
  buf: Uint8Array,
  srcMac: Uint8Array,
  src: Uint8Array,
  target: Uint8Array,
): number {
  const dst = new Uint8Array(16);
  dst.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
  dst.set(target.subarray(13, 16), 13);
  buf.set([0x33, 0x33, 0xff, target[13]!, target[14]!, target[15]!], 0);
  buf.set(srcMac.subarray(0, 6), 6);
  put16(buf, 12, ETHERTYPE_IPV6);
  const ip = 14;
  put32(buf, ip, 6 << 28);
  put16(buf, ip + 4, 32);
  buf[ip + 6] = IPPROTO_ICMPV6;
  buf[ip + 7] = 255; // RFC 4861: neighbour discovery is only accepted with hop limit 255
  buf.set(src.subarray(0, 16), ip + 8);
  buf.set(dst, ip + 24);
  const l4 = ip + 40;
  buf[l4] = ICMP6_NEIGHBOUR_SOLICIT;
  buf[l4 + 1] = 0;
  put16(buf, l4 + 2, 0);
  put32(buf, l4 + 4, 0);
  buf.set(target.subarray(0, 16), l4 + 8);
  buf[l4 + 24] = 1; // option: source link-layer address
  buf[l4 + 25] = 1; // length in units of 8 bytes
  buf.set(srcMac.subarray(0, 6), l4 + 26);
  put16(buf, l4 + 2, finish(sum16(buf, l4, 32, pseudoHeaderSum(6, src, dst, IPPROTO_ICMPV6, 32))));
  return l4 + 32;
}
