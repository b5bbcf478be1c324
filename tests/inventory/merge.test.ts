/**
 * DynamicTargets.merge: published lists into the config the planner reads. Pure but for the
 * first-seen memory and the warnings, so every test injects the clock and captures the log.
 * Lists are checked by InventoryListSchema first, exactly as the supervisor hands them over.
 */
import { recordLog, type LogLine } from "../support/log-recorder.ts";
import { describe, expect, test } from "bun:test";
import { parseConfigText } from "../../src/config/load.ts";
import { validateValue, formatProblem } from "../../src/config/validate.ts";
import { InventoryListSchema, type Config, type InventoryTarget } from "../../src/config/schema.ts";
import { DynamicTargets, inventoryNames, nameTail } from "../../src/inventory/merge.ts";
import type { InventoryList } from "../../src/inventory/supervisor.ts";

type Line = LogLine;

const capture = recordLog;

const CONFIG_TEXT = `global:
  probe_name: unit
  interval: 10
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 9
  dns_update_interval: 0
groups:
  default: {}
  wan:
    permit_target_auto_register: false
targets:
  web:
    type: ICMPping
    destination: 198.18.0.1
  inv_clash:
    type: ICMPping
    destination: 198.18.0.2
`;

function baseConfig(): Config {
  const r = parseConfigText(CONFIG_TEXT, "merge.yaml");
  if (!r.ok) throw new Error(`test config invalid: ${JSON.stringify(r.issues)}`);
  return r.config;
}

/** Targets as the supervisor hands them over: validated by InventoryListSchema. */
function targets(raw: unknown[]): InventoryTarget[] {
  const r = validateValue(InventoryListSchema, raw);
  if (!r.ok) throw new Error(`test list invalid: ${r.problems.map(formatProblem).join("; ")}`);
  return r.value;
}

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

function list(raw: unknown[], receivedAt = T0): InventoryList {
  return { targets: targets(raw), receivedAt };
}

function lists(entries: Record<string, InventoryList>): Map<string, InventoryList> {
  return new Map(Object.entries(entries));
}

/** The dynamic targets of a merged config: what the merge added to the configured ones. */
function dynamicNames(config: Config): string[] {
  const configured = new Set(Object.keys(baseConfig().targets));
  return Object.keys(config.targets).filter((n) => !configured.has(n)).sort();
}

const warnings = (lines: Line[]) => lines.filter((l) => l.level === "WARNING");

