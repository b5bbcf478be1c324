/**
 * The limits of src/config/limits.ts as `check` and the daemon's loader apply them: every
 * duration bounded far below setTimeout's 2^31-1 ms, an iteration the plan can hold, label values
 * of bounded size, and settings files read only when they are regular files of bounded size.
 * The bad-*.yaml rows of load.test.ts give the exact lines for one fault each; these tests cover
 * the bounds themselves (the last value accepted, the first refused) and what has no fixture.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Json } from "../../src/config/describe.ts";
import { configJsonSchema } from "../../src/config/describe.ts";
import {
  MAX_CONFIG_FILE_BYTES,
  MAX_DURATION_S,
  MAX_GROUPS,
  MAX_LIFETIME_S,
  MAX_PROBES_PER_ITERATION,
  MAX_TARGETS,
} from "../../src/config/limits.ts";
import { parseConfigText, type ParseResult } from "../../src/config/load.ts";
import { validateValue } from "../../src/config/validate.ts";
import { formatIssue } from "../../src/config/validate-yaml.ts";
import { ConfigSchema, InventoryListSchema } from "../../src/config/schema.ts";
import { checkFile, loadAll } from "../../src/daemon/configuration.ts";
import { addressesOverlap, parseApiConfigText } from "../../src/inventory/api-config.ts";
import { destinationSize, expandDestination } from "../../src/targets/destinations.ts";

const TIMER_MAX_MS = 2 ** 31 - 1;

const dir = mkdtempSync(join(tmpdir(), "netprobify-limits-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GLOBAL = "probe_name: p\n  interval: 30\n  nb_proc: 1\n  logging_level: INFO\n  prometheus_port: 8000\n  dns_update_interval: 0";

/** A config with `global` extended by `extra` (lines indented by two) and the given targets. */
function text(extra = "", targets = "  t: {type: ICMPping, destination: 198.18.0.1}", groups = "  g: {}", tail = ""): string {
  return `global:\n  ${GLOBAL}\n${extra}\ngroups:\n${groups}\ntargets:\n${targets}\n${tail}`;
}

function issues(r: ParseResult): string[] {
  return r.ok ? [] : r.issues.map(formatIssue);
}

