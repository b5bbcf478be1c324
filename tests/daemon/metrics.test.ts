/**
 * Metrics.applyIteration and the exposition it renders, fed by hand-made iterations: which series
 * exist, how counters, gauges and histograms move from one iteration to the next, and that the
 * text is well-formed (parsed strictly by the same parser the end-to-end tests use).
 */
import { describe, expect, test } from "bun:test";
import { Metrics } from "../../src/daemon/metrics.ts";
import type { Series } from "../../src/daemon/plan.ts";
import type { Resolution } from "../../src/daemon/resolver.ts";
import type { BatchStats } from "../../src/engine/probe-engine.ts";
import { labelKey, parseExposition, type Exposition } from "../support/daemon-process.ts";
import { fresh, iteration, PN, scrape, summary } from "../support/metrics-fixtures.ts";


const S = {
  webA: { target: "web", group: "a", type: "TCPsyn", family: 4, state: "in production" },
  webB: { target: "web", group: "b", type: "TCPsyn", family: 4, state: "in production" },
  pingA: { target: "ping", group: "a", type: "ICMPping", family: 6, state: "None" },
  udpA: { target: "udp", group: "a", type: "UDPunreachable", family: 4, state: "None" },
  twampA: { target: "twamp", group: "a", type: "TWAMPlight", family: 4, state: "None" },
} satisfies Record<string, Series>;


function stats(o: Partial<BatchStats> = {}): BatchStats {
  return { sent: 0, sendErrors: 0, unroutable: 0, resetErrors: 0, answered: 0, captureDropped: 0, txMissing: 0, duplicates: 0, late: 0, truncated: 0, sendLagMs: 0, sendMs: 0, durationMs: 0, ...o };
}

const res = (target: string, family: 4 | 6, status: 0 | 1, changes: number): Resolution => ({ target, family, status, changes, addresses: status ? ["198.18.0.1"] : null });




const L = (s: Series) => ({ probe_name: PN, destination: s.target, address_family: `ipv${s.family}`, state: s.state, group: s.group });