describe("names", () => {
  test("a hostname as a name tail: lowercase, anything but [a-z0-9_.-] as _", () => {
    expect(nameTail("Web-1.Example.COM")).toBe("web-1.example.com");
    expect(nameTail("2001:DB8::1")).toBe("2001_db8__1");
    expect(nameTail("fe80::1")).toBe("fe80__1");
    expect(nameTail("a_b.c-d")).toBe("a_b.c-d");
  });

  test("one target per hostname: <inventory>_<hostname>, no suffix", () => {
    const { log } = capture();
    const merged = new DynamicTargets(log, () => T0).merge(
      baseConfig(),
      lists({
        cmdb: list([
          { hostname: "DB1.Example", type: "ICMPping" },
          { hostname: "2001:db8::53", type: "TCPsyn", dst_port: 53 },
          { hostname: "192.0.2.7", type: "UDPunreachable", dst_port: 33434 },
        ]),
      }),
    );
    expect(dynamicNames(merged.config)).toEqual(["cmdb_192.0.2.7", "cmdb_2001_db8__53", "cmdb_db1.example"]);
  });

  test("several targets of one hostname get a suffix each: type, port, family, size", () => {
    const published = targets([
      { hostname: "web", type: "TCPsyn", dst_port: 443 },
      { hostname: "web", type: "TCPsyn", dst_port: 80 },
      { hostname: "web", type: "ICMPping" },
      { hostname: "web", type: "ICMPping", address_family: "ipv6" },
      { hostname: "web", type: "ICMPping", ip_payload_size: 100 },
      { hostname: "web", type: "TCPsyn", dst_port: 443, address_family: "ipv6", ip_payload_size: 20 },
      { hostname: "web", type: "UDPunreachable", dst_port: 33434 },
      { hostname: "other", type: "ICMPping" },
    ]);
    expect(inventoryNames("api", published)).toEqual([
      "api_web_tcpsyn_443",
      "api_web_tcpsyn_80",
      "api_web_icmp",
      "api_web_icmp_ipv6",
      "api_web_icmp_100b",
      "api_web_tcpsyn_443_ipv6_20b",
      "api_web_udp_33434",
      "api_other",
    ]);
  });

  test("an ICMP target's dst_port does not enter its suffix", () => {
    const published = targets([
      { hostname: "web", type: "ICMPping", dst_port: 7 },
      { hostname: "web", type: "TCPsyn", dst_port: 7 },
    ]);
    expect(inventoryNames("api", published)).toEqual(["api_web_icmp", "api_web_tcpsyn_7"]);
  });

  test("hostnames differing only in case are one hostname: suffixed, not clashing", () => {
    const published = targets([
      { hostname: "WEB", type: "ICMPping" },
      { hostname: "web", type: "TCPsyn", dst_port: 22 },
    ]);
    expect(inventoryNames("api", published)).toEqual(["api_web_icmp", "api_web_tcpsyn_22"]);
  });

  // The family of a target whose destination (or hostname) is an IPv6 literal is ipv6 even when
  // address_family is left out (the schema accepts that, and refuses "ipv4" with it), yet the
  // suffix only looks at address_family: the two targets below get the same name and the IPv6
  // one is dropped as a "duplicate".
  test("a target whose destination is an IPv6 literal gets the _ipv6 suffix without address_family", () => {
    const published = targets([
      { hostname: "web", type: "ICMPping", destination: "192.0.2.1" },
      { hostname: "web", type: "ICMPping", destination: "2001:db8::1" },
    ]);
    expect(inventoryNames("file", published)).toEqual(["file_web_icmp", "file_web_icmp_ipv6"]);
  });
});

