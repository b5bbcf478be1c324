/**
 * The exposition gzip-encoded (RFC 1952) for scrapers that ask for it, without compressing the
 * per-target bytes (14 MB at 10,000 targets) on every scrape.
 *
 * The response is one gzip member whose deflate data is two raw deflate streams back to back:
 * the head (process and app metrics, read at each scrape, a few KB) compressed per scrape and ended
 * with a sync flush (a non-final empty stored block: byte-aligned, the stream goes on), then the
 * body compressed once per render and ended as the final block. A deflate stream may refer back
 * only into output it has produced itself, so the body's precompressed blocks decode the same
 * after any head. The trailer's CRC-32 of head and body is combined from the two parts' CRCs.
 *
 * Why not a second gzip member for the per-scrape part: RFC 1952 allows several and Go's reader
 * (Prometheus) reads them, but curl (7.88) and other HTTP clients stop after the first member, and
 * would silently show only part of the metrics.
 */
import { constants, crc32, deflateRaw, deflateRawSync } from "node:zlib";

/** ID1 ID2, CM deflate, no flags, no mtime, XFL 0, OS 255 (unknown). */
const GZIP_HEADER = new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);

/** The body compressed as the final part of a deflate stream, with what the trailer needs. */
interface DeflatedBody {
  deflated: Uint8Array;
  crc: number;
  length: number;
}

/** One compression per rendered body (a new array each render); dropped with the body. */
const compressed = new WeakMap<Uint8Array, Promise<DeflatedBody>>();

function deflateBody(body: Uint8Array): Promise<DeflatedBody> {
  return new Promise((resolve, reject) => {
    // The asynchronous form runs on a thread of the pool: the event loop serves meanwhile.
    deflateRaw(body, (error, deflated) => {
      if (error) reject(error);
      else resolve({ deflated, crc: crc32(body), length: body.length });
    });
  });
}

function deflatedBody(body: Uint8Array): Promise<DeflatedBody> {
  let p = compressed.get(body);
  if (!p) {
    p = deflateBody(body);
    compressed.set(body, p);
    // A failure is not cached: the next scrape tries again.
    p.catch(() => compressed.delete(body));
  }
  return p;
}

/** The gzip encoding of head + body, as pieces to write in order. */
export async function gzipParts(head: string, body: Uint8Array): Promise<Uint8Array[]> {
  const b = await deflatedBody(body);
  const headBytes = Buffer.from(head, "utf8");
  const headDeflated = deflateRawSync(headBytes, { finishFlush: constants.Z_SYNC_FLUSH });
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32Combine(crc32(headBytes), b.crc, b.length), 0);
  // ISIZE: the uncompressed length modulo 2^32.
  trailer.writeUInt32LE((headBytes.length + b.length) % 2 ** 32, 4);
  return [GZIP_HEADER, headDeflated, b.deflated, trailer];
}

/** The reflected CRC-32 polynomial. */
const POLY = 0xedb88320;

/** a * b modulo the CRC polynomial, in the reflected bit order CRC-32 uses. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, k = 0..31. */
const X2N: number[] = (() => {
  const t = [0x40000000]; // x^1
  for (let k = 1; k < 32; k++) t.push(multModP(t[k - 1]!, t[k - 1]!));
  return t;
})();

/** x^(n * 2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  for (; n > 0; n = Math.floor(n / 2), k++) {
    if (n % 2 === 1) p = multModP(X2N[k & 31]!, p);
  }
  return p;
}

/**
 * The CRC-32 of A followed by B from crc(A), crc(B) and B's length (zlib's crc32_combine): the
 * body's CRC is computed once per render, not once per scrape.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA) ^ crcB) >>> 0;
}

/**
 * Whether an Accept-Encoding header (RFC 9110 section 12.5.3) accepts gzip: `gzip` or `x-gzip`
 * with a non-zero weight, or `*` with one when gzip is not named.
 */
export function acceptsGzip(header: string | null): boolean {
  if (!header) return false;
  let star = false;
  for (const item of header.split(",")) {
    const [coding = "", ...params] = item.split(";").map((s) => s.trim().toLowerCase());
    const q = params.find((p) => /^q\s*=/.test(p));
    const weight = q === undefined ? 1 : Number(q.slice(q.indexOf("=") + 1).trim());
    const accepted = Number.isFinite(weight) && weight > 0;
    if (coding === "gzip" || coding === "x-gzip") return accepted;
    if (coding === "*") star = accepted;
  }
  return star;
}
