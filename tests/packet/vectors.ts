/**
 * Helpers shared by the codec tests: the kernel-recorded fixtures, and a checksum written here
 * from RFC 1071 on purpose, independent of src/packet/checksum.ts, so that the writer's checksums
 * are judged by code that does not share its mistakes.
 */
import { join } from "node:path";
import { readPcapFile } from "../support/pcap-file.ts";

export const FIXTURE_DIR = join(import.meta.dir, "..", "fixtures", "pcap");

export interface Fixture {
  name: string;
  linktype: number;
  frames: Uint8Array[];
}

/** A pcap recorded by scripts/record-packet-fixtures.sh. */
export function loadFixture(name: string): Fixture {
  const f = readPcapFile(join(FIXTURE_DIR, name));
  return { name, linktype: f.linktype, frames: f.records.map((r) => r.data) };
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function fromHex(s: string): Uint8Array {
  const clean = s.replace(/[\s:]/g, "");
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => parseInt(b, 16));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Ones'-complement sum of the bytes taken as big-endian 16-bit words, the last odd byte padded
 * with a zero on the right, with the end-around carry applied after every word (RFC 1071 §1).
 * Not complemented.
 */
export function onesSum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    const word = bytes[i]! * 256 + (i + 1 < bytes.length ? bytes[i + 1]! : 0);
    sum += word;
    if (sum > 0xffff) sum = sum - 0x10000 + 1;
  }
  return sum;
}

/** The RFC 1071 internet checksum of the bytes: the complement of their ones'-complement sum. */
export function rfc1071(bytes: Uint8Array): number {
  return 0xffff - onesSum(bytes);
}

/** The pseudo-header TCP, UDP and ICMPv6 checksums cover, as bytes (RFC 793 §3.1, RFC 8200 §8.1). */
export function pseudoHeader(family: 4 | 6, src: Uint8Array, dst: Uint8Array, protocol: number, length: number): Uint8Array {
  if (family === 4) {
    return concat(src.subarray(0, 4), dst.subarray(0, 4), Uint8Array.of(0, protocol, length >> 8, length & 0xff));
  }
  return concat(
    src.subarray(0, 16),
    dst.subarray(0, 16),
    Uint8Array.of((length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff, 0, 0, 0, protocol),
  );
}

export interface L4Checksum {
  /** Offset of the checksum field in the frame. */
  at: number;
  /** What the frame carries there. */
  stored: number;
  /** What RFC 1071 says belongs there (UDP: 0 sent as 0xffff). */
  correct: number;
  /**
   * What a sender that leaves the checksum to the NIC (CHECKSUM_PARTIAL) stores: the folded,
   * uncomplemented pseudo-header sum. -1 for ICMPv4, which has no pseudo-header.
   */
  partial: number;
}

/**
 * Works out, from the raw bytes only (no parse.ts), where the L4 checksum of the IP packet at
 * ipOff lies and what it should be. The packet's extent is taken from its IP length field.
 */
export function l4Checksum(frame: Uint8Array, ipOff: number): L4Checksum {
  const version = frame[ipOff]! >> 4;
  let family: 4 | 6;
  let protocol: number;
  let l4: number;
  let end: number;
  let src: Uint8Array;
  let dst: Uint8Array;
  if (version === 4) {
    family = 4;
    const ihl = (frame[ipOff]! & 15) * 4;
    protocol = frame[ipOff + 9]!;
    l4 = ipOff + ihl;
    end = ipOff + frame[ipOff + 2]! * 256 + frame[ipOff + 3]!;
    src = frame.slice(ipOff + 12, ipOff + 16);
    dst = frame.slice(ipOff + 16, ipOff + 20);
  } else if (version === 6) {
    family = 6;
    protocol = frame[ipOff + 6]!;
    l4 = ipOff + 40;
    end = l4 + frame[ipOff + 4]! * 256 + frame[ipOff + 5]!;
    src = frame.slice(ipOff + 8, ipOff + 24);
    dst = frame.slice(ipOff + 24, ipOff + 40);
  } else {
    throw new Error(`not an IP packet at offset ${ipOff}`);
  }
  if (end > frame.length) throw new Error(`IP packet at ${ipOff} claims to end at ${end}, frame has ${frame.length}`);
  const at = protocol === 6 ? l4 + 16 : protocol === 17 ? l4 + 6 : protocol === 1 || protocol === 58 ? l4 + 2 : -1;
  if (at < 0) throw new Error(`no checksum known for protocol ${protocol}`);
  const segment = frame.slice(l4, end);
  segment[at - l4] = 0;
  segment[at - l4 + 1] = 0;
  const pseudo = protocol === 1 ? new Uint8Array(0) : pseudoHeader(family, src, dst, protocol, end - l4);
  let correct = rfc1071(concat(pseudo, segment));
  if (protocol === 17 && correct === 0) correct = 0xffff;
  return {
    at,
    stored: frame[at]! * 256 + frame[at + 1]!,
    correct,
    partial: protocol === 1 ? -1 : onesSum(pseudo),
  };
}

/** True when the IPv4 header at ipOff sums to zero with its checksum in place. */
export function ipv4HeaderChecksumOk(frame: Uint8Array, ipOff: number): boolean {
  const ihl = (frame[ipOff]! & 15) * 4;
  return rfc1071(frame.slice(ipOff, ipOff + ihl)) === 0;
}
