/**
 * buildPlan: config and resolutions into series and per-Worker probe lists. Pure, so these run
 * without privilege or network: configs are parsed from YAML as the daemon parses them.
 */
import { describe, expect, test } from "bun:test";
import { parseConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { buildPlan, START_SPREAD_SHARE, type Plan } from "../../src/daemon/plan.ts";
import { Resolver } from "../../src/daemon/resolver.ts";
import type { ProbeTarget } from "../../src/engine/probe-engine.ts";
import type { Logger } from "../../src/log.ts";

const quiet: Logger = { debug() {}, info() {}, warning() {}, error() {}, critical() {}, enabled: () => false };

function config(body: string, global = ""): Config {
  const text = `global:
  probe_name: unit
  interval: 10
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 9
  dns_update_interval: 0
${global}
${body}`;
  const r = parseConfigText(text, "plan.yaml");
  if (!r.ok) throw new Error(`test config invalid:\n${r.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`).join("\n")}`);
  return r.config;
}

/** Addresses as the daemon gets them: literals, subnets and ranges expanded by the Resolver. */
function literalAddresses(c: Config): (t: string) => string[] | null {
  const r = new Resolver(quiet, async () => {
    throw new Error("no hostname in these tests");
  });
  r.sync(c);
  return (t) => r.addressesOf(t);
}

const plan = (c: Config, workers = 1) => buildPlan(c, literalAddresses(c), workers);

/** target|group of every series. */
const seriesNames = (p: Plan) => p.series.map((s) => `${s.target}|${s.group}`).sort();

/** Every probe target with the series it feeds. */
function probes(p: Plan): { job: number; probe: ProbeTarget; target: string; group: string }[] {
  return p.jobs.flatMap((job, j) =>
    job.targets.map((probe, k) => {
      const s = p.series[job.series[job.seriesOf[k]!]!]!;
      return { job: j, probe, target: s.target, group: s.group };
    }),
  );
}

describe("group membership", () => {
  const c = config(`
groups:
  auto: {}
  closed:
    permit_target_auto_register: false
  other: {}
targets:
  t_auto: {type: ICMPping, destination: 198.18.0.1}
  t_register: {type: ICMPping, destination: 198.18.0.2, explicit_groups: {register_to: [closed]}}
  t_exclude: {type: ICMPping, destination: 198.18.0.3, explicit_groups: {exclude_from: [other]}}
  t_explicit_only: {type: ICMPping, destination: 198.18.0.4, auto_register_to_groups: false, explicit_groups: {register_to: [closed]}}
  t_exclusion_wins: {type: ICMPping, destination: 198.18.0.5, explicit_groups: {register_to: [closed], exclude_from: [closed, auto]}}
  t_no_group: {type: ICMPping, destination: 198.18.0.6, auto_register_to_groups: false}
  t_unknown_group: {type: ICMPping, destination: 198.18.0.7, auto_register_to_groups: false, explicit_groups: {register_to: [nope]}}
`);
  const p = plan(c);

  test("auto registration joins the permitting groups; register_to adds a closed group; exclude_from removes one and wins over register_to", () => {
    expect(seriesNames(p)).toEqual(
      [
        "t_auto|auto",
        "t_auto|other",
        "t_register|auto",
        "t_register|closed",
        "t_register|other",
        "t_exclude|auto",
        "t_explicit_only|closed",
        "t_exclusion_wins|other",
      ].sort(),
    );
  });

  test("a target in no group (none permitted, or only unknown ones) has no series and sends nothing", () => {
    const all = probes(p);
    for (const t of ["t_no_group", "t_unknown_group"]) {
      expect(p.series.filter((s) => s.target === t)).toEqual([]);
      expect(all.filter((x) => x.target === t)).toEqual([]);
    }
    expect(all.some((x) => x.probe.dst === "198.18.0.6" || x.probe.dst === "198.18.0.7")).toBe(false);
  });

  test("a target whose addresses are unknown (failed resolution) is skipped", () => {
    const q = buildPlan(c, (t) => (t === "t_auto" ? null : literalAddresses(c)(t)), 1);
    expect(q.series.some((s) => s.target === "t_auto")).toBe(false);
    expect(q.series.length).toBe(p.series.length - 2);
  });
});

describe("what each probe target carries", () => {
  const c = config(
    `
groups:
  a:
    src_port_a: 65000
    src_port_z: 65003
    src_ipv4: 198.18.1.1
    src_ipv6: "fd00:1::1"
    dscp: 46
    ip_payload_size: 60
  b:
    src_subnet_ipv4: 198.18.2.0/29
    src_subnet_ipv6: "fd00:2::/126"
  c:
    src_ip: 198.18.3.3
    ip_payload_size: 8
targets:
  tcp4: {type: TCPsyn, destination: 198.18.0.1, dst_port: 443, nb_packets: 7, timeout: 2, state: in production}
  tcp6: {type: TCPsyn, destination: "fd00::1", dst_port: 80, nb_packets: 3, ip_payload_size: 100, dont_fragment: false}
  icmp4: {type: ICMPping, destination: 198.18.0.2, nb_packets: 5}
  udp4: {type: UDPunreachable, destination: 198.18.0.3, dst_port: 33434}
`,
    "  interval_packets: 0.05",
  );
  const p = plan(c);
  const get = (target: string, group: string) => {
    const found = probes(p).filter((x) => x.target === target && x.group === group);
    expect(found.length).toBe(1);
    return found[0]!.probe;
  };

  test("nb_packets per group: each group of a target gets the target's nb_packets, and the plan counts them all", () => {
    for (const g of ["a", "b", "c"]) {
      expect(get("tcp4", g).count).toBe(7);
      expect(get("tcp6", g).count).toBe(3);
      expect(get("icmp4", g).count).toBe(5);
      expect(get("udp4", g).count).toBe(1);
    }
    expect(p.probes).toBe(3 * (7 + 3 + 5 + 1));
  });

  test("source ports and DSCP are the group's (defaults 65000-65001 and 0)", () => {
    expect([get("tcp4", "a").srcPortA, get("tcp4", "a").srcPortZ, get("tcp4", "a").dscp]).toEqual([65000, 65003, 46]);
    expect([get("udp4", "b").srcPortA, get("udp4", "b").srcPortZ, get("udp4", "b").dscp]).toEqual([65000, 65001, 0]);
  });

  test("source addresses: src_ipv4 / src_ipv6 by family, a source subnet's hosts, the deprecated src_ip, else the kernel's choice", () => {
    expect(get("tcp4", "a").srcAddresses).toEqual(["198.18.1.1"]);
    expect(get("tcp6", "a").srcAddresses).toEqual(["fd00:1::1"]);
    expect(get("tcp4", "b").srcAddresses).toEqual(["198.18.2.1", "198.18.2.2", "198.18.2.3", "198.18.2.4", "198.18.2.5", "198.18.2.6"]);
    expect(get("tcp6", "b").srcAddresses).toEqual(expect.arrayContaining(["fd00:2::1", "fd00:2::2", "fd00:2::3"]));
    expect(get("tcp6", "b").srcAddresses!.every((a) => /^fd00:2::[0-3]?$/.test(a))).toBe(true);
    expect(get("icmp4", "c").srcAddresses).toEqual(["198.18.3.3"]);
    expect(get("tcp6", "c").srcAddresses).toBeNull();
  });

  test("payload size: the target's wins over the group's, the group's over the header; never below the type's header", () => {
    expect(get("tcp6", "a").ipPayloadSize).toBe(100); // target 100 over group 60
    expect(get("tcp4", "a").ipPayloadSize).toBe(60); // group
    expect(get("tcp4", "b").ipPayloadSize).toBe(20); // no size: the TCP header
    expect(get("icmp4", "b").ipPayloadSize).toBe(8);
    expect(get("udp4", "b").ipPayloadSize).toBe(8);
    expect(get("tcp4", "c").ipPayloadSize).toBe(20); // group's 8 is below TCP's header
    expect(get("icmp4", "c").ipPayloadSize).toBe(8);
  });

  test("kind, family, destination, ports, DF, packet gap and timeout come from the target and global", () => {
    expect(get("tcp4", "a")).toMatchObject({ type: "TCPsyn", family: 4, dst: "198.18.0.1", dstPort: 443, dontFragment: true, intervalMs: 50, timeoutMs: 2000 });
    expect(get("tcp6", "a")).toMatchObject({ type: "TCPsyn", family: 6, dst: "fd00::1", dstPort: 80, dontFragment: false, timeoutMs: 1000 });
    expect(get("icmp4", "a")).toMatchObject({ type: "ICMPping", family: 4, dstPort: 0 });
    expect(get("udp4", "a")).toMatchObject({ type: "UDPunreachable", family: 4, dstPort: 33434 });
  });

  test('series carry type, family and state ("None" when unset)', () => {
    const s = (t: string) => p.series.find((x) => x.target === t && x.group === "a")!;
    expect(s("tcp4")).toEqual({ target: "tcp4", group: "a", type: "TCPsyn", family: 4, state: "in production" });
    expect(s("tcp6")).toEqual({ target: "tcp6", group: "a", type: "TCPsyn", family: 6, state: "None" });
  });
});

describe("Workers and start times", () => {
  const many = Array.from({ length: 20 }, (_, i) => `  t${String(i).padStart(2, "0")}: {type: ICMPping, destination: 198.18.0.${i + 1}, nb_packets: 5, timeout: 1}`).join("\n");
  const c = config(
    `
groups:
  g1: {}
  g2: {}
  g3: {}
targets:
${many}
  net: {type: ICMPping, destination: 198.18.9.0/29, is_subnet: true, nb_packets: 2}
`,
    "  interval_packets: 0.1",
  );

  test("every series of one target is on one Worker; the jobs' series indexes point back to the right target and group", () => {
    for (const workers of [1, 2, 3, 4]) {
      const p = plan(c, workers);
      expect(p.jobs.length).toBe(workers);
      const workerOf = new Map<string, Set<number>>();
      for (const x of probes(p)) {
        if (!workerOf.has(x.target)) workerOf.set(x.target, new Set());
        workerOf.get(x.target)!.add(x.job);
      }
      for (const [target, jobs] of workerOf) expect({ workers, target, jobs: jobs.size }).toEqual({ workers, target, jobs: 1 });
      // Every series is in exactly one job.
      const indexes = p.jobs.flatMap((j) => j.series).sort((a, b) => a - b);
      expect(indexes).toEqual(p.series.map((_, i) => i));
      // The work is shared: no Worker idle when there are more targets than Workers.
      expect(p.jobs.every((j) => j.targets.length > 0)).toBe(true);
    }
  });

  test("a subnet target expands into one probe target per address, all feeding the one series of each group", () => {
    const p = plan(c, 2);
    for (const g of ["g1", "g2", "g3"]) {
      const series = p.series.filter((s) => s.target === "net" && s.group === g);
      expect(series.length).toBe(1);
      const feeding = probes(p).filter((x) => x.target === "net" && x.group === g);
      expect(feeding.map((x) => x.probe.dst)).toEqual(["198.18.9.1", "198.18.9.2", "198.18.9.3", "198.18.9.4", "198.18.9.5", "198.18.9.6"]);
      expect(feeding.every((x) => x.probe.count === 2)).toBe(true);
    }
    expect(p.probes).toBe(3 * (20 * 5 + 6 * 2));
  });

  test("start offsets are spread over the iteration, in order, each target finishing within the interval", () => {
    const intervalMs = 10_000;
    const longestMs = 4 * 100 + 1000; // (nb_packets - 1) x interval_packets + timeout
    for (const workers of [1, 2]) {
      const p = plan(c, workers);
      for (const job of p.jobs) {
        const starts = job.targets.map((t) => t.startMs);
        expect(starts[0]).toBe(0);
        for (let i = 1; i < starts.length; i++) expect(starts[i]!).toBeGreaterThan(starts[i - 1]!);
        for (const t of job.targets) expect(t.startMs + (t.count - 1) * t.intervalMs + t.timeoutMs).toBeLessThanOrEqual(intervalMs);
        // Evenly spaced, and over a real part of the slack rather than the first milliseconds.
        const gaps = starts.slice(1).map((s, i) => s - starts[i]!);
        expect(Math.max(...gaps) - Math.min(...gaps)).toBeLessThan(1e-6);
        // Over START_SPREAD_SHARE of the slack: the last start is one gap short of that window.
        const window = (intervalMs - longestMs) * START_SPREAD_SHARE;
        expect(starts.at(-1)!).toBeCloseTo((window * (starts.length - 1)) / starts.length, 6);
        expect(starts.at(-1)! + gaps[0]!).toBeGreaterThan((intervalMs - longestMs) * 0.8);
      }
    }
  });

  test("one target alone starts at once; a target longer than the interval still starts at 0", () => {
    const one = config(`
groups:
  g: {}
targets:
  solo: {type: ICMPping, destination: 198.18.0.1, nb_packets: 200, timeout: 5}
  solo2: {type: ICMPping, destination: 198.18.0.2}
`, "  interval_packets: 0.1");
    const p = plan(one, 2);
    for (const job of p.jobs) expect(job.targets.map((t) => t.startMs)).toEqual([0]);
  });
});
