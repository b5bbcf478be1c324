/**
 * The bounded per-target metrics (global.per_target_series: false) through Metrics.applyIteration:
 * per-group families summed from every target, the worst targets' per-target series with the
 * values the default mode shows, counters that stay true for targets entering the list later and
 * across plan changes, a clean switch between the modes, a promtool-clean exposition, and a
 * /metrics body that stays small at 100,000 series.
 */
import { describe, expect, test } from "bun:test";
import type { IterationInput } from "../../src/daemon/metrics.ts";
import type { Series } from "../../src/daemon/plan.ts";
import type { SeriesSummary } from "../../src/engine/stats.ts";
import { parseExposition, type Exposition } from "../support/daemon-process.ts";
import { fresh, iteration as baseIteration, PN, scrape, summary } from "../support/metrics-fixtures.ts";


const tcp = (target: string, group = "a", family: 4 | 6 = 4, state = "None"): Series => ({ target, group, type: "TCPsyn", family, state });


/** The bounded mode with 10 worst targets, unless `o` says otherwise. */
const iteration = (series: Series[], results: (SeriesSummary | null)[], o: Partial<IterationInput> = {}): IterationInput =>
  baseIteration(series, results, { perTargetSeries: false, worstTargets: 10, ...o });



const group = (g: string, family = "ipv4") => ({ probe_name: PN, group: g, address_family: family });

/** Destinations with a tcpsyn_sent_total series in group g. */
const shown = (e: Exposition, g = "a") =>
  e
    .get("tcpsyn_sent_total", { group: g })
    .map((s) => s.labels.destination ?? "")
    .sort();

