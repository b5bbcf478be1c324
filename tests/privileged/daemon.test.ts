/**
 * The daemon end to end, run as users run it: `bun src/main.ts FILE` in its own process, /metrics
 * scraped over HTTP.
 *
 * 1. Against a veth test host: 3 probe types x 2 families x 2 groups (different source port
 *    ranges, DSCP 0 and 46), good paths and blackholed ones. A capture inside the host counts what
 *    arrived; the scrape taken when exactly two iterations have been published is compared with
 *    it series by series (the daemon is frozen with SIGSTOP the moment that scrape is seen, so no
 *    probe of a third iteration can reach the capture).
 * 2. The same scrape against the original's (tests/fixtures/daemon/original-metrics-sample.txt):
 *    the config is that lab run's, so families, TYPEs, label names and the series of its seven
 *    targets must match exactly.
 * 3. HTTP Basic auth, signals, exit codes, `check`, and which config file is read (bare FILE,
 *    --config, netprobify.yaml, config.yaml, and the built-in default, run inside a namespace so
 *    that its fixed port 8000 cannot collide with anything).
 *
 * Needs root (namespaces, captures, raw packets).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../src/version.ts";
import { DEFAULT_HISTOGRAM_BUCKETS } from "../../src/config/schema.ts";
import {
  labelKey,
  parseExposition,
  parseLogLine,
  runNetprobify,
  startDaemon,
  type DaemonProcess,
  type Exposition,
  type Sample,
} from "../support/daemon-process.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";
import { answerOf, canon, decodeCapture, TCP_SYN, type WirePacket } from "./wire.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "daemon");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");

/** Iterations the e2e run lets complete before comparing. */
const ITERATIONS = 2;
const INTERVAL_S = 3;
const PROBE_NAME = "nb-lab";

type TargetType = "TCPsyn" | "ICMPping" | "UDPunreachable";
const PREFIX: Record<TargetType, string> = { TCPsyn: "tcpsyn", ICMPping: "icmp", UDPunreachable: "udp_unreachable" };

interface Group {
  ports: [number, number];
  dscp: number;
}
const GROUPS: Record<string, Group> = {
  grp_a: { ports: [65000, 65003], dscp: 0 },
  grp_b: { ports: [65100, 65107], dscp: 46 },
};

interface Expected {
  type: TargetType;
  family: 4 | 6;
  /** The host's own address (answers) or its blackhole (silence). */
  at: "host" | "blackhole";
  port: "open" | "closed" | null;
  nb: number;
  groups: string[];
  state: string;
  alertLevel: string;
  threshold: { latency?: number; loss?: number };
}

