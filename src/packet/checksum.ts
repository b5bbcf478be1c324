/**
 * RFC 1071 internet checksum, in two steps so pseudo-headers and bodies can be summed separately:
 * sum16() accumulates 16-bit big-endian words without folding, finish() folds and complements.
 */

/** Adds the bytes buf[off..off+len) to a running ones'-complement sum (not folded). */
export function sum16(buf: Uint8Array, off: number, len: number, acc = 0): number {
  let s = acc;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) s += buf[off + len - 1]! << 8;
  // Fold now and then so the sum stays a small integer whatever the length (a 64 KiB body
  // would otherwise approach 2^31).
  return (s & 0xffff) + (s >>> 16);
}

/** Folds a running sum and returns the checksum to store in the header. */
export function finish(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/**
 * Sum of the IPv4 or IPv6 pseudo-header that TCP, UDP and ICMPv6 checksums cover
 * (RFC 793 / RFC 8200 section 8.1).
 */
export function pseudoHeaderSum(
  family: 4 | 6,
  src: Uint8Array,
  dst: Uint8Array,
  protocol: number,
  l4Length: number,
): number {
  const n = family === 4 ? 4 : 16;
  let s = sum16(src, 0, n);
  s = sum16(dst, 0, n, s);
  return s + protocol + (l4Length & 0xffff) + (l4Length >>> 16);
}