describe("durations", () => {
  test("every field described in seconds has a maximum, and no maximum overflows a timer", () => {
    const found: string[] = [];
    const walk = (node: Json, path: string) => {
      if (node === null || typeof node !== "object") return;
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${path}[${i}]`));
      const description = typeof node.description === "string" ? node.description : "";
      if (/^(Seconds|Overrides global\.dns_update_interval)/.test(description) && (node.type === "number" || node.type === "integer")) {
        found.push(path);
        expect({ path, maximum: node.maximum }).toEqual({ path, maximum: MAX_DURATION_S });
      }
      for (const [k, v] of Object.entries(node)) walk(v, `${path}.${k}`);
    };
    walk(configJsonSchema(), "");
    // interval, interval_packets, dns_update_interval, reload_conf_interval, timeout (global),
    // timeout, dns_update_interval (target, in each of the variant's branches or shared), refresh_interval, timeout (http).
    expect(found.length).toBeGreaterThanOrEqual(9);
    expect(MAX_DURATION_S * 1000).toBeLessThan(TIMER_MAX_MS);
  });

  const FIELDS: [what: string, at: (value: number) => string][] = [
    ["global.interval", (s) => text().replace("interval: 30", `interval: ${s}`)],
    ["global.interval_packets", (s) => text(`  interval_packets: ${s}`)],
    ["global.dns_update_interval", (s) => text().replace("dns_update_interval: 0", `dns_update_interval: ${s}`)],
    ["global.reload_conf_interval", (s) => text(`  reload_conf_interval: ${s}`)],
    ["global.timeout", (s) => text(`  timeout: ${s}`)],
    ["targets.t.timeout", (s) => text("", `  t: {type: ICMPping, destination: 198.18.0.1, timeout: ${s}}`)],
    ["targets.t.dns_update_interval", (s) => text("", `  t: {type: ICMPping, destination: 198.18.0.1, dns_update_interval: ${s}}`)],
    ["inventories.http.h.refresh_interval", (s) => text("", undefined, undefined, `inventories: {http: {h: {url: "http://198.18.0.9/", refresh_interval: ${s}}}}`)],
    ["inventories.http.h.timeout", (s) => text("", undefined, undefined, `inventories: {http: {h: {url: "http://198.18.0.9/", timeout: ${s}}}}`)],
  ];

  test.each(FIELDS)("%s: a day is accepted; a second more, 2^31 ms and 1e308 are refused", (what, at) => {
    expect(issues(parseConfigText(at(MAX_DURATION_S), "d.yaml"))).toEqual([]);
    for (const value of [MAX_DURATION_S + 1, 2_147_484, 1e308]) {
      const lines = issues(parseConfigText(at(value), "d.yaml"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^d\\.yaml:\\d+:\\d+: ${what.replace(/\./g, "\\.")}: \\S+ is out of range \\(.*86400\\)$`));
    }
  });

  test("api.yaml lifetimes: up to 365 days", () => {
    const api = (lifetimes: string) =>
      parseApiConfigText(`token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: 8001\ngroups: [g]\n${lifetimes}`, "api.yaml");
    expect(api("target_lifetime: 365d\nmax_target_lifetime: 365d\n").ok).toBe(true);
    expect(api(`max_target_lifetime: ${MAX_LIFETIME_S + 1}\n`)).toEqual({
      ok: false,
      unreadable: false,
      missing: false,
      lines: [
        `api.yaml:5:22: max_target_lifetime: ${MAX_LIFETIME_S + 1} is 31,536,001 s, longer than 365 days (a number of seconds, or a duration such as "1d 3h 2m" (days, hours, minutes, seconds), of at most 365d)`,
      ],
    });
    expect(api('target_lifetime: "400d"\nmax_target_lifetime: "400d"\n')).toMatchObject({ ok: false, lines: { length: 2 } });
  });

  test("a dynamic target's lifetime: up to 365 days", () => {
    const check = (lifetime: string) => validateValue(InventoryListSchema, [{ hostname: "h", type: "ICMPping", lifetime }]);
    expect(check("365d").ok).toBe(true);
    const r = check("366d");
    expect(r.ok ? [] : r.problems.map((p) => p.message)).toEqual(['"366d" is 31,622,400 s, longer than 365 days']);
  });
});