/** What tests/fixtures/daemon/e2e.yaml configures, written out independently of the product. */
const TARGETS: Record<string, Expected> = {
  tcp_v4: { type: "TCPsyn", family: 4, at: "host", port: "open", nb: 10, groups: ["grp_a", "grp_b"], state: "in production", alertLevel: "paging", threshold: { latency: 0.01, loss: 0.01 } },
  tcp_v4_closed: { type: "TCPsyn", family: 4, at: "host", port: "closed", nb: 8, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
  tcp_v6: { type: "TCPsyn", family: 6, at: "host", port: "open", nb: 6, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: { latency: 0.01 } },
  icmp_v4: { type: "ICMPping", family: 4, at: "host", port: null, nb: 5, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: { loss: 0.05 } },
  icmp_v6: { type: "ICMPping", family: 6, at: "host", port: null, nb: 7, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
  udp_v4: { type: "UDPunreachable", family: 4, at: "host", port: "closed", nb: 9, groups: ["grp_a"], state: "None", alertLevel: "no_alert", threshold: {} },
  udp_v6: { type: "UDPunreachable", family: 6, at: "host", port: "closed", nb: 8, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: { latency: 0.005, loss: 0 } },
  bh_tcp_v4: { type: "TCPsyn", family: 4, at: "blackhole", port: "open", nb: 12, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
  bh_tcp_v6: { type: "TCPsyn", family: 6, at: "blackhole", port: "open", nb: 12, groups: ["grp_a", "grp_b"], state: "validation", alertLevel: "sandbox", threshold: { loss: 50 } },
  bh_icmp_v4: { type: "ICMPping", family: 4, at: "blackhole", port: null, nb: 12, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
  bh_icmp_v6: { type: "ICMPping", family: 6, at: "blackhole", port: null, nb: 12, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
  bh_udp_v4: { type: "UDPunreachable", family: 4, at: "blackhole", port: "closed", nb: 12, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
  bh_udp_v6: { type: "UDPunreachable", family: 6, at: "blackhole", port: "closed", nb: 12, groups: ["grp_a", "grp_b"], state: "None", alertLevel: "no_alert", threshold: {} },
};
/** The targets of the original's lab scrape. */
const ORIGINAL_TARGETS = ["tcp_v4", "tcp_v4_closed", "tcp_v6", "icmp_v4", "icmp_v6", "udp_v4", "udp_v6"];

/** Every (target, group) series the config must produce. */
const SERIES = Object.entries(TARGETS).flatMap(([name, t]) => t.groups.map((group) => ({ name, group, t })));

const L = (destination: string, group: string, t: Expected) => ({
  probe_name: PROBE_NAME,
  destination,
  address_family: `ipv${t.family}`,
  state: t.state,
  group,
});

// ---------------------------------------------------------------------------------------------
// What the host saw

interface SeenSeries {
  probes: WirePacket[];
  answered: number;
}

interface Seen {
  /** "target|group" -> its probes. */
  series: Map<string, SeenSeries>;
  /** Probes from the prober that match no configured target, or a source port/DSCP of no group. */
  strays: WirePacket[];
}

/** Sorts the host's capture into (target, group): TCP/UDP by source port range, ICMP by DSCP. */
function classify(pkts: WirePacket[], h: TestHost): Seen {
  const addr = (t: Expected) => canon(t.family === 4 ? (t.at === "host" ? h.v4.host : h.v4.blackhole) : t.at === "host" ? h.v6.host : h.v6.blackhole);
  const portOf = (t: Expected) => (t.port === "open" ? h.openPort : t.port === "closed" ? h.closedPort : 0);
  const byKey = new Map<string, string>();
  for (const [name, t] of Object.entries(TARGETS)) byKey.set(`${PREFIX[t.type]}|${t.family}|${addr(t)}|${portOf(t)}`, name);
  const roots = new Set([canon(h.v4.root), canon(h.v6.root)]);
  const seen: Seen = { series: new Map(), strays: [] };
  const probeKeys = new Map<string, SeenSeries>();
  const kindOf = (p: WirePacket): string | null => {
    if (p.proto === 6) return p.flags === TCP_SYN ? "tcpsyn" : null; // the prober's RSTs are not probes
    if (p.proto === 17) return "udp_unreachable";
    if ((p.proto === 1 && p.icmpType === 8) || (p.proto === 58 && p.icmpType === 128)) return "icmp";
    return null;
  };
  const probeKey = (p: WirePacket, kind: string) =>
    kind === "tcpsyn" ? `${p.dst}|${p.sport}|${p.seq}` : kind === "icmp" ? `${p.dst}|${p.icmpId}|${p.icmpSeq}` : `${p.dst}|${p.sport}|${p.family === 4 ? p.ipId : p.tag}`;
  const answers: WirePacket[] = [];
  for (const p of pkts) {
    if (!roots.has(p.src)) {
      answers.push(p);
      continue;
    }
    const kind = kindOf(p);
    if (!kind) continue;
    const name = byKey.get(`${kind}|${p.family}|${p.dst}|${kind === "icmp" ? 0 : p.dport}`);
    const group =
      kind === "icmp"
        ? Object.keys(GROUPS).find((g) => GROUPS[g]!.dscp === p.tos >> 2)
        : Object.keys(GROUPS).find((g) => p.sport >= GROUPS[g]!.ports[0] && p.sport <= GROUPS[g]!.ports[1]);
    if (!name || !group) {
      seen.strays.push(p);
      continue;
    }
    const key = `${name}|${group}`;
    let s = seen.series.get(key);
    if (!s) seen.series.set(key, (s = { probes: [], answered: 0 }));
    s.probes.push(p);
    probeKeys.set(`${kind}|${probeKey(p, kind)}`, s);
  }
  const answeredKeys = new Set<string>();
  for (const p of answers) {
    for (const [kind, type] of [["tcpsyn", "TCPsyn"], ["icmp", "ICMPping"], ["udp", "UDPunreachable"]] as const) {
      const a = answerOf(p, type, p.family);
      if (!a) continue;
      const k = `${kind === "udp" ? "udp_unreachable" : kind}|${a.key}`;
      const s = probeKeys.get(k);
      if (s && !answeredKeys.has(k)) {
        answeredKeys.add(k);
        s.answered++;
      }
    }
  }
  return seen;
}

// ---------------------------------------------------------------------------------------------

let net: TestNet;
let h: TestHost;

beforeAll(async () => {
  requireRoot();
  net = await createTestNet();
  h = net.hosts[0]!;
}, 60_000);

afterAll(async () => {
  await net?.teardown();
}, 60_000);

describe("daemon against a test host: 3 types x 2 families x 2 groups", () => {
  let d: DaemonProcess;
  /** The scrape that first showed ITERATIONS iterations. */
  let m: Exposition;
  let seen: Seen;

  beforeAll(async () => {
    const config = fixture("e2e.yaml")
      .replaceAll("__V4_HOST__", h.v4.host)
      .replaceAll("__V6_HOST__", h.v6.host)
      .replaceAll("__V4_BLACKHOLE__", h.v4.blackhole)
      .replaceAll("__V6_BLACKHOLE__", h.v6.blackhole)
      .replaceAll("__OPEN_PORT__", String(h.openPort))
      .replaceAll("__CLOSED_PORT__", String(h.closedPort));
    // Capturing before the daemon exists: every probe it ever sends is in the file.
    const cap = await net.capture(h, "ip or ip6");
    try {
      d = await startDaemon({ config });
      const ref = { destination: "tcp_v4", group: "grp_a" };
      m = await d.waitFor(
        `${ITERATIONS} iterations published (tcpsyn_sent_total of tcp_v4 in grp_a = ${10 * ITERATIONS})`,
        (e) => ((e.value("tcpsyn_sent_total", ref) ?? 0) >= 10 * ITERATIONS ? e : undefined),
        { everyMs: 20, timeoutMs: 30_000 },
      );
      // Frozen at once: the next iteration starts seconds later, so the capture holds exactly the
      // probes of the iterations this scrape counts.
      d.signal("SIGSTOP");
    } finally {
      const records = await cap.stop().catch((e: unknown) => {
        d?.signal("SIGCONT");
        throw e;
      });
      d?.signal("SIGCONT");
      seen = classify(decodeCapture(records, cap.linktype!), h);
    }
  }, 90_000);

  afterAll(async () => {
    await d?.stop();
  });

  test(`the scrape is of iteration ${ITERATIONS}, and the daemon carries on after being frozen`, async () => {
    expect(m.value("tcpsyn_sent_total", { destination: "tcp_v4", group: "grp_a" })).toBe(10 * ITERATIONS);
    const later = await d.waitFor("the next iteration", (e) => ((e.value("tcpsyn_sent_total", { destination: "tcp_v4", group: "grp_a" }) ?? 0) > 10 * ITERATIONS ? e : undefined), {
      timeoutMs: 20_000,
    });
    expect(later.value("tcpsyn_sent_total", { destination: "tcp_v4", group: "grp_a" })).toBe(10 * (ITERATIONS + 1));
  }, 30_000);

  test("exactly the configured (target, group) series exist: udp_v4 is excluded from grp_b, nothing else appears", () => {
    for (const type of ["TCPsyn", "ICMPping", "UDPunreachable"] as const) {
      const want = SERIES.filter((s) => s.t.type === type).map((s) => labelKey(L(s.name, s.group, s.t)));
      for (const suffix of ["sent_total", "loss_total", "loss_ratio"]) {
        const got = m.get(`${PREFIX[type]}_${suffix}`).map((s) => labelKey(s.labels));
        expect({ family: `${PREFIX[type]}_${suffix}`, series: got.sort() }).toEqual({ family: `${PREFIX[type]}_${suffix}`, series: [...want].sort() });
      }
    }
  });

  test(`sent_total = nb_packets x ${ITERATIONS} iterations per (target, group), and equals the probes captured in the host`, () => {
    const rows = SERIES.map(({ name, group, t }) => ({
      series: `${name}|${group}`,
      metric: m.value(`${PREFIX[t.type]}_sent_total`, L(name, group, t)),
      wire: seen.series.get(`${name}|${group}`)?.probes.length ?? 0,
    }));
    expect(rows).toEqual(SERIES.map(({ name, group, t }) => ({ series: `${name}|${group}`, metric: t.nb * ITERATIONS, wire: t.nb * ITERATIONS })));
    // No probe the config does not explain: every one has a target, and a group's port range or DSCP.
    expect(seen.strays.map((p) => `${p.src}:${p.sport} > ${p.dst}:${p.dport} proto ${p.proto} tos ${p.tos}`)).toEqual([]);
    expect([...seen.series.keys()].sort()).toEqual(SERIES.map((s) => `${s.name}|${s.group}`).sort());
  });

  test("source ports: packet i of each iteration uses src_port_a + i mod (range size), within the group's range", () => {
    for (const { name, group, t } of SERIES) {
      if (t.type === "ICMPping") continue;
      const [a, z] = GROUPS[group]!.ports;
      const want = new Map<number, number>();
      for (let i = 0; i < t.nb; i++) {
        const port = a + (i % (z - a + 1));
        want.set(port, (want.get(port) ?? 0) + ITERATIONS);
      }
      const got = new Map<number, number>();
      for (const p of seen.series.get(`${name}|${group}`)!.probes) got.set(p.sport, (got.get(p.sport) ?? 0) + 1);
      const sorted = (mp: Map<number, number>) => [...mp].sort((x, y) => x[0] - y[0]);
      expect({ series: `${name}|${group}`, ports: sorted(got) }).toEqual({ series: `${name}|${group}`, ports: sorted(want) });
    }
  });

  test("DSCP on the wire: 46 on every grp_b packet, 0 on every grp_a packet, IPv4 and IPv6, ECN bits clear", () => {
    const byGroup: Record<string, Set<number>> = { grp_a: new Set(), grp_b: new Set() };
    for (const { name, group } of SERIES) for (const p of seen.series.get(`${name}|${group}`)!.probes) byGroup[group]!.add(p.tos);
    expect({ grp_a: [...byGroup.grp_a!], grp_b: [...byGroup.grp_b!] }).toEqual({ grp_a: [0], grp_b: [46 << 2] });
    // Both families carried each DSCP (ICMP probes were told apart by it, so count them too).
    for (const group of ["grp_a", "grp_b"]) {
      for (const family of [4, 6]) {
        const n = SERIES.filter((s) => s.group === group && s.t.family === family).reduce((acc, s) => acc + seen.series.get(`${s.name}|${s.group}`)!.probes.length, 0);
        expect({ group, family, positive: n > 0 }).toEqual({ group, family, positive: true });
      }
    }
  });

  test("good paths: the host answered every probe, loss_total 0, loss_ratio 0", () => {
    const good = SERIES.filter((s) => s.t.at === "host");
    const rows = good.map(({ name, group, t }) => ({
      series: `${name}|${group}`,
      answeredOnWire: seen.series.get(`${name}|${group}`)!.answered,
      loss_total: m.value(`${PREFIX[t.type]}_loss_total`, L(name, group, t)),
      loss_ratio: m.value(`${PREFIX[t.type]}_loss_ratio`, L(name, group, t)),
    }));
    expect(rows).toEqual(good.map(({ name, group, t }) => ({ series: `${name}|${group}`, answeredOnWire: t.nb * ITERATIONS, loss_total: 0, loss_ratio: 0 })));
  });

  test("blackholed paths: the probes arrived, nothing answered, loss_total = sent_total, loss_ratio 1", () => {
    const bad = SERIES.filter((s) => s.t.at === "blackhole");
    const rows = bad.map(({ name, group, t }) => ({
      series: `${name}|${group}`,
      arrived: seen.series.get(`${name}|${group}`)!.probes.length,
      answeredOnWire: seen.series.get(`${name}|${group}`)!.answered,
      loss_total: m.value(`${PREFIX[t.type]}_loss_total`, L(name, group, t)),
      loss_ratio: m.value(`${PREFIX[t.type]}_loss_ratio`, L(name, group, t)),
    }));
    expect(rows).toEqual(bad.map(({ name, group, t }) => ({ series: `${name}|${group}`, arrived: t.nb * ITERATIONS, answeredOnWire: 0, loss_total: t.nb * ITERATIONS, loss_ratio: 1 })));
  });

  test("round_trip_seconds: one series per default percentile (95, 50); answered: 0 < p50 <= p95 < 10 ms; blackholed: 0", () => {
    for (const { name, group, t } of SERIES) {
      const family = `${PREFIX[t.type]}_round_trip_seconds`;
      const got = m.get(family, L(name, group, t));
      expect({ series: `${name}|${group}`, percentiles: got.map((s) => s.labels.percentile).sort() }).toEqual({ series: `${name}|${group}`, percentiles: ["50", "95"] });
      const p50 = m.value(family, { ...L(name, group, t), percentile: "50" })!;
      const p95 = m.value(family, { ...L(name, group, t), percentile: "95" })!;
      if (t.at === "blackhole") {
        expect({ series: `${name}|${group}`, p50, p95 }).toEqual({ series: `${name}|${group}`, p50: 0, p95: 0 });
      } else {
        const sane = p50 > 0 && p50 <= p95 && p95 < 0.01;
        expect({ series: `${name}|${group}`, p50, p95, sane }).toEqual({ series: `${name}|${group}`, p50, p95, sane: true });
      }
    }
  });

  test("histograms: one per type, group and family; cumulative buckets on the default bounds; +Inf = _count = answered probes", () => {
    for (const type of ["TCPsyn", "ICMPping", "UDPunreachable"] as const) {
      const fam = `${PREFIX[type]}_round_trip_duration_seconds`;
      expect(m.families.get(fam)?.type).toBe("histogram");
      for (const group of ["grp_a", "grp_b"]) {
        for (const family of [4, 6] as const) {
          const labels = { probe_name: PROBE_NAME, group, address_family: `ipv${family}` };
          const answered = SERIES.filter((s) => s.t.type === type && s.group === group && s.t.family === family).reduce(
            (acc, s) => acc + seen.series.get(`${s.name}|${s.group}`)!.answered,
            0,
          );
          const buckets = m.get(`${fam}_bucket`, labels);
          const bounds = buckets.map((b) => b.labels.le);
          expect(bounds).toEqual([...DEFAULT_HISTOGRAM_BUCKETS.map(String), "+Inf"]);
          for (const b of buckets) expect(Object.keys(b.labels).sort()).toEqual(["address_family", "group", "le", "probe_name"]);
          const counts = buckets.map((b) => b.value);
          expect(counts).toEqual([...counts].sort((x, y) => x - y)); // cumulative
          const count = m.value(`${fam}_count`, labels);
          const sum = m.value(`${fam}_sum`, labels)!;
          expect({ type, group, family, inf: counts.at(-1), count }).toEqual({ type, group, family, inf: answered, count: answered });
          // udp_v4 is not in grp_b, and its blackholed twin never answers: that histogram stays at 0.
          const anyGood = SERIES.some((s) => s.t.type === type && s.group === group && s.t.family === family && s.t.at === "host");
          expect({ type, group, family, answered: answered > 0 }).toEqual({ type, group, family, answered: anyGood });
          // Every RTT on veth is under 10 ms: the 0.0128 bucket holds them all.
          expect(m.value(`${fam}_bucket`, { ...labels, le: "0.0128" })).toBe(answered);
          expect(answered === 0 ? sum === 0 : sum > 0 && sum < answered * 0.01).toBe(true);
        }
      }
    }
  });

  test("path metrics (tcpsyn, udp): 0 on good paths; blackholed: worst path 1, 4 paths down in grp_a (3 probes per port), 0 in grp_b (1-2 per port); none for icmp", () => {
    for (const { name, group, t } of SERIES) {
      const p = PREFIX[t.type];
      const worst = m.value(`${p}_path_loss_ratio_max`, L(name, group, t));
      const down = m.value(`${p}_paths_down`, L(name, group, t));
      const want =
        t.type === "ICMPping"
          ? { worst: undefined, down: undefined }
          : t.at === "host"
            ? { worst: 0, down: 0 }
            : { worst: 1, down: group === "grp_a" ? 4 : 0 };
      expect({ series: `${name}|${group}`, worst, down }).toEqual({ series: `${name}|${group}`, ...want });
    }
    expect(m.families.has("icmp_path_loss_ratio_max")).toBe(false);
    expect(m.families.has("icmp_paths_down")).toBe(false);
  });

  test("threshold: the configured values with type, alert_level, state and group labels; none for targets without", () => {
    const want: string[] = [];
    for (const { name, group, t } of SERIES) {
      for (const [kind, v] of Object.entries(t.threshold)) {
        want.push(`${labelKey({ ...L(name, group, t), type: kind, alert_level: t.alertLevel })} = ${v}`);
      }
    }
    const got = m.get("threshold").map((s) => `${labelKey(s.labels)} = ${s.value}`);
    expect(got.sort()).toEqual(want.sort());
  });

  test('state label: "None" when unset, "in production" / "validation" when set, on every measurement family', () => {
    const families = ["sent_total", "loss_total", "loss_ratio", "round_trip_seconds"];
    for (const { name, group, t } of SERIES) {
      for (const f of families) {
        const states = m.get(`${PREFIX[t.type]}_${f}`, { destination: name, group }).map((s) => s.labels.state);
        expect({ series: `${name}|${group}|${f}`, states: [...new Set(states)] }).toEqual({ series: `${name}|${group}|${f}`, states: [t.state] });
      }
    }
  });

  test("per-target counts: match_ack_fail and port_mismatch per target (no group, no state), app_time_ooo_total per target and group at 0", () => {
    for (const [name, t] of Object.entries(TARGETS)) {
      const short = { probe_name: PROBE_NAME, destination: name, address_family: `ipv${t.family}` };
      const p = PREFIX[t.type];
      const wantNames = t.type === "TCPsyn" ? [`${p}_match_ack_fail_count`, `${p}_port_mismatch_count`] : t.type === "UDPunreachable" ? [`${p}_port_mismatch_count`] : [];
      for (const f of wantNames) {
        const got = m.get(f, { destination: name });
        expect({ f, series: got.map((s) => labelKey(s.labels)) }).toEqual({ f, series: [labelKey(short)] });
      }
      for (const f of [`${p}_port_mismatch_count`, "app_time_ooo_total"]) {
        for (const s of m.get(f, { destination: name })) expect({ f, destination: name, value: s.value }).toEqual({ f, destination: name, value: 0 });
      }
      const ooo = m.get("app_time_ooo_total", { destination: name }).map((s) => labelKey(s.labels));
      expect(ooo.sort()).toEqual(t.groups.map((group) => labelKey({ ...short, group })).sort());
    }
    expect(m.families.has("icmp_match_ack_fail_count")).toBe(false);
    expect(m.families.has("icmp_port_mismatch_count")).toBe(false);
  });

  test("tcpsyn_match_ack_fail_count stays 0: tcp_v4 and tcp_v4_closed probe one address from different Workers, and each answer matched its own probe on the wire", () => {
    // Every SYN was answered on the wire by an answer acknowledging that very SYN (checked above),
    // so no answer failed to match: the original reports 0 here too (sample).
    const rows = Object.entries(TARGETS)
      .filter(([, t]) => t.type === "TCPsyn")
      .map(([name]) => ({ destination: name, match_ack_fail: m.value("tcpsyn_match_ack_fail_count", { destination: name }) }));
    expect(rows).toEqual(rows.map((r) => ({ destination: r.destination, match_ack_fail: 0 })));
  });

  test("app_host_resolution_status 1 and app_host_resolution_change_total 1 per target", () => {
    const want = Object.entries(TARGETS).map(([name, t]) => labelKey({ probe_name: PROBE_NAME, destination: name, address_family: `ipv${t.family}` }));
    for (const f of ["app_host_resolution_status", "app_host_resolution_change_total"]) {
      const got = m.get(f).map((s) => `${labelKey(s.labels)} = ${s.value}`);
      expect({ f, got: got.sort() }).toEqual({ f, got: want.map((k) => `${k} = 1`).sort() });
    }
  });

  test("app_* health: iteration time within the interval, reload status 0, no timeouts, restarts, drops, send errors, not degraded", () => {
    const pn = { probe_name: PROBE_NAME };
    const iter = m.value("app_iteration_time_seconds", pn)!;
    expect(iter > 0 && iter < INTERVAL_S).toBe(true);
    expect({
      reload: m.value("app_reload_conf_failed_status", pn),
      timedOut: m.value("app_process_timed_out_total", pn),
      restarts: m.value("netprobify_worker_restarts_total", pn),
      dropped: m.value("netprobify_capture_dropped_total", pn),
      sendErrors: m.value("netprobify_send_errors_total", pn),
      degraded: m.value("netprobify_iteration_degraded", pn),
      dupFamily: m.families.get("app_target_name_dup_total")?.type,
    }).toEqual({ reload: 0, timedOut: 0, restarts: 0, dropped: 0, sendErrors: 0, degraded: 0, dupFamily: "counter" });
    // (Its size is part of "degraded" above.)
    expect(m.value("netprobify_send_lag_seconds", pn)! >= 0).toBe(true);
  });

  test("netprobify_info{version, bun_version, libpcap_version} = 1", () => {
    const info = m.get("netprobify_info");
    expect(info.length).toBe(1);
    const s = info[0]!;
    expect(Object.keys(s.labels).sort()).toEqual(["bun_version", "libpcap_version", "version"]);
    expect(s.labels.version).toBe(VERSION);
    expect(s.labels.bun_version).toBe(Bun.version);
    expect(s.labels.libpcap_version).toMatch(/^\d+\.\d+(\.\d+)?/);
    expect(s.value).toBe(1);
  });

  test("process_* metrics of the daemon process", () => {
    const v = (n: string) => m.value(n);
    const now = Date.now() / 1000;
    expect(m.families.get("process_cpu_seconds_total")?.type).toBe("counter");
    expect(v("process_cpu_seconds_total")! > 0).toBe(true);
    const start = v("process_start_time_seconds")!;
    expect(start <= now + 1 && start > now - 600).toBe(true);
    expect(v("process_resident_memory_bytes")! > 1e6).toBe(true);
    expect(v("process_virtual_memory_bytes")! >= v("process_resident_memory_bytes")!).toBe(true);
    expect(v("process_open_fds")! > 0).toBe(true);
    expect(v("process_max_fds")! >= v("process_open_fds")!).toBe(true);
  });

  describe("compared with the original's scrape of the same lab config", () => {
    const original = parseExposition(fixture("original-metrics-sample.txt"));
    /** Families the original's Python client adds and that need not be kept (the sample's header). */
    const kept = [...original.families.values()].filter((f) => !f.name.endsWith("_created") && !f.name.startsWith("python_"));
    /** netprobify_info: the original's scapy_version gives way to the runtime's and libpcap's (spec). */
    const labelNames = (e: Exposition, family: string) => {
      const sets = new Set(e.ofFamily(family).map((s) => Object.keys(s.labels).filter((k) => k !== "le").sort().join(",")));
      return [...sets].sort();
    };

    test("the sample holds the families it should (guards the parser and the fixture)", () => {
      expect(kept.length).toBe(30);
      expect(original.get("tcpsyn_sent_total").length).toBe(6);
    });

    test("every family of the original exists here with the same TYPE", () => {
      const rows = kept.map((f) => ({ family: f.name, type: m.families.get(f.name)?.type ?? "(missing)" }));
      expect(rows).toEqual(kept.map((f) => ({ family: f.name, type: f.type })));
    });

    test("every family of the original has the same label names here", () => {
      for (const f of kept) {
        if (original.ofFamily(f.name).length === 0) continue; // no series in the sample: nothing to compare
        const want = f.name === "netprobify_info" ? ["bun_version,libpcap_version,version"] : labelNames(original, f.name);
        expect({ family: f.name, labels: labelNames(m, f.name) }).toEqual({ family: f.name, labels: want });
      }
    });

    test("the original's seven targets have exactly the original's series: same label sets and label values (state, address_family, group, percentile)", () => {
      for (const f of kept) {
        const inScope = (s: Sample) => s.labels.destination !== undefined && ORIGINAL_TARGETS.includes(s.labels.destination);
        const want = original.ofFamily(f.name).filter(inScope);
        if (want.length === 0) continue;
        const got = m.ofFamily(f.name).filter(inScope);
        expect({ family: f.name, series: got.map((s) => labelKey(s.labels)).sort() }).toEqual({ family: f.name, series: want.map((s) => labelKey(s.labels)).sort() });
      }
    });

    test("values that do not depend on timing or packet counts are the original's: thresholds, zero losses and counts, resolution status and changes, reload status", () => {
      const families = [
        "threshold",
        "tcpsyn_loss_total",
        "tcpsyn_loss_ratio",
        "icmp_loss_total",
        "icmp_loss_ratio",
        "udp_unreachable_loss_total",
        "udp_unreachable_loss_ratio",
        // tcpsyn_match_ack_fail_count: its own test above.
        "tcpsyn_port_mismatch_count",
        "udp_unreachable_port_mismatch_count",
        "app_time_ooo_total",
        "app_host_resolution_status",
        "app_host_resolution_change_total",
        "app_reload_conf_failed_status",
      ];
      const inScope = (s: Sample) => s.labels.destination === undefined || ORIGINAL_TARGETS.includes(s.labels.destination);
      for (const f of families) {
        const render = (e: Exposition) =>
          e
            .ofFamily(f)
            .filter(inScope)
            .map((s) => `${labelKey(s.labels)} = ${s.value}`)
            .sort();
        expect({ family: f, series: render(m) }).toEqual({ family: f, series: render(original) });
      }
    });

    test("HELP texts are the original's", () => {
      const rows = kept.map((f) => ({ family: f.name, help: m.families.get(f.name)?.help }));
      expect(rows).toEqual(kept.map((f) => ({ family: f.name, help: f.help })));
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Loopback daemons: auth, signals, exit codes, config file selection

/** A small config probing this host over loopback, each type once. */
function loopbackConfig(probeName: string, extra = ""): string {
  return `global:
  probe_name: ${probeName}
  interval: 2
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
${extra}
groups:
  g:
    src_port_a: 65200
    src_port_z: 65203

targets:
  lo_tcp:
    type: TCPsyn
    destination: 127.0.0.1
    dst_port: 33434
    nb_packets: 2
    timeout: 0.5
  lo_icmp6:
    type: ICMPping
    destination: "::1"
    nb_packets: 2
    timeout: 0.5
  lo_udp:
    type: UDPunreachable
    destination: 127.0.0.1
    dst_port: 33434
    nb_packets: 2
    timeout: 0.5
`;
}

const sentOf = (e: Exposition, destination: string) =>
  e.get("tcpsyn_sent_total", { destination })[0]?.value ?? e.get("icmp_sent_total", { destination })[0]?.value ?? e.get("udp_unreachable_sent_total", { destination })[0]?.value;

describe("HTTP Basic auth", () => {
  let d: DaemonProcess;
  beforeAll(async () => {
    d = await startDaemon({ config: loopbackConfig("nb-auth"), env: { PROM_USER: "prom", PROM_PASSWORD: "s3cr:et" } });
  }, 30_000);
  afterAll(async () => {
    await d?.stop();
  });

  const basic = (cred: string) => ({ authorization: `Basic ${Buffer.from(cred).toString("base64")}` });

  test("401 with a Basic challenge without credentials, with a wrong user, a wrong password, an empty password, or another scheme", async () => {
    const cases: [string, Record<string, string>][] = [
      ["no credentials", {}],
      ["wrong user", basic("nobody:s3cr:et")],
      ["right user, wrong password", basic("prom:s3cr:eT")],
      ["right user, no password", basic("prom:")],
      ["right user, password prefix", basic("prom:s3cr")],
      ["credentials not base64-encoded", { authorization: "Basic prom:s3cr:et" }],
      ["Bearer scheme", { authorization: `Bearer ${Buffer.from("prom:s3cr:et").toString("base64")}` }],
    ];
    for (const [what, headers] of cases) {
      const res = await d.fetch("/metrics", { headers });
      const body = await res.text();
      expect({ what, status: res.status, challenge: res.headers.get("www-authenticate"), leaks: body.includes("netprobify_info") }).toEqual({
        what,
        status: 401,
        challenge: 'Basic realm="netprobify"',
        leaks: false,
      });
    }
  });

  test("200 with the right credentials, and the metrics are there", async () => {
    const res = await d.fetch("/metrics", { headers: basic("prom:s3cr:et") });
    expect(res.status).toBe(200);
    const e = parseExposition(await res.text());
    expect(e.get("netprobify_info").length).toBe(1);
    expect(e.value("app_reload_conf_failed_status", { probe_name: "nb-auth" })).toBe(0);
  });

  test("without PROM_USER and PROM_PASSWORD, or with only one of them, /metrics needs no credentials", async () => {
    const envs: Record<string, string>[] = [{}, { PROM_USER: "prom" }, { PROM_PASSWORD: "s3cret" }];
    for (const env of envs) {
      const open = await startDaemon({ config: loopbackConfig("nb-noauth"), env });
      try {
        const res = await open.fetch("/metrics");
        expect({ env, status: res.status }).toEqual({ env, status: 200 });
      } finally {
        await open.stop();
      }
    }
  }, 60_000);
});

describe("signals", () => {
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    test(`${sig} while idle between iterations: exit 0 within 5 s, "stopped" logged`, async () => {
      const d = await startDaemon({ config: loopbackConfig("nb-signal") });
      try {
        await d.waitFor("a first iteration", (e) => (sentOf(e, "lo_tcp") ?? 0) > 0);
        d.signal(sig);
        const exit = await d.waitExit(5000);
        expect({ exit, stopped: d.logLines.some((l) => l.includes("msg=stopped")) }).toEqual({ exit: { code: 0, signal: null }, stopped: true });
      } finally {
        await d.stop();
      }
    }, 30_000);
  }

  test("SIGTERM in the middle of a long batch (5 s of sending): exit 0 within 5 s", async () => {
    const slow = loopbackConfig("nb-slow").replace("nb_packets: 2\n    timeout: 0.5\n  lo_icmp6", "nb_packets: 50\n    timeout: 0.5\n  lo_icmp6").replace("  nb_proc: 1\n", "  nb_proc: 1\n  interval_packets: 0.1\n");
    expect(slow).toContain("nb_packets: 50");
    const d = await startDaemon({ config: slow });
    try {
      // The first iteration lasts about 5 s: wait until it has surely begun sending.
      await Bun.sleep(1500);
      expect(d.alive).toBe(true);
      d.signal("SIGTERM");
      const exit = await d.waitExit(5000);
      expect(exit).toEqual({ code: 0, signal: null });
    } finally {
      await d.stop();
    }
  }, 30_000);
});

describe("global.verbose", () => {
  const packetLines = (d: DaemonProcess) =>
    d.logLines
      .map(parseLogLine)
      .filter((l) => l?.msg === "packets sent and answered")
      .map((l) => `${l!.level} ${l!.target} ${l!.group} ${l!.address_family} sent=${l!.sent} answered=${l!.answered} lost=${l!.lost}`);

  test("verbose: 1 logs one INFO line per target and group after each iteration, with its packets; verbose: 0 logs none", async () => {
    const [loud, quiet] = await Promise.all([
      startDaemon({ config: loopbackConfig("nb-verbose", "  verbose: 1") }),
      startDaemon({ config: loopbackConfig("nb-quiet", "  verbose: 0") }),
    ]);
    try {
      const lines = await loud.waitFor("the first iteration's lines", () => (packetLines(loud).length >= 3 ? packetLines(loud) : undefined));
      expect(lines.slice(0, 3).sort()).toEqual([
        "INFO lo_icmp6 g ipv6 sent=2 answered=2 lost=0",
        "INFO lo_tcp g ipv4 sent=2 answered=2 lost=0",
        "INFO lo_udp g ipv4 sent=2 answered=2 lost=0",
      ]);
      // Two iterations published: the first one's lines, had there been any, were written before.
      await quiet.waitFor("two iterations", (e) => (sentOf(e, "lo_udp") ?? 0) >= 4);
      expect(packetLines(quiet)).toEqual([]);
    } finally {
      await Promise.all([loud.stop(), quiet.stop()]);
    }
  }, 30_000);
});

describe("exit codes and messages", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "netprobify-exit-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const BAD = `global:
  probe_name: nb-bad
  interval: zero
  nb_proc: 1
  logging_level: LOUD
  prometheus_port: 70000
  dns_update_interval: 0
groups: {}
`;
  const noStackTrace = (text: string) => !/^\s+at /m.test(text) && !/\b(TypeError|ReferenceError|Error):/.test(text);

  /** The daemon's stderr as log lines: every one must be in src/log.ts's format. */
  const logOf = (stderr: string) =>
    stderr
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => parseLogLine(l) ?? { unparsed: l });

  test("a bad config at start: exit 65, every problem a log line holding FILE:LINE:COL, then the verdict; no stack trace, nothing served", async () => {
    const path = join(dir, "bad.yaml");
    writeFileSync(path, BAD);
    const r = await runNetprobify([path], { cwd: dir });
    const log = logOf(r.stderr);
    expect(r.code).toBe(65);
    expect(log.map((l) => [l.level, l.module])).toEqual([
      ["ERROR", "config"],
      ["ERROR", "config"],
      ["ERROR", "config"],
      ["CRITICAL", "daemon"],
    ]);
    expect(log.slice(0, 3).map((l) => /^(.+?):(\d+):(\d+): (\S+):/.exec(l.msg ?? "")?.slice(1))).toEqual([
      [path, "3", "13", "global.interval"],
      [path, "5", "18", "global.logging_level"],
      [path, "6", "20", "global.prometheus_port"],
    ]);
    expect(log[3]).toMatchObject({ msg: "cannot start: the configuration is invalid", issues: "3", exit_code: "65" });
    expect(noStackTrace(r.stderr)).toBe(true);
    expect(r.stdout).toBe("");
  });

  test("a missing file: exit 66, one log line naming it once, no stack trace", async () => {
    const path = join(dir, "does-not-exist.yaml");
    const r = await runNetprobify([path], { cwd: dir });
    const log = logOf(r.stderr);
    expect({ code: r.code, lines: log.length }).toEqual({ code: 66, lines: 1 });
    expect(log[0]).toMatchObject({ level: "CRITICAL", msg: `cannot start: ${path}: cannot read the file: no such file`, exit_code: "66" });
    expect(r.stderr.split(path).length - 1).toBe(1);
    expect(noStackTrace(r.stderr)).toBe(true);
  });

  test("the metrics port already taken: exit 71, one CRITICAL log line naming the address", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const path = join(dir, "taken.yaml");
      writeFileSync(path, loopbackConfig("nb-taken").replace("__PORT__", String(taken.port)).replace(/prometheus_address: .*/, "prometheus_address: 127.0.0.1"));
      const r = await runNetprobify([path], { cwd: dir });
      const log = logOf(r.stderr).filter((l) => l.level !== "INFO");
      expect(r.code).toBe(71);
      expect(log).toEqual([expect.objectContaining({ level: "CRITICAL", exit_code: "71" })]);
      expect(log[0]?.msg).toStartWith(`cannot start: cannot serve metrics on 127.0.0.1:${taken.port}: `);
    } finally {
      taken.stop(true);
    }
  });

  test("check: exit 0 and a summary for a good file; 65 and the same FILE:LINE:COL lines for a bad one; nothing probed or served", async () => {
    const good = join(dir, "good.yaml");
    writeFileSync(good, loopbackConfig("nb-check").replace("__PORT__", "9"));
    const ok = await runNetprobify(["check", good], { cwd: dir });
    expect({ code: ok.code, err: ok.stderr }).toEqual({ code: 0, err: "" });
    expect(ok.stdout).toContain(`${good}: valid, 1 group and 3 targets`);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, BAD);
    const ko = await runNetprobify(["check", bad], { cwd: dir });
    expect(ko.code).toBe(65);
    const start = await runNetprobify([bad], { cwd: dir });
    // The same FILE:LINE:COL texts: check prints them as they are, the daemon logs them.
    const issues = logOf(start.stderr).filter((l) => l.level === "ERROR").map((l) => l.msg ?? "");
    expect(ko.stderr.split("\n").filter((l) => l !== "")).toEqual(issues);
    expect(noStackTrace(ko.stderr)).toBe(true);
  });
});

describe("which config file the daemon reads", () => {
  async function probeNameOf(d: DaemonProcess): Promise<string> {
    const e = await d.scrape();
    return e.get("app_reload_conf_failed_status")[0]?.labels.probe_name ?? "(none)";
  }

  test("a bare positional FILE", async () => {
    const d = await startDaemon({ config: loopbackConfig("nb-positional"), configName: "some.yaml", args: (p) => [p] });
    try {
      expect(await probeNameOf(d)).toBe("nb-positional");
    } finally {
      await d.stop();
    }
  }, 30_000);

  test("--config FILE", async () => {
    const d = await startDaemon({ config: loopbackConfig("nb-option"), configName: "other.yaml", args: (p) => ["--config", p] });
    try {
      expect(await probeNameOf(d)).toBe("nb-option");
    } finally {
      await d.stop();
    }
  }, 30_000);

  test("no argument: config.yaml in the working directory when there is no netprobify.yaml", async () => {
    const d = await startDaemon({ config: loopbackConfig("nb-config-yaml"), configName: "config.yaml", args: [] });
    try {
      expect(await probeNameOf(d)).toBe("nb-config-yaml");
    } finally {
      await d.stop();
    }
  }, 30_000);

  test("no argument: netprobify.yaml wins over config.yaml", async () => {
    const d = await startDaemon({
      config: loopbackConfig("nb-netprobify-yaml"),
      files: { "config.yaml": loopbackConfig("nb-config-yaml") },
      args: [],
    });
    try {
      expect(await probeNameOf(d)).toBe("nb-netprobify-yaml");
    } finally {
      await d.stop();
    }
  }, 30_000);

  test("no argument, empty directory: the built-in default, said in the first log line, serves loopback metrics for 3 types x 2 families with 0 loss", async () => {
    // Inside the test host's namespace: its own loopback, and its own port 8000 (the default's).
    const d = await startDaemon({ config: null, args: [], netns: h.ns, port: 8000, metricsHost: h.v4.host });
    try {
      const e = await d.waitFor("the default config's first iteration", (x) => (x.get("icmp_sent_total").length === 2 && x.get("udp_unreachable_sent_total").length === 2 && x.get("tcpsyn_sent_total").length === 2 ? x : undefined));
      expect(d.logLines[0]).toContain("built-in default");
      const rows: string[] = [];
      for (const p of ["tcpsyn", "icmp", "udp_unreachable"]) {
        for (const s of e.get(`${p}_sent_total`)) {
          const loss = e.value(`${p}_loss_total`, s.labels);
          const ratio = e.value(`${p}_loss_ratio`, s.labels);
          rows.push(`${p} ${s.labels.address_family} sent>0=${s.value > 0} loss=${loss} ratio=${ratio}`);
        }
      }
      expect(rows.sort()).toEqual(
        ["tcpsyn", "icmp", "udp_unreachable"].flatMap((p) => ["ipv4", "ipv6"].map((af) => `${p} ${af} sent>0=true loss=0 ratio=0`)).sort(),
      );
      expect(e.get("app_reload_conf_failed_status")[0]?.labels.probe_name).toBe("netprobify-selftest");
      d.signal("SIGTERM");
      expect(await d.waitExit(5000)).toEqual({ code: 0, signal: null });
    } finally {
      await d.stop();
    }
  }, 40_000);
});
