/**
 * Frame decoder. Fills a caller-owned ParsedFrame (no allocation per frame) and returns a status
 * instead of throwing: captured frames can be truncated or malformed, and that is counted, not
 * fatal. Checksums are not verified: on veth the kernel hands over replies with partial
 * checksums that are only completed by hardware that does not exist there.
 */
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ICMP4_TIME_EXCEEDED,
  ICMP4_UNREACH,
  ICMP6_TIME_EXCEEDED,
  ICMP6_UNREACH,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from "./build.ts";
import type { Family } from "./address.ts";

/** libpcap link types the decoder understands. */
export const DLT_EN10MB = 1;
export const DLT_RAW = 12;
export const DLT_LINUX_SLL = 113;
export const DLT_LINUX_SLL2 = 276;
/** LINKTYPE_RAW as written in pcap files (DLT_RAW's on-disk number). */
export const LINKTYPE_RAW = 101;

export const PARSE_OK = 0;
export const PARSE_TRUNCATED = 1;
/** Not IPv4/IPv6/ARP, or a protocol the prober never sends or answers. */
export const PARSE_IGNORED = 2;
export const PARSE_MALFORMED = 3;
export type ParseStatus = typeof PARSE_OK | typeof PARSE_TRUNCATED | typeof PARSE_IGNORED | typeof PARSE_MALFORMED;

/** Linux packet types (sll_pkttype): who the frame was for. */
export const PACKET_HOST = 0;
export const PACKET_OUTGOING = 4;

/** One IP packet's header fields: used for the outer packet and for the one an ICMP error quotes. */
export class IpFields {
  family: Family = 4;
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  tos = 0;
  ttl = 0;
  ipId = 0;
  flowLabel = 0;
  /** IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP or IPPROTO_ICMPV6. */
  protocol = 0;
  srcPort = 0;
  dstPort = 0;
  tcpFlags = 0;
  seq = 0;
  ack = 0;
  icmpType = 0;
  icmpCode = 0;
  icmpId = 0;
  icmpSeq = 0;
  /** First 4 payload bytes after the L4 header (big-endian), or -1 when fewer are present. */
  payloadTag = -1;
  /** Offset of the L4 header in the frame, and of the L4 payload. */
  l4Offset = 0;
  payloadOffset = 0;
  /** End of this IP packet in the frame: link-layer padding or trailers lie beyond it. */
  end = 0;
  /** The frame these fields were decoded from (the caller's buffer, not a copy): payloadU32() reads it. */
  bytes: Uint8Array = EMPTY;
}

const EMPTY = new Uint8Array(0);

/**
 * The 4 payload bytes at `off` after the L4 header (big-endian), or -1 when the packet ends
 * before them: a type whose identifier sits deeper in the payload (a TWAMP reflector's copy of
 * the sender's sequence number) reads it here, per frame, without a copy.
 */
export function payloadU32(f: IpFields, off: number): number {
  const at = f.payloadOffset + off;
  return off < 0 || at + 4 > f.end ? -1 : u32(f.bytes, at);
}

/** Payload bytes after the L4 header. */
export function payloadLength(f: IpFields): number {
  return Math.max(0, f.end - f.payloadOffset);
}

