/**
 * A target's `destination` into the addresses to probe: a literal address, a CIDR subnet, an IPv4
 * range/wildcard such as 198.18.*.1-5, or a hostname (resolved by the caller's resolver).
 */
import { isIP } from "node:net";
import { MAX_ADDRESSES_PER_DESTINATION } from "../config/limits.ts";
import { formatAddress, parseAddress, type Family } from "../packet/address.ts";

/** Past this, a destination is refused rather than silently truncated. */
export { MAX_ADDRESSES_PER_DESTINATION };

export type DestinationForm = "address" | "subnet" | "range" | "hostname";

export class DestinationError extends Error {
  constructor(
    readonly destination: string,
    detail: string,
  ) {
    super(`destination ${destination}: ${detail}`);
    this.name = "DestinationError";
  }
}

/** Which form the text has, without resolving anything. */
export function destinationForm(text: string): DestinationForm {
  if (isIP(text)) return "address";
  if (text.includes("/")) return "subnet";
  if (/^[0-9*\-]+(\.[0-9*\-]+){3}$/.test(text) && /[*\-]/.test(text)) return "range";
  return "hostname";
}

/** The family a literal, subnet or range implies; null for a hostname. */
export function impliedFamily(text: string): Family | null {
  const form = destinationForm(text);
  if (form === "hostname") return null;
  if (form === "range") return 4;
  const addr = form === "subnet" ? text.slice(0, text.indexOf("/")) : text;
  return isIP(addr) === 6 ? 6 : 4;
}

/** A count as people read it: 16,777,214. */
export const formatCount = (n: number | bigint): string => n.toLocaleString("en-US");

/**
 * What a literal, subnet or range destination expands to, worked out without expanding it: the
 * schema refuses what {@link expandDestination} would refuse, with the same figures, before the
 * daemon ever gets to expand it. A hostname resolves to one address (the resolver keeps one).
 */
export type DestinationSize =
  | { readonly ok: true; readonly form: DestinationForm; readonly family: Family | null; readonly addresses: number }
  /** `count` is set when the only fault is the size: the problem then reads "expands to N addresses". */
  | { readonly ok: false; readonly form: DestinationForm; readonly problem: string; readonly count?: number | bigint };

interface SubnetParts {
  readonly family: Family;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly hostBits: number;
  /** Addresses probed: every one, less the network and broadcast addresses of an IPv4 /30 or wider. */
  readonly count: bigint;
}

type RangeParts = readonly (readonly [number, number])[];

function parseSubnet(text: string): SubnetParts | string {
  const slash = text.indexOf("/");
  const base = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  const a = parseAddress(base);
  const bits = a?.family === 6 ? 128 : 32;
  if (!a || !/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) return "is not a valid CIDR subnet";
  const prefix = Number(lenText);
  const hostBits = bits - prefix;
  const all = 1n << BigInt(hostBits);
  const count = a.family === 4 && hostBits >= 2 ? all - 2n : all;
  return { family: a.family, bytes: a.bytes, prefix, hostBits, count };
}

function parseRange(text: string): RangeParts | string {
  const octets: (readonly [number, number])[] = [];
  for (const part of text.split(".")) {
    if (part === "*") {
      octets.push([0, 255]);
      continue;
    }
    const m = /^(\d{1,3})(?:-(\d{1,3}))?$/.exec(part);
    if (!m) return `has an octet "${part}" that is not a number, a range a-b or *`;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo > 255 || hi > 255 || lo > hi) return `has an octet "${part}" not within 0-255 in order`;
    octets.push([lo, hi]);
  }
  return octets;
}

const rangeCount = (octets: RangeParts) => octets.reduce((n, [lo, hi]) => n * (hi - lo + 1), 1);

const expandsTo = (count: number | bigint) => `expands to ${formatCount(count)} addresses`;

/** See {@link DestinationSize}. */
export function destinationSize(text: string): DestinationSize {
  const form = destinationForm(text);
  switch (form) {
    case "address":
      return { ok: true, form, family: impliedFamily(text), addresses: 1 };
    case "hostname":
      return { ok: true, form, family: null, addresses: 1 };
    case "subnet": {
      const s = parseSubnet(text);
      if (typeof s === "string") return { ok: false, form, problem: s };
      if (s.count > BigInt(MAX_ADDRESSES_PER_DESTINATION)) return { ok: false, form, problem: expandsTo(s.count), count: s.count };
      return { ok: true, form, family: s.family, addresses: Number(s.count) };
    }
    case "range": {
      const r = parseRange(text);
      if (typeof r === "string") return { ok: false, form, problem: r };
      const count = rangeCount(r);
      if (count > MAX_ADDRESSES_PER_DESTINATION) return { ok: false, form, problem: expandsTo(count), count };
      return { ok: true, form, family: 4, addresses: count };
    }
  }
}

/**
 * Every address of a literal, subnet or range destination. IPv4 subnets of /30 and wider leave
 * out their network and broadcast addresses, which no host answers for. Throws
 * {@link DestinationError} for what {@link destinationSize} refuses, and for a hostname.
 */
export function expandDestination(text: string): { family: Family; addresses: string[] } {
  const form = destinationForm(text);
  if (form === "address") {
    const a = parseAddress(text)!;
    return { family: a.family, addresses: [formatAddress(a.family, a.bytes)] };
  }
  if (form === "hostname") throw new DestinationError(text, "is a hostname: resolve it first");
  const size = destinationSize(text);
  if (!size.ok) {
    const limit = size.count === undefined ? "" : `, over the limit of ${formatCount(MAX_ADDRESSES_PER_DESTINATION)}`;
    throw new DestinationError(text, `${size.problem}${limit}`);
  }
  if (form === "subnet") return expandSubnet(parseSubnet(text) as SubnetParts);
  return { family: 4, addresses: expandRange(parseRange(text) as RangeParts) };
}

function expandSubnet(s: SubnetParts): { family: Family; addresses: string[] } {
  const { family, prefix, hostBits } = s;
  const bits = family === 4 ? 32 : 128;
  const count = 2 ** hostBits;
  const bytes = s.bytes.slice();
  const n = family === 4 ? 4 : 16;
  // Clear the host bits to get the network address.
  for (let bit = prefix; bit < bits; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const out: string[] = [];
  const skipEnds = family === 4 && hostBits >= 2;
  for (let i = 0; i < count; i++) {
    if (skipEnds && (i === 0 || i === count - 1)) continue;
    const b = bytes.slice();
    let carry = i;
    for (let j = n - 1; j >= 0 && carry > 0; j--) {
      const v = b[j]! + (carry & 0xff);
      b[j] = v & 0xff;
      carry = (carry >>> 8) + (v >> 8);
    }
    out.push(formatAddress(family, b));
  }
  return { family, addresses: out };
}

function expandRange(octets: RangeParts): string[] {
  const out: string[] = [];
  const [a, b, c, d] = octets as [readonly [number, number], readonly [number, number], readonly [number, number], readonly [number, number]];
  for (let w = a[0]; w <= a[1]; w++)
    for (let x = b[0]; x <= b[1]; x++)
      for (let y = c[0]; y <= c[1]; y++) for (let z = d[0]; z <= d[1]; z++) out.push(`${w}.${x}.${y}.${z}`);
  return out;
}
