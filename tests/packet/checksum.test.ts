import { expect, test } from "bun:test";
import { finish, pseudoHeaderSum, sum16 } from "../../src/packet/checksum.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/\s/g, "").match(/../g)!, (b) => parseInt(b, 16));

test("IPv4 header checksum: the worked example of Wikipedia's 'IPv4 header checksum' article", () => {
  const header = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
  expect(finish(sum16(header, 0, 20))).toBe(0xb861);
  header[10] = 0xb8;
  header[11] = 0x61;
  // A header with its checksum in place sums to zero.
  expect(finish(sum16(header, 0, 20))).toBe(0);
});

test("RFC 1071 section 3 example: sum of 0001 f203 f4f5 f6f7 is ddf2, checksum 220d", () => {
  const data = hex("0001 f203 f4f5 f6f7");
  expect(sum16(data, 0, 8)).toBe(0xddf2);
  expect(finish(sum16(data, 0, 8))).toBe(0x220d);
});

test("an odd length pads the last byte with a zero on the right", () => {
  expect(sum16(hex("0102 03"), 0, 3)).toBe(0x0102 + 0x0300);
});

test("long bodies do not overflow the running sum", () => {
  const big = new Uint8Array(70000).fill(0xff);
  expect(finish(sum16(big, 0, big.length))).toBe(0);
});

test("IPv6 pseudo-header sum covers both addresses, the length and the next header", () => {
  const src = new Uint8Array(16);
  const dst = new Uint8Array(16);
  src[15] = 1;
  dst[15] = 2;
  expect(pseudoHeaderSum(6, src, dst, 17, 12)).toBe(1 + 2 + 17 + 12);
});