describe("Metrics.applyIteration", () => {
  test("series appear with the label set L; counters add up; loss_ratio is the last iteration's", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA, S.pingA], [summary({ sent: 10, lost: 2 }), summary({ sent: 4, lost: 4, percentiles: [0, 0] })]));
    let e = await scrape(m);
    expect(e.get("tcpsyn_sent_total").map((s) => labelKey(s.labels))).toEqual([labelKey(L(S.webA))]);
    expect(e.value("tcpsyn_sent_total", L(S.webA))).toBe(10);
    expect(e.value("tcpsyn_loss_total", L(S.webA))).toBe(2);
    expect(e.value("tcpsyn_loss_ratio", L(S.webA))).toBe(0.2);
    expect(e.value("icmp_loss_ratio", L(S.pingA))).toBe(1);
    await m.applyIteration(iteration([S.webA, S.pingA], [summary({ sent: 10, lost: 0 }), summary({ sent: 4, lost: 1 })]));
    e = await scrape(m);
    expect(e.value("tcpsyn_sent_total", L(S.webA))).toBe(20);
    expect(e.value("tcpsyn_loss_total", L(S.webA))).toBe(2);
    expect(e.value("tcpsyn_loss_ratio", L(S.webA))).toBe(0);
    expect(e.value("icmp_sent_total", L(S.pingA))).toBe(8);
    expect(e.value("icmp_loss_total", L(S.pingA))).toBe(5);
    expect(e.value("icmp_loss_ratio", L(S.pingA))).toBe(0.25);
    expect(e.families.get("tcpsyn_sent_total")?.type).toBe("counter");
    expect(e.families.get("tcpsyn_loss_ratio")?.type).toBe("gauge");
  });

  test("percentile series: one per configured percentile, labelled with the integer as text, values in the configured order", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA], [summary({ percentiles: [0.003, 0.001, 0.002] })], { percentiles: [99, 50, 95] }));
    const e = await scrape(m);
    const got = Object.fromEntries(e.get("tcpsyn_round_trip_seconds", L(S.webA)).map((s) => [s.labels.percentile, s.value]));
    expect(got).toEqual({ "99": 0.003, "50": 0.001, "95": 0.002 });
    // Percentiles changed: the old ones go.
    await m.applyIteration(iteration([S.webA], [summary({ percentiles: [0.004] })], { percentiles: [90] }));
    const f = await scrape(m);
    expect(f.get("tcpsyn_round_trip_seconds").map((s) => `${s.labels.percentile}=${s.value}`)).toEqual(["90=0.004"]);
  });

  test("a series missing from the next iteration disappears from every family; the others stay", async () => {
    const m = fresh();
    const resolutions = [res("web", 4, 1, 1), res("udp", 4, 1, 1)];
    await m.applyIteration(iteration([S.webA, S.webB, S.udpA], [summary({ matchFail: 1 }), summary(), summary()], { resolutions }));
    const before = await scrape(m);
    expect(before.withLabel("group", "b").length).toBeGreaterThan(5);
    await m.applyIteration(iteration([S.webA], [summary()], { resolutions: [res("web", 4, 1, 1)] }));
    const e = await scrape(m);
    expect(e.withLabel("group", "b").map((s) => s.name)).toEqual(
      // The histogram has no destination label: grp b's bucket series go with the last b series.
      [],
    );
    expect(e.withLabel("destination", "udp").map((s) => s.name)).toEqual([]);
    expect(e.value("tcpsyn_sent_total", L(S.webA))).toBe(20);
    // Per-target series (no group) stay while any series of the target does.
    expect(e.get("tcpsyn_match_ack_fail_count").length).toBe(1);
  });

  test("a Worker that failed (result null): its series stay, with their values, and nothing advances", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA, S.udpA], [summary({ sent: 10, lost: 1 }), summary({ sent: 5 })]));
    await m.applyIteration(iteration([S.webA, S.udpA], [null, summary({ sent: 5 })]));
    const e = await scrape(m);
    expect(e.value("tcpsyn_sent_total", L(S.webA))).toBe(10);
    expect(e.value("tcpsyn_loss_total", L(S.webA))).toBe(1);
    expect(e.value("tcpsyn_loss_ratio", L(S.webA))).toBe(0.1);
    expect(e.value("udp_unreachable_sent_total", L(S.udpA))).toBe(10);
  });

  test("histograms: cumulative buckets on the configured bounds, +Inf = _count; counts and sum accumulate over iterations", async () => {
    const m = fresh();
    // Per bucket (not cumulative): 2 under 1 ms, 1 under 10 ms, 0 under 100 ms, 1 above.
    await m.applyIteration(iteration([S.webA], [summary({ buckets: [2, 1, 0, 1], rttSum: 0.25, rttCount: 4 })]));
    let e = await scrape(m);
    const labels = { probe_name: PN, group: "a", address_family: "ipv4" };
    const buckets = (x: Exposition) => x.get("tcpsyn_round_trip_duration_seconds_bucket", labels).map((s) => `${s.labels.le}=${s.value}`);
    expect(e.families.get("tcpsyn_round_trip_duration_seconds")?.type).toBe("histogram");
    expect(buckets(e)).toEqual(["0.001=2", "0.01=3", "0.1=3", "+Inf=4"]);
    expect(e.value("tcpsyn_round_trip_duration_seconds_count", labels)).toBe(4);
    expect(e.value("tcpsyn_round_trip_duration_seconds_sum", labels)).toBe(0.25);
    // webB is another group: its own histogram. webA again: adds up.
    await m.applyIteration(iteration([S.webA, S.webB], [summary({ buckets: [0, 0, 1, 0], rttSum: 0.05, rttCount: 1 }), summary({ buckets: [1, 0, 0, 0], rttSum: 0.0005, rttCount: 1 })]));
    e = await scrape(m);
    expect(buckets(e)).toEqual(["0.001=2", "0.01=3", "0.1=4", "+Inf=5"]);
    expect(e.value("tcpsyn_round_trip_duration_seconds_count", labels)).toBe(5);
    expect(e.value("tcpsyn_round_trip_duration_seconds_sum", labels)).toBeCloseTo(0.3, 12);
    expect(e.value("tcpsyn_round_trip_duration_seconds_count", { ...labels, group: "b" })).toBe(1);
    // No destination label by default: series of several targets of a group and family add up in one.
    expect(e.get("tcpsyn_round_trip_duration_seconds_count").every((s) => s.labels.destination === undefined)).toBe(true);
  });

  test("histograms: series of all targets of a group and family share one histogram; histogram_per_destination splits them", async () => {
    const other: Series = { target: "web2", group: "a", type: "TCPsyn", family: 4, state: "None" };
    const m = fresh();
    await m.applyIteration(iteration([S.webA, other], [summary({ buckets: [1, 0, 0, 0] }), summary({ buckets: [0, 1, 0, 0] })]));
    let e = await scrape(m);
    expect(e.value("tcpsyn_round_trip_duration_seconds_count", { group: "a" })).toBe(2);
    const n = fresh();
    await n.applyIteration(iteration([S.webA, other], [summary({ buckets: [1, 0, 0, 0] }), summary({ buckets: [0, 1, 0, 0] })], { histogramPerDestination: true }));
    e = await scrape(n);
    expect(e.value("tcpsyn_round_trip_duration_seconds_count", { destination: "web" })).toBe(1);
    expect(e.value("tcpsyn_round_trip_duration_seconds_count", { destination: "web2" })).toBe(1);
  });

  test("histogram_buckets [] turns the histograms off", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA], [summary({ buckets: [] })], { histogramBuckets: [] }));
    const e = await scrape(m);
    expect([...e.families.keys()].filter((f) => f.includes("histogram"))).toEqual([]);
  });

  test("histogram bounds changed (same number of buckets): counts observed under the old bounds are not reported under the new ones", async () => {
    const m = fresh();
    // 3 RTTs of 5 ms: under the 0.01 bound.
    await m.applyIteration(iteration([S.webA], [summary({ buckets: [0, 3, 0, 0] })], { histogramBuckets: [0.001, 0.01, 0.1] }));
    // A reload moves the bounds to 10x smaller ones: 5 ms is now above every finite bound.
    await m.applyIteration(iteration([S.webA], [summary({ buckets: [0, 0, 0, 1] })], { histogramBuckets: [0.0001, 0.001, 0.01] }));
    const e = await scrape(m);
    const le = (b: string) => e.value("tcpsyn_round_trip_duration_seconds_bucket", { group: "a", le: b });
    // Whatever the daemon does with the old observations, it must not claim RTTs of 5 ms were under 1 ms.
    expect(le("0.001")).toBe(0);
  });

  test("*_count gauges (match_ack_fail, port_mismatch) are per target without group or state, summed over groups, and accumulate", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA, S.webB, S.udpA], [summary({ matchFail: 1, portMismatch: 2 }), summary({ matchFail: 3 }), summary({ portMismatch: 1 })]));
    await m.applyIteration(iteration([S.webA, S.webB, S.udpA], [summary({ matchFail: 1 }), summary(), summary({ portMismatch: 4 })]));
    const e = await scrape(m);
    const short = (s: Series) => ({ probe_name: PN, destination: s.target, address_family: `ipv${s.family}` });
    expect(e.get("tcpsyn_match_ack_fail_count").map((s) => `${labelKey(s.labels)}=${s.value}`)).toEqual([`${labelKey(short(S.webA))}=5`]);
    expect(e.value("tcpsyn_port_mismatch_count", short(S.webA))).toBe(2);
    expect(e.value("udp_unreachable_port_mismatch_count", short(S.udpA))).toBe(5);
    expect(e.families.get("tcpsyn_match_ack_fail_count")?.type).toBe("gauge");
    expect(e.families.has("icmp_match_ack_fail_count")).toBe(false);
    expect(e.families.has("icmp_port_mismatch_count")).toBe(false);
  });

  test("a type other than the original three counts port mismatches in a *_total counter; *_count names are the original's three only", async () => {
    const m = fresh();
    const all = [S.webA, S.pingA, S.udpA, S.twampA];
    await m.applyIteration(iteration(all, [summary({ matchFail: 1 }), summary(), summary(), summary({ portMismatch: 2 })]));
    await m.applyIteration(iteration(all, [summary(), summary(), summary(), summary({ portMismatch: 3 })]));
    const e = await scrape(m);
    const short = { probe_name: PN, destination: "twamp", address_family: "ipv4" };
    expect(e.value("twamp_port_mismatch_total", short)).toBe(5);
    expect(e.families.get("twamp_port_mismatch_total")?.type).toBe("counter");
    expect(e.families.has("twamp_match_ack_fail_total")).toBe(false);
    const countNames = [...e.families.entries()].filter(([n, f]) => n.endsWith("_count") && f.type !== "histogram" && f.type !== "summary").map(([n]) => n);
    expect(countNames.sort()).toEqual(["tcpsyn_match_ack_fail_count", "tcpsyn_port_mismatch_count", "udp_unreachable_port_mismatch_count"]);
  });

  test("path gauges (tcpsyn, udp only), app_time_ooo_total per target and group", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA, S.pingA], [summary({ worstPathLossRatio: 0.5, pathsDown: 2, timeOutOfOrder: 1 }), summary({ timeOutOfOrder: 2 })]));
    await m.applyIteration(iteration([S.webA, S.pingA], [summary({ worstPathLossRatio: 0.25, pathsDown: 0, timeOutOfOrder: 1 }), summary()]));
    const e = await scrape(m);
    expect(e.value("tcpsyn_path_loss_ratio_max", L(S.webA))).toBe(0.25);
    expect(e.value("tcpsyn_paths_down", L(S.webA))).toBe(0);
    expect(e.families.has("icmp_path_loss_ratio_max")).toBe(false);
    expect(e.value("app_time_ooo_total", { destination: "web", group: "a" })).toBe(2);
    expect(e.value("app_time_ooo_total", { destination: "ping", group: "a" })).toBe(2);
    expect(Object.keys(e.get("app_time_ooo_total")[0]!.labels).sort()).toEqual(["address_family", "destination", "group", "probe_name"]);
  });

  test("threshold: one series per kind and group, with alert_level, state and type; targets without thresholds have none", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA, S.webB, S.pingA, S.udpA], [null, null, null, null]));
    const e = await scrape(m);
    const got = e.get("threshold").map((s) => `${labelKey(s.labels)}=${s.value}`);
    const t = (s: Series, type: string, alert: string) => labelKey({ ...L(s), type, alert_level: alert });
    expect(got.sort()).toEqual(
      [`${t(S.webA, "latency", "paging")}=0.02`, `${t(S.webA, "loss", "paging")}=5`, `${t(S.webB, "latency", "paging")}=0.02`, `${t(S.webB, "loss", "paging")}=5`, `${t(S.udpA, "loss", "no_alert")}=0`].sort(),
    );
  });

  test("resolutions: status per target and family; change_total only once there was a change", async () => {
    const m = fresh();
    await m.applyIteration(iteration([], [], { resolutions: [res("web", 4, 1, 2), res("ping", 6, 0, 0)] }));
    const e = await scrape(m);
    expect(e.get("app_host_resolution_status").map((s) => `${labelKey(s.labels)}=${s.value}`).sort()).toEqual(
      [`${labelKey({ probe_name: PN, destination: "ping", address_family: "ipv6" })}=0`, `${labelKey({ probe_name: PN, destination: "web", address_family: "ipv4" })}=1`].sort(),
    );
    expect(e.get("app_host_resolution_change_total").map((s) => `${s.labels.destination}=${s.value}`)).toEqual(["web=2"]);
    expect(e.families.get("app_host_resolution_change_total")?.type).toBe("counter");
  });

  test("app_* of an iteration: time, capture drops, send and reset errors accumulate, send lag is the worst Worker's, degraded 0/1", async () => {
    const m = fresh();
    await m.applyIteration(iteration([], [], { stats: [stats({ captureDropped: 2, sendErrors: 1, sendLagMs: 30 }), stats({ sendLagMs: 50, resetErrors: 2 })], iterationSeconds: 1.5, degraded: true }));
    await m.applyIteration(iteration([], [], { stats: [stats({ captureDropped: 1 })], iterationSeconds: 0.7 }));
    const e = await scrape(m);
    const pn = { probe_name: PN };
    expect({
      time: e.value("app_iteration_time_seconds", pn),
      dropped: e.value("netprobify_capture_dropped_total", pn),
      errors: e.value("netprobify_send_errors_total", pn),
      // RSTs are not probes: counted apart, so netprobify_send_errors_total stays the probes not sent.
      resetErrors: e.value("netprobify_reset_errors_total", pn),
      lag: e.value("netprobify_send_lag_seconds", pn),
      degraded: e.value("netprobify_iteration_degraded", pn),
    }).toEqual({ time: 0.7, dropped: 3, errors: 1, resetErrors: 2, lag: 0, degraded: 0 });
    await m.applyIteration(iteration([], [], { stats: [stats({ sendLagMs: 30 }), stats({ sendLagMs: 50 })], degraded: true }));
    const f = await scrape(m);
    expect(f.value("netprobify_send_lag_seconds", pn)).toBe(0.05);
    expect(f.value("netprobify_iteration_degraded", pn)).toBe(1);
  });

  test("setProbeName then a publish without results (what a reload does): every series carrying the old probe_name goes, app_* and netprobify_* included", async () => {
    const m = fresh();
    m.configLoaded(1_700_000_000, 10);
    m.setInventoryTargets(new Map([["api", 1]]));
    m.reloadFailed();
    await m.applyIteration(iteration([S.webA, S.pingA], [summary({ buckets: [1, 0, 0, 0] }), summary()], { resolutions: [res("web", 4, 1, 1)] }));
    m.setProbeName("renamed");
    await m.applyIteration(iteration([S.webA, S.pingA], [null, null], { probeName: "renamed", resolutions: [res("web", 4, 1, 1)] }));
    const e = await scrape(m);
    expect(e.withLabel("probe_name", PN).map((s) => s.name)).toEqual([]);
    expect(e.value("app_reload_conf_failed_status", { probe_name: "renamed" })).toBe(0);
    await m.applyIteration(iteration([S.webA], [summary()], { probeName: "renamed" }));
    const f = await scrape(m);
    expect(f.withLabel("probe_name", PN)).toEqual([]);
    expect(f.value("tcpsyn_sent_total", { ...L(S.webA), probe_name: "renamed" })).toBe(10);
  });

  test("the daemon's events through Metrics' methods: timeouts, Worker restarts, inventory failures, counted under the current probe_name", async () => {
    const m = fresh();
    m.processTimedOut();
    m.workerRestarted();
    m.workerRestarted();
    m.setInventoryTargets(new Map([["api", 2], ["hosts", 5]]));
    m.inventoryFailed("hosts");
    let e = await scrape(m);
    const pn = { probe_name: PN };
    expect([e.value("app_process_timed_out_total", pn), e.value("netprobify_worker_restarts_total", pn)]).toEqual([1, 2]);
    const inv = (x: Exposition, name: string) => x.get(name).map((s) => `${s.labels.inventory}=${s.value}`).sort();
    expect(inv(e, "netprobify_inventory_targets")).toEqual(["api=2", "hosts=5"]);
    expect(inv(e, "netprobify_inventory_errors_total")).toEqual(["api=0", "hosts=1"]);
    // An inventory that goes takes both its series with it; the others keep their counts.
    m.setInventoryTargets(new Map([["hosts", 4]]));
    e = await scrape(m);
    expect(inv(e, "netprobify_inventory_targets")).toEqual(["hosts=4"]);
    expect(inv(e, "netprobify_inventory_errors_total")).toEqual(["hosts=1"]);
  });

  test("config loads and reloads: successful 1 with its time and the interval, a failure 0 (and app_reload_conf_failed_status 1) keeping the last success's time", async () => {
    const m = fresh();
    const pn = { probe_name: PN };
    const status = async () => {
      const e = await scrape(m);
      return [
        e.value("netprobify_config_last_reload_successful", pn),
        e.value("netprobify_config_last_reload_success_timestamp_seconds", pn),
        e.value("app_reload_conf_failed_status", pn),
        e.value("netprobify_iteration_interval_seconds", pn),
      ];
    };
    m.configLoaded(1_700_000_000.5, 30);
    expect(await status()).toEqual([1, 1_700_000_000.5, 0, 30]);
    m.reloadFailed();
    expect(await status()).toEqual([0, 1_700_000_000.5, 1, 30]);
    m.configLoaded(1_700_000_100, 10);
    expect(await status()).toEqual([1, 1_700_000_100, 0, 10]);
    const e = await scrape(m);
    for (const name of ["netprobify_config_last_reload_successful", "netprobify_config_last_reload_success_timestamp_seconds", "netprobify_iteration_interval_seconds"]) {
      expect({ name, type: e.families.get(name)?.type }).toEqual({ name, type: "gauge" });
    }
  });

  test("netprobify_last_iteration_end_timestamp_seconds: set by an iteration's publish, kept by a reload's (endedAt null) and over a probe_name change", async () => {
    const m = fresh();
    let e = await scrape(m);
    expect(e.get("netprobify_last_iteration_end_timestamp_seconds")).toEqual([]);
    await m.applyIteration(iteration([S.webA], [summary()], { endedAt: 1_700_000_000.25 }));
    await m.applyIteration(iteration([S.webA], [null], { endedAt: null }));
    e = await scrape(m);
    expect(e.value("netprobify_last_iteration_end_timestamp_seconds", { probe_name: PN })).toBe(1_700_000_000.25);
    m.setProbeName("renamed");
    e = await scrape(m);
    expect(e.get("netprobify_last_iteration_end_timestamp_seconds").map((s) => `${s.labels.probe_name}=${s.value}`)).toEqual(["renamed=1700000000.25"]);
  });

  test("the exposition is well-formed: every family has HELP and TYPE once, no series twice, netprobify_info and process_* included", async () => {
    const m = fresh();
    await m.applyIteration(iteration([S.webA, S.webB, S.pingA, S.udpA], [summary({ buckets: [1, 0, 0, 0] }), summary(), summary(), summary()], { resolutions: [res("web", 4, 1, 1)] }));
    const text = await m.exposition();
    const e = parseExposition(text); // throws on any malformation
    for (const f of e.families.values()) expect({ f: f.name, help: typeof f.help === "string" && f.help.length > 0 }).toEqual({ f: f.name, help: true });
    expect(e.get("netprobify_info").map((s) => labelKey(s.labels))).toEqual([labelKey({ version: "9.9.9", bun_version: "1.0.0", libpcap_version: "1.10.3" })]);
    for (const p of ["process_cpu_seconds_total", "process_start_time_seconds", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds", "process_max_fds"]) {
      expect({ p, present: e.get(p).length === 1 }).toEqual({ p, present: true });
    }
    expect(m.contentType).toContain("text/plain");
  });

  test("netprobify_build_info: one series, 1, labeled with the build's facts and the running versions; a setInfo replaces it, netprobify_info keeps its three labels", async () => {
    const build = { version: "9.9.9", revision: "0123456789ab-dirty", buildDate: "2025-01-31T12:00:00Z", arch: "arm64" };
    const m = new Metrics({ version: "9.9.9", bun: "1.0.0", libpcap: "" }, build);
    m.setInfo({ version: "9.9.9", bun: "1.0.0", libpcap: "1.10.3" });
    const e = await scrape(m);
    const want = { version: "9.9.9", revision: "0123456789ab-dirty", build_date: "2025-01-31T12:00:00Z", bun_version: "1.0.0", libpcap_version: "1.10.3", arch: "arm64" };
    expect(e.families.get("netprobify_build_info")?.type).toBe("gauge");
    expect(e.get("netprobify_build_info").map((s) => ({ labels: labelKey(s.labels), value: s.value }))).toEqual([{ labels: labelKey(want), value: 1 }]);
    expect(e.get("netprobify_info").map((s) => labelKey(s.labels))).toEqual([labelKey({ version: "9.9.9", bun_version: "1.0.0", libpcap_version: "1.10.3" })]);
  });

  test("netprobify_build_info by default: this program's revision (git's from source) and architecture", async () => {
    const e = await scrape(fresh());
    const [s] = e.get("netprobify_build_info");
    expect(s?.labels.revision).toMatch(/^([0-9a-f]{12}(-dirty)?|source)$/);
    expect(s?.labels.arch).toBe(process.arch === "x64" ? "amd64" : process.arch);
  });
});