/** Every sample of the per-target (and histogram, resolution) families, as `name{labels} value`: the group families left out. */
function perTargetSamples(e: Exposition): string[] {
  return e.samples
    .filter((s) => !s.name.includes("_group_") && /^(tcpsyn|icmp|udp_unreachable|twamp|threshold|app_time_ooo|app_host)/.test(s.name))
    .map((s) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())} ${s.value}`)
    .sort();
}

describe("per_target_series: false", () => {
  test("with room for every target, the per-target series are the default mode's, sample for sample, over failed Workers, plan changes and a percentile change", async () => {
    const all = fresh();
    const bounded = fresh();
    const webA: Series = { target: "web", group: "a", type: "TCPsyn", family: 4, state: "in production" };
    const webB: Series = { ...webA, group: "b" };
    const pingA: Series = { target: "ping", group: "a", type: "ICMPping", family: 6, state: "None" };
    const udpA: Series = { target: "udp", group: "a", type: "UDPunreachable", family: 4, state: "None" };
    const twampA: Series = { target: "twamp", group: "a", type: "TWAMPlight", family: 4, state: "None" };
    const twampResult = (fwd: number) => summary({ extra: [[fwd], [1], [0], [0.0003, 0.0001]] });
    const steps: [Series[], (SeriesSummary | null)[], Partial<IterationInput>][] = [
      [[webA, webB, pingA, udpA, twampA], [summary({ lost: 2, matchFail: 1, buckets: [1, 0, 0, 0] }), summary({ portMismatch: 2 }), summary({ timeOutOfOrder: 1 }), summary({ worstPathLossRatio: 0.5, pathsDown: 1 }), twampResult(2)], {}],
      [[webA, webB, pingA, udpA, twampA], [null, summary({ lost: 10, percentiles: [NaN, NaN] }), summary(), null, summary({ extra: [[], [], [], []] })], {}],
      // A reload: webB and udp go, a new target comes in front, ping's state changes (a new series, app_time_ooo_total carries on).
      [[tcp("new"), webA, { ...pingA, state: "moved" }, twampA], [null, summary({ matchFail: 3 }), summary({ timeOutOfOrder: 2 }), null], {}],
      [[tcp("new"), webA, { ...pingA, state: "moved" }, twampA], [summary({ lost: 1 }), summary(), summary(), twampResult(1)], { percentiles: [99] }],
      [[tcp("new"), webA, { ...pingA, state: "moved" }, twampA], [null, null, null, null], { percentiles: [99] }],
      [[tcp("new"), webA, webB, { ...pingA, state: "moved" }, twampA], [summary(), summary({ matchFail: 1 }), summary({ sent: 3 }), summary(), twampResult(4)], { percentiles: [99] }],
    ];
    for (const [k, [series, results, o]] of steps.entries()) {
      await all.applyIteration(iteration(series, results, { ...o, perTargetSeries: true }));
      await bounded.applyIteration(iteration(series, results, { ...o, worstTargets: 100 }));
      const want = perTargetSamples(await scrape(all));
      expect({ step: k, samples: perTargetSamples(await scrape(bounded)) }).toEqual({ step: k, samples: want });
    }
  });

  test("the group families: counters summed over every target of the group and accumulated, gauges of the last iteration, per group and address family", async () => {
    const m = fresh();
    const series = [tcp("t1"), tcp("t2"), tcp("t3"), tcp("t4", "b"), tcp("t5", "a", 6)];
    const r1 = [
      summary({ sent: 10, lost: 5, pathsDown: 2, worstPathLossRatio: 0.75, buckets: [1, 0, 0, 0] }),
      summary({ sent: 20, lost: 0, pathsDown: 1, worstPathLossRatio: 0.25 }),
      summary({ sent: 10, lost: 1 }),
      summary({ sent: 7, lost: 7, buckets: [0, 1, 0, 0] }),
      summary({ sent: 4, lost: 0, buckets: [0, 0, 1, 0] }),
    ];
    await m.applyIteration(iteration(series, r1, { worstTargets: 1 }));
    // The third target's Worker failed: its counters do not advance, its last figures still count in the gauges.
    const r2 = [summary({ sent: 10, lost: 0 }), summary({ sent: 20, lost: 4, pathsDown: 3, worstPathLossRatio: 0.5 }), null, summary({ sent: 7, lost: 0 }), summary({ sent: 4, lost: 4 })];
    await m.applyIteration(iteration(series, r2, { worstTargets: 1 }));
    const e = await scrape(m);
    expect(e.families.get("tcpsyn_group_sent_total")?.type).toBe("counter");
    expect(e.families.get("tcpsyn_group_loss_ratio")?.type).toBe("gauge");
    const a = group("a");
    expect({
      sent: e.value("tcpsyn_group_sent_total", a),
      loss: e.value("tcpsyn_group_loss_total", a),
      ratio: e.value("tcpsyn_group_loss_ratio", a),
      targets: e.value("tcpsyn_group_targets", a),
      withLoss: e.value("tcpsyn_group_targets_with_loss", a),
      pathsDown: e.value("tcpsyn_group_paths_down", a),
      pathMax: e.value("tcpsyn_group_path_loss_ratio_max", a),
    }).toEqual({
      sent: 10 + 20 + 10 + 10 + 20,
      loss: 5 + 0 + 1 + 0 + 4,
      // Last figures: t1 10/0, t2 20/4, t3 (failed) still 10/1.
      ratio: 5 / 40,
      targets: 3,
      withLoss: 2,
      pathsDown: 0 + 3 + 0,
      pathMax: 0.5,
    });
    expect(e.value("tcpsyn_group_sent_total", group("b"))).toBe(14);
    expect(e.value("tcpsyn_group_loss_ratio", group("b"))).toBe(0);
    expect(e.value("tcpsyn_group_targets_with_loss", group("b"))).toBe(0);
    expect(e.value("tcpsyn_group_loss_ratio", group("a", "ipv6"))).toBe(1);
    expect(e.value("tcpsyn_group_targets", group("a", "ipv6"))).toBe(1);
    // Labels: probe_name, group, address_family; no group family for a type nothing probes, no path families for ICMP.
    expect(Object.keys(e.get("tcpsyn_group_targets")[0]!.labels).sort()).toEqual(["address_family", "group", "probe_name"]);
    expect([...e.families.keys()].filter((n) => n.startsWith("icmp_group_") || n.startsWith("udp_unreachable_group_"))).toEqual([]);
    // The histogram stays per group, every target's RTTs in it.
    expect(e.get("tcpsyn_round_trip_duration_seconds_count").length).toBe(3);
  });

  test("group sums equal the sums of the per-target series when every target is shown", async () => {
    const m = fresh();
    const series = Array.from({ length: 12 }, (_, i) => tcp(`t${i}`, i % 3 === 0 ? "b" : "a"));
    for (let round = 0; round < 3; round++) {
      await m.applyIteration(iteration(series, series.map((_, i) => summary({ sent: 5 + i, lost: (i * round) % 4 })), { worstTargets: 100 }));
    }
    const e = await scrape(m);
    for (const g of ["a", "b"]) {
      const sum = (name: string) => e.get(name, { group: g }).reduce((n, s) => n + s.value, 0);
      expect({ g, sent: e.value("tcpsyn_group_sent_total", group(g)), loss: e.value("tcpsyn_group_loss_total", group(g)) }).toEqual({
        g,
        sent: sum("tcpsyn_sent_total"),
        loss: sum("tcpsyn_loss_total"),
      });
      const withLoss = e.get("tcpsyn_loss_ratio", { group: g }).filter((s) => s.value > 0).length;
      expect(e.value("tcpsyn_group_targets_with_loss", group(g))).toBe(withLoss);
      expect(e.value("tcpsyn_group_targets", group(g))).toBe(e.get("tcpsyn_sent_total", { group: g }).length);
    }
  });

  test("the worst targets: highest loss ratio first, then the highest RTT at the highest percentile (unknown last), then by name; per group and family", async () => {
    const m = fresh();
    const series = ["e", "d", "c", "b", "a", "f", "g"].map((t) => tcp(t));
    const results = [
      summary({ sent: 10, lost: 5, percentiles: [0.001, 0.009] }), // e: 0.5
      summary({ sent: 10, lost: 5, percentiles: [0.003, 0.001] }), // d: 0.5, slower at p95
      summary({ sent: 10, lost: 1, percentiles: [NaN, NaN] }), // c: 0.1, RTT unknown
      summary({ sent: 10, lost: 1, percentiles: [0.0001, 0.0001] }), // b: 0.1
      summary({ sent: 10, lost: 1, percentiles: [0.0001, 0.0001] }), // a: 0.1, same RTT as b
      summary({ sent: 10, lost: 0, percentiles: [0.5, 0.5] }), // f: no loss, slowest
      summary({ sent: 0, lost: 0, percentiles: [NaN, NaN] }), // g: nothing sent: ratio 0
    ];
    // Growing the list one at a time shows the ranking: each step adds the next worst.
    const order: string[] = [];
    for (let k = 0; k <= series.length + 1; k++) {
      await m.applyIteration(iteration(series, results, { worstTargets: k }));
      const now = shown(await scrape(m));
      expect({ k, shown: now.length }).toEqual({ k, shown: Math.min(k, series.length) });
      const added = now.filter((d) => !order.includes(d));
      expect(added.length).toBe(k >= 1 && k <= series.length ? 1 : 0);
      order.push(...added);
    }
    expect(order).toEqual(["d", "e", "a", "b", "c", "f", "g"]);
    // Another group ranks on its own.
    await m.applyIteration(iteration([...series, tcp("z", "b")], [...results, summary({ lost: 0 })], { worstTargets: 2 }));
    const e = await scrape(m);
    expect([shown(e, "a"), shown(e, "b")]).toEqual([["d", "e"], ["z"]]);
  });

  test("the worst targets' series are the default's: thresholds, percentiles, *_count gauges over every group, app_time_ooo_total; the others have none", async () => {
    const m = fresh();
    const webA: Series = { target: "web", group: "a", type: "TCPsyn", family: 4, state: "in production" };
    const webB: Series = { ...webA, group: "b" };
    await m.applyIteration(
      iteration([webA, webB, tcp("quiet")], [summary({ lost: 1, matchFail: 2, timeOutOfOrder: 1 }), summary({ matchFail: 3 }), summary({ lost: 0, matchFail: 4 })], { worstTargets: 1 }),
    );
    const e = await scrape(m);
    const L = { probe_name: PN, destination: "web", address_family: "ipv4", state: "in production", group: "a" };
    expect(e.value("tcpsyn_sent_total", L)).toBe(10);
    expect(e.value("tcpsyn_loss_ratio", L)).toBe(0.1);
    expect(e.get("tcpsyn_round_trip_seconds", L).map((s) => `${s.labels.percentile}=${s.value}`)).toEqual(["95=0.002", "50=0.001"]);
    expect(e.get("threshold", { destination: "web" }).map((s) => `${s.labels.group}/${s.labels.type}=${s.value}`).sort()).toEqual(["a/latency=0.02", "a/loss=5", "b/latency=0.02", "b/loss=5"]);
    // Per target over its groups, as in the default mode; a hidden target has none.
    expect(e.get("tcpsyn_match_ack_fail_count").map((s) => `${s.labels.destination}=${s.value}`)).toEqual(["web=5"]);
    expect(e.value("app_time_ooo_total", { destination: "web", group: "a" })).toBe(1);
    expect(e.withLabel("destination", "quiet")).toEqual([]);
  });

  test("a target entering the worst list later shows its true cumulative counters, also after a reload that added and removed targets around it", async () => {
    const m = fresh();
    let series = [tcp("loud"), tcp("quiet"), tcp("gone")];
    const ok = summary({ sent: 10, lost: 0 });
    for (let k = 0; k < 3; k++) await m.applyIteration(iteration(series, [summary({ sent: 10, lost: 3 }), ok, summary({ sent: 10, lost: 1 })], { worstTargets: 1 }));
    expect(shown(await scrape(m))).toEqual(["loud"]);
    // A reload: "gone" goes, two new targets come in front; a publish without results, as the daemon's after a reload.
    series = [tcp("new1"), tcp("new2"), tcp("quiet"), tcp("loud")];
    await m.applyIteration(iteration(series, series.map(() => null), { worstTargets: 1 }));
    let e = await scrape(m);
    expect(shown(e)).toEqual(["loud"]);
    expect(e.value("tcpsyn_sent_total", { destination: "loud" })).toBe(30);
    await m.applyIteration(iteration(series, [ok, ok, summary({ sent: 10, lost: 9 }), ok], { worstTargets: 1 }));
    e = await scrape(m);
    expect(shown(e)).toEqual(["quiet"]);
    expect([e.value("tcpsyn_sent_total", { destination: "quiet" }), e.value("tcpsyn_loss_total", { destination: "quiet" })]).toEqual([40, 9]);
    expect(e.value("tcpsyn_group_sent_total", group("a"))).toBe(90 + 40);
    // "gone" comes back: a new series, from 0, as in the default mode.
    series = [...series, tcp("gone")];
    await m.applyIteration(iteration(series, [ok, ok, ok, ok, summary({ sent: 10, lost: 10 })], { worstTargets: 1 }));
    e = await scrape(m);
    expect(shown(e)).toEqual(["gone"]);
    expect(e.value("tcpsyn_sent_total", { destination: "gone" })).toBe(10);
  });

  test("hostname resolution series: every target's in the default mode; bounded, the shown targets' and the failing ones' only", async () => {
    const series = [tcp("t1"), tcp("t2"), tcp("t3"), tcp("t4")];
    const results = [summary({ lost: 5 }), summary({ lost: 1 }), summary(), summary()];
    const resolution = (target: string, status: 0 | 1) => ({ target, family: 4 as const, status, changes: 1, addresses: status ? ["198.18.0.1"] : [] });
    // t5 failed to resolve: not probed, so in no series and never among the worst.
    const resolutions = [...series.map((s) => resolution(s.target, 1)), resolution("t5", 0)];
    const destinations = (e: Exposition, name: string) =>
      e
        .get(name)
        .map((x) => x.labels.destination ?? "")
        .sort();
    const all = fresh();
    await all.applyIteration(iteration(series, results, { perTargetSeries: true, resolutions }));
    const eAll = await scrape(all);
    expect(destinations(eAll, "app_host_resolution_status")).toEqual(["t1", "t2", "t3", "t4", "t5"]);
    expect(destinations(eAll, "app_host_resolution_change_total")).toEqual(["t1", "t2", "t3", "t4", "t5"]);
    const bounded = fresh();
    await bounded.applyIteration(iteration(series, results, { worstTargets: 2, resolutions }));
    const e = await scrape(bounded);
    expect(shown(e)).toEqual(["t1", "t2"]);
    expect(destinations(e, "app_host_resolution_status")).toEqual(["t1", "t2", "t5"]);
    expect(e.get("app_host_resolution_status", { destination: "t5" })[0]!.value).toBe(0);
    expect(destinations(e, "app_host_resolution_change_total")).toEqual(["t1", "t2", "t5"]);
    // t2 recovers and t3 loses: t3 takes t2's place, and its resolution series with it.
    await bounded.applyIteration(iteration(series, [summary({ lost: 5 }), summary(), summary({ lost: 3 }), summary()], { worstTargets: 2, resolutions }));
    const e2 = await scrape(bounded);
    expect(shown(e2)).toEqual(["t1", "t3"]);
    expect(destinations(e2, "app_host_resolution_status")).toEqual(["t1", "t3", "t5"]);
  });

  test("switching by reload, true -> false -> true: each mode's series only, counters restarting at the switch", async () => {
    const m = fresh();
    const series = Array.from({ length: 5 }, (_, i) => tcp(`t${i}`));
    const results = series.map((_, i) => summary({ lost: i }));
    await m.applyIteration(iteration(series, results, { perTargetSeries: true }));
    await m.applyIteration(iteration(series, results, { perTargetSeries: true }));
    let e = await scrape(m);
    expect(e.get("tcpsyn_sent_total").length).toBe(5);
    expect([...e.families.keys()].filter((n) => n.includes("_group_"))).toEqual([]);

    await m.applyIteration(iteration(series, results, { worstTargets: 2 }));
    e = await scrape(m);
    expect(shown(e)).toEqual(["t3", "t4"]);
    expect(e.value("tcpsyn_sent_total", { destination: "t4" })).toBe(10);
    expect(e.value("tcpsyn_group_sent_total", group("a"))).toBe(50);

    await m.applyIteration(iteration(series, results, { perTargetSeries: true }));
    e = await scrape(m);
    expect(e.get("tcpsyn_sent_total").map((s) => s.value)).toEqual([10, 10, 10, 10, 10]);
    expect([...e.families.keys()].filter((n) => n.includes("_group_"))).toEqual([]);
    expect(e.text).not.toContain("_group_");
  });

  test("promtool check metrics: the bounded exposition's only complaints are the original's three *_count names", async () => {
    if (Bun.which("promtool") === null) throw new Error("promtool is not installed (scripts/setup.sh installs the prometheus package)");
    const m = fresh();
    const series: Series[] = [
      tcp("web"),
      tcp("web2", "b", 6),
      { target: "udp", group: "a", type: "UDPunreachable", family: 4, state: "None" },
      { target: "ping", group: "a", type: "ICMPping", family: 6, state: "None" },
      { target: "twamp", group: "a", type: "TWAMPlight", family: 4, state: "None" },
    ];
    await m.applyIteration(iteration(series, series.map(() => summary({ lost: 1, buckets: [1, 0, 0, 0], extra: [[1], [0], [0], [0.001, 0.001]] })), { worstTargets: 1 }));
    const text = await m.exposition();
    const p = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: Buffer.from(text), stdout: "pipe", stderr: "pipe" });
    const complaints = `${p.stdout.toString()}${p.stderr.toString()}`.split("\n").filter((l) => l.trim() !== "");
    expect(complaints.sort()).toEqual(
      ["tcpsyn_match_ack_fail_count", "tcpsyn_port_mismatch_count", "udp_unreachable_port_mismatch_count"].map((n) => `${n} non-histogram and non-summary metrics should not have "_count" suffix`),
    );
    expect(text).toContain("twamp_group_sent_total");
  });
});

describe("scale", () => {
  test("100,000 series in 10 groups: the bounded body holds 10 targets per group and stays under 1 MB, a fiftieth of the default body for 10,000", async () => {
    const groups = 10;
    const make = (n: number) => {
      const series: Series[] = Array.from({ length: n }, (_, i) => tcp(`target-${String(i).padStart(6, "0")}.example.net`, `group-${i % groups}`));
      const results = series.map((_, i) => summary({ sent: 100, lost: i % 97 === 0 ? i % 7 : 0, percentiles: [0.001 + (i % 13) * 1e-4, 0.001], buckets: [90, 10, 0, 0] }));
      return { series, results };
    };
    const body = async (n: number, perTargetSeries: boolean) => {
      const { series, results } = make(n);
      const m = fresh();
      for (let k = 0; k < 2; k++) await m.applyIteration(iteration(series, results, { perTargetSeries, targets: {} }));
      return (await m.expositionParts()).body;
    };
    const n = 100_000;
    const bounded = await body(n, false);
    const e = parseExposition(new TextDecoder().decode(bounded));
    expect(e.get("tcpsyn_sent_total").length).toBe(groups * 10);
    expect(e.get("tcpsyn_group_targets").map((s) => s.value)).toEqual(new Array<number>(groups).fill(n / groups));
    expect(e.get("tcpsyn_group_sent_total").reduce((x, s) => x + s.value, 0)).toBe(2 * 100 * n);
    expect(bounded.byteLength).toBeLessThan(1_000_000);
    // The default body grows by a few hundred bytes per series: 10,000 are enough to compare (100,000
    // take 4 s and 1 GB here: set NETPROBIFY_SCALE_DEFAULT=100000 to measure them).
    const nDefault = Number(process.env.NETPROBIFY_SCALE_DEFAULT ?? 10_000);
    const all = await body(nDefault, true);
    expect(all.byteLength).toBeGreaterThan(50 * bounded.byteLength);
    console.log(`/metrics body: default, ${nDefault} series: ${all.byteLength} bytes; bounded (worst_targets 10), ${n} series in ${groups} groups: ${bounded.byteLength} bytes`);
  }, 60_000);
});
