/**
 * The long-running prober: loads the config, runs an iteration every `interval`, serves
 * /metrics, reloads on SIGHUP and every reload_conf_interval, and stops cleanly on SIGTERM/SIGINT.
 * The main thread plans and publishes; the engine Workers touch the packets.
 */
import type { Server } from "bun";
import { DEFAULT_CONFIG_SOURCE } from "../config/default-config.ts";
import type { Config } from "../config/schema.ts";
import { logger, setLogLevel, type LevelName } from "../log.ts";
import { VERSION } from "../version.ts";
import { credentialsFromEnv, makeHandler } from "./http.ts";
import { Metrics } from "./metrics.ts";
import { buildPlan, type Series } from "./plan.ts";
import { loadAll, type StartFailure } from "./configuration.ts";
import { WorkerPool, type PoolOptions } from "./pool.ts";
import { Resolver, systemLookup, type LookupFn } from "./resolver.ts";
import type { SeriesSummary } from "../engine/stats.ts";
import type { BatchStats } from "../engine/probe-engine.ts";
import { DynamicTargets } from "../inventory/merge.ts";
import type { InventoryPlan } from "../inventory/specs.ts";
import { InventorySupervisor } from "../inventory/supervisor.ts";

const log = logger("daemon");

/** Sending more than this behind schedule marks the iteration degraded. */
const DEGRADED_LAG_S = 0.1;
/** At start, how long the first iteration waits for hostnames to resolve. */
const FIRST_RESOLUTION_WAIT_MS = 5000;

/** The metrics listener cannot be opened (port in use, address not local). */
export class ListenError extends Error {
  constructor(
    readonly address: string,
    detail: string,
  ) {
    super(`cannot serve metrics on ${address}: ${detail}`);
    this.name = "ListenError";
  }
}

export interface DaemonOptions {
  /** The config file, or null for the built-in default. */
  configPath: string | null;
  lookup?: LookupFn;
}

/** Each engine's capture ring: absorbs bursts of answers while its thread is sending. */
const DEFAULT_CAPTURE_BUFFER_MB = 16;

function poolOptions(c: Config): PoolOptions {
  // NETPROBIFY_CAPTURE_BUFFER_MB tunes the ring for very large configs (and lets the self-check
  // tests overload it on purpose).
  const mb = Number(process.env.NETPROBIFY_CAPTURE_BUFFER_MB ?? DEFAULT_CAPTURE_BUFFER_MB);
  return {
    l3RawSocket: c.global.l3_raw_socket,
    maxProbesPerSecond: c.global.max_probes_per_second,
    captureBufferBytes: Math.max(0.0625, Number.isFinite(mb) ? mb : DEFAULT_CAPTURE_BUFFER_MB) * (1 << 20),
  };
}

export class Daemon {
  #config: Config;
  /** #config with the dynamic inventories' targets: what the last iteration planned from. */
  #effective: Config;
  readonly #inventories: InventorySupervisor;
  readonly #dynamic: DynamicTargets;
  /** Inventories that had a app_inventory_targets series, to remove the series when one goes. */
  #inventoryNames = new Set<string>();
  readonly #metrics: Metrics;
  readonly #pool: WorkerPool;
  readonly #resolver: Resolver;
  #server: Server<undefined> | null = null;
  #stopping = false;
  #wake: (() => void) | null = null;
  #reloadTimer: ReturnType<typeof setInterval> | null = null;
  #lastIterationSeconds = 0;
  /** Targets whose probes could not leave in the last iteration, and why. */
  #unroutable = new Map<string, string>();
  readonly #stopped: Promise<void>;
  #resolveStopped!: () => void;

