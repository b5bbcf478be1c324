/**
 * The probe-type registry: what every module must hold, checked by the compiler (a type without
 * a module, a module missing a part or under another type's key does not compile: the
 * `@ts-expect-error` lines below fail `tsc --noEmit` the day they stop being errors), and a
 * contract every registered type passes at run time, so a new type is checked by being listed.
 */
import { describe, expect, test } from "bun:test";
import { TARGET_TYPES } from "../../src/config/schema.ts";
import { parseAddress, type Family } from "../../src/packet/address.ts";
import { LINK_RAW, PacketSpec, writePacket } from "../../src/packet/build.ts";
import { DLT_RAW, PARSE_OK, ParsedFrame, parseFrame } from "../../src/packet/parse.ts";
import { icmpPing } from "../../src/probes/icmp.ts";
import type { IdentCounter, ProbeTargetFields } from "../../src/probes/probe-type.ts";
import {
  destinationPort,
  PROBE_CODE,
  PROBE_TYPE_LIST,
  PROBE_TYPES,
  probeTypeByName,
  type ProbeRegistry,
} from "../../src/probes/registry.ts";
import { tcpSyn } from "../../src/probes/tcpsyn.ts";
import { twampLight } from "../../src/probes/twamp-light.ts";
import { udpUnreachable } from "../../src/probes/udp-unreachable.ts";

// --- compile-time: each of these must be a type error ---------------------------------------

const { fill: _fill, ...tcpSynWithoutFill } = tcpSyn;
// @ts-expect-error a module without its packet filling is not a probe type
export const missingPart = { ...PROBE_TYPES, TCPsyn: tcpSynWithoutFill } satisfies ProbeRegistry;
// @ts-expect-error a type of the config without a module
export const missingType = { TCPsyn: tcpSyn, ICMPping: icmpPing, UDPunreachable: udpUnreachable } satisfies ProbeRegistry;
// @ts-expect-error a module registered under another type's name
export const swapped = { TCPsyn: icmpPing, ICMPping: tcpSyn, UDPunreachable: udpUnreachable, TWAMPlight: twampLight } satisfies ProbeRegistry;
// @ts-expect-error a module for a type the config does not have
export const extra = { ...PROBE_TYPES, OWAMP: { ...twampLight, type: "OWAMP" } } satisfies ProbeRegistry;
const { answerValues: _values, ...twampWithoutValues } = twampLight;
// @ts-expect-error a module without its answer values (null says it has none) is not a probe type
export const missingValues = { ...PROBE_TYPES, TWAMPlight: twampWithoutValues } satisfies ProbeRegistry;

// --- run time: the contract of every registered type ----------------------------------------

const SRC: Record<Family, string> = { 4: "198.18.0.1", 6: "fd00:18::1" };
const DST: Record<Family, string> = { 4: "198.18.1.2", 6: "fd00:18:1::2" };

/** Probe k of a target of `type`, written as the engine writes it, then decoded. */
function writeAndParse(typeIndex: number, family: Family, dataLength: number, k: number, counter: IdentCounter) {
  const type = PROBE_TYPE_LIST[typeIndex]!;
  const t: ProbeTargetFields = { family, dstPort: type.port.use === "none" ? 0 : 4242, dataLength: Math.max(dataLength, type.minDataBytes(family)), targetId: 0x1357 };
  const ident = type.assignIdent(t, k, counter, { flow: k % 4, round: Math.floor(k / 4), salt: 0x9e3779b9 });
  const p = new PacketSpec();
  p.link = LINK_RAW;
  p.family = family;
  p.src.set(parseAddress(SRC[family])!.bytes);
  p.dst.set(parseAddress(DST[family])!.bytes);
  p.ipId = 7;
  p.payloadLength = t.dataLength;
  type.fill(p, t, ident, 40001);
  const buf = new Uint8Array(2048);
  const len = writePacket(buf, p);
  const parsed = new ParsedFrame();
  expect(parseFrame(buf, len, DLT_RAW, parsed)).toBe(PARSE_OK);
  return { type, t, ident, ip: parsed.outer, p };
}

