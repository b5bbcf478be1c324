/**
 * The metric catalog. Names, types, labels and help texts of the original are a public contract
 * (dashboards and alert rules read them); the families this project adds have new names.
 *
 * Per-target families (a few series per target and group, 10,000 targets and more) are kept in
 * plain maps of pre-rendered label sets and rendered to text once per iteration: their values only
 * change when an iteration ends, and prom-client's per-series objects cost about 210 MB for 10,000
 * targets. The process_*, app_* and netprobify_* metrics, a handful of series, live in a prom-client
 * registry, private to this class: the daemon changes them through its methods.
 */
import { readdirSync, readFileSync } from "node:fs";
import { Counter, Gauge, Registry } from "prom-client";
import { GLOBAL_DEFAULTS, type TargetConfig, type TargetType } from "../config/schema.ts";
import type { BatchStats } from "../engine/probe-engine.ts";
import type { SeriesSummary } from "../engine/stats.ts";
import type { Resolution } from "./resolver.ts";
import type { Series } from "./plan.ts";
import { SeriesState } from "./series-state.ts";
import type { Shard } from "./shard.ts";
import type { ProbeType, TypeMetric } from "../probes/probe-type.ts";
import { PROBE_TYPE_LIST } from "../probes/registry.ts";
import { buildInfo, type BuildInfo } from "../version.ts";