export class ParsedFrame {
  /** sll_pkttype for cooked captures ("any" device), -1 when the link header has none. */
  packetType = -1;
  etherType = 0;
  readonly outer = new IpFields();
  /** Valid when hasQuote: the packet quoted by an ICMP or ICMPv6 error. */
  readonly inner = new IpFields();
  hasQuote = false;
  /** ARP: operation, sender hardware and protocol address (offsets into the frame). */
  arpOp = 0;
  arpSenderMacOffset = 0;
  arpSenderIp = new Uint8Array(4);
  /** Neighbour advertisement: the target address and its link-layer address option, if any. */
  readonly ndTarget = new Uint8Array(16);
  ndMacOffset = -1;
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/** dst[0..n) = src[from..from+n): set(subarray()) would allocate a view per call, per packet. */
function copyBytes(dst: Uint8Array, src: Uint8Array, from: number, n: number): void {
  for (let i = 0; i < n; i++) dst[i] = src[from + i]!;
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/**
 * Decodes the IP header at off and the L4 header after it into f. `quoted` relaxes the length
 * checks: an ICMP error quotes at least the IP header and 8 bytes of the offending packet
 * (RFC 792), often with a total length larger than what follows.
 */
function parseIp(b: Uint8Array, off: number, end: number, f: IpFields, quoted: boolean): ParseStatus {
  if (end - off < 1) return PARSE_TRUNCATED;
  const version = b[off]! >> 4;
  let l4: number;
  let l4End = end;
  if (version === 4) {
    if (end - off < 20) return PARSE_TRUNCATED;
    const ihl = (b[off]! & 0x0f) * 4;
    if (ihl < 20) return PARSE_MALFORMED;
    if (end - off < ihl) return PARSE_TRUNCATED;
    f.family = 4;
    f.tos = b[off + 1]!;
    const total = u16(b, off + 2);
    f.ipId = u16(b, off + 4);
    f.ttl = b[off + 8]!;
    f.protocol = b[off + 9]!;
    f.flowLabel = 0;
    copyBytes(f.src, b, off + 12, 4);
    copyBytes(f.dst, b, off + 16, 4);
    if (total < ihl) return PARSE_MALFORMED;
    if (!quoted && off + total < end) l4End = off + total; // Ethernet padding
    // A non-first fragment carries no L4 header.
    if ((u16(b, off + 6) & 0x1fff) !== 0) return PARSE_IGNORED;
    l4 = off + ihl;
  } else if (version === 6) {
    if (end - off < 40) return PARSE_TRUNCATED;
    f.family = 6;
    const w = u32(b, off);
    f.tos = (w >>> 20) & 0xff;
    f.flowLabel = w & 0xfffff;
    f.ipId = 0;
    const plen = u16(b, off + 4);
    f.protocol = b[off + 6]!;
    f.ttl = b[off + 7]!;
    copyBytes(f.src, b, off + 8, 16);
    copyBytes(f.dst, b, off + 24, 16);
    if (!quoted && off + 40 + plen < end) l4End = off + 40 + plen;
    l4 = off + 40;
  } else {
    return PARSE_MALFORMED;
  }
  f.l4Offset = l4;
  f.end = l4End;
  f.bytes = b;
  f.srcPort = f.dstPort = f.tcpFlags = f.seq = f.ack = 0;
  f.icmpType = f.icmpCode = f.icmpId = f.icmpSeq = 0;
  f.payloadTag = -1;
  const avail = l4End - l4;
  if (f.protocol === IPPROTO_TCP) {
    // A quote may hold only the first 8 bytes of TCP (ports and sequence number).
    if (avail < (quoted ? 8 : 20)) return PARSE_TRUNCATED;
    f.srcPort = u16(b, l4);
    f.dstPort = u16(b, l4 + 2);
    f.seq = u32(b, l4 + 4);
    if (avail >= 14) {
      f.ack = u32(b, l4 + 8);
      f.tcpFlags = b[l4 + 13]!;
    }
    const doff = avail >= 13 ? (b[l4 + 12]! >> 4) * 4 : 20;
    if (doff < 20 && !quoted) return PARSE_MALFORMED;
    f.payloadOffset = l4 + doff;
  } else if (f.protocol === IPPROTO_UDP) {
    if (avail < 8) return PARSE_TRUNCATED;
    f.srcPort = u16(b, l4);
    f.dstPort = u16(b, l4 + 2);
    f.payloadOffset = l4 + 8;
  } else if (f.protocol === IPPROTO_ICMP || f.protocol === IPPROTO_ICMPV6) {
    if (avail < 8) return PARSE_TRUNCATED;
    f.icmpType = b[l4]!;
    f.icmpCode = b[l4 + 1]!;
    f.icmpId = u16(b, l4 + 4);
    f.icmpSeq = u16(b, l4 + 6);
    f.payloadOffset = l4 + 8;
  } else {
    return PARSE_IGNORED;
  }
  if (l4End - f.payloadOffset >= 4) f.payloadTag = u32(b, f.payloadOffset);
  return PARSE_OK;
}

function isIcmpError(f: IpFields): boolean {
  if (f.protocol === IPPROTO_ICMP) return f.icmpType === ICMP4_UNREACH || f.icmpType === ICMP4_TIME_EXCEEDED;
  if (f.protocol === IPPROTO_ICMPV6) return f.icmpType === ICMP6_UNREACH || f.icmpType === ICMP6_TIME_EXCEEDED;
  return false;
}

/**
 * Decodes frame[0..len) captured with the given libpcap link type into out.
 * Returns PARSE_OK when out.outer (and out.inner when out.hasQuote) are valid.
 */
export function parseFrame(frame: Uint8Array, len: number, linkType: number, out: ParsedFrame): ParseStatus {
  let off: number;
  let etherType: number;
  out.packetType = -1;
  out.hasQuote = false;
  if (linkType === DLT_LINUX_SLL) {
    if (len < 16) return PARSE_TRUNCATED;
    out.packetType = u16(frame, 0);
    etherType = u16(frame, 14);
    off = 16;
  } else if (linkType === DLT_LINUX_SLL2) {
    if (len < 20) return PARSE_TRUNCATED;
    etherType = u16(frame, 0);
    out.packetType = frame[10]!;
    off = 20;
  } else if (linkType === DLT_EN10MB) {
    if (len < 14) return PARSE_TRUNCATED;
    etherType = u16(frame, 12);
    off = 14;
    if (etherType === 0x8100 && len >= 18) {
      etherType = u16(frame, 16);
      off = 18;
    }
  } else if (linkType === DLT_RAW || linkType === LINKTYPE_RAW) {
    if (len < 1) return PARSE_TRUNCATED;
    etherType = frame[0]! >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
    off = 0;
  } else {
    return PARSE_IGNORED;
  }
  out.etherType = etherType;
  if (etherType === ETHERTYPE_ARP) return parseArp(frame, off, len, out);
  if (etherType !== ETHERTYPE_IPV4 && etherType !== ETHERTYPE_IPV6) return PARSE_IGNORED;
  // The kernel drops an IP version that contradicts the link header; so does the decoder.
  if (off < len && frame[off]! >> 4 !== (etherType === ETHERTYPE_IPV4 ? 4 : 6)) return PARSE_MALFORMED;
  const st = parseIp(frame, off, len, out.outer, false);
  if (st !== PARSE_OK) return st;
  const o = out.outer;
  if (isIcmpError(o)) {
    // ICMPv4 errors quote the IP header and at least 8 bytes; ICMPv6 as much as fits in 1280.
    const q = parseIp(frame, o.l4Offset + 8, o.end, out.inner, true);
    out.hasQuote = q === PARSE_OK;
  } else if (o.protocol === IPPROTO_ICMPV6 && o.icmpType === 136) {
    parseNeighbourAdvert(frame, o.l4Offset, len, out);
  }
  return PARSE_OK;
}

function parseArp(b: Uint8Array, off: number, len: number, out: ParsedFrame): ParseStatus {
  if (len - off < 28) return PARSE_TRUNCATED;
  if (u16(b, off) !== 1 || u16(b, off + 2) !== ETHERTYPE_IPV4 || b[off + 4] !== 6 || b[off + 5] !== 4) {
    return PARSE_IGNORED;
  }
  out.arpOp = u16(b, off + 6);
  out.arpSenderMacOffset = off + 8;
  out.arpSenderIp.set(b.subarray(off + 14, off + 18));
  return PARSE_OK;
}

function parseNeighbourAdvert(b: Uint8Array, l4: number, len: number, out: ParsedFrame): void {
  out.ndMacOffset = -1;
  if (len - l4 < 24) return;
  out.ndTarget.set(b.subarray(l4 + 8, l4 + 24));
  // Options follow in type-length-value form, length in units of 8 bytes.
  for (let o = l4 + 24; o + 8 <= len; ) {
    const type = b[o]!;
    const optLen = b[o + 1]! * 8;
    if (optLen === 0) return;
    if (type === 2 && optLen >= 8) {
      out.ndMacOffset = o + 2;
      return;
    }
    o += optLen;
  }
}
