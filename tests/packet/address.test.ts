import { expect, test } from "bun:test";
import { formatAddress, parseAddress } from "../../src/packet/address.ts";

test.each([
  ["198.18.0.1", 4, "198.18.0.1"],
  ["fd00:18::1", 6, "fd00:18::1"],
  ["FD00:0018:0000:0000:0000:0000:0000:0001", 6, "fd00:18::1"],
  ["::1", 6, "::1"],
  ["::", 6, "::"],
  ["fd00::1:0:0:1", 6, "fd00::1:0:0:1"],
  ["fd00:0:0:1::", 6, "fd00:0:0:1::"],
  ["::ffff:198.18.0.1", 6, "::ffff:c612:1"],
  ["1:0:0:2:0:0:0:3", 6, "1:0:0:2::3"],
] as const)("%s parses as IPv%d and formats as %s", (text, family, canonical) => {
  const a = parseAddress(text);
  expect(a?.family).toBe(family);
  expect(formatAddress(a!.family, a!.bytes)).toBe(canonical);
});

test.each(["198.18.0.256", "198.18.0", "fd00::1::2", "example.test", "", "1.2.3.4/32"])("%p is not an address", (text) => {
  expect(parseAddress(text)).toBeNull();
});

test("IPv6 bytes are in network order", () => {
  expect(Array.from(parseAddress("fd00:18::1")!.bytes)).toEqual([0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
});
