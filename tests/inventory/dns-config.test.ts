/**
 * `inventories.dns` in netprobify.yaml: the defaults, every refusal with the FILE:LINE:COL line
 * `netprobify check` prints, what check says of a valid one, and the inventory it plans.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/index.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { loadConfigIsolated } from "../../src/daemon/configuration.ts";
import { MAX_DNS_NAMES, MAX_DNS_SERVERS } from "../../src/config/limits.ts";
import { dnsRecordType, dnsTargetFamily, isDnsName, parseDnsServer } from "../../src/config/schema.ts";
import { formatIssue } from "../../src/config/validate-yaml.ts";
import { planInventories } from "../../src/inventory/specs.ts";

const BASE = `global:
  probe_name: t
  interval: 30
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 8000
  dns_update_interval: 0
groups:
  mesh: {}
targets: {}
inventories:
  dns:
`;
// BASE is 12 lines: the inventories start on line 13.

function parse(section: string) {
  return parseConfigText(BASE + section, "n.yaml");
}

function issues(section: string): string[] {
  const r = parse(section);
  if (r.ok) throw new Error(`expected issues, got ${JSON.stringify(r.config.inventories?.dns)}`);
  return r.issues.map(formatIssue);
}

function dnsOf(section: string) {
  const r = parse(section);
  if (!r.ok) throw new Error(r.issues.map(formatIssue).join("\n"));
  expect(r.warnings).toEqual([]);
  return r.config.inventories?.dns ?? {};
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("valid", () => {
  test("the defaults: refresh every 30 s, exclude_self, the system's servers; the target fields' defaults", () => {
    expect(dnsOf("    mesh: {type: TCPsyn, names: [probers.mesh.svc.cluster.local], port: 8443, groups: [mesh]}\n")).toEqual({
      mesh: {
        type: "TCPsyn",
        names: ["probers.mesh.svc.cluster.local"],
        port: 8443,
        groups: ["mesh"],
        refresh_interval: 30,
        exclude_self: true,
        dont_fragment: true,
        nb_packets: 1,
        alert_level: "no_alert",
        timeout: 1,
        auto_register_to_groups: true,
        explicit_groups: { register_to: [], exclude_from: [] },
      },
    });
  });

  test("SRV without port, AAAA from address_family, servers of both families, ICMPping without port", () => {
    const dns = dnsOf(`    srv: {type: UDPunreachable, names: [_p._udp.test.], record_type: SRV, address_family: ipv6}
    v6: {type: TCPsyn, names: [a.test], address_family: ipv6, port: 443, servers: ["198.18.0.53:53", "[fd00::53]:5353"]}
    ping: {type: ICMPping, names: [a.test, b.test], exclude_self: false, refresh_interval: 86400}
`);
    expect(Object.keys(dns)).toEqual(["srv", "v6", "ping"]);
    expect(dnsRecordType(dns.srv!)).toBe("SRV");
    expect(dnsTargetFamily(dns.srv!)).toBe("ipv6");
    expect(dnsRecordType(dns.v6!)).toBe("AAAA");
    expect(dnsRecordType(dns.ping!)).toBe("A");
    expect(dnsTargetFamily(dns.ping!)).toBe("ipv4");
  });

  test("names and servers, one by one", () => {
    expect(isDnsName("a")).toBe(true);
    expect(isDnsName("_http._tcp.Example.COM.")).toBe(true);
    expect(isDnsName(`${"x".repeat(63)}.test`)).toBe(true);
    expect(isDnsName(`${"x".repeat(64)}.test`)).toBe(false);
    expect(isDnsName(Array(64).fill("abc").join("."))).toBe(false);
    for (const bad of ["", ".", "a..b", "a b", "é.test", "a/b", "*.test"]) expect({ bad, ok: isDnsName(bad) }).toEqual({ bad, ok: false });
    expect(parseDnsServer("198.18.0.53:53")).toEqual({ address: "198.18.0.53", port: 53, family: "ipv4" });
    expect(parseDnsServer("[fd00::53]:5353")).toEqual({ address: "fd00::53", port: 5353, family: "ipv6" });
    for (const bad of ["198.18.0.53", "fd00::53", "fd00::53:53", "[198.18.0.53]:53", "198.18.0.53:0", "198.18.0.53:65536", "dns.test:53", "[fd00::53]", ":53"]) {
      expect({ bad, parsed: parseDnsServer(bad) }).toEqual({ bad, parsed: undefined });
    }
  });
});

describe("refused, each at its FILE:LINE:COL", () => {
  test("a missing type, a missing port for TCPsyn, a port with SRV", () => {
    expect(issues("    mesh: {names: [a.test], port: 443}\n")).toEqual([
      "n.yaml:13:11: inventories.dns.mesh: type is required (one of TCPsyn, ICMPping, UDPunreachable, TWAMPlight)",
    ]);
    expect(issues("    mesh:\n      type: TCPsyn\n      names: [a.test]\n")).toEqual([
      "n.yaml:14:7: inventories.dns.mesh.port: required for a TCPsyn target with A records (an integer from 1 to 65535, the targets' dst_port)",
    ]);
    expect(issues("    mesh: {type: UDPunreachable, names: [a.test], record_type: SRV, port: 53}\n")).toEqual([
      "n.yaml:13:75: inventories.dns.mesh.port: port is given with record_type SRV (no port: each SRV record gives its target's port)",
    ]);
  });

  test("an address family that is not the record type's", () => {
    expect(issues("    mesh: {type: ICMPping, names: [a.test], record_type: A, address_family: ipv6}\n")).toEqual([
      'n.yaml:13:77: inventories.dns.mesh.address_family: "ipv6" does not match record_type "A" (ipv4, the family of A records, or no address_family)',
    ]);
    expect(issues("    mesh: {type: ICMPping, names: [a.test], record_type: AAAA, address_family: ipv4}\n")).toEqual([
      'n.yaml:13:80: inventories.dns.mesh.address_family: "ipv4" does not match record_type "AAAA" (ipv6, the family of AAAA records, or no address_family)',
    ]);
  });

  test("names: empty, too many, not DNS names", () => {
    expect(issues("    mesh: {type: ICMPping, names: []}\n")).toEqual([
      `n.yaml:13:35: inventories.dns.mesh.names: the list is empty (a list of 1 to ${MAX_DNS_NAMES} DNS names)`,
    ]);
    const many = Array.from({ length: MAX_DNS_NAMES + 1 }, (_, i) => `n${i}.test`).join(", ");
    expect(issues(`    mesh: {type: ICMPping, names: [${many}]}\n`)).toEqual([
      `n.yaml:13:35: inventories.dns.mesh.names: 101 names are too many (a list of 1 to ${MAX_DNS_NAMES} DNS names)`,
    ]);
    expect(issues('    mesh:\n      type: ICMPping\n      names: ["a b", "x..y", "ok.test", 5]\n')).toEqual([
      'n.yaml:15:15: inventories.dns.mesh.names[0]: "a b" is not a DNS name (a DNS name such as probers.netprobify.svc.cluster.local (labels of letters, digits, - and _))',
      'n.yaml:15:22: inventories.dns.mesh.names[1]: "x..y" is not a DNS name (a DNS name such as probers.netprobify.svc.cluster.local (labels of letters, digits, - and _))',
      "n.yaml:15:41: inventories.dns.mesh.names[3]: 5 is not a string (a DNS name such as probers.netprobify.svc.cluster.local (labels of letters, digits, - and _))",
    ]);
  });

  test("servers that are not ADDRESS:PORT, too many, none", () => {
    expect(issues('    mesh:\n      type: ICMPping\n      names: [a.test]\n      servers: ["198.18.0.53", "[fd00::53]:53", "fd00::53:53"]\n')).toEqual([
      'n.yaml:16:17: inventories.dns.mesh.servers[0]: "198.18.0.53" is not a server address (ADDRESS:PORT, such as 198.18.0.53:53 or [fd00::53]:53)',
      'n.yaml:16:49: inventories.dns.mesh.servers[2]: "fd00::53:53" is not a server address (ADDRESS:PORT, such as 198.18.0.53:53 or [fd00::53]:53)',
    ]);
    const many = Array.from({ length: MAX_DNS_SERVERS + 1 }, (_, i) => `"198.18.0.${i + 1}:53"`).join(", ");
    expect(issues(`    mesh: {type: ICMPping, names: [a.test], servers: [${many}]}\n`)).toEqual([
      `n.yaml:13:54: inventories.dns.mesh.servers: 17 servers are too many (a list of 1 to ${MAX_DNS_SERVERS} servers)`,
    ]);
    expect(issues("    mesh: {type: ICMPping, names: [a.test], servers: []}\n")).toEqual([
      `n.yaml:13:54: inventories.dns.mesh.servers: the list is empty (a list of 1 to ${MAX_DNS_SERVERS} servers, or no servers field)`,
    ]);
  });

  test("record_type, refresh_interval, exclude_self, an IPv6-sized payload for IPv4 targets, fields a DNS target cannot have", () => {
    expect(
      issues(`    mesh:
      type: TCPsyn
      names: [a.test]
      port: 443
      record_type: MX
      refresh_interval: 0
      exclude_self: "yes"
      ip_payload_size: 65535
      destination: 198.18.0.1
      lifetime: 1d
`),
    ).toEqual([
      'n.yaml:17:20: inventories.dns.mesh.record_type: "MX" is not allowed (one of A, AAAA, SRV)',
      "n.yaml:18:25: inventories.dns.mesh.refresh_interval: 0 is out of range (an integer from 1 to 86400)",
      'n.yaml:19:21: inventories.dns.mesh.exclude_self: "yes" is not a boolean (true or false)',
      expect.stringMatching(/^n\.yaml:21:7: inventories\.dns\.mesh\.destination: unknown field \(one of type, names, record_type, port, /) as unknown as string,
      expect.stringMatching(/^n\.yaml:22:7: inventories\.dns\.mesh\.lifetime: unknown field \(/) as unknown as string,
    ]);
    expect(issues("    mesh: {type: TCPsyn, names: [a.test], port: 1, ip_payload_size: 65535}\n")).toEqual([
      "n.yaml:13:69: inventories.dns.mesh.ip_payload_size: 65535 is out of range (an integer from 20 to 65515 over IPv4 or 65535 over IPv6)",
    ]);
    // Over IPv6 (AAAA records) the same size fits.
    expect(Object.keys(dnsOf("    mesh: {type: TCPsyn, names: [a.test], port: 1, record_type: AAAA, ip_payload_size: 65535}\n"))).toEqual(["mesh"]);
  });

  test("a name used by a file or an http inventory too", () => {
    expect(
      issues(`    same: {type: ICMPping, names: [a.test]}
  http:
    same: {url: "http://198.18.0.1/"}
`),
    ).toEqual(['n.yaml:13:5: inventories.dns: "same" names both an http and a dns inventory (a name used once across inventories)']);
    expect(
      issues(`    same: {type: ICMPping, names: [a.test]}
  file:
    same: {directory: d}
`),
    ).toEqual(['n.yaml:13:5: inventories.dns: "same" names both a file and a dns inventory (a name used once across inventories)']);
  });

  test("not a map", () => {
    expect(issues("    mesh: [a.test]\n")).toEqual([
      "n.yaml:13:11: inventories.dns.mesh: a list is not a map (a map with type, names and optionally record_type, port, refresh_interval, servers, exclude_self, groups and target fields)",
    ]);
  });
});

describe("netprobify check and the plan", () => {
  test("check prints the refusal at FILE:LINE:COL and exits 65; a valid one names the dns inventory", async () => {
    const d = mkdtempSync(join(tmpdir(), "netprobify-dns-check-"));
    dirs.push(d);
    const file = join(d, "netprobify.yaml");
    writeFileSync(file, BASE + "    mesh:\n      type: TCPsyn\n      names: [probers.test]\n      servers: [198.18.0.53]\n");
    const out: string[] = [];
    const err: string[] = [];
    expect(await runCli(["check", file], (l) => out.push(l), (l) => err.push(l))).toBe(65);
    expect(err).toEqual([
      `${file}:14:7: inventories.dns.mesh.port: required for a TCPsyn target with A records (an integer from 1 to 65535, the targets' dst_port)`,
      `${file}:16:17: inventories.dns.mesh.servers[0]: "198.18.0.53" is not a server address (ADDRESS:PORT, such as 198.18.0.53:53 or [fd00::53]:53)`,
    ]);
    writeFileSync(file, BASE + "    mesh:\n      type: TCPsyn\n      names: [probers.test]\n      port: 8443\n");
    out.length = 0;
    expect(await runCli(["check", file], (l) => out.push(l), (l) => err.push(l))).toBe(0);
    expect(out.at(-1)).toBe(`${file}: valid, 1 group and 0 targets, inventories: mesh (dns)`);
  });

  test("loaded in the loader's Worker, the map of dns inventories has no prototype again: a name like constructor is its own", async () => {
    const d = mkdtempSync(join(tmpdir(), "netprobify-dns-load-"));
    dirs.push(d);
    const file = join(d, "netprobify.yaml");
    writeFileSync(file, BASE + "    constructor: {type: ICMPping, names: [a.test]}\n");
    const r = await loadConfigIsolated(file);
    if (!r.ok) throw new Error("invalid");
    const dns = r.config.inventories!.dns;
    expect(Object.getPrototypeOf(dns)).toBeNull();
    expect(Object.keys(dns)).toEqual(["constructor"]);
    expect("toString" in dns).toBe(false);
  });

  test("each dns inventory is planned as a built-in of kind dns, with its options", async () => {
    const r = parse("    mesh: {type: ICMPping, names: [a.test]}\n");
    if (!r.ok) throw new Error("invalid");
    const plan = await planInventories(r.config, "/nowhere", false);
    expect(plan.specs.map((s) => [s.name, s.kind, s.options.names])).toEqual([["mesh", "dns", ["a.test"]]]);
  });
});
