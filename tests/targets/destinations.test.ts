import { expect, test } from "bun:test";
import { DestinationError, destinationForm, expandDestination, impliedFamily } from "../../src/targets/destinations.ts";

test("forms are told apart without resolving anything", () => {
  expect(destinationForm("198.18.0.1")).toBe("address");
  expect(destinationForm("fd00::1")).toBe("address");
  expect(destinationForm("198.18.0.0/30")).toBe("subnet");
  expect(destinationForm("198.18.*.1-5")).toBe("range");
  expect(destinationForm("router-1.lab.test")).toBe("hostname");
  expect(impliedFamily("fd00::/126")).toBe(6);
  expect(impliedFamily("router-1.lab.test")).toBeNull();
});

test("an IPv4 /30 yields its two hosts, a /31 and a /32 every address", () => {
  expect(expandDestination("198.18.0.4/30").addresses).toEqual(["198.18.0.5", "198.18.0.6"]);
  expect(expandDestination("198.18.0.4/31").addresses).toEqual(["198.18.0.4", "198.18.0.5"]);
  expect(expandDestination("198.18.0.9/32").addresses).toEqual(["198.18.0.9"]);
});

test("host bits of the base are ignored and carries cross bytes", () => {
  const a = expandDestination("198.18.0.200/23").addresses;
  expect(a.length).toBe(510);
  expect(a[0]).toBe("198.18.0.1");
  expect(a[255]).toBe("198.18.1.0");
  expect(a.at(-1)).toBe("198.18.1.254");
});

test("IPv6 subnets keep every address", () => {
  expect(expandDestination("fd00:18::/126")).toEqual({
    family: 6,
    addresses: ["fd00:18::", "fd00:18::1", "fd00:18::2", "fd00:18::3"],
  });
});

test("ranges and wildcards expand octet by octet", () => {
  const r = expandDestination("198.18.1-2.7-8").addresses;
  expect(r).toEqual(["198.18.1.7", "198.18.1.8", "198.18.2.7", "198.18.2.8"]);
  expect(expandDestination("198.18.0.*").addresses.length).toBe(256);
});

test.each([
  ["198.18.0.0/33", "is not a valid CIDR subnet"],
  ["198.0.0.0/8", "over the limit"],
  ["198.*.*.1-2", "over the limit"],
  ["198.18.9-3.1", "within 0-255 in order"],
  ["198.18.300.1-2", "within 0-255 in order"],
])("%s is refused: %s", (text, message) => {
  expect(() => expandDestination(text)).toThrow(DestinationError);
  expect(() => expandDestination(text)).toThrow(message);
});