describe("what one iteration holds", () => {
  const targets = (n: number, packets: number) =>
    Array.from({ length: n }, (_, i) => `  t${i}: {type: ICMPping, destination: 198.18.0.${i + 1}, nb_packets: ${packets}}`).join("\n");

  test(`exactly ${MAX_PROBES_PER_ITERATION.toLocaleString("en-US")} probes is accepted; one target more is refused with the figure`, () => {
    expect(issues(parseConfigText(text("", targets(10, 1_000_000)), "i.yaml"))).toEqual([]);
    expect(issues(parseConfigText(text("", `${targets(10, 1_000_000)}\n  extra: {type: ICMPping, destination: 198.18.1.1}`), "i.yaml"))).toEqual([
      'i.yaml:12:3: targets: the targets send 10,000,001 probes per iteration; the most: "t0", 1,000,000 (at most 10,000,000 probes per iteration: fewer targets, groups, addresses per subnet or nb_packets)',
    ]);
  });

  test("a hostname counts as one address, a subnet as its hosts, each once per group", () => {
    const r = parseConfigText(
      text("", "  a: {type: ICMPping, destination: router.example, nb_packets: 1000000}\n  b: {type: ICMPping, destination: 198.18.0.0/30, is_subnet: true, nb_packets: 1000000}", "  g1: {}\n  g2: {}\n  g3: {}\n  g4: {}"),
      "h.yaml",
    );
    // 4 groups x (1 + 2 hosts) x 1,000,000 = 12,000,000.
    expect(issues(r)).toEqual([expect.stringContaining("the targets send 12,000,000 probes per iteration")]);
  });

  test(`${MAX_TARGETS.toLocaleString("en-US")} targets, ${MAX_GROUPS.toLocaleString("en-US")} groups at most`, () => {
    const global = { probe_name: "p", interval: 30, nb_proc: 1, logging_level: "INFO", prometheus_port: 8000, dns_update_interval: 0 };
    const target = { type: "ICMPping", destination: "198.18.0.1" };
    const many = (n: number, value: object) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`n${i}`, value]));
    const messages = (data: unknown) => {
      const r = validateValue(ConfigSchema, data);
      return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message} (${p.expected})`);
    };
    expect(messages({ global, groups: many(MAX_GROUPS + 1, {}), targets: {} })).toEqual(["groups: 1,001 groups are too many (at most 1,000 groups)"]);
    expect(messages({ global, groups: { g: {} }, targets: many(MAX_TARGETS + 1, target) })).toEqual([
      "targets: 100,001 targets are too many (at most 100,000 targets)",
    ]);
  });

  // Whatever the schema accepts, the daemon's expansion (resolver and plan) takes without throwing.
  test.each([
    "198.18.0.1", "fd00::1", "198.18.0.0/16", "198.18.0.0/15", "fd00::/112", "fd00::/111", "198.18.0.0/33", "fd00::/129",
    "198.18.0.0/", "198.18.0.0/x", "/24", "198.18.*.*", "198.*.*.1", "198.18.1-2.*", "198.18.9-3.1", "198.18.256.1",
    "198.18.0.1-255", "198.18.0.-", "1-2-3.1.1.1", "host.example", "198.18.0.1/32", "::/0", "0.0.0.0/0", "a/b/c",
  ])("%s: accepted exactly when it expands, to the count the schema worked out", (destination) => {
    const r = validateValue(ConfigSchema, {
      global: { probe_name: "p", interval: 30, nb_proc: 1, logging_level: "INFO", prometheus_port: 8000, dns_update_interval: 0 },
      groups: { g: {} },
      targets: { t: { type: "ICMPping", destination, is_subnet: true } },
    });
    const size = destinationSize(destination);
    if (size.form === "hostname") return expect(r.ok).toBe(true);
    let expanded: number | undefined;
    try {
      expanded = expandDestination(destination).addresses.length;
    } catch {
      expanded = undefined;
    }
    expect({ accepted: r.ok, expanded }).toEqual(r.ok ? { accepted: true, expanded: size.ok ? size.addresses : -1 } : { accepted: false, expanded: undefined });
  });
});

describe("label values", () => {
  test("a 5 MB probe_name is refused in a message of a few dozen characters, not 5 MB", () => {
    const lines = issues(parseConfigText(text().replace("probe_name: p", `probe_name: ${"p".repeat(5_000_000)}`), "l.yaml"));
    expect(lines).toEqual([
      'l.yaml:2:15: global.probe_name: "pppppppppppppppppppppppppppppppppppppppp"... (5,000,000 characters) is not a valid name (a name of up to 255 lowercase letters, digits, _, - and .)',
    ]);
  });

  test("names of 255 characters are accepted, 256 refused; 64 histogram buckets accepted, 65 refused", () => {
    const name = (n: number) => "n".repeat(n);
    expect(issues(parseConfigText(text("", `  ${name(255)}: {type: ICMPping, destination: 198.18.0.1}`, `  ${name(255)}: {}`), "n.yaml"))).toEqual([]);
    expect(issues(parseConfigText(text("", `  ${name(256)}: {type: ICMPping, destination: 198.18.0.1}`), "n.yaml"))).toHaveLength(1);
    const buckets = (n: number) => `  histogram_buckets: [${Array.from({ length: n }, (_, i) => i + 1).join(", ")}]`;
    expect(issues(parseConfigText(text(buckets(64)), "b.yaml"))).toEqual([]);
    expect(issues(parseConfigText(text(buckets(65)), "b.yaml"))).toHaveLength(1);
  });
});

describe("settings files", () => {
  test("a FIFO, /dev/zero and a file over 64 MiB are refused before a byte is read (exit 66, path once)", async () => {
    const fifo = join(dir, "fifo.yaml");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const huge = join(dir, "huge.yaml");
    writeFileSync(huge, "");
    truncateSync(huge, MAX_CONFIG_FILE_BYTES + 1);
    expect(await checkFile(fifo)).toEqual({ exitCode: 66, lines: [`${fifo}: cannot read the file: it is a FIFO, not a regular file`] });
    expect(await checkFile("/dev/zero")).toEqual({ exitCode: 66, lines: ["/dev/zero: cannot read the file: it is a character device, not a regular file"] });
    expect(await checkFile(huge)).toEqual({
      exitCode: 66,
      lines: [`${huge}: cannot read the file: it is 67,108,865 bytes, over the limit of 67,108,864 (64 MiB)`],
    });
  });

  test("the daemon's loader says the same, the path once (it used to print it twice)", async () => {
    const missing = join(dir, "absent.yaml");
    for (const isolated of [true, false]) {
      expect(await loadAll(missing, { isolated })).toEqual({ exitCode: 66, lines: [`${missing}: cannot read the file: no such file`] });
    }
  });

  test("api.yaml beside the config: a FIFO is unreadable (66), not a wait for a writer", async () => {
    const d = join(dir, "api-fifo");
    mkdirSync(d);
    writeFileSync(join(d, "netprobify.yaml"), text());
    expect(spawnSync("mkfifo", [join(d, "api.yaml")]).status).toBe(0);
    expect(await checkFile(join(d, "netprobify.yaml"))).toEqual({
      exitCode: 66,
      lines: [`${join(d, "api.yaml")}: cannot read the file: it is a FIFO, not a regular file`],
    });
  });
});

describe("the API's port and the metrics port", () => {
  test("the same port on an overlapping address is refused, by check and the daemon's loader alike", async () => {
    const d = join(dir, "api-port");
    mkdirSync(d);
    writeFileSync(join(d, "netprobify.yaml"), text().replace("prometheus_port: 8000", "prometheus_port: 8001"));
    writeFileSync(join(d, "api.yaml"), "token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: 8001\ngroups: [g]\n");
    const expected = {
      exitCode: 65 as const,
      lines: [
        `${join(d, "api.yaml")}:3:14: listen_port: 8001 on 127.0.0.1 collides with the metrics listener, global.prometheus_port 8001 on 0.0.0.0 (a port other than the metrics port, or addresses that do not overlap)`,
      ],
    };
    expect(await checkFile(join(d, "netprobify.yaml"))).toEqual(expected);
    expect(await loadAll(join(d, "netprobify.yaml"))).toEqual(expected);
    writeFileSync(join(d, "api.yaml"), "token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: 8002\ngroups: [g]\n");
    expect((await checkFile(join(d, "netprobify.yaml"))).exitCode).toBe(0);
  });

  test.each([
    ["0.0.0.0", "127.0.0.1", true],
    ["127.0.0.1", "127.0.0.1", true],
    ["::", "127.0.0.1", true],
    ["::", "::1", true],
    ["0.0.0.0", "::1", false],
    ["127.0.0.1", "127.0.0.2", false],
    ["::1", "0:0:0:0:0:0:0:1", true],
    ["::1", "127.0.0.1", false],
  ] as const)("%s and %s overlap: %p", (a, b, overlap) => {
    expect(addressesOverlap(a, b)).toBe(overlap);
    expect(addressesOverlap(b, a)).toBe(overlap);
  });
});