type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  if (!/[\\\n"]/.test(v)) return v;
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** `{a="1",b="2"}` with names in alphabetical order, as the original's client prints them. */
export function labelText(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(",")}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/**
 * Text rendered straight into one byte buffer, line by line: no array of line strings, no
 * joined copy, no second encoding pass (for 10,000 targets those were three transient copies
 * of 14 MB each at the end of every iteration).
 */
class ByteWriter {
  #buf: Buffer;
  #len = 0;
  constructor(capacity: number) {
    this.#buf = Buffer.allocUnsafe(Math.max(4096, capacity));
  }

  /** Appends s (UTF-8). */
  text(s: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    const need = s.length * 3 + 1;
    if (this.#len + need > this.#buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + need));
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    this.#len += this.#buf.write(s, this.#len);
  }

  /** Appends one byte (ASCII). */
  byte(b: number): void {
    if (this.#len === this.#buf.length) this.text("");
    this.#buf[this.#len++] = b;
  }

  line(s: string): void {
    this.text(s);
    this.byte(10);
  }

  /** `name labels value\n` without building the line as a string first. */
  sample(name: string, labels: string, value: string): void {
    this.text(name);
    this.text(labels);
    this.byte(32);
    this.text(value);
    this.byte(10);
  }

  /** The bytes written; the view keeps the whole buffer, which is sized from the last render. */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** A counter or gauge family: label set text -> value. */
class Family {
  readonly series = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
    /** Leaves out HELP and TYPE too while the family has no series (the families of one mode only). */
    readonly omitWhenEmpty = false,
  ) {}

  set(labels: string, v: number): void {
    this.series.set(labels, v);
  }

  add(labels: string, v: number): void {
    this.series.set(labels, (this.series.get(labels) ?? 0) + v);
  }

  /** Drops every series not in `keep`. */
  retain(keep: Set<string>): void {
    for (const k of this.series.keys()) if (!keep.has(k)) this.series.delete(k);
  }

  render(out: ByteWriter): void {
    if (this.omitWhenEmpty && this.series.size === 0) return;
    out.line(`# HELP ${this.name} ${this.help}`);
    out.line(`# TYPE ${this.name} ${this.type}`);
    for (const [labels, v] of this.series) out.sample(this.name, labels, num(v));
  }
}

interface HistogramSeries {
  labels: Labels;
  /** Cumulative counts per bound, then +Inf. */
  counts: number[];
  sum: number;
}

class HistogramFamily {
  readonly series = new Map<string, HistogramSeries>();
  #bounds: readonly number[] = [];
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /** Counts observed under other bounds mean nothing under new ones: the series start again. */
  setBounds(bounds: readonly number[]): void {
    if (bounds.length === this.#bounds.length && bounds.every((b, i) => b === this.#bounds[i])) return;
    this.#bounds = [...bounds];
    this.series.clear();
  }

  observe(key: string, labels: Labels, perBucket: number[], sum: number): void {
    let s = this.series.get(key);
    if (!s || s.counts.length !== perBucket.length) {
      s = { labels, counts: new Array<number>(perBucket.length).fill(0), sum: 0 };
      this.series.set(key, s);
    }
    let running = 0;
    for (let i = 0; i < perBucket.length; i++) {
      running += perBucket[i]!;
      s.counts[i]! += running;
    }
    s.sum += sum;
  }

  retain(keep: Set<string>): void {
    for (const k of this.series.keys()) if (!keep.has(k)) this.series.delete(k);
  }

  render(out: ByteWriter): void {
    if (this.series.size === 0) return;
    out.line(`# HELP ${this.name} ${this.help}`);
    out.line(`# TYPE ${this.name} histogram`);
    for (const s of this.series.values()) {
      for (let i = 0; i < s.counts.length; i++) {
        const le = i < this.#bounds.length ? num(this.#bounds[i]!) : "+Inf";
        out.line(`${this.name}_bucket${labelText({ ...s.labels, le })} ${s.counts[i]}`);
      }
      out.line(`${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`);
      out.line(`${this.name}_count${labelText(s.labels)} ${s.counts[s.counts.length - 1] ?? 0}`);
    }
  }
}

/** Series folded in between two turns of the event loop. */
const SLICE = 1000;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The families of one probe type. */
class TypeFamilies {
  readonly sent: Family;
  readonly loss: Family;
  readonly lossRatio: Family;
  readonly rtt: Family;
  readonly histogram: HistogramFamily;
  readonly pathLossMax: Family | null;
  readonly pathsDown: Family | null;
  readonly matchFail: Family | null;
  readonly portMismatch: Family | null;
  /** The type's own families (its seriesMetrics), in its order: SeriesSummary.extra's. */
  readonly own: { readonly metric: TypeMetric; readonly family: Family }[];

  constructor(type: ProbeType) {
    const { prefix: p, what: w } = type.metrics;
    this.sent = new Family(`${p}_sent_total`, `number of sent packets using ${w}.`, "counter");
    this.loss = new Family(`${p}_loss_total`, `number of lost packets using ${w}.`, "counter");
    this.lossRatio = new Family(`${p}_loss_ratio`, `loss ratio using ${w}.`, "gauge");
    this.rtt = new Family(`${p}_round_trip_seconds`, `percentile latency in seconds using ${w}.`, "gauge");
    this.histogram = new HistogramFamily(
      `${p}_round_trip_duration_seconds`,
      `round trip times in seconds using ${w}, from kernel timestamps.`,
    );
    const paths = type.rotatesPorts;
    this.pathLossMax = paths
      ? new Family(`${p}_path_loss_ratio_max`, `loss ratio of the worst path (source address and port) using ${w}.`, "gauge")
      : null;
    this.pathsDown = paths
      ? new Family(`${p}_paths_down`, `paths (source address and port) with 3 or more probes and no answer using ${w}.`, "gauge")
      : null;
    // The original's *_count gauges for its own types; a counter named *_total for any other.
    const count = (name: string, help: string) =>
      type.metrics.legacyCountNames ? new Family(`${p}_${name}_count`, help, "gauge") : new Family(`${p}_${name}_total`, help, "counter");
    this.matchFail = type.metrics.matchAckFail ? count("match_ack_fail", "fail to match response packet with sent packet using ack.") : null;
    this.portMismatch = type.rotatesPorts ? count("port_mismatch", "port source/destination mismatch.") : null;
    this.own = (type.seriesMetrics?.families ?? []).map((metric) => ({
      metric,
      family: new Family(`${p}_${metric.name}`, metric.help, metric.kind === "counter" ? "counter" : "gauge"),
    }));
  }

  all(): (Family | HistogramFamily)[] {
    return [
      this.sent,
      this.loss,
      this.lossRatio,
      this.rtt,
      this.matchFail,
      this.portMismatch,
      this.pathLossMax,
      this.pathsDown,
      this.histogram,
      ...this.own.map((o) => o.family),
    ].filter((f): f is Family | HistogramFamily => f !== null);
  }
}

/**
 * The per-group families of one probe type, exported instead of every target's series when
 * global.per_target_series is false: labels probe_name, group, address_family.
 */
class GroupFamilies {
  readonly sent: Family;
  readonly loss: Family;
  readonly lossRatio: Family;
  readonly targets: Family;
  readonly targetsWithLoss: Family;
  readonly pathsDown: Family | null;
  readonly pathLossMax: Family | null;

  constructor(type: ProbeType) {
    const { prefix: p, what: w } = type.metrics;
    const f = (name: string, help: string, kind: "counter" | "gauge") => new Family(`${p}_group_${name}`, help, kind, true);
    const note = "(global.per_target_series: false, in place of the per-target series)";
    this.sent = f("sent_total", `number of sent packets using ${w}, summed over the group's targets ${note}.`, "counter");
    this.loss = f("loss_total", `number of lost packets using ${w}, summed over the group's targets ${note}.`, "counter");
    this.lossRatio = f("loss_ratio", `loss ratio using ${w} of the group's targets together in their last iteration (lost / sent) ${note}.`, "gauge");
    this.targets = f("targets", `targets of the group probed using ${w} (series: one per target and address family) ${note}.`, "gauge");
    this.targetsWithLoss = f("targets_with_loss", `targets of the group that lost at least one packet using ${w} in their last iteration ${note}.`, "gauge");
    this.pathsDown = type.rotatesPorts
      ? f("paths_down", `paths (source address and port) with 3 or more probes and no answer using ${w}, summed over the group's targets ${note}.`, "gauge")
      : null;
    this.pathLossMax = type.rotatesPorts
      ? f("path_loss_ratio_max", `loss ratio of the worst path (source address and port) of any of the group's targets using ${w} ${note}.`, "gauge")
      : null;
  }

  all(): Family[] {
    return [this.sent, this.loss, this.lossRatio, this.targets, this.targetsWithLoss, this.pathsDown, this.pathLossMax].filter((f): f is Family => f !== null);
  }
}

/** Pre-rendered label sets of one series. */
interface SeriesLabels {
  key: string;
  /** The common set: probe_name, destination, address_family, state, group. */
  L: string;
  /** probe_name, destination, address_family (the *_count gauges). */
  short: string;
  /** L without state (app_time_ooo_total). */
  ooo: string;
  /** L plus each configured percentile. */
  pct: string[];
  hKey: string;
  hLabels: Labels;
  thresholds: [string, number][];
}

export interface IterationInput {
  probeName: string;
  series: Series[];
  /** Per series; null when its Worker failed (its counters are kept, not advanced). */
  results: (SeriesSummary | null)[];
  percentiles: readonly number[];
  histogramBuckets: readonly number[];
  histogramPerDestination: boolean;
  /**
   * global.per_target_series; absent means true: every series has its per-target families. False:
   * per-group families, the histograms, and the per-target families of the worstTargets worst
   * series of each type, group and address family only.
   */
  perTargetSeries?: boolean;
  /** global.worst_targets: the series shown per type, group and address family when perTargetSeries is false. */
  worstTargets?: number;
  targets: Record<string, TargetConfig>;
  resolutions: Resolution[];
  stats: BatchStats[];
  iterationSeconds: number;
  /**
   * When the iteration ended (Unix seconds), for netprobify_last_iteration_end_timestamp_seconds;
   * null for a publish that is no iteration's (after a reload).
   */
  endedAt: number | null;
  degraded: boolean;
}

/** Versions for netprobify_info. */
export interface Versions {
  version: string;
  bun: string;
  libpcap: string;
}

export class Metrics {
  // Every prom-client object is private: the rest of the program changes metrics through the
  // methods below, so one module decides what each series means (tests/daemon/metric-writers.test.ts).
  readonly #registry = new Registry();
  readonly #types = Object.fromEntries(PROBE_TYPE_LIST.map((t) => [t.type, new TypeFamilies(t)])) as Record<TargetType, TypeFamilies>;
  readonly #groups = Object.fromEntries(PROBE_TYPE_LIST.map((t) => [t.type, new GroupFamilies(t)])) as Record<TargetType, GroupFamilies>;
  readonly #threshold = new Family("threshold", "threshold for alerting systems.", "gauge");
  readonly #resolutionStatus = new Family("app_host_resolution_status", "hostname resolution status.", "gauge");
  readonly #resolutionChanges = new Family("app_host_resolution_change_total", "number of hostname resolution change.", "counter");
  readonly #timeOoo = new Family("app_time_ooo_total", "number of out of order - timestamp issue.", "counter");
  #queue: Promise<void> = Promise.resolve();
  readonly #labelCache = new Map<string, SeriesLabels>();
  #labelCacheKey = "";
  /** Whether the last publish was bounded (per_target_series false); null before the first. */
  #bounded: boolean | null = null;
  /** Every series' cumulative state in bounded mode; null in the default mode. */
  #state: SeriesState | null = null;
  /** The per-target text, encoded once per iteration: scrapes send these bytes as they are. */
  #rendered: Uint8Array = new Uint8Array(0);
  #probeName = "";
  /** Inventories with a netprobify_inventory_targets series, to remove it when one goes. */
  #inventories = new Set<string>();
  /** Unix seconds of the last published iteration's end, carried over a probe_name change. */
  #lastIterationEnd: number | null = null;

  // The original's catalog (names, help texts and labels kept as they are).
  readonly #info: Gauge;
  readonly #iterationTime: Gauge;
  readonly #reloadFailedStatus: Gauge;
  readonly #timedOut: Counter;
  // This project's own.
  readonly #build: BuildInfo;
  readonly #buildInfo: Gauge;
  readonly #captureDropped: Counter;
  readonly #sendErrors: Counter;
  readonly #resetErrors: Counter;
  readonly #sendLag: Gauge;
  readonly #degraded: Gauge;
  readonly #workerRestarts: Counter;
  readonly #inventoryTargets: Gauge;
  readonly #inventoryErrors: Counter;
  readonly #lastReloadSuccessful: Gauge;
  readonly #lastReloadSuccessTime: Gauge;
  readonly #lastIterationEndTime: Gauge;
  readonly #interval: Gauge;
  readonly #certificateErrors: Counter;
  readonly #shardTargets: Gauge;
  readonly #shardInfo: Gauge;
  /** "index/count" of the netprobify_shard_info series; "" when there is none. */
  #shardKey = "";

  constructor(versions: Versions, build: BuildInfo = buildInfo()) {
    const r = this.#registry;
    const g = (name: string, help: string, labelNames: string[] = ["probe_name"]) => new Gauge({ name, help, labelNames, registers: [r] });
    const c = (name: string, help: string, labelNames: string[] = ["probe_name"]) => new Counter({ name, help, labelNames, registers: [r] });
    registerProcessMetrics(r);
    this.#info = g("netprobify_info", "some info regarding netprobify", ["version", "bun_version", "libpcap_version"]);
    // As node_exporter's and Prometheus's *_build_info: joined on by dashboards and alerts.
    this.#build = build;
    this.#buildInfo = g(
      "netprobify_build_info",
      "A metric with a constant '1' value labeled by version, revision and build_date from which netprobify was built, the bun_version and libpcap_version it runs on, and its arch.",
      ["version", "revision", "build_date", "bun_version", "libpcap_version", "arch"],
    );
    this.setInfo(versions);
    this.#iterationTime = g("app_iteration_time_seconds", "time to finish one round of probing.");
    // Declared as the original declares it, without series: a target name given twice is a
    // duplicate YAML key here, warned about by the loader with its position (the last one wins).
    c("app_target_name_dup_total", "number of target name duplicated.", ["target_name"]);
    this.#timedOut = c("app_process_timed_out_total", "a process was taking too long and had timed out.");
    this.#reloadFailedStatus = g("app_reload_conf_failed_status", "failed to load the configuration file.");
    this.#captureDropped = c("netprobify_capture_dropped_total", "packets the capture dropped (pcap_stats): answers the prober may have missed.");
    this.#sendErrors = c(
      "netprobify_send_errors_total",
      "probes that could not be sent (no route, unresolved next hop, interface gone, send call failed): counted in neither *_sent_total nor *_loss_total.",
    );
    this.#resetErrors = c("netprobify_reset_errors_total", "RSTs closing answered TCP probes that could not be sent: not probes, no part of any sent or loss count.");
    this.#sendLag = g("netprobify_send_lag_seconds", "how far sending fell behind its schedule in the last iteration.");
    this.#degraded = g(
      "netprobify_iteration_degraded",
      "1 when the last iteration dropped captured packets, could not send some probes or fell behind: its figures are not the network's alone.",
    );
    this.#workerRestarts = c("netprobify_worker_restarts_total", "Workers replaced after dying or timing out.");
    this.#inventoryTargets = g("netprobify_inventory_targets", "targets this prober takes from each dynamic inventory (after expiry, name clashes, its shard and the iteration limits).", ["probe_name", "inventory"]);
    this.#inventoryErrors = c("netprobify_inventory_errors_total", "failures of each dynamic inventory.", ["probe_name", "inventory"]);
    this.#lastReloadSuccessful = g("netprobify_config_last_reload_successful", "1 when the last configuration load (start or reload) succeeded, 0 when it failed.");
    this.#lastReloadSuccessTime = g(
      "netprobify_config_last_reload_success_timestamp_seconds",
      "when the running configuration was installed (start or reload), in seconds since the Unix epoch.",
    );
    this.#lastIterationEndTime = g(
      "netprobify_last_iteration_end_timestamp_seconds",
      "when the last iteration whose results are published ended, in seconds since the Unix epoch.",
    );
    this.#interval = g("netprobify_iteration_interval_seconds", "the configured interval between the starts of two iterations (global.interval).");
    this.#certificateErrors = c(
      "netprobify_tls_certificate_errors_total",
      "Changes of the web config's certificate files the metrics listener could not apply (unreadable, not parsing, a key not matching, the port not bindable): the certificate in use stayed.",
      [],
    );
    this.#certificateErrors.inc(0);
    this.#shardTargets = g(
      "netprobify_shard_targets",
      "targets this prober probes: its shard of the configured and dynamic targets, plus the API's own (all of them when not sharded).",
    );
    this.#shardInfo = g("netprobify_shard_info", "this prober's shard: index (from 0) of count probers sharing the targets; 0 of 1 when not sharded.", [
      "probe_name",
      "index",
      "count",
    ]);
  }

  /** The metrics listener could not apply a change of its certificate files (the old ones stay). */
  certificateFailed(): void {
    this.#certificateErrors.inc();
  }

  /** netprobify_info and netprobify_build_info: one series each, the versions running now. */
  setInfo(versions: Versions): void {
    this.#info.reset();
    this.#info.set({ version: versions.version, bun_version: versions.bun, libpcap_version: versions.libpcap }, 1);
    const b = this.#build;
    this.#buildInfo.reset();
    this.#buildInfo.set(
      { version: b.version, revision: b.revision, build_date: b.buildDate, bun_version: versions.bun, libpcap_version: versions.libpcap, arch: b.arch },
      1,
    );
  }

  /**
   * Sets the probe name label of the app_* and netprobify_* metrics; a changed name removes every
   * series carrying the old one.
   */
  setProbeName(name: string): void {
    if (name === this.#probeName) return;
    if (this.#probeName !== "") {
      for (const m of this.#perProbe()) m.remove({ probe_name: this.#probeName });
      this.#inventoryTargets.reset();
      this.#inventoryErrors.reset();
      this.#inventories.clear();
      this.#shardInfo.reset();
      this.#shardKey = "";
      for (const f of this.#allFamilies()) f.retain(new Set());
      this.#state = null;
    }
    this.#probeName = name;
    this.#reloadFailedStatus.set({ probe_name: name }, 0);
    for (const m of [this.#timedOut, this.#captureDropped, this.#sendErrors, this.#resetErrors, this.#workerRestarts]) m.inc({ probe_name: name }, 0);
    if (this.#lastIterationEnd !== null) this.#lastIterationEndTime.set({ probe_name: name }, this.#lastIterationEnd);
  }

  /** The metrics with the probe_name label alone. */
  #perProbe(): (Gauge | Counter)[] {
    return [
      this.#iterationTime,
      this.#reloadFailedStatus,
      this.#timedOut,
      this.#captureDropped,
      this.#sendErrors,
      this.#resetErrors,
      this.#sendLag,
      this.#degraded,
      this.#workerRestarts,
      this.#lastReloadSuccessful,
      this.#lastReloadSuccessTime,
      this.#lastIterationEndTime,
      this.#interval,
      this.#shardTargets,
    ];
  }

  /** A batch overran the global timeout (its Worker is stopped). */
  processTimedOut(): void {
    this.#timedOut.inc({ probe_name: this.#probeName });
  }

  /** An engine Worker was started in place of one that died or timed out. */
  workerRestarted(): void {
    this.#workerRestarts.inc({ probe_name: this.#probeName });
  }

  /** A dynamic inventory failed (crashed, refused, published a bad list). */
  inventoryFailed(inventory: string): void {
    this.#inventoryErrors.inc({ probe_name: this.#probeName, inventory });
  }

  /**
   * The targets each running inventory holds; inventories no longer in `counts` lose both their
   * series, a new one starts with its error count at 0.
   */
  setInventoryTargets(counts: ReadonlyMap<string, number>): void {
    const pn = this.#probeName;
    for (const name of this.#inventories) {
      if (counts.has(name)) continue;
      this.#inventoryTargets.remove({ probe_name: pn, inventory: name });
      this.#inventoryErrors.remove({ probe_name: pn, inventory: name });
    }
    for (const [name, n] of counts) {
      this.#inventoryTargets.set({ probe_name: pn, inventory: name }, n);
      this.#inventoryErrors.inc({ probe_name: pn, inventory: name }, 0);
    }
    this.#inventories = new Set(counts.keys());
  }

  /** This prober's shard, and how many targets it probes now (the merge of every source, sharded). */
  setShard(shard: Shard, targets: number): void {
    const pn = this.#probeName;
    const key = `${shard.index}/${shard.count}`;
    if (key !== this.#shardKey) {
      this.#shardInfo.reset();
      this.#shardInfo.set({ probe_name: pn, index: String(shard.index), count: String(shard.count) }, 1);
      this.#shardKey = key;
    }
    this.#shardTargets.set({ probe_name: pn }, targets);
  }

  /** A configuration was installed (at start or by a reload), at `unixSeconds`. */
  configLoaded(unixSeconds: number, intervalSeconds: number): void {
    const l = { probe_name: this.#probeName };
    this.#reloadFailedStatus.set(l, 0);
    this.#lastReloadSuccessful.set(l, 1);
    this.#lastReloadSuccessTime.set(l, unixSeconds);
    this.#interval.set(l, intervalSeconds);
  }

  /** A reload failed: the running configuration stays. */
  reloadFailed(): void {
    const l = { probe_name: this.#probeName };
    this.#reloadFailedStatus.set(l, 1);
    this.#lastReloadSuccessful.set(l, 0);
  }

  get probeName(): string {
    return this.#probeName;
  }

  #allFamilies(): (Family | HistogramFamily)[] {
    return [
      ...PROBE_TYPE_LIST.flatMap((t) => [...this.#types[t.type].all(), ...this.#groups[t.type].all()]),
      this.#threshold,
      this.#resolutionStatus,
      this.#resolutionChanges,
      this.#timeOoo,
    ];
  }

  /**
   * The label texts of a series, built once and reused every iteration: rendering label sets is
   * most of the publishing work for 10,000 targets.
   */
  #labelsOf(pn: string, s: Series, t: TargetConfig | undefined, percentiles: readonly number[], perDestination: boolean): SeriesLabels {
    const thresholdKey = t?.threshold ? `${t.alert_level}\0${t.threshold.latency}\0${t.threshold.loss}` : "";
    const key = `${s.target}\0${s.group}\0${s.family}\0${s.state}\0${thresholdKey}`;
    const cached = this.#labelCache.get(key);
    if (cached) return cached;
    const af = `ipv${s.family}`;
    const base = { probe_name: pn, destination: s.target, address_family: af };
    const hLabels: Labels = { probe_name: pn, group: s.group, address_family: af };
    if (perDestination) hLabels.destination = s.target;
    const thresholds: [string, number][] = [];
    for (const [kind, value] of Object.entries(t?.threshold ?? {})) {
      if (value === undefined) continue;
      thresholds.push([labelText({ ...base, type: kind, state: s.state, alert_level: t!.alert_level, group: s.group }), value]);
    }
    const ls: SeriesLabels = {
      key,
      L: labelText({ ...base, state: s.state, group: s.group }),
      short: labelText(base),
      ooo: labelText({ ...base, group: s.group }),
      pct: percentiles.map((p) => labelText({ ...base, state: s.state, group: s.group, percentile: String(p) })),
      hKey: labelText(hLabels),
      hLabels,
      thresholds,
    };
    this.#labelCache.set(key, ls);
    return ls;
  }

  /**
   * Folds one iteration's results in, drops series that no longer exist, and renders the text.
   * Works in slices with turns of the event loop between them, so scrapes (served the previous
   * text meanwhile) never wait for the whole of it: 10,000 targets take a few hundred ms here.
   * Calls are queued: a reload's publish never interleaves with an iteration's.
   */
  applyIteration(it: IterationInput): Promise<void> {
    const run = this.#queue.then(() => this.#apply(it));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #apply(it: IterationInput): Promise<void> {
    const pn = it.probeName;
    const keep = new Map<Family | HistogramFamily, Set<string>>();
    const kept = (f: Family | HistogramFamily) => {
      let s = keep.get(f);
      if (!s) keep.set(f, (s = new Set()));
      return s;
    };
    const bounded = it.perTargetSeries === false;
    if (this.#bounded !== null && bounded !== this.#bounded) this.#switchMode();
    this.#bounded = bounded;
    for (const f of Object.values(this.#types)) f.histogram.setBounds(it.histogramBuckets);
    const cacheKey = `${pn}\0${it.percentiles.join(",")}\0${it.histogramPerDestination}`;
    if (cacheKey !== this.#labelCacheKey) {
      this.#labelCache.clear();
      this.#labelCacheKey = cacheKey;
    }
    // Bounded, a target's resolution series are there while it is shown or while it fails to
    // resolve (and so is not probed, and never among the worst): 100,000 literal addresses
    // would otherwise be 200,000 series of 1s.
    const shown = bounded ? await this.#foldBounded(it, kept) : null;
    if (!bounded) await this.#foldAll(it, kept);
    for (const res of it.resolutions) {
      if (shown && res.status !== 0 && !shown.has(`${res.target}\0${res.family}`)) continue;
      const l = labelText({ probe_name: pn, destination: res.target, address_family: `ipv${res.family}` });
      this.#resolutionStatus.set(l, res.status);
      kept(this.#resolutionStatus).add(l);
      if (res.changes > 0) {
        this.#resolutionChanges.set(l, res.changes);
        kept(this.#resolutionChanges).add(l);
      }
    }
    for (const f of this.#allFamilies()) f.retain(keep.get(f) ?? new Set());
    this.#iterationTime.set({ probe_name: pn }, it.iterationSeconds);
    let dropped = 0;
    let errors = 0;
    let resetErrors = 0;
    let lag = 0;
    for (const st of it.stats) {
      dropped += st.captureDropped;
      errors += st.sendErrors;
      resetErrors += st.resetErrors;
      lag = Math.max(lag, st.sendLagMs / 1000);
    }
    this.#captureDropped.inc({ probe_name: pn }, dropped);
    this.#sendErrors.inc({ probe_name: pn }, errors);
    this.#resetErrors.inc({ probe_name: pn }, resetErrors);
    this.#sendLag.set({ probe_name: pn }, lag);
    this.#degraded.set({ probe_name: pn }, it.degraded ? 1 : 0);
    if (it.endedAt !== null) {
      this.#lastIterationEnd = it.endedAt;
      this.#lastIterationEndTime.set({ probe_name: pn }, it.endedAt);
    }
    await this.#render();
  }

  /**
   * Every series' per-target families (the default, the original's): label sets cached per
   * series, values folded into the families' maps.
   */
  async #foldAll(it: IterationInput, kept: (f: Family | HistogramFamily) => Set<string>): Promise<void> {
    const pn = it.probeName;
    const matchFail = new Map<string, number>();
    const portMismatch = new Map<string, number>();
    const liveLabels = new Set<string>();
    for (let i = 0; i < it.series.length; i++) {
      if (i % SLICE === SLICE - 1) await nextTurn();
      const s = it.series[i]!;
      const fam = this.#types[s.type];
      const t = it.targets[s.target];
      const ls = this.#labelsOf(pn, s, t, it.percentiles, it.histogramPerDestination);
      liveLabels.add(ls.key);
      const { L, short, ooo, pct, hKey } = ls;
      const r = it.results[i];
      for (const f of [fam.sent, fam.loss, fam.lossRatio, fam.pathLossMax, fam.pathsDown]) if (f) kept(f).add(L);
      kept(this.#timeOoo).add(ooo);
      for (const f of [fam.matchFail, fam.portMismatch]) if (f) kept(f).add(short);
      for (const pl of pct) kept(fam.rtt).add(pl);
      for (const [tl, value] of ls.thresholds) {
        this.#threshold.set(tl, value);
        kept(this.#threshold).add(tl);
      }
      if (it.histogramBuckets.length > 0) kept(fam.histogram).add(hKey);
      // A type's own family is absent for a series until it has a value (a direction no probe
      // revealed is no zero); once there, a counter stays.
      for (let f = 0; f < fam.own.length; f++) {
        const { metric, family } = fam.own[f]!;
        const v = r?.extra[f] ?? [];
        if (metric.kind === "counter") {
          if (v.length > 0) family.add(L, v[0]!);
          if (family.series.has(L)) kept(family).add(L);
        } else if (v.length > 0) {
          v.forEach((x, k) => family.set(pct[k]!, x));
          for (const pl of pct) kept(family).add(pl);
        } else if (!r) {
          for (const pl of pct) if (family.series.has(pl)) kept(family).add(pl);
        }
      }
      if (!r) continue; // the Worker failed: keep the series, advance nothing
      fam.sent.add(L, r.sent);
      fam.loss.add(L, r.lost);
      fam.lossRatio.set(L, r.sent === 0 ? 0 : r.lost / r.sent);
      r.percentiles.forEach((v, k) => fam.rtt.set(pct[k]!, v));
      fam.pathLossMax?.set(L, r.worstPathLossRatio);
      fam.pathsDown?.set(L, r.pathsDown);
      this.#timeOoo.add(ooo, r.timeOutOfOrder);
      if (fam.matchFail) matchFail.set(short, (matchFail.get(short) ?? 0) + r.matchFail);
      if (fam.portMismatch) portMismatch.set(short, (portMismatch.get(short) ?? 0) + r.portMismatch);
      if (r.buckets.length > 0) fam.histogram.observe(hKey, ls.hLabels, r.buckets, r.rttSum);
    }
    for (const k of this.#labelCache.keys()) if (!liveLabels.has(k)) this.#labelCache.delete(k);
    // The per-target counts (the original's *_count gauges among them) are incremented, never reset.
    for (const fam of Object.values(this.#types)) {
      for (const [f, m] of [[fam.matchFail, matchFail], [fam.portMismatch, portMismatch]] as const) {
        if (!f) continue;
        for (const k of kept(f)) f.add(k, m.get(k) ?? 0);
      }
    }
  }

  /**
   * per_target_series changed (by a reload): the per-target and per-group series of the other
   * mode go, and their counters start again from 0 (a counter reset, as rate() reads one). The
   * histograms, per group in both modes, carry on.
   */
  #switchMode(): void {
    for (const f of this.#allFamilies()) if (f instanceof Family && f !== this.#resolutionStatus && f !== this.#resolutionChanges) f.retain(new Set());
    this.#labelCache.clear();
    this.#state = null;
  }

  /**
   * The bounded mode (per_target_series false): every series is folded into typed arrays, the
   * per-group families are summed from them, and only the worstTargets worst series of each type,
   * group and address family get label sets and per-target series, with the values the default
   * mode would show for them.
   */
  async #foldBounded(it: IterationInput, kept: (f: Family | HistogramFamily) => Set<string>): Promise<Set<string>> {
    const pn = it.probeName;
    const st = (this.#state ??= new SeriesState());
    st.sync(it.series, it.percentiles);
    const buckets = st.buckets;
    const P = it.percentiles.length;
    const histograms = it.histogramBuckets.length > 0;
    const groupLabels = buckets.map((b) => {
      const labels: Labels = { probe_name: pn, group: b.group, address_family: `ipv${b.family}` };
      return { text: labelText(labels), labels };
    });
    const sentNow = new Float64Array(buckets.length);
    const lostNow = new Float64Array(buckets.length);
    for (let i = 0; i < it.series.length; i++) {
      if (i % SLICE === SLICE - 1) await nextTurn();
      const s = it.series[i]!;
      const b = st.bucketOf[i]!;
      const fam = this.#types[s.type];
      let h = groupLabels[b]!;
      if (histograms && it.histogramPerDestination) {
        // Asked for: one histogram per target, so a label set per target (as in the default mode).
        const labels: Labels = { ...h.labels, destination: s.target };
        h = { text: labelText(labels), labels };
      }
      if (histograms) kept(fam.histogram).add(h.text);
      const r = it.results[i];
      if (!r) continue; // the Worker failed: keep the series, advance nothing
      st.fold(i, r);
      sentNow[b]! += r.sent;
      lostNow[b]! += r.lost;
      if (r.buckets.length > 0) fam.histogram.observe(h.text, h.labels, r.buckets, r.rttSum);
    }
    for (let b = 0; b < buckets.length; b++) {
      const { type, members } = buckets[b]!;
      const g = this.#groups[type];
      const gl = groupLabels[b]!.text;
      let sent = 0;
      let lost = 0;
      let withLoss = 0;
      let pathsDown = 0;
      let pathMax = 0;
      for (const i of members) {
        if (!st.seen[i]) continue;
        sent += st.lastSent[i]!;
        lost += st.lastLost[i]!;
        if (st.lastLost[i]! > 0) withLoss++;
        pathsDown += st.pathsDown[i]!;
        pathMax = Math.max(pathMax, st.pathLossMax[i]!);
      }
      g.sent.add(gl, sentNow[b]!);
      g.loss.add(gl, lostNow[b]!);
      g.lossRatio.set(gl, sent === 0 ? 0 : lost / sent);
      g.targets.set(gl, members.length);
      g.targetsWithLoss.set(gl, withLoss);
      g.pathsDown?.set(gl, pathsDown);
      g.pathLossMax?.set(gl, pathMax);
      for (const f of g.all()) kept(f).add(gl);
    }
    const liveLabels = new Set<string>();
    const shownTargets = new Set<string>();
    const worst = it.worstTargets ?? GLOBAL_DEFAULTS.worst_targets;
    for (const bucket of buckets) {
      for (const i of st.worst(bucket, worst)) {
        const s = it.series[i]!;
        shownTargets.add(`${s.target}\0${s.family}`);
        const fam = this.#types[s.type];
        const ls = this.#labelsOf(pn, s, it.targets[s.target], it.percentiles, it.histogramPerDestination);
        liveLabels.add(ls.key);
        const { L, short, ooo, pct } = ls;
        for (const [tl, value] of ls.thresholds) {
          this.#threshold.set(tl, value);
          kept(this.#threshold).add(tl);
        }
        // Counted over every group of the target (hidden ones included), present from the start.
        const rep = st.shortOf[i]!;
        for (const [f, counts] of [[fam.matchFail, st.matchFail], [fam.portMismatch, st.portMismatch]] as const) {
          if (!f) continue;
          f.set(short, counts[rep]!);
          kept(f).add(short);
        }
        if (st.oooSeen[i]) {
          this.#timeOoo.set(ooo, st.ooo[i]!);
          kept(this.#timeOoo).add(ooo);
        }
        for (let f = 0; f < fam.own.length; f++) {
          const { metric, family } = fam.own[f]!;
          const v = st.own(i, f);
          if (!v) continue;
          if (metric.kind === "counter") {
            family.set(L, v[0]!);
            kept(family).add(L);
          } else {
            for (let k = 0; k < P; k++) {
              family.set(pct[k]!, v[k]!);
              kept(family).add(pct[k]!);
            }
          }
        }
        if (st.rttSeen[i]) {
          for (let k = 0; k < P; k++) {
            fam.rtt.set(pct[k]!, st.rtt[i * P + k]!);
            kept(fam.rtt).add(pct[k]!);
          }
        }
        if (!st.seen[i]) continue;
        const values: [Family | null, number][] = [
          [fam.sent, st.sent[i]!],
          [fam.loss, st.lost[i]!],
          [fam.lossRatio, st.lossRatio(i)],
          [fam.pathLossMax, st.pathLossMax[i]!],
          [fam.pathsDown, st.pathsDown[i]!],
        ];
        for (const [f, v] of values) {
          if (!f) continue;
          f.set(L, v);
          kept(f).add(L);
        }
      }
    }
    for (const k of this.#labelCache.keys()) if (!liveLabels.has(k)) this.#labelCache.delete(k);
    return shownTargets;
  }

  /** Renders the per-target families to text, kept until the next iteration. */
  async #render(): Promise<void> {
    // A new buffer every time: scrapes may still be sending the previous one.
    const out = new ByteWriter(this.#rendered.length + (this.#rendered.length >> 4));
    for (const f of this.#allFamilies()) {
      f.render(out);
      await nextTurn();
    }
    this.#rendered = out.bytes();
  }

  /** The whole exposition: the registry's (process, app, netprobify) then the per-target text. */
  async exposition(): Promise<string> {
    return (await this.#registry.metrics()) + new TextDecoder().decode(this.#rendered);
  }

  /** The registry's text, read now, and the per-target bytes of the last render, as they are. */
  async expositionParts(): Promise<{ head: string; body: Uint8Array }> {
    return { head: await this.#registry.metrics(), body: this.#rendered };
  }

  get contentType(): string {
    return this.#registry.contentType;
  }
}

/**
 * process_* as every Prometheus client exports them, read from /proc at scrape time. (prom-client's
 * collectDefaultMetrics also starts an event-loop-lag timer that wakes the process 100 times a
 * second, which an idle prober should not do.)
 */
function registerProcessMetrics(r: Registry): void {
  const clockTicks = 100;
  const pageSize = 4096;
  const startTime = (() => {
    try {
      const stat = readFileSync("/proc/self/stat", "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1] ?? 0);
      return btime + Number(fields[19]) / clockTicks;
    } catch {
      // Not Linux /proc: the process start is close enough to now.
      return Date.now() / 1000;
    }
  })();
  new Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    registers: [r],
    collect() {
      const u = process.cpuUsage();
      this.reset();
      this.inc((u.user + u.system) / 1e6);
    },
  });
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    registers: [r],
    collect() {
      this.set(startTime);
    },
  });
  const statm = () => readFileSync("/proc/self/statm", "utf8").split(" ").map(Number);
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [r],
    collect() {
      this.set((statm()[1] ?? 0) * pageSize);
    },
  });
  new Gauge({
    name: "process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    registers: [r],
    collect() {
      this.set((statm()[0] ?? 0) * pageSize);
    },
  });
  new Gauge({
    name: "process_open_fds",
    help: "Number of open file descriptors.",
    registers: [r],
    collect() {
      this.set(readdirSync("/proc/self/fd").length);
    },
  });
  new Gauge({
    name: "process_max_fds",
    help: "Maximum number of open file descriptors.",
    registers: [r],
    collect() {
      const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
      this.set(m ? Number(m[1]) : 0);
    },
  });
}