describe("merge", () => {
  test("a dynamic target: destination defaults to the hostname, description from_<inventory>", () => {
    const { log } = capture();
    const merged = new DynamicTargets(log, () => T0).merge(
      baseConfig(),
      lists({
        cmdb: list([
          { hostname: "db1.example", type: "TCPsyn", dst_port: 5432, nb_packets: 3 },
          { hostname: "db2.example", type: "ICMPping", destination: "198.18.1.2", description: "db two" },
        ]),
      }),
    );
    const db1 = merged.config.targets["cmdb_db1.example"]!;
    expect(db1.destination).toBe("db1.example");
    expect(db1.description).toBe("from_cmdb");
    expect(db1.type).toBe("TCPsyn");
    expect(db1.type === "TCPsyn" && db1.dst_port).toBe(5432);
    expect(db1.nb_packets).toBe(3);
    // The inventory-only fields do not reach the planner.
    expect(db1).not.toHaveProperty("hostname");
    expect(db1).not.toHaveProperty("groups");
    expect(db1).not.toHaveProperty("lifetime");
    expect(db1).not.toHaveProperty("creation_date");
    // Without groups, the configured rules apply: auto-registration on, as the schema defaults.
    expect(db1.auto_register_to_groups).toBe(true);
    expect(db1.explicit_groups).toEqual({ register_to: [], exclude_from: [] });

    const db2 = merged.config.targets["cmdb_db2.example"]!;
    expect(db2.destination).toBe("198.18.1.2");
    expect(db2.description).toBe("db two");
  });

  test("groups: explicit register_to, auto-registration off", () => {
    const { log, lines } = capture();
    const merged = new DynamicTargets(log, () => T0).merge(
      baseConfig(),
      lists({ cmdb: list([{ hostname: "h", type: "ICMPping", groups: ["wan", "default"] }]) }),
    );
    const t = merged.config.targets["cmdb_h"]!;
    expect(t.auto_register_to_groups).toBe(false);
    expect(t.explicit_groups).toEqual({ register_to: ["wan", "default"], exclude_from: [] });
    expect(warnings(lines)).toEqual([]);
  });

  test("an unknown group is warned about once, while it stays; again if it comes back", () => {
    const { log, lines } = capture();
    const dyn = new DynamicTargets(log, () => T0);
    const bad = lists({ cmdb: list([{ hostname: "h", type: "ICMPping", groups: ["wan", "nope"] }]) });
    const good = lists({ cmdb: list([{ hostname: "h", type: "ICMPping", groups: ["wan"] }]) });

    const merged = dyn.merge(baseConfig(), bad);
    // The target is kept; the unknown group is left for the planner to ignore.
    expect(merged.config.targets["cmdb_h"]!.explicit_groups.register_to).toEqual(["wan", "nope"]);
    expect(merged.counts.get("cmdb")).toBe(1);
    dyn.merge(baseConfig(), bad);
    dyn.merge(baseConfig(), bad);
    expect(warnings(lines)).toEqual([
      {
        level: "WARNING",
        msg: "dynamic target names a group that does not exist: ignored",
        fields: { inventory: "cmdb", target: "cmdb_h", group: "nope" },
      },
    ]);
    dyn.merge(baseConfig(), good);
    dyn.merge(baseConfig(), bad);
    expect(warnings(lines)).toHaveLength(2);
  });

  test("an exact duplicate is dropped and warned about once, however many copies", () => {
    const { log, lines } = capture();
    const dyn = new DynamicTargets(log, () => T0);
    const copies = lists({
      cmdb: list([
        { hostname: "dup", type: "ICMPping" },
        { hostname: "dup", type: "ICMPping" },
        { hostname: "dup", type: "ICMPping" },
        { hostname: "other", type: "ICMPping" },
      ]),
    });
    const merged = dyn.merge(baseConfig(), copies);
    // Three of one hostname: suffixed, and the copies dropped.
    expect(dynamicNames(merged.config)).toEqual(["cmdb_dup_icmp", "cmdb_other"]);
    expect(merged.counts.get("cmdb")).toBe(2);
    dyn.merge(baseConfig(), copies);
    expect(warnings(lines)).toEqual([
      {
        level: "WARNING",
        msg: "inventory publishes the same target twice: the second is ignored",
        fields: { inventory: "cmdb", hostname: "dup" },
      },
    ]);
  });

  test("a configured target wins a name clash, warned once", () => {
    const { log, lines } = capture();
    const dyn = new DynamicTargets(log, () => T0);
    const config = baseConfig();
    const published = lists({
      inv: list([
        { hostname: "clash", type: "TCPsyn", dst_port: 1 },
        { hostname: "fine", type: "ICMPping" },
      ]),
    });
    const merged = dyn.merge(config, published);
    expect(merged.config.targets["inv_clash"]).toEqual(config.targets["inv_clash"]!);
    expect(merged.config.targets["inv_clash"]!.type).toBe("ICMPping");
    expect(merged.counts.get("inv")).toBe(1);
    dyn.merge(config, published);
    expect(warnings(lines)).toEqual([
      {
        level: "WARNING",
        msg: "a configured target has this dynamic target's name: the configured one is probed",
        fields: { inventory: "inv", target: "inv_clash" },
      },
    ]);
  });

  test("two inventories whose names meet: the first by name is kept, the other dropped with a warning", () => {
    // "a" + "b_c" and "a_b" + "c" are both a_b_c.
    const { log, lines } = capture();
    const merged = new DynamicTargets(log, () => T0).merge(
      baseConfig(),
      lists({
        a_b: list([{ hostname: "c", type: "TCPsyn", dst_port: 2 }]),
        a: list([{ hostname: "b_c", type: "ICMPping" }]),
      }),
    );
    expect(merged.config.targets["a_b_c"]!.description).toBe("from_a");
    expect(merged.counts).toEqual(new Map([["a", 1], ["a_b", 0]]));
    expect(warnings(lines).map((l) => l.fields.target)).toEqual(["a_b_c"]);
  });

  test("counts per inventory, configured targets untouched, the input config not mutated", () => {
    const { log } = capture();
    const config = baseConfig();
    const before = structuredClone(config);
    const merged = new DynamicTargets(log, () => T0).merge(
      config,
      lists({
        zeta: list([{ hostname: "z1", type: "ICMPping" }]),
        alpha: list([
          { hostname: "a1", type: "ICMPping" },
          { hostname: "a2", type: "ICMPping" },
        ]),
        empty: list([]),
      }),
    );
    expect(merged.counts).toEqual(new Map([["alpha", 2], ["empty", 0], ["zeta", 1]]));
    expect(Object.keys(merged.config.targets).sort()).toEqual(["alpha_a1", "alpha_a2", "inv_clash", "web", "zeta_z1"]);
    expect(merged.config.targets["web"]).toBe(config.targets["web"]!);
    expect(merged.config.groups).toBe(config.groups);
    expect(merged.config.global).toBe(config.global);
    expect(config).toEqual(before);
  });

  test("no lists and nothing remembered: the same config object back", () => {
    const { log } = capture();
    const dyn = new DynamicTargets(log, () => T0);
    const config = baseConfig();
    const first = dyn.merge(config, new Map());
    expect(first.config).toBe(config);
    expect(first.counts.size).toBe(0);

    // After an inventory went away, one merge forgets it, and then the config comes back as is.
    dyn.merge(config, lists({ inv: list([{ hostname: "h", type: "ICMPping" }]) }));
    const gone = dyn.merge(config, new Map());
    expect(Object.keys(gone.config.targets).sort()).toEqual(["inv_clash", "web"]);
    expect(dyn.merge(config, new Map()).config).toBe(config);
  });

  test("dynamic targets past the iteration limits are left out, warned once per inventory, not counted", () => {
    const { log, lines } = capture();
    const dyn = new DynamicTargets(log, () => T0);
    // The configured targets send 2 probes (web and inv_clash, in the default group); each of
    // these sends 1,000,000: nine fit under 10,000,000, the tenth does not.
    const big = (i: number) => ({ hostname: `h${i}`, type: "ICMPping", destination: `198.18.1.${i}`, nb_packets: 1_000_000 });
    const published = lists({ cmdb: list(Array.from({ length: 12 }, (_, i) => big(i))) });
    const merged = dyn.merge(baseConfig(), published);
    expect(dynamicNames(merged.config)).toEqual(Array.from({ length: 9 }, (_, i) => `cmdb_h${i}`).sort());
    expect(merged.counts.get("cmdb")).toBe(9);
    dyn.merge(baseConfig(), published);
    expect(warnings(lines).map((l) => [l.msg, l.fields.inventory])).toEqual([["targets past the iteration limits are left out", "cmdb"]]);
  });

  test("a subnet counts as its addresses, once per group: past 1,000,000 addresses it is left out", () => {
    const { log } = capture();
    // 16 subnets of 65,534 hosts in one group: 15 fit under 1,000,000 addresses with the configured 2.
    const subnet = (i: number) => ({ hostname: `net${i}`, type: "ICMPping", destination: `10.${i}.0.0/16`, is_subnet: true });
    const merged = new DynamicTargets(log, () => T0).merge(baseConfig(), lists({ nets: list(Array.from({ length: 16 }, (_, i) => subnet(i))) }));
    expect(merged.counts.get("nets")).toBe(15);
  });
});

