/**
 * The inventory side of the config schema: lifetimes and creation dates, a published list as
 * validateValue reports it (the supervisor's log line), and the config's `inventories` section
 * with the exact FILE:LINE:COL lines `netprobify check` prints.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { parseConfigText } from "../../src/config/load.ts";
import { formatProblem, validateValue } from "../../src/config/validate.ts";
import { formatIssue } from "../../src/config/validate-yaml.ts";
import { creationSeconds, InventoryListSchema, lifetimeSeconds, MAX_INVENTORY_TARGETS } from "../../src/config/schema.ts";

describe("lifetimeSeconds", () => {
  test.each([
    ["1d 3h 2m", 97_320],
    ["90s", 90],
    ["1d3h", 97_200],
    [" 5m ", 300],
    ["1 d", 86_400],
    ["2h 2h", 14_400],
    ["30d", 2_592_000],
    [3600, 3600],
    [1, 1],
  ] as [string | number, number][])("%p is %p s", (value, seconds) => {
    expect(lifetimeSeconds(value)).toBe(seconds);
  });

  test.each([["", "empty"], ["1x", "unknown unit"], ["d", "no number"], ["1.5h", "a fraction"], ["0s", "zero"], ["-1s", "negative"], ["1h garbage", "trailing text"]])(
    "refuses %p (%s)",
    (value) => {
      expect(lifetimeSeconds(value)).toBeUndefined();
    },
  );

  test.each([[0], [-1], [1.5], [Number.NaN], [Number.POSITIVE_INFINITY], [null], [undefined], [true], [["1h"]]])("refuses %p", (value) => {
    expect(lifetimeSeconds(value)).toBeUndefined();
  });

  test("refuses a sum past the safe integers", () => {
    expect(lifetimeSeconds(`${"9".repeat(20)}d`)).toBeUndefined();
  });
});

describe("creationSeconds", () => {
  const NEW_YEAR = Date.UTC(2026, 0, 1) / 1000;

  test.each([
    ["2026-01-01T00:00:00Z", NEW_YEAR],
    ["2026-01-01T00:00:00.5Z", NEW_YEAR + 0.5],
    ["2026-01-01T01:00:00+01:00", NEW_YEAR],
    ["2026-01-01T01:00:00+0100", NEW_YEAR],
    ["2025-12-31T19:00:00-05:00", NEW_YEAR],
    ["2026-01-01 00:00:00Z", NEW_YEAR],
    // A date alone is midnight UTC (ECMAScript's rule for date-only forms).
    ["2026-01-01", NEW_YEAR],
    [1_767_225_600, NEW_YEAR],
    [1_767_225_600.25, NEW_YEAR + 0.25],
    [0, 0],
  ] as [string | number, number][])("%p is %p", (value, seconds) => {
    expect(creationSeconds(value)).toBe(seconds);
  });

  test.each([
    ["garbage"],
    [""],
    ["yesterday"],
    ["1767225600"],
    ["2026-13-01T00:00:00Z"],
    ["2026-01-01T25:00:00Z"],
    ["2026-01-01T00:00:00Zjunk"],
    ["01/01/2026"],
    [-1],
    [Number.NaN],
    [Number.POSITIVE_INFINITY],
    [null],
    [undefined],
    [{}],
  ])("refuses %p", (value) => {
    expect(creationSeconds(value)).toBeUndefined();
  });

  describe("time zones", () => {
    const saved = process.env.TZ;
    afterEach(() => {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    });

    test("a date with a zone means the same instant whatever the prober's time zone", () => {
      process.env.TZ = "Asia/Tokyo";
      expect(creationSeconds("2026-01-01T00:00:00Z")).toBe(NEW_YEAR);
      expect(creationSeconds("2026-01-01")).toBe(NEW_YEAR);
      process.env.TZ = "America/New_York";
      expect(creationSeconds("2026-01-01T09:00:00+09:00")).toBe(NEW_YEAR);
    });

    // The doc says "an ISO 8601 date with a zone" but the pattern makes the zone optional, and
    // Date.parse reads a date-time without one in the local time zone: the same published
    // target then expires at different instants on probers in different zones.
    test("a date-time without a zone is refused, not read in the prober's local time", () => {
      process.env.TZ = "Asia/Tokyo";
      const tokyo = creationSeconds("2026-01-01T00:00:00");
      process.env.TZ = "UTC";
      const utc = creationSeconds("2026-01-01T00:00:00");
      expect(tokyo).toBe(utc);
      expect(utc).toBeUndefined();
    });
  });

  // Date.parse rolls 30 February over to 2 March: a date that does not exist is accepted.
  test("a day that does not exist is refused", () => {
    expect(creationSeconds("2026-02-30")).toBeUndefined();
    expect(creationSeconds("2026-02-30T00:00:00Z")).toBeUndefined();
  });
});

describe("InventoryListSchema through validateValue", () => {
  function problems(value: unknown): string[] {
    const r = validateValue(InventoryListSchema, value);
    if (r.ok) throw new Error(`expected problems, got ${JSON.stringify(r.value)}`);
    return r.problems.map(formatProblem);
  }

  test("a valid list: defaults filled, inventory fields kept as published", () => {
    const r = validateValue(InventoryListSchema, [
      { hostname: "web", type: "TCPsyn", dst_port: 443, groups: ["wan"], lifetime: "1d", creation_date: 1_700_000_000 },
      { hostname: "2001:db8::1", type: "ICMPping" },
      { hostname: "ntp", type: "UDPunreachable", dst_port: 123, destination: "198.18.0.9", address_family: "ipv4" },
    ]);
    if (!r.ok) throw new Error(r.problems.map(formatProblem).join("; "));
    expect(r.value).toHaveLength(3);
    const [web, v6, ntp] = r.value;
    expect(web).toMatchObject({ hostname: "web", type: "TCPsyn", dst_port: 443, groups: ["wan"], lifetime: "1d", creation_date: 1_700_000_000 });
    expect(web!.nb_packets).toBe(1);
    expect(web!.explicit_groups).toEqual({ register_to: [], exclude_from: [] });
    expect(v6!.hostname).toBe("2001:db8::1");
    expect(ntp!.destination).toBe("198.18.0.9");
    expect(validateValue(InventoryListSchema, []).ok).toBe(true);
  });

  test("missing hostname", () => {
    expect(problems([{ type: "ICMPping" }])).toEqual(["[0]: hostname is required for a ICMPping target (a hostname or an IP address)"]);
  });

  test("a hostname with a space", () => {
    expect(problems([{ type: "ICMPping", hostname: "a b" }])).toEqual([
      '[0].hostname: "a b" is not a hostname or an IP address (a hostname or an IP address)',
    ]);
  });

  test("bad type", () => {
    expect(problems([{ hostname: "a", type: "Bogus" }])).toEqual([
      '[0].type: "Bogus" is not allowed (one of TCPsyn, ICMPping, UDPunreachable, TWAMPlight)',
    ]);
  });

  test("dst_port 0, and dst_port missing for TCPsyn", () => {
    expect(problems([{ hostname: "a", type: "TCPsyn", dst_port: 0 }])).toEqual([
      "[0].dst_port: 0 is out of range (an integer from 1 to 65535)",
    ]);
    expect(problems([{ hostname: "a", type: "ICMPping" }, { hostname: "b", type: "TCPsyn" }])).toEqual([
      "[1]: dst_port is required for a TCPsyn target (an integer from 1 to 65535)",
    ]);
  });

  test("address_family that does not match a literal hostname or destination", () => {
    expect(problems([{ hostname: "2001:db8::1", type: "ICMPping", address_family: "ipv4" }])).toEqual([
      '[0].address_family: "ipv4" does not match destination "2001:db8::1" (ipv6, the destination\'s family, or no address_family)',
    ]);
    expect(problems([{ hostname: "10.0.0.1", type: "ICMPping", address_family: "ipv6" }])).toEqual([
      '[0].address_family: "ipv6" does not match destination "10.0.0.1" (ipv4, the destination\'s family, or no address_family)',
    ]);
    // The destination, when given, is what is probed: it is the one checked.
    expect(problems([{ hostname: "web", destination: "192.0.2.1", type: "TCPsyn", dst_port: 80, address_family: "ipv6" }])).toEqual([
      '[0].address_family: "ipv6" does not match destination "192.0.2.1" (ipv4, the destination\'s family, or no address_family)',
    ]);
    expect(validateValue(InventoryListSchema, [{ hostname: "10.0.0.1", destination: "2001:db8::2", type: "ICMPping", address_family: "ipv6" }]).ok).toBe(true);
  });

  test("a subnet or range destination needs is_subnet: true, as in a configured target; the hostname counts when there is no destination", () => {
    const expected = "true, to probe every address of it; without it the original read the destination as a hostname, which never resolves";
    expect(problems([
      { hostname: "racks", type: "ICMPping", destination: "198.18.3.0/26" },
      { hostname: "198.18.4.1-20", type: "ICMPping" },
      { hostname: "ok", type: "ICMPping", destination: "198.18.3.0/26", is_subnet: true },
      { hostname: "one", type: "ICMPping", destination: "198.18.3.1", is_subnet: true },
    ])).toEqual([
      `[0].is_subnet: destination "198.18.3.0/26" is a subnet, but is_subnet is not true (${expected})`,
      `[1].is_subnet: destination "198.18.4.1-20" is a range, but is_subnet is not true (${expected})`,
    ]);
  });

  test("unknown field", () => {
    expect(problems([{ hostname: "a", type: "ICMPping", colour: "red" }])).toEqual([
      "[0].colour: unknown field (one of type, description, destination, address_family, dont_fragment, is_subnet, nb_packets, threshold, alert_level, state, timeout, dns_update_interval, auto_register_to_groups, explicit_groups, hostname, groups, creation_date, lifetime, dst_port, ip_payload_size)",
    ]);
    expect(problems([{ hostname: "a", type: "ICMPping", group: ["wan"] }])[0]).toStartWith("[0].group: unknown field, did you mean groups? (");
  });

  test("groups with a bad name, or not a list", () => {
    expect(problems([{ hostname: "a", type: "ICMPping", groups: ["wan", "Bad Name"] }])).toEqual([
      '[0].groups[1]: "Bad Name" is not a valid group name (a name of up to 255 lowercase letters, digits, _, - and .)',
    ]);
    expect(problems([{ hostname: "a", type: "ICMPping", groups: "wan" }])).toEqual([
      '[0].groups: "wan" is not a list (a list of group names)',
    ]);
  });

  test("lifetime and creation_date that do not parse", () => {
    expect(problems([{ hostname: "a", type: "ICMPping", lifetime: "1x", creation_date: "yesterday" }])).toEqual([
      '[0].creation_date: "yesterday" is not a date (seconds since 1970, or an ISO 8601 date such as 2026-11-25T10:00:00Z (with its zone))',
      '[0].lifetime: "1x" is not a lifetime (a number of seconds, or a duration such as "1d 3h 2m")',
    ]);
    expect(problems([{ hostname: "a", type: "ICMPping", lifetime: 0 }])).toEqual([
      '[0].lifetime: 0 is not a lifetime (a number of seconds, or a duration such as "1d 3h 2m")',
    ]);
  });

  test("every problem of every target, each once", () => {
    expect(
      problems([
        { hostname: "ok", type: "ICMPping" },
        { type: "TCPsyn", dst_port: 70_000 },
        { hostname: "x", type: "UDPunreachable", dst_port: 53, nb_packets: "3" },
        null,
      ]),
    ).toEqual([
      "[1]: hostname is required for a TCPsyn target (a hostname or an IP address)",
      "[1].dst_port: 70000 is out of range (an integer from 1 to 65535)",
      '[2].nb_packets: "3" is not a number (an integer from 1 to 1000000)',
      "[3]: the value is empty (a map of target settings with a hostname)",
    ]);
  });

  test("not a list at all", () => {
    expect(problems({ hostname: "a", type: "ICMPping" })).toEqual([`a map is not a list (a list of at most ${MAX_INVENTORY_TARGETS} targets)`]);
    expect(problems("x")).toEqual([`"x" is not a list (a list of at most ${MAX_INVENTORY_TARGETS} targets)`]);
    expect(problems(null)).toEqual([`the value is empty (a list of at most ${MAX_INVENTORY_TARGETS} targets)`]);
  });

  test("more than MAX_INVENTORY_TARGETS targets", () => {
    const many = Array.from({ length: MAX_INVENTORY_TARGETS + 1 }, (_, i) => ({ hostname: `h${i}`, type: "ICMPping" }));
    expect(validateValue(InventoryListSchema, many).ok).toBe(false);
  });
});

describe("the config's inventories section", () => {
  const BASE = `global:
  probe_name: t
  interval: 30
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 8000
  dns_update_interval: 0
groups:
  default: {}
targets: {}
`;
  // BASE is 10 lines: the section starts on line 11.

  function parse(section: string) {
    return parseConfigText(BASE + section, "n.yaml");
  }
  function issues(section: string): string[] {
    const r = parse(section);
    if (r.ok) throw new Error(`expected issues, got ${JSON.stringify(r.config.inventories)}`);
    return r.issues.map(formatIssue);
  }
  function inventoriesOf(section: string) {
    const r = parse(section);
    if (!r.ok) throw new Error(r.issues.map(formatIssue).join("\n"));
    expect(r.warnings).toEqual([]);
    return r.config.inventories;
  }

  test("absent: undefined; empty: every default", () => {
    expect(inventoriesOf("")).toBeUndefined();
    expect(inventoriesOf("inventories: {}\n")).toEqual({ modules_directory: "dynamic_inventories", modules: {}, file: {}, http: {}, dns: {} });
  });

  test("file, http and modules", () => {
    const inventories = inventoriesOf(`inventories:
  modules_directory: mods
  modules:
    hostlist:
      path: hosts.txt
      dst_port: 443
  file:
    cmdb:
      directory: targets.d
  http:
    sd:
      url: https://sd.example/targets
      refresh_interval: 30
      timeout: 2.5
      bearer_token: abc
    sd2:
      url: http://10.0.0.1:8080/sd
      bearer_token_file: token.txt
`);
    expect(inventories).toEqual({
      modules_directory: "mods",
      modules: { hostlist: { path: "hosts.txt", dst_port: 443 } },
      file: { cmdb: { directory: "targets.d" } },
      http: {
        sd: { url: "https://sd.example/targets", refresh_interval: 30, timeout: 2.5, bearer_token: "abc" },
        sd2: { url: "http://10.0.0.1:8080/sd", refresh_interval: 60, timeout: 10, bearer_token_file: "token.txt" },
      },
      dns: {},
    });
  });

  test("a bad URL", () => {
    expect(issues(`inventories:
  http:
    sd:
      url: ftp://sd.example/targets
`)).toEqual(['n.yaml:14:12: inventories.http.sd.url: "ftp://sd.example/targets" is not an http or https URL (an http:// or https:// URL)']);
    expect(issues(`inventories:
  http:
    sd:
      url: "not a url"
      refresh_interval: 0
      timeout: 0
`)).toEqual([
      'n.yaml:14:12: inventories.http.sd.url: "not a url" is not an http or https URL (an http:// or https:// URL)',
      "n.yaml:15:25: inventories.http.sd.refresh_interval: 0 is out of range (an integer from 1 to 86400)",
      "n.yaml:16:16: inventories.http.sd.timeout: 0 is out of range (a number above 0 and at most 86400)",
    ]);
    expect(issues(`inventories:
  http:
    sd: {}
`)).toEqual(["n.yaml:13:9: inventories.http.sd: url is required (an http:// or https:// URL)"]);
  });

  test('the name "api" is the API\'s own, refused everywhere', () => {
    const API = '"api" is not a valid inventory name (a name of up to 255 lowercase letters, digits, _, - and ., not api (the API\'s own name))';
    expect(issues("inventories:\n  file:\n    api:\n      directory: d\n")).toEqual([`n.yaml:13:5: inventories.file.api: ${API}`]);
    expect(issues("inventories:\n  http:\n    api:\n      url: http://x/\n")).toEqual([`n.yaml:13:5: inventories.http.api: ${API}`]);
    expect(issues("inventories:\n  modules:\n    api: {}\n")).toEqual([`n.yaml:13:5: inventories.modules.api: ${API}`]);
  });

  test("an inventory name that is not a valid name", () => {
    expect(issues("inventories:\n  file:\n    Bad:\n      directory: d\n")).toEqual([
      'n.yaml:13:5: inventories.file.Bad: "Bad" is not a valid inventory name (a name of up to 255 lowercase letters, digits, _, - and ., not api (the API\'s own name))',
    ]);
  });

  test("the same name in file and http", () => {
    expect(issues(`inventories:
  file:
    same:
      directory: d
  http:
    same:
      url: http://x/
`)).toEqual(['n.yaml:16:5: inventories.http: "same" names both a file and an http inventory (a name used once across inventories)']);
  });

  test("unknown and empty fields, a list for the section, options that are not a map", () => {
    expect(issues("inventories:\n  files: {}\n")).toEqual([
      "n.yaml:12:3: inventories.files: unknown field, did you mean file? (one of modules_directory, modules, file, http, dns)",
    ]);
    expect(issues('inventories:\n  file:\n    cmdb:\n      directory: ""\n      dir: x\n')).toEqual([
      "n.yaml:14:18: inventories.file.cmdb.directory: the value is empty (a path of at most 4096 characters, relative to the config file's directory or absolute)",
      "n.yaml:15:7: inventories.file.cmdb.dir: unknown field (one of directory)",
    ]);
    expect(issues("inventories: []\n")).toEqual([
      "n.yaml:11:14: inventories: a list is not a map (a map with modules_directory, modules, file, http and/or dns)",
    ]);
    expect(issues("inventories:\n  modules:\n    hostlist: 5\n")).toEqual([
      "n.yaml:13:15: inventories.modules.hostlist: 5 is not a map (a map of options)",
    ]);
  });
});
