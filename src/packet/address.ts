/**
 * IP addresses as bytes: 16-byte buffers for both families (IPv4 in the first 4 bytes), so
 * packet code handles one shape. Parsing is strict: anything that is not a literal address is null.
 */
import { isIPv4, isIPv6 } from "node:net";

export type Family = 4 | 6;

export interface ParsedAddress {
  family: Family;
  bytes: Uint8Array; // 16 bytes; IPv4 uses the first 4
}

/** Literal IPv4 or IPv6 address to bytes, or null when the text is not one. */
export function parseAddress(text: string): ParsedAddress | null {
  if (isIPv4(text)) {
    const bytes = new Uint8Array(16);
    text.split(".").forEach((part, i) => (bytes[i] = Number(part)));
    return { family: 4, bytes };
  }
  if (!isIPv6(text)) return null;
  let s = text;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  const words: number[] = [];
  // An embedded dotted quad (::ffff:198.18.0.1) becomes two words.
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    const q = tail.split(".").map(Number);
    s = `${s.slice(0, lastColon + 1)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const [head, rest] = s.split("::") as [string, string | undefined];
  const headWords = head === "" ? [] : head.split(":");
  const restWords = rest === undefined || rest === "" ? [] : rest.split(":");
  const fill = rest === undefined ? 0 : 8 - headWords.length - restWords.length;
  for (const w of headWords) words.push(parseInt(w, 16));
  for (let i = 0; i < fill; i++) words.push(0);
  for (const w of restWords) words.push(parseInt(w, 16));
  if (words.length !== 8) return null;
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return { family: 6, bytes };
}

/** Bytes back to the canonical text form (RFC 5952 for IPv6). */
export function formatAddress(family: Family, bytes: Uint8Array, off = 0): string {
  if (family === 4) return `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((bytes[off + 2 * i]! << 8) | bytes[off + 2 * i + 1]!);
  // The longest run of two or more zero words is shortened to "::" (the first one on a tie).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** MAC "aa:bb:cc:dd:ee:ff" into 6 bytes at out[off]. */
export function parseMac(text: string, out: Uint8Array, off = 0): void {
  const parts = text.split(":");
  if (parts.length !== 6) throw new Error(`not a MAC address: ${text}`);
  parts.forEach((p, i) => (out[off + i] = parseInt(p, 16)));
}

export function formatMac(bytes: Uint8Array, off = 0): string {
  return Array.from(bytes.subarray(off, off + 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}