describe("the registry", () => {
  test("one module per type of the config, each under its own name, coded by its position", () => {
    expect(Object.keys(PROBE_TYPES).sort()).toEqual([...TARGET_TYPES].sort());
    PROBE_TYPE_LIST.forEach((t, i) => {
      expect(PROBE_TYPES[t.type]).toBe(t as never);
      expect(PROBE_CODE[t.type]).toBe(i);
    });
  });

  test("names, aliases and metric prefixes are distinct across types", () => {
    const names = PROBE_TYPE_LIST.flatMap((t) => [...new Set([t.name, t.type.toLowerCase(), ...t.aliases])]);
    expect(new Set(names).size).toBe(names.length);
    const prefixes = PROBE_TYPE_LIST.map((t) => t.metrics.prefix);
    expect(new Set(prefixes).size).toBe(prefixes.length);
    for (const p of prefixes) expect(p).toMatch(/^[a-z][a-z0-9_]*$/);
  });

  test("probe --type accepts a type's short name, config name and aliases in any case", () => {
    for (const t of PROBE_TYPE_LIST) {
      for (const n of [t.name, t.type, t.type.toUpperCase(), ...t.aliases]) expect(probeTypeByName(n)).toBe(t);
    }
    expect(probeTypeByName("twamp")).toBe(twampLight);
    expect(probeTypeByName("owamp")).toBeNull();
  });

  test("destination ports follow each type's rule", () => {
    expect(destinationPort("TCPsyn", 443)).toBe(443);
    expect(destinationPort("ICMPping", 443)).toBe(0);
    expect(() => destinationPort("UDPunreachable", undefined)).toThrow("dst_port");
    expect(destinationPort("TWAMPlight", undefined)).toBe(862);
    expect(destinationPort("TWAMPlight", 4862)).toBe(4862);
  });
});

describe("every type's probe, as written, is recognised by the type itself", () => {
  for (const [i, type] of PROBE_TYPE_LIST.entries()) {
    for (const family of [4, 6] as const) {
      for (const data of [0, 12]) {
        test(`${type.type} IPv${family} with ${data} data bytes`, () => {
          const counter = { next: 0x2000_0000 };
          const seen = new Set<number>();
          for (let k = 0; k < 40; k++) {
            const { t, ident, ip } = writeAndParse(i, family, data, k, counter);
            // Its departure carries its identifier, and none of the other types claims it with the same one.
            expect(type.departureIdent(ip)).toBe(ident);
            for (const other of PROBE_TYPE_LIST) if (other !== type) expect(other.departureIdent(ip) === ident && other.rotatesPorts === type.rotatesPorts && other.port.use === type.port.use).toBe(false);
            // An error quoting it finds it again when errors answer the type.
            expect(type.quotedIdent(ip)).toBe(type.answeredByError ? ident : -1);
            // A probe is no answer of its own type.
            expect(type.answerIdent(ip, { reply: 0 })).toBe(-1);
            if (type.rotatesPorts) expect([ip.srcPort, ip.dstPort]).toEqual([40001, t.dstPort]);
            // Identifiers of one target's probes are distinct (what matching relies on).
            expect(seen.has(ident)).toBe(false);
            seen.add(ident);
            expect(type.altIdent(ident, t) >>> 0).toBe(type.altIdent(ident, t));
          }
        });
      }
    }
  }

  test("a type that closes its probes writes a packet that is not itself a probe", () => {
    for (const [i, type] of PROBE_TYPE_LIST.entries()) {
      if (!type.close) continue;
      const { t, ident, p } = writeAndParse(i, 4, 0, 0, { next: 1 });
      type.close.fill(p, t, ident, 40001);
      const buf = new Uint8Array(256);
      const parsed = new ParsedFrame();
      expect(parseFrame(buf, writePacket(buf, p), DLT_RAW, parsed)).toBe(PARSE_OK);
      expect(type.departureIdent(parsed.outer)).toBe(-1);
    }
  });

  test("every type gives a capture filter fragment for its families (or none when the engine's ICMP part covers it)", () => {
    for (const type of PROBE_TYPE_LIST) {
      const f = type.captureFilter({ portLo: 40000, portHi: 40015, windowMask: "0xf0000000", window: "0x20000000", v4: true, v6: true });
      expect(typeof f).toBe("string");
      if (f) expect(f.startsWith("(") && f.endsWith(")")).toBe(true);
    }
  });
});