describe("expiry", () => {
  const HOUR = 3_600_000;

  test("creation_date + lifetime: kept before, dropped at and after", () => {
    let now = T0;
    const { log } = capture();
    const dyn = new DynamicTargets(log, () => now);
    const published = lists({
      inv: list(
        [
          // Created an hour before T0, living 2 h: expires at T0 + 1 h.
          { hostname: "iso", type: "ICMPping", creation_date: new Date(T0 - HOUR).toISOString(), lifetime: "2h" },
          { hostname: "epoch", type: "ICMPping", creation_date: (T0 - HOUR) / 1000, lifetime: 7200 },
          { hostname: "offset", type: "ICMPping", creation_date: "2026-01-01T12:00:00+01:00", lifetime: "2h" },
          { hostname: "forever", type: "ICMPping", creation_date: "2020-01-01T00:00:00Z" },
        ],
        T0,
      ),
    });
    expect(dynamicNames(dyn.merge(baseConfig(), published).config)).toEqual(["inv_epoch", "inv_forever", "inv_iso", "inv_offset"]);
    now = T0 + HOUR - 1;
    expect(dyn.merge(baseConfig(), published).counts.get("inv")).toBe(4);
    now = T0 + HOUR;
    const merged = dyn.merge(baseConfig(), published);
    expect(dynamicNames(merged.config)).toEqual(["inv_forever"]);
    expect(merged.counts.get("inv")).toBe(1);
  });

  test("an already expired target never appears", () => {
    const { log } = capture();
    const merged = new DynamicTargets(log, () => T0).merge(
      baseConfig(),
      lists({ inv: list([{ hostname: "old", type: "ICMPping", creation_date: "2025-12-31T00:00:00Z", lifetime: "1d" }]) }),
    );
    expect(dynamicNames(merged.config)).toEqual([]);
    expect(merged.counts.get("inv")).toBe(0);
  });

  test("without creation_date the lifetime counts from the list it first came in, across republishing", () => {
    let now = T0;
    const { log } = capture();
    const dyn = new DynamicTargets(log, () => now);
    const entry = { hostname: "tmp", type: "ICMPping", lifetime: "1h 30m" };
    const other = { hostname: "other", type: "ICMPping" };

    expect(dynamicNames(dyn.merge(baseConfig(), lists({ inv: list([entry], T0) })).config)).toEqual(["inv_tmp"]);
    // Republished an hour later, with another target beside it: the lifetime does not restart.
    now = T0 + HOUR;
    const later = lists({ inv: list([entry, other], T0 + HOUR) });
    expect(dynamicNames(dyn.merge(baseConfig(), later).config)).toEqual(["inv_other", "inv_tmp"]);
    now = T0 + 1.5 * HOUR - 1;
    expect(dynamicNames(dyn.merge(baseConfig(), later).config)).toEqual(["inv_other", "inv_tmp"]);
    now = T0 + 1.5 * HOUR;
    expect(dynamicNames(dyn.merge(baseConfig(), later).config)).toEqual(["inv_other"]);
    // Still published but expired: it stays out (its first sighting is remembered).
    now = T0 + 3 * HOUR;
    expect(dynamicNames(dyn.merge(baseConfig(), lists({ inv: list([entry, other], T0 + 3 * HOUR) })).config)).toEqual([
      "inv_other",
    ]);
  });

  test("a target that left the list and comes back starts a new lifetime", () => {
    let now = T0;
    const { log } = capture();
    const dyn = new DynamicTargets(log, () => now);
    const entry = { hostname: "tmp", type: "ICMPping", lifetime: 3600 };
    dyn.merge(baseConfig(), lists({ inv: list([entry], T0) }));
    now = T0 + 2 * HOUR;
    expect(dynamicNames(dyn.merge(baseConfig(), lists({ inv: list([entry], T0) })).config)).toEqual([]);
    dyn.merge(baseConfig(), lists({ inv: list([], now) }));
    expect(dynamicNames(dyn.merge(baseConfig(), lists({ inv: list([entry], now) })).config)).toEqual(["inv_tmp"]);
  });

  test("first sightings are per inventory: the same hostname in another inventory has its own", () => {
    let now = T0;
    const { log } = capture();
    const dyn = new DynamicTargets(log, () => now);
    const entry = { hostname: "tmp", type: "ICMPping", lifetime: 3600 };
    dyn.merge(baseConfig(), lists({ one: list([entry], T0) }));
    now = T0 + 0.75 * HOUR;
    const both = lists({ one: list([entry], T0), two: list([entry], now) });
    expect(dynamicNames(dyn.merge(baseConfig(), both).config)).toEqual(["one_tmp", "two_tmp"]);
    now = T0 + 1.5 * HOUR;
    expect(dynamicNames(dyn.merge(baseConfig(), both).config)).toEqual(["two_tmp"]);
  });
});
