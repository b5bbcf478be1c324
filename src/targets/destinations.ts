/**
 * A target's `destination` into the addresses to probe: a literal address, a CIDR subnet, an IPv4
 * range/wildcard such as 198.18.*.1-5, or a hostname (resolved by the caller's resolver).
 */
import { isIP } from "node:net";
import { formatAddress, parseAddress, type Family } from "../packet/address.ts";

/** Past this, a destination is refused rather than silently truncated. */
export const MAX_ADDRESSES_PER_DESTINATION = 65536;

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

/**
 * Every address of a literal, subnet or range destination. IPv4 subnets of /30 and wider leave
 * out their network and broadcast addresses, which no host answers for.
 */
export function expandDestination(text: string): { family: Family; addresses: string[] } {
  const form = destinationForm(text);
  if (form === "address") {
    const a = parseAddress(text)!;
    return { family: a.family, addresses: [formatAddress(a.family, a.bytes)] };
  }
  if (form === "subnet") return expandSubnet(text);
  if (form === "range") return { family: 4, addresses: expandRange(text) };
  throw new DestinationError(text, "is a hostname: resolve it first");
}

function expandSubnet(text: string): { family: Family; addresses: string[] } {
  const [base, lenText] = text.split("/") as [string, string];
  const a = parseAddress(base);
  const len = Number(lenText);
  const bits = a?.family === 6 ? 128 : 32;
  if (!a || !/^\d+$/.test(lenText) || len > bits) throw new DestinationError(text, "is not a valid CIDR subnet");
  const hostBits = bits - len;
  if (hostBits > 16) {
    throw new DestinationError(text, `holds 2^${hostBits} addresses, over the limit of ${MAX_ADDRESSES_PER_DESTINATION}`);
  }
  const count = 2 ** hostBits;
  const bytes = a.bytes.slice();
  const n = a.family === 4 ? 4 : 16;
  // Clear the host bits to get the network address.
  for (let bit = len; bit < bits; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const out: string[] = [];
  const skipEnds = a.family === 4 && hostBits >= 2;
  for (let i = 0; i < count; i++) {
    if (skipEnds && (i === 0 || i === count - 1)) continue;
    const b = bytes.slice();
    let carry = i;
    for (let j = n - 1; j >= 0 && carry > 0; j--) {
      const v = b[j]! + (carry & 0xff);
      b[j] = v & 0xff;
      carry = (carry >>> 8) + (v >> 8);
    }
    out.push(formatAddress(a.family, b));
  }
  return { family: a.family, addresses: out };
}

function expandRange(text: string): string[] {
  const octets = text.split(".").map((part) => {
    if (part === "*") return [0, 255] as const;
    const m = /^(\d{1,3})(?:-(\d{1,3}))?$/.exec(part);
    if (!m) throw new DestinationError(text, `octet "${part}" is not a number, a range a-b or *`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo > 255 || hi > 255 || lo > hi) throw new DestinationError(text, `octet "${part}" is not within 0-255 in order`);
    return [lo, hi] as const;
  });
  const total = octets.reduce((n, [lo, hi]) => n * (hi - lo + 1), 1);
  if (total > MAX_ADDRESSES_PER_DESTINATION) {
    throw new DestinationError(text, `holds ${total} addresses, over the limit of ${MAX_ADDRESSES_PER_DESTINATION}`);
  }
  const out: string[] = [];
  const [a, b, c, d] = octets as [readonly [number, number], readonly [number, number], readonly [number, number], readonly [number, number]];
  for (let w = a[0]; w <= a[1]; w++)
    for (let x = b[0]; x <= b[1]; x++)
      for (let y = c[0]; y <= c[1]; y++) for (let z = d[0]; z <= d[1]; z++) out.push(`${w}.${x}.${y}.${z}`);
  return out;
}
