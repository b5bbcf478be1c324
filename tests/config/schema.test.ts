import { expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import { parse } from "yaml";
import { CONFIG_ROOT, configJsonSchema, knownKeys, schemaAt, type Json } from "../../src/config/describe.ts";
import { parseConfigText, type ParseResult } from "../../src/config/load.ts";
import {
  ConfigSchema,
  DEFAULT_HISTOGRAM_BUCKETS,
  GroupSchema,
  ipPayloadSize,
  L4_HEADER_BYTES,
  MAX_IP_PAYLOAD_BYTES,
  NAME_PATTERN,
  TARGET_TYPES,
  targetAddressFamily,
  TargetSchema,
} from "../../src/config/schema.ts";

test("default histogram buckets double from 50 us to the first bound past 10 s", () => {
  expect(DEFAULT_HISTOGRAM_BUCKETS[0]).toBe(50e-6);
  DEFAULT_HISTOGRAM_BUCKETS.forEach((bound, i) => {
    if (i > 0) expect(bound).toBe((DEFAULT_HISTOGRAM_BUCKETS[i - 1] ?? 0) * 2);
  });
  expect(DEFAULT_HISTOGRAM_BUCKETS.at(-1)).toBe(13.1072);
  expect(DEFAULT_HISTOGRAM_BUCKETS.at(-2)).toBeLessThan(10);
  expect(DEFAULT_HISTOGRAM_BUCKETS).toHaveLength(19);
});

test("names: the original's pattern, nothing more", () => {
  for (const good of ["lab", "dc1-rack12", "1_full", "a.b.c", "-"]) expect(NAME_PATTERN.test(good)).toBe(true);
  for (const bad of ["", "Lab", "a b", "é", "a/b", "a:b"]) expect(NAME_PATTERN.test(bad)).toBe(false);
});

test("the schema alone rejects unknown fields, without validate.ts", () => {
  const group = v.safeParse(GroupSchema, { src_port_a: 65000, bogus: 1 });
  expect(group.success).toBe(false);
  expect(group.issues?.[0]?.path?.map((p) => p.key)).toEqual(["bogus"]);
});

test("a TargetConfig is a union on type: dst_port is a number for TCPsyn", () => {
  const target = v.parse(TargetSchema, { type: "TCPsyn", destination: "198.18.0.1", dst_port: 80 });
  // Compiles only because the union narrows; the assertion checks the value.
  const port: number | undefined = target.type === "TCPsyn" ? target.dst_port : undefined;
  expect(port).toBe(80);
  expect(TARGET_TYPES).toEqual(["TCPsyn", "ICMPping", "UDPunreachable", "TWAMPlight"]);
});

test("targetAddressFamily: address_family, else IPv6 for a destination with a colon, else IPv4", () => {
  expect(targetAddressFamily({ destination: "fd00::1" })).toBe("ipv6");
  expect(targetAddressFamily({ destination: "fd00::/64" })).toBe("ipv6");
  expect(targetAddressFamily({ destination: "198.18.*.1-5" })).toBe("ipv4");
  expect(targetAddressFamily({ destination: "www.example.com" })).toBe("ipv4");
  expect(targetAddressFamily({ destination: "www.example.com", address_family: "ipv6" })).toBe("ipv6");
});

test("ipPayloadSize: the target's size, else the group's, never below the L4 header", () => {
  expect(ipPayloadSize({ type: "TCPsyn" }, {})).toBe(L4_HEADER_BYTES.TCPsyn);
  expect(ipPayloadSize({ type: "UDPunreachable" }, {})).toBe(8);
  expect(ipPayloadSize({ type: "ICMPping" }, { ip_payload_size: 100 })).toBe(100);
  expect(ipPayloadSize({ type: "ICMPping", ip_payload_size: 64 }, { ip_payload_size: 100 })).toBe(64);
  expect(ipPayloadSize({ type: "TCPsyn" }, { ip_payload_size: 8 })).toBe(20);
  expect(MAX_IP_PAYLOAD_BYTES).toEqual({ ipv4: 65515, ipv6: 65535 });
});

test("payload size limits follow the family of the destination", () => {
  const target = (extra: Record<string, unknown>) =>
    v.safeParse(TargetSchema, { type: "ICMPping", destination: "198.18.0.1", ...extra }).success;
  expect(target({ ip_payload_size: 65515 })).toBe(true);
  expect(target({ ip_payload_size: 65516 })).toBe(false);
  expect(target({ ip_payload_size: 65535, destination: "fd00::1" })).toBe(true);
  expect(target({ ip_payload_size: 65535, destination: "www.example.com", address_family: "ipv6" })).toBe(true);
  expect(target({ ip_payload_size: 65535, destination: "www.example.com" })).toBe(false);
  expect(target({ ip_payload_size: 8 })).toBe(true);
  expect(target({ ip_payload_size: 7 })).toBe(false);
});

test("a literal destination of the other family is refused; hostnames never are", () => {
  const target = (destination: string, address_family: string) =>
    v.safeParse(TargetSchema, { type: "ICMPping", destination, address_family }).success;
  expect(target("fd00::1", "ipv4")).toBe(false);
  expect(target("fd00::/64", "ipv4")).toBe(false);
  expect(target("198.18.0.1", "ipv6")).toBe(false);
  expect(target("198.18.0.0/15", "ipv6")).toBe(false);
  expect(target("www.example.com", "ipv6")).toBe(true);
  expect(target("198.18.0.1", "ipv4")).toBe(true);
});

test("subnets: CIDR of the right family with a prefix in range", () => {
  const group = (field: string, value: string) => v.safeParse(GroupSchema, { [field]: value }).success;
  expect(group("src_subnet_ipv4", "198.18.0.0/16")).toBe(true);
  expect(group("src_subnet_ipv4", "198.18.0.0/32")).toBe(true);
  expect(group("src_subnet_ipv4", "198.18.0.0/33")).toBe(false);
  expect(group("src_subnet_ipv4", "198.18.0.0/")).toBe(false);
  expect(group("src_subnet_ipv4", "fd00::/8")).toBe(false);
  expect(group("src_subnet_ipv6", "fd00::/112")).toBe(true);
  expect(group("src_subnet_ipv6", "fd00::/128")).toBe(true);
  expect(group("src_subnet_ipv6", "fd00::/129")).toBe(false);
  expect(group("src_subnet_ipv6", "fd00::")).toBe(false);
});

function parsed(text: string): Extract<ParseResult, { ok: true }> {
  const result = parseConfigText(text, "t.yaml");
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return result;
}

/** Every property schema in the JSON Schema, with its path. */
function properties(schema: Json, path: string): [string, Json][] {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return [];
  const found: [string, Json][] = [];
  for (const [key, value] of Object.entries(schema.properties ?? {})) {
    found.push([`${path}.${key}`, value], ...properties(value, `${path}.${key}`));
  }
  for (const [key, value] of Object.entries(schema.patternProperties ?? {})) {
    found.push([`${path}.<${key}>`, value], ...properties(value, `${path}.NAME`));
  }
  return found;
}

test("every field has a description", () => {
  const fields = properties(configJsonSchema(), "");
  expect(fields.length).toBeGreaterThan(50);
  const bare = fields.filter(([, schema]) => typeof schema !== "object" || schema === null || !("description" in schema));
  expect(bare.map(([path]) => path)).toEqual([]);
});

test("the example config sets every field of every map, and every target type", async () => {
  const text = await Bun.file(join(import.meta.dir, "..", "fixtures", "config", "example.yaml")).text();
  const data = parse(text) as Record<string, unknown>;
  expect(parsed(text).warnings).toEqual([]);
  const missing: string[] = [];
  const seen = new Map<string, Set<string>>();
  const note = (where: string, keys: string[]) => {
    const set = seen.get(where) ?? new Set<string>();
    for (const k of keys) set.add(k);
    seen.set(where, set);
  };
  const maps = (value: unknown) => Object.values((value ?? {}) as Record<string, Record<string, unknown>>);
  note("global", Object.keys(data.global as object));
  for (const group of maps(data.groups)) note("group", Object.keys(group));
  const types = new Set<unknown>();
  for (const target of maps(data.targets)) {
    types.add(target.type);
    note("target", Object.keys(target));
    if (target.threshold) note("threshold", Object.keys(target.threshold));
    if (target.explicit_groups) note("explicit_groups", Object.keys(target.explicit_groups));
  }
  const inventories = (data.inventories ?? {}) as Record<string, unknown>;
  note("inventories", Object.keys(inventories));
  for (const f of maps(inventories.file)) note("file inventory", Object.keys(f));
  for (const h of maps(inventories.http)) note("http inventory", Object.keys(h));
  for (const d of maps(inventories.dns)) note("dns inventory", Object.keys(d));
  const tcp = { type: "TCPsyn" };
  const expectations: [string, string[]][] = [
    ["global", knownKeys(schemaAt(CONFIG_ROOT, ["global"], data)?.node ?? CONFIG_ROOT, data.global) ?? []],
    ["group", (knownKeys(schemaAt(CONFIG_ROOT, ["groups", "x"], {})?.node ?? CONFIG_ROOT, {}) ?? []).filter((k) => k !== "src_ip")],
    ["target", knownKeys(schemaAt(CONFIG_ROOT, ["targets", "x"], {})?.node ?? CONFIG_ROOT, tcp) ?? []],
    ["threshold", ["latency", "loss"]],
    ["explicit_groups", ["register_to", "exclude_from"]],
    ["inventories", knownKeys(schemaAt(CONFIG_ROOT, ["inventories"], data)?.node ?? CONFIG_ROOT, inventories) ?? []],
    ["file inventory", knownKeys(schemaAt(CONFIG_ROOT, ["inventories", "file", "x"], {})?.node ?? CONFIG_ROOT, {}) ?? []],
    // bearer_token and bearer_token_file exclude each other: the example shows the file.
    ["http inventory", (knownKeys(schemaAt(CONFIG_ROOT, ["inventories", "http", "x"], {})?.node ?? CONFIG_ROOT, {}) ?? []).filter((k) => k !== "bearer_token")],
    ["dns inventory", knownKeys(schemaAt(CONFIG_ROOT, ["inventories", "dns", "x"], {})?.node ?? CONFIG_ROOT, tcp) ?? []],
  ];
  for (const [where, keys] of expectations) {
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) if (!seen.get(where)?.has(key)) missing.push(`${where}.${key}`);
  }
  expect(missing).toEqual([]);
  expect([...types].sort()).toEqual([...TARGET_TYPES].sort());
});

test("ConfigSchema parses without validate.ts too (for callers holding plain data)", () => {
  const result = v.safeParse(ConfigSchema, {
    global: { probe_name: "p", interval: 1, nb_proc: 1, logging_level: "INFO", prometheus_port: 8000, dns_update_interval: 0 },
    groups: {},
  });
  expect(result.success).toBe(true);
  expect(result.success && result.output.targets).toEqual({});
});
