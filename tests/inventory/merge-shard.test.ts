/**
 * The shard in DynamicTargets.merge, the one place where the targets to probe become final: each
 * prober's merged config holds its share of the configured targets and of every inventory's
 * (file, http, modules), and all of the API's. What it leaves out is resolved, planned and
 * published by no one else on this prober.
 */
import { describe, expect, test } from "bun:test";
import { parseConfigText } from "../../src/config/load.ts";
import { MAX_PROBED_ADDRESSES_PER_ITERATION } from "../../src/config/limits.ts";
import { validateValue, formatProblem } from "../../src/config/validate.ts";
import { InventoryListSchema, type Config } from "../../src/config/schema.ts";
import { shardOwner, type Shard } from "../../src/daemon/shard.ts";
import { DynamicTargets, type Merged } from "../../src/inventory/merge.ts";
import type { InventoryList } from "../../src/inventory/supervisor.ts";
import { recordLog } from "../support/log-recorder.ts";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

function config(targets: number, extra = ""): Config {
  const list = Array.from({ length: targets }, (_, i) => `  conf-${i}: {type: ICMPping, destination: 198.18.${i >> 8}.${i & 255}}\n`).join("");
  const text = `global:
  probe_name: unit
  interval: 10
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 9
  dns_update_interval: 0
groups:
  default: {}
targets:
${list}${extra}`;
  const r = parseConfigText(text, "shard.yaml");
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

function list(raw: unknown[]): InventoryList {
  const r = validateValue(InventoryListSchema, raw);
  if (!r.ok) throw new Error(r.problems.map(formatProblem).join("; "));
  return { targets: r.value, receivedAt: T0 };
}

const hosts = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ hostname: `${prefix}-${i}.example`, type: "ICMPping", destination: `198.19.${i >> 8}.${i & 255}` }));

const shards = (count: number): Shard[] => Array.from({ length: count }, (_, index) => ({ index, count }));

function mergeAs(shard: Shard, c: Config, lists: Map<string, InventoryList>): { merged: Merged; warnings: string[] } {
  const { log, lines } = recordLog();
  const merged = new DynamicTargets(log, () => T0).merge(c, lists, shard);
  return { merged, warnings: lines.filter((l) => l.level === "WARNING").map((l) => l.msg) };
}

describe("three probers on one config", () => {
  const c = config(100);
  const lists = new Map([
    ["files", list(hosts(60, "file"))],
    ["api", list(hosts(5, "posted"))],
  ]);
  const results = shards(3).map((s) => mergeAs(s, c, lists).merged);
  const namesOf = (m: Merged) => Object.keys(m.config.targets);

  test("configured and file inventory targets: every one probed by exactly one prober", () => {
    const all = [...Object.keys(c.targets), ...hosts(60, "file").map((h) => `files_${h.hostname}`)];
    for (const name of all) {
      expect({ name, probers: results.filter((m) => Object.hasOwn(m.config.targets, name)).length }).toEqual({ name, probers: 1 });
    }
    expect(results.reduce((n, m) => n + m.configured.kept, 0)).toBe(100);
    expect(results.reduce((n, m) => n + (m.counts.get("files") ?? 0), 0)).toBe(60);
  });

  test("each keeps what the hash gives it, and no prober is idle", () => {
    results.forEach((m, index) => {
      const nonApi = namesOf(m).filter((n) => !n.startsWith("api_"));
      expect(nonApi.every((n) => shardOwner(n, 3) === index)).toBe(true);
      expect(nonApi.length).toBeGreaterThan(20);
    });
  });

  test("the API's targets are never sharded away: every prober keeps all of its own", () => {
    for (const m of results) {
      expect(namesOf(m).filter((n) => n.startsWith("api_")).sort()).toEqual(hosts(5, "posted").map((h) => `api_${h.hostname}`).sort());
      expect(m.counts.get("api")).toBe(5);
    }
  });

  test("kept counts the merged config's targets; configured tells the file's total and the share", () => {
    for (const m of results) {
      expect(m.kept).toBe(namesOf(m).length);
      expect(m.configured.total).toBe(100);
      expect(m.kept).toBe(m.configured.kept + (m.counts.get("files") ?? 0) + 5);
    }
  });
});

test("without a shard every target is kept, as before", () => {
  const c = config(10);
  const { merged } = mergeAs({ index: 0, count: 1 }, c, new Map([["files", list(hosts(4, "file"))]]));
  expect(merged.kept).toBe(14);
  expect(merged.configured).toEqual({ total: 10, kept: 10 });
  const alone = new DynamicTargets(recordLog().log, () => T0).merge(c, new Map());
  expect(alone.config).toBe(c);
});