  private constructor(
    config: Config,
    readonly configPath: string | null,
    lookup: LookupFn,
  ) {
    this.#config = config;
    this.#effective = config;
    this.#metrics = new Metrics({ version: VERSION, bun: Bun.version, libpcap: "" });
    this.#pool = new WorkerPool(poolOptions(config), logger("engine"), {
      onRestart: () => this.#metrics.workerRestarts.inc({ probe_name: this.#config.global.probe_name }),
      onTimeout: () => {
        this.#metrics.timedOut.inc({ probe_name: this.#config.global.probe_name });
        this.#metrics.workerRestarts.inc({ probe_name: this.#config.global.probe_name });
      },
    });
    this.#resolver = new Resolver(logger("dns"), lookup);
    this.#inventories = new InventorySupervisor(logger("inventory"), {
      onError: (inventory) => this.#metrics.inventoryErrors.inc({ probe_name: this.#config.global.probe_name, inventory }),
    });
    this.#dynamic = new DynamicTargets(logger("inventory"));
    this.#stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
  }

  /**
   * Loads the config and starts everything; returns the daemon, or the exit code and the lines
   * to print when the config is bad. Engine start-up errors (libpcap, privilege) are thrown.
   */
  static async start(opts: DaemonOptions): Promise<Daemon | StartFailure> {
    const source = opts.configPath ?? DEFAULT_CONFIG_SOURCE;
    const loaded = await loadAll(opts.configPath);
    if ("exitCode" in loaded) return loaded;
    const { config, warnings, inventories } = loaded;
    setLogLevel(config.global.logging_level as LevelName);
    log.info(
      opts.configPath
        ? "starting"
        : "starting on the built-in default config (no file given, no netprobify.yaml or config.yaml here): probing this host over loopback",
      { version: VERSION, config: source, probe_name: config.global.probe_name },
    );
    for (const w of warnings) log.warning(w);
    const d = new Daemon(config, opts.configPath, opts.lookup ?? systemLookup);
    await d.#pool.start(config.global.nb_proc, poolOptions(config));
    d.#metrics.info.reset();
    d.#metrics.info.set({ version: VERSION, bun_version: Bun.version, libpcap_version: d.#pool.libpcap }, 1);
    d.#metrics.setProbeName(config.global.probe_name);
    d.#serve();
    d.#resolver.sync(config);
    d.#applyInventories(inventories);
    d.#scheduleReloads();
    return d;
  }

  #applyInventories(plan: InventoryPlan): void {
    for (const w of plan.warnings) log.warning(w);
    this.#inventories.apply(plan.specs);
  }

  /**
   * The config plus the inventories' current targets. Computed at the start of an iteration, so
   * dynamic targets change between iterations, never during one.
   */
  #mergeDynamic(): Config {
    const merged = this.#dynamic.merge(this.#config, this.#inventories.lists());
    const pn = this.#config.global.probe_name;
    const names = new Set(this.#inventories.names());
    for (const name of this.#inventoryNames) {
      if (!names.has(name)) {
        this.#metrics.inventoryTargets.remove({ probe_name: pn, inventory: name });
        this.#metrics.inventoryErrors.remove({ probe_name: pn, inventory: name });
      }
    }
    for (const name of names) {
      this.#metrics.inventoryTargets.set({ probe_name: pn, inventory: name }, merged.counts.get(name) ?? 0);
      this.#metrics.inventoryErrors.inc({ probe_name: pn, inventory: name }, 0);
    }
    this.#inventoryNames = names;
    if (merged.config.targets !== this.#effective.targets) this.#resolver.sync(merged.config);
    this.#effective = merged.config;
    return merged.config;
  }

  #serve(): void {
    const g = this.#config.global;
    this.#server?.stop(true);
    try {
      this.#server = Bun.serve({
        hostname: g.prometheus_address,
        port: g.prometheus_port,
        fetch: makeHandler(this.#metrics, credentialsFromEnv()),
      });
    } catch (e) {
      this.#server = null;
      throw new ListenError(`${g.prometheus_address}:${g.prometheus_port}`, e instanceof Error ? e.message : String(e));
    }
    log.info("serving metrics", { address: g.prometheus_address, port: g.prometheus_port, path: "/metrics" });
  }

  #scheduleReloads(): void {
    if (this.#reloadTimer) clearInterval(this.#reloadTimer);
    this.#reloadTimer = null;
    const every = this.#config.global.reload_conf_interval;
    if (every > 0 && this.configPath) {
      this.#reloadTimer = setInterval(() => void this.reload(), every * 1000);
    }
  }

  get port(): number {
    return this.#server?.port ?? 0;
  }

  /**
   * Re-reads the config file. A bad file keeps the running config and sets
   * app_reload_conf_failed_status to 1; a good one applies at once (counters of targets that
   * stay are kept) and sets it to 0. Returns whether the new file was applied.
   */
  async reload(): Promise<boolean> {
    if (!this.configPath) {
      log.info("reload requested, but the built-in default config has no file to re-read");
      return false;
    }
    const loaded = await loadAll(this.configPath);
    const pn = this.#config.global.probe_name;
    if ("exitCode" in loaded) {
      log.error("configuration reload failed: the running configuration stays", { config: this.configPath });
      for (const line of loaded.lines) log.error(line);
      this.#metrics.reloadFailed.set({ probe_name: pn }, 1);
      return false;
    }
    const old = this.#config;
    const c = loaded.config;
    for (const w of loaded.warnings) log.warning(w);
    this.#config = c;
    setLogLevel(c.global.logging_level as LevelName);
    this.#metrics.setProbeName(c.global.probe_name);
    this.#metrics.reloadFailed.set({ probe_name: c.global.probe_name }, 0);
    this.#applyInventories(loaded.inventories);
    this.#mergeDynamic();
    await this.#pool.resize(c.global.nb_proc, poolOptions(c));
    if (old.global.prometheus_port !== c.global.prometheus_port || old.global.prometheus_address !== c.global.prometheus_address) {
      this.#serve();
    }
    this.#scheduleReloads();
    // Series of removed targets, groups and percentiles go now, not at the end of the next iteration.
    await this.#publish(null, [], [], this.#lastIterationSeconds, false);
    log.info("configuration reloaded", { config: this.configPath, targets: Object.keys(c.targets ?? {}).length });
    return true;
  }

  #publish(
    plan: ReturnType<typeof buildPlan> | null,
    results: (SeriesSummary | null)[],
    stats: BatchStats[],
    iterationSeconds: number,
    degraded: boolean,
  ): Promise<void> {
    const c = this.#effective;
    const p = plan ?? buildPlan(c, (t) => this.#resolver.addressesOf(t), c.global.nb_proc);
    return this.#metrics.applyIteration({
      probeName: c.global.probe_name,
      series: p.series,
      results: plan ? results : p.series.map(() => null),
      percentiles: c.global.percentile,
      histogramBuckets: c.global.histogram_buckets,
      histogramPerDestination: c.global.histogram_per_destination,
      targets: c.targets ?? {},
      resolutions: this.#resolver.resolutions(),
      stats,
      iterationSeconds,
      degraded,
    });
  }

  /** One iteration: plan, probe in the Workers, publish. */
  async iterate(): Promise<void> {
    const configured = this.#config;
    const c = this.#mergeDynamic();
    const t0 = performance.now();
    void this.#resolver.refresh();
    const plan = buildPlan(c, (t) => this.#resolver.addressesOf(t), c.global.nb_proc);
    const out = await this.#pool.run(plan.jobs, [...c.global.percentile], [...c.global.histogram_buckets], c.global.timeout * 1000);
    if (this.#config !== configured) return; // reloaded meanwhile: the old plan's figures are dropped
    const results: (SeriesSummary | null)[] = plan.series.map(() => null);
    const stats: BatchStats[] = [];
    out.forEach((r, k) => {
      if (!r) return;
      stats.push(r.stats);
      plan.jobs[k]!.series.forEach((global, local) => (results[global] = r.series[local] ?? null));
    });
    this.#reportUnroutable(plan.series, results);
    const seconds = (performance.now() - t0) / 1000;
    const degraded =
      out.some((r) => r === null) ||
      stats.some((s) => s.captureDropped > 0 || s.sendErrors > 0 || s.txMissing > 0 || s.sendLagMs / 1000 > DEGRADED_LAG_S);
    this.#lastIterationSeconds = seconds;
    await this.#publish(plan, results, stats, seconds, degraded);
    // Publishing 10,000 targets leaves tens of MB of label sets and text behind; collecting now
    // (about 50 ms, between iterations) keeps the heap from growing to several times its live size.
    Bun.gc(true);
    log.debug("iteration done", { seconds: seconds.toFixed(3), probes: plan.probes, series: plan.series.length });
  }

  /** Logs a target once when its probes stop being able to leave, and once when they can again. */
  #reportUnroutable(series: Series[], results: (SeriesSummary | null)[]): void {
    const now = new Map<string, string>();
    series.forEach((s, i) => {
      const why = results[i]?.unroutable;
      if (why) now.set(s.target, why);
    });
    for (const [target, why] of now) {
      if (!this.#unroutable.has(target)) log.warning("probes cannot leave: counted as lost", { target, reason: why });
    }
    for (const target of this.#unroutable.keys()) {
      if (!now.has(target) && series.some((s) => s.target === target)) log.info("probes leave again", { target });
    }
    this.#unroutable = now;
  }

  /** Iterates every `interval` seconds until stop(). */
  async run(): Promise<void> {
    // Give hostnames a bounded chance to resolve before the first iteration.
    await Promise.race([this.#resolver.refresh(), Bun.sleep(FIRST_RESOLUTION_WAIT_MS)]);
    while (!this.#stopping) {
      const start = performance.now();
      try {
        await this.iterate();
      } catch (e) {
        log.error("iteration failed", { error: e instanceof Error ? e.message : String(e) });
      }
      if (this.#stopping) break;
      const intervalMs = this.#config.global.interval * 1000;
      const wait = start + intervalMs - performance.now();
      if (wait <= 0) {
        log.warning("iteration overran the interval: the next one starts at once", {
          iteration_s: ((performance.now() - start) / 1000).toFixed(3),
          interval_s: this.#config.global.interval,
        });
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
    await Promise.all([this.#pool.close(), this.#inventories.stop()]);
    this.#server?.stop(true);
    if (this.#reloadTimer) clearInterval(this.#reloadTimer);
    this.#resolveStopped();
  }

  /**
   * Ends the loop. Idle Workers close their pcap handles; one in the middle of a batch is ended
   * after a second (the kernel closes its sockets). Resolves when everything is down.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await Promise.all([this.#pool.close(), this.#inventories.stop()]);
    return this.#stopped;
  }
}