describe("rendering into bytes", () => {
  test("thousands of series and a non-ASCII state: the bytes are the UTF-8 of the text, the buffer grows as needed, and expositionParts serves the same body", async () => {
    const m = fresh();
    const n = 3000;
    const series: Series[] = Array.from({ length: n }, (_, i) => ({ target: "web", group: "a", type: "TCPsyn", family: 4, state: `état ${i}` }));
    await m.applyIteration(iteration(series, series.map((_, i) => summary({ sent: i + 1 }))));
    const e = await scrape(m);
    expect(e.get("tcpsyn_sent_total").length).toBe(n);
    for (const i of [0, 1234, n - 1]) expect(e.value("tcpsyn_sent_total", { ...L(S.webA), state: `état ${i}` })).toBe(i + 1);
    const { head, body } = await m.expositionParts();
    const text = await m.exposition();
    const bodyText = new TextDecoder("utf-8", { fatal: true }).decode(body);
    expect(head).toContain("process_cpu_seconds_total");
    expect(text.endsWith(bodyText)).toBe(true);
    expect(bodyText.startsWith("# HELP tcpsyn_sent_total")).toBe(true);
    expect(bodyText).toContain('state="état 2999"');
    expect(body.byteLength).toBe(Buffer.byteLength(bodyText));
    expect(body.byteLength).toBeGreaterThan(n * 100);
    expect(bodyText.endsWith("\n")).toBe(true);
  });
});