test("no dynamic lists: the sharded config is the same object at every merge (the resolver is not re-synced each iteration), a new one when the config or the shard changes", () => {
  const c = config(40);
  const d = new DynamicTargets(recordLog().log, () => T0);
  const first = d.merge(c, new Map(), { index: 0, count: 2 });
  expect(d.merge(c, new Map(), { index: 0, count: 2 }).config).toBe(first.config);
  expect(Object.keys(first.config.targets).length).toBe(first.configured.kept);
  const other = d.merge(c, new Map(), { index: 1, count: 2 });
  expect(other.config).not.toBe(first.config);
  expect(first.configured.kept + other.configured.kept).toBe(40);
  const reloaded = config(40);
  expect(d.merge(reloaded, new Map(), { index: 1, count: 2 }).config).not.toBe(other.config);
  // The input config is not touched.
  expect(Object.keys(c.targets)).toHaveLength(40);
});

test("going from 3 to 4 probers moves at most 35 of 100 configured targets", () => {
  const c = config(100);
  const ownerAmong = (count: number) => {
    const owner = new Map<string, number>();
    for (const s of shards(count)) for (const name of Object.keys(mergeAs(s, c, new Map()).merged.config.targets)) owner.set(name, s.index);
    return owner;
  };
  const three = ownerAmong(3);
  const four = ownerAmong(4);
  expect(three.size).toBe(100);
  expect(four.size).toBe(100);
  const moved = [...three.keys()].filter((n) => three.get(n) !== four.get(n));
  expect(moved.length).toBeLessThanOrEqual(35);
  expect(moved.every((n) => four.get(n) === 3)).toBe(true);
});

test("the iteration limits count this prober's share only: a list too large for one prober fits three", () => {
  // 30 targets of 65,536 addresses each: 1,966,080 in all, past the 1,000,000 one prober may probe.
  const subnets = Array.from({ length: 30 }, (_, i) => ({ hostname: `net-${i}`, type: "ICMPping", destination: `fd00:${i}::/112`, is_subnet: true }));
  expect(30 * 65_536).toBeGreaterThan(MAX_PROBED_ADDRESSES_PER_ITERATION);
  const lists = new Map([["big", list(subnets)]]);
  const alone = mergeAs({ index: 0, count: 1 }, config(0), lists);
  expect(alone.merged.counts.get("big")).toBeLessThan(30);
  expect(alone.warnings).toContain("targets past the iteration limits are left out");
  const shared = shards(3).map((s) => mergeAs(s, config(0), lists));
  expect(shared.reduce((n, r) => n + (r.merged.counts.get("big") ?? 0), 0)).toBe(30);
  for (const r of shared) expect(r.warnings).toEqual([]);
});

test("a name clash is warned about by the prober that owns the name only", () => {
  const c = config(3, "  files_clash.example: {type: ICMPping, destination: 198.18.9.9}\n");
  const lists = new Map([["files", list([{ hostname: "clash.example", type: "ICMPping", destination: "198.19.9.9" }])]]);
  const owner = shardOwner("files_clash.example", 3);
  shards(3).forEach((s) => {
    const { merged, warnings } = mergeAs(s, c, lists);
    const clash = "a configured target has this dynamic target's name: the configured one is probed";
    expect({ index: s.index, warned: warnings.includes(clash) }).toEqual({ index: s.index, warned: s.index === owner });
    expect(Object.hasOwn(merged.config.targets, "files_clash.example")).toBe(s.index === owner);
    if (s.index === owner) expect(merged.config.targets["files_clash.example"]!.destination).toBe("198.18.9.9");
  });
});

test("targets named __proto__ and constructor are sharded like any other name", () => {
  const c = config(0, "  __proto__: {type: ICMPping, destination: 198.18.7.1}\n  constructor: {type: ICMPping, destination: 198.18.7.2}\n");
  expect(Object.keys(c.targets).sort()).toEqual(["__proto__", "constructor"]);
  const kept = shards(2).map((s) => Object.keys(mergeAs(s, c, new Map()).merged.config.targets));
  expect(kept.flat().sort()).toEqual(["__proto__", "constructor"]);
  kept.forEach((names, index) => expect(names.every((n) => shardOwner(n, 2) === index)).toBe(true));
  for (const s of shards(2)) expect(Object.hasOwn(mergeAs(s, c, new Map()).merged.config.targets, "__proto__")).toBe(shardOwner("__proto__", 2) === s.index);
});
