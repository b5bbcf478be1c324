/**
 * The long-running prober: loads the config, runs an iteration every `interval`, serves
 * /metrics, reloads on SIGHUP and every reload_conf_interval, and stops cleanly on SIGTERM/SIGINT.
 * The main thread plans and publishes; the engine Workers touch the packets.
 */
import { DEFAULT_CONFIG_SOURCE } from "../config/default-config.ts";
import type { Config } from "../config/schema.ts";
import { logger, setLogLevel, type LevelName } from "../log.ts";
import { VERSION } from "../version.ts";
import { credentialsFromEnv, makeHandler, serveMetrics, type DaemonControl, type ReloadOutcome } from "./http.ts";
import { LoopLiveness } from "./liveness.ts";
import { Metrics } from "./metrics.ts";
import { buildPlan, type Series } from "./plan.ts";
import { loadAll, type Loaded, type StartFailure } from "./configuration.ts";
import { WorkerPool, type PoolOptions } from "./pool.ts";
import { Resolver, systemLookup, type LookupFn } from "./resolver.ts";
import { effectiveShard, shardText, type ShardSetting } from "./shard.ts";
import type { SeriesSummary } from "../engine/stats.ts";
import type { BatchStats } from "../engine/probe-engine.ts";
import { dirname, join } from "node:path";
import { readFileSync, statSync } from "node:fs";
import { longTimeout, wakeableSleep, type LongTimer } from "./timers.ts";
import { logSeriesPackets } from "./verbose.ts";
import { DynamicTargets } from "../inventory/merge.ts";
import type { InventoryPlan } from "../inventory/specs.ts";
import { InventorySupervisor } from "../inventory/supervisor.ts";
import { Access, NO_ACCESS_RULES } from "../web/access.ts";
import type { WebSettings } from "../web/config.ts";
import { HttpListener } from "../web/listener.ts";
import type { ListenerSettings } from "../web/tls.ts";

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

/** A metrics listener's address given on the command line (--web.listen-address). */
export interface ListenAddress {
  /** What Bun.serve binds: an address or a name; "::" for every address. */
  hostname: string;
  port: number;
  /** As the user wrote it, for the log. */
  text: string;
}

/** host:port, an IPv6 address in brackets. */
function hostPort(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

export interface DaemonOptions {
  /** The config file, or null for the built-in default. */
  configPath: string | null;
  /** --web.config.file: TLS for both listeners, Basic auth and headers for the metrics one. */
  webConfigPath?: string | null;
  lookup?: LookupFn;
  /** --web.listen-address: these listeners instead of the config's address and port, for good. */
  listen?: readonly ListenAddress[] | null;
  /** --log.level: this level instead of the config's logging_level, at start and after reloads. */
  logLevel?: LevelName | null;
  /** --shard or NETPROBIFY_SHARD_*: this shard instead of the config's global.shard, for good. */
  shard?: ShardSetting | null;
}

/** Files larger than this are not fingerprinted (the loader reports them). */
const FINGERPRINT_MAX_BYTES = 64 << 20;

/**
 * What a reload reads: the config file, api.yaml beside it and the web config. Two equal
 * fingerprints mean nothing to reload. null when a file cannot be fingerprinted (the load says
 * why). The certificate files are not in it: the listeners follow them themselves.
 */
function fingerprint(configPath: string, webConfigPath: string | null): string | null {
  const parts: string[] = [];
  for (const path of [configPath, join(dirname(configPath), "api.yaml"), ...(webConfigPath ? [webConfigPath] : [])]) {
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile() || st.size > FINGERPRINT_MAX_BYTES) return null;
      size = st.size;
    } catch {
      parts.push("-");
      continue;
    }
    try {
      parts.push(`${size}:${Bun.hash(readFileSync(path)).toString(16)}`);
    } catch {
      return null;
    }
  }
  return parts.join("|");
}

/** What a metrics listener was opened with: a reload that changes none of it keeps the listener. */
interface Listening {
  address: string;
  port: number;
  settings: ListenerSettings | null;
}

/** A reload that passed every check, waiting for the end of the iteration in flight. */
interface PendingReload {
  loaded: Loaded;
  /** The new metrics listeners, already bound, when an address, port or TLS setting changed. */
  server: { listeners: HttpListener[]; listening: Listening[] } | null;
}

/** How the metrics listeners authenticate, for the log. */
function authKind(web: WebSettings | null): string {
  return web?.access.users ? "basic_auth_users" : credentialsFromEnv() ? "PROM_USER" : "none";
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
  readonly #metrics: Metrics;
  /** What /-/healthy and /-/ready say. */
  readonly #liveness = new LoopLiveness();
  /** The targets API's listener when api.yaml enables it (the landing page links its docs). */
  #apiListener: { address: string; port: number } | null = null;
  readonly #pool: WorkerPool;
  readonly #resolver: Resolver;
  /** The metrics listeners: the config's one, or one per --web.listen-address. */
  #servers: HttpListener[] = [];
  #listening: Listening[] = [];
  /** --web.listen-address, which a reload does not move; null: the config's address and port. */
  readonly #listenFlag: readonly ListenAddress[] | null;
  /** --log.level, which the config's logging_level does not override; null: the config's. */
  readonly #logLevelFlag: LevelName | null;
  /** --shard or the environment's shard, which the config's global.shard does not override; null: the config's. */
  readonly #shardOverride: ShardSetting | null;
  /** The shard the last merge applied, as logged ("index/count from source"); null before the first. */
  #shardLogged: string | null = null;
  /** The installed web config (null: none given). */
  #web: WebSettings | null = null;
  /** The metrics listener's handler: Basic auth, headers and rate limit of the web config around makeHandler's. */
  #handler: (request: Request) => Promise<Response>;
  #stopping = false;
  #wake: (() => void) | null = null;
  #reloadTimer: LongTimer | null = null;
  /** Fingerprint of the files the last reload attempt (or the start) read. */
  #lastFingerprint: string | null = null;
  /** Reloads run one at a time. */
  #reloading: Promise<ReloadOutcome> = Promise.resolve({ ok: true, lines: [] });
  #pending: PendingReload | null = null;
  /** True while an iteration's probes are out: a reload waits for its end. */
  #iterating = false;
  /** An accepted reload being installed: the loop starts no iteration meanwhile. */
  #applying: Promise<void> | null = null;
  /** What app_reload_conf_failed_status shows: the last reload attempt failed. */
  #reloadFailed = false;
  #lastIterationSeconds = 0;
  /** Targets whose probes could not leave in the last iteration, and why. */
  #unroutable = new Map<string, string>();
  readonly #stopped: Promise<void>;
  #resolveStopped!: () => void;

  private constructor(
    config: Config,
    readonly configPath: string | null,
    readonly webConfigPath: string | null,
    lookup: LookupFn,
    flags: Pick<DaemonOptions, "listen" | "logLevel" | "shard">,
  ) {
    this.#listenFlag = flags.listen && flags.listen.length > 0 ? flags.listen : null;
    this.#logLevelFlag = flags.logLevel ?? null;
    this.#shardOverride = flags.shard ?? null;
    this.#config = config;
    this.#effective = config;
    this.#metrics = new Metrics({ version: VERSION, bun: Bun.version, libpcap: "" });
    this.#pool = new WorkerPool(poolOptions(config), logger("engine"), {
      onRestart: () => this.#metrics.workerRestarted(),
      onTimeout: () => this.#metrics.processTimedOut(),
    });
    this.#resolver = new Resolver(logger("dns"), lookup);
    this.#inventories = new InventorySupervisor(logger("inventory"), {
      onError: (inventory) => this.#metrics.inventoryFailed(inventory),
    });
    this.#dynamic = new DynamicTargets(logger("inventory"));
    this.#stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
    this.#handler = this.#handlerFor(null);
  }

  /**
   * The metrics handler for a web config: its basic_auth_users replace PROM_USER/PROM_PASSWORD,
   * which still apply without them (and without a web config).
   */
  #handlerFor(web: WebSettings | null): (request: Request) => Promise<Response> {
    const access = new Access(web?.access ?? NO_ACCESS_RULES);
    return access.wrap(makeHandler(this.#metrics, access.authenticates ? null : credentialsFromEnv(), this.#control));
  }

  /**
   * Loads the config and starts everything; returns the daemon, or the exit code and the lines
   * to print when the config is bad. Engine start-up errors (libpcap, privilege) are thrown.
   */
  static async start(opts: DaemonOptions): Promise<Daemon | StartFailure> {
    const source = opts.configPath ?? DEFAULT_CONFIG_SOURCE;
    const webConfigPath = opts.webConfigPath ?? null;
    const printed = opts.configPath ? fingerprint(opts.configPath, webConfigPath) : null;
    const loaded = await loadAll(opts.configPath, { webConfigPath });
    if ("exitCode" in loaded) return loaded;
    const { config, warnings, inventories } = loaded;
    const d = new Daemon(config, opts.configPath, webConfigPath, opts.lookup ?? systemLookup, opts);
    d.#web = loaded.web;
    setLogLevel(d.#logLevel(config));
    log.info(
      opts.configPath
        ? "starting"
        : "starting on the built-in default config (no file given, no netprobify.yaml or config.yaml here): probing this host over loopback",
      {
        version: VERSION,
        config: source,
        probe_name: config.global.probe_name,
        listen: d.#listenAddresses(config).join(","),
        tls: loaded.web?.listener != null,
        auth: authKind(loaded.web),
      },
    );
    for (const w of warnings) log.warning(w);
    if (loaded.web?.access.users && credentialsFromEnv()) {
      log.warning("PROM_USER and PROM_PASSWORD are not used: the web config's basic_auth_users apply", { web_config: webConfigPath ?? "" });
    }
    d.#handler = d.#handlerFor(loaded.web);
    d.#lastFingerprint = printed;
    await d.#pool.start(config.global.nb_proc, poolOptions(config));
    d.#metrics.setInfo({ version: VERSION, bun: Bun.version, libpcap: d.#pool.libpcap });
    d.#metrics.setProbeName(config.global.probe_name);
    d.#metrics.configLoaded(Date.now() / 1000, config.global.interval);
    d.#listening = d.#listenTargets(config, loaded.web);
    d.#servers = d.#bindAll(d.#listening, loaded.web);
    d.#applyInventories(inventories);
    d.#resolver.sync(d.#mergeDynamic());
    d.#scheduleReloads();
    return d;
  }

  #applyInventories(plan: InventoryPlan): void {
    for (const w of plan.warnings) log.warning(w);
    // An inventory filters its own log lines at the level it is given: --log.level's, if any.
    const level = this.#logLevelFlag;
    this.#inventories.apply(level ? plan.specs.map((s) => ({ ...s, logLevel: level })) : plan.specs);
    const api = plan.specs.find((s) => s.kind === "api")?.options;
    this.#apiListener =
      api && typeof api.listen_address === "string" && typeof api.listen_port === "number"
        ? { address: api.listen_address, port: api.listen_port }
        : null;
  }

  /**
   * The config plus the inventories' current targets. Computed at the start of an iteration, so
   * dynamic targets change between iterations, never during one.
   */
  #mergeDynamic(): Config {
    const { shard, source } = effectiveShard(this.#shardOverride, this.#config.global.shard);
    const merged = this.#dynamic.merge(this.#config, this.#inventories.lists(), shard);
    this.#metrics.setInventoryTargets(new Map(this.#inventories.names().map((name) => [name, merged.counts.get(name) ?? 0])));
    this.#metrics.setShard(shard, merged.kept);
    const logged = `${shardText(shard)} from ${source}`;
    if (logged !== this.#shardLogged && (shard.count > 1 || this.#shardLogged !== null)) {
      const fields = { shard: shardText(shard), from: source, configured_targets: merged.configured.total, configured_kept: merged.configured.kept };
      if (shard.count === 1) log.info("not sharded: this prober probes every target", fields);
      else if (merged.configured.kept === 0 && merged.configured.total > 0) {
        log.warning("this prober's shard keeps none of the configured targets: more probers than targets?", fields);
      } else log.info("sharded: this prober probes its share of the configured and dynamic targets (and every target of its own API)", fields);
    }
    this.#shardLogged = logged;
    if (merged.config.targets !== this.#effective.targets) this.#resolver.sync(merged.config);
    this.#effective = merged.config;
    return merged.config;
  }

  #logLevel(c: Config): LevelName {
    return this.#logLevelFlag ?? (c.global.logging_level as LevelName);
  }

  /** Where metrics are served, as host:port. */
  #listenAddresses(c: Config): string[] {
    return this.#listenFlag?.map((a) => a.text) ?? [hostPort(c.global.prometheus_address, c.global.prometheus_port)];
  }

  /** The metrics listeners a config asks for: --web.listen-address's when given, else the config's address and port. */
  #listenTargets(c: Config, web: WebSettings | null): Listening[] {
    const settings = web?.listener ?? null;
    if (this.#listenFlag) return this.#listenFlag.map((a) => ({ address: a.hostname, port: a.port, settings }));
    return [{ address: c.global.prometheus_address, port: c.global.prometheus_port, settings }];
  }

  /** Opens every listener of `targets`, or none: one that fails closes those already open. */
  #bindAll(targets: Listening[], web: WebSettings | null): HttpListener[] {
    const open: HttpListener[] = [];
    try {
      for (const t of targets) open.push(this.#listen(t, web));
    } catch (e) {
      for (const l of open) l.stop(true);
      throw e;
    }
    return open;
  }

  /** Opens a metrics listener; the caller closes the one it replaces. */
  #listen(at: Listening, web: WebSettings | null): HttpListener {
    let server: HttpListener;
    try {
      server = HttpListener.open({
        name: "metrics",
        settings: at.settings,
        port: at.port,
        bind: (transport, port) => serveMetrics({ hostname: at.address, port, fetch: (request) => this.#handler(request), transport }),
        log: (level, message, fields) => {
          if (level === "ERROR") {
            log.error(message, fields);
            // The API counts its own in netprobify_inventory_errors_total.
            this.#metrics.certificateFailed();
          } else if (level === "WARNING") log.warning(message, fields);
          else log.info(message, fields);
        },
      });
    } catch (e) {
      throw new ListenError(`${at.address}:${at.port}`, e instanceof Error ? e.message : String(e));
    }
    log.info("serving metrics", { address: at.address, port: at.port, path: "/metrics", tls: server.tls, auth: authKind(web) });
    return server;
  }

  /**
   * The listeners a reload moves to, bound before the running ones close so a failure leaves
   * metrics served where they were. Only the same port on the same or an overlapping address
   * (0.0.0.0 to 127.0.0.1, or new TLS settings) cannot be held twice: there the running ones are
   * closed first (their requests in flight finish), the new ones take their place at once, and
   * the old ones come back if the new ones cannot open. Null when the listeners stay (or were
   * swapped). With --web.listen-address, a change of the config's address or port is logged and
   * the flag's listeners stay (new TLS settings still apply to them).
   */
  #listenForReload(old: Config, c: Config, web: WebSettings | null): PendingReload["server"] {
    const moved = c.global.prometheus_address !== old.global.prometheus_address || c.global.prometheus_port !== old.global.prometheus_port;
    if (this.#listenFlag && moved) {
      log.warning("prometheus_address or prometheus_port changed in the config, but --web.listen-address is given: the listeners stay", {
        config_listen: hostPort(c.global.prometheus_address, c.global.prometheus_port),
        listen: this.#listenAddresses(c).join(","),
      });
    }
    const next = this.#listenTargets(c, web);
    const current = this.#listening;
    const key = (l: Listening[]) => JSON.stringify(l.map((x) => [x.address, x.port]));
    const same = key(next) === key(current);
    if (same && JSON.stringify(next) === JSON.stringify(current)) return null;
    if (!same) {
      try {
        return { listeners: this.#bindAll(next, web), listening: next };
      } catch (e) {
        if (!(e instanceof ListenError) || !next.some((n) => current.some((x) => x.port === n.port))) throw e;
      }
    }
    for (const s of this.#servers) s.stop(false);
    this.#servers = [];
    try {
      this.#servers = this.#bindAll(next, web);
      this.#listening = next;
    } catch (e) {
      this.#servers = this.#bindAll(current, this.#web);
      throw e;
    }
    return null;
  }

  #scheduleReloads(): void {
    this.#reloadTimer?.cancel();
    this.#reloadTimer = null;
    const every = this.#config.global.reload_conf_interval;
    if (every > 0 && this.configPath) {
      const tick = () => {
        this.#reloadTimer = longTimeout(tick, every * 1000);
        void this.reload({ quiet: true });
      };
      this.#reloadTimer = longTimeout(tick, every * 1000);
    }
  }

  get port(): number {
    return this.#servers[0]?.port ?? 0;
  }

  /** What the metrics listener's /-/healthy, /-/ready, /-/reload and landing page ask. */
  readonly #control: DaemonControl = {
    unhealthy: () => this.#liveness.unhealthy(this.#config.global),
    notReady: () => this.#liveness.notReady(),
    reload: () => this.reload(),
    apiListener: () => this.#apiListener,
  };

  /**
   * Re-reads the config file and api.yaml. Unchanged files (same content as the last attempt)
   * are not reloaded, except on an explicit request after a failure. Otherwise everything is checked first: load, validation (its limits are what the planner can run), the new
   * metrics listener; any failure keeps the running config and sets
   * app_reload_conf_failed_status to 1. An accepted file is installed at the end of the iteration
   * in flight (at once when none is), so no probe in flight is lost; the status goes to 0.
   * Resolves with whether the file is (or already was) accepted, and what happened or the
   * problems (FILE:LINE:COL lines). `quiet`: an unchanged file is not logged (the periodic reload).
   */
  reload(opts: { quiet?: boolean } = {}): Promise<ReloadOutcome> {
    const next = this.#reloading.then(() => this.#reloadOnce(opts.quiet ?? false));
    this.#reloading = next.catch((e: unknown) => ({ ok: false, lines: [e instanceof Error ? e.message : String(e)] }));
    return next;
  }

  async #reloadOnce(quiet: boolean): Promise<ReloadOutcome> {
    const path = this.configPath;
    if (!path) {
      const why = "the built-in default config has no file to re-read";
      log.info(`reload requested, but ${why}`);
      return { ok: false, lines: [`nothing reloaded: ${why}`] };
    }
    if (this.#stopping) return { ok: false, lines: ["nothing reloaded: the daemon is stopping"] };
    const fail = (lines: string[]): ReloadOutcome => {
      log.error("configuration reload failed: the running configuration stays", { config: path });
      for (const line of lines) log.error(line);
      this.#reloadFailed = true;
      this.#metrics.reloadFailed();
      // An accepted file not installed yet is no longer what is on disk: it is dropped too.
      for (const l of this.#pending?.server?.listeners ?? []) l.stop(true);
      this.#pending = null;
      return { ok: false, lines };
    };
    const printed = fingerprint(path, this.webConfigPath);
    // An explicit reload retries a failed one whatever the files: the failure may have been the
    // machine's (a port in use) rather than the file's.
    if (printed !== null && printed === this.#lastFingerprint && (quiet || !this.#reloadFailed)) {
      if (!quiet) log.info("configuration unchanged: nothing to reload", { config: path });
      return this.#reloadFailed
        ? { ok: false, lines: ["the configuration files are unchanged since the last attempt, which failed"] }
        : { ok: true, lines: ["configuration unchanged: nothing to reload"] };
    }
    this.#lastFingerprint = printed;
    let pending: PendingReload;
    try {
      const loaded = await loadAll(path, { webConfigPath: this.webConfigPath });
      if ("exitCode" in loaded) return fail(loaded.lines);
      // loadAll refuses what the planner could not run (the schema's limits): nothing to plan here.
      const c = loaded.config;
      // A reload accepted earlier but not installed yet is superseded, its listener with it.
      for (const l of this.#pending?.server?.listeners ?? []) l.stop(true);
      this.#pending = null;
      pending = { loaded, server: this.#listenForReload(this.#config, c, loaded.web) };
    } catch (e) {
      return fail([e instanceof Error ? e.message : String(e)]);
    }
    this.#pending = pending;
    if (this.#iterating) {
      const accepted = "configuration accepted: it applies when the iteration in flight ends";
      log.info(accepted, { config: path });
      return { ok: true, lines: [accepted] };
    }
    try {
      await this.#install();
    } catch (e) {
      log.error("installing the reloaded configuration failed", { error: e instanceof Error ? e.message : String(e) });
    }
    return { ok: true, lines: ["configuration reloaded"] };
  }

  /** Installs the accepted reload, if any; called between iterations only. */
  #install(): Promise<void> {
    const pending = this.#pending;
    if (!pending) return this.#applying ?? Promise.resolve();
    this.#pending = null;
    const apply = (async () => {
      const c = pending.loaded.config;
      for (const w of pending.loaded.warnings) log.warning(w);
      this.#config = c;
      setLogLevel(this.#logLevel(c));
      this.#metrics.setProbeName(c.global.probe_name);
      this.#reloadFailed = false;
      this.#metrics.configLoaded(Date.now() / 1000, c.global.interval);
      if (pending.server) {
        for (const l of this.#servers) l.stop(true);
        this.#servers = pending.server.listeners;
        this.#listening = pending.server.listening;
      }
      this.#web = pending.loaded.web;
      this.#handler = this.#handlerFor(pending.loaded.web);
      this.#applyInventories(pending.loaded.inventories);
      this.#mergeDynamic();
      await this.#pool.resize(c.global.nb_proc, poolOptions(c));
      this.#scheduleReloads();
      // Series of removed targets, groups and percentiles go now, not at the end of the next iteration.
      await this.#publish(null, [], [], this.#lastIterationSeconds, null, false);
      log.info("configuration reloaded", { config: this.configPath ?? "", targets: Object.keys(c.targets ?? {}).length });
      // The wait before the next iteration follows the new interval.
      this.#wake?.();
    })().finally(() => {
      if (this.#applying === apply) this.#applying = null;
    });
    this.#applying = apply;
    return apply;
  }

  #publish(
    plan: ReturnType<typeof buildPlan> | null,
    results: (SeriesSummary | null)[],
    stats: BatchStats[],
    iterationSeconds: number,
    endedAt: number | null,
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
      perTargetSeries: c.global.per_target_series,
      worstTargets: c.global.worst_targets,
      targets: c.targets ?? {},
      resolutions: this.#resolver.resolutions(),
      stats,
      iterationSeconds,
      endedAt,
      degraded,
    });
  }

  /** One iteration: plan, probe in the Workers, publish. */
  async iterate(): Promise<void> {
    const c = this.#mergeDynamic();
    const t0 = performance.now();
    void this.#resolver.refresh();
    const plan = buildPlan(c, (t) => this.#resolver.addressesOf(t), c.global.nb_proc);
    const out = await this.#pool.run(plan.jobs, [...c.global.percentile], [...c.global.histogram_buckets], c.global.timeout * 1000);
    const results: (SeriesSummary | null)[] = plan.series.map(() => null);
    const stats: BatchStats[] = [];
    out.forEach((r, k) => {
      if (!r) return;
      stats.push(r.stats);
      plan.jobs[k]!.series.forEach((global, local) => (results[global] = r.series[local] ?? null));
    });
    this.#reportUnroutable(plan.series, results);
    if (c.global.verbose === 1) logSeriesPackets(log, plan.series, results);
    const seconds = (performance.now() - t0) / 1000;
    const degraded =
      out.some((r) => r === null) ||
      stats.some((s) => s.captureDropped > 0 || s.sendErrors > 0 || s.txMissing > 0 || s.sendLagMs / 1000 > DEGRADED_LAG_S);
    this.#lastIterationSeconds = seconds;
    await this.#publish(plan, results, stats, seconds, Date.now() / 1000, degraded);
    this.#liveness.published();
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
      if (!this.#unroutable.has(target)) log.warning("probes cannot leave: counted as send errors, neither sent nor lost", { target, reason: why });
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
    this.#liveness.loopStarted();
    while (!this.#stopping) {
      while (this.#applying) await this.#applying;
      const start = performance.now();
      this.#iterating = true;
      try {
        await this.iterate();
      } catch (e) {
        log.error("iteration failed", { error: e instanceof Error ? e.message : String(e) });
      } finally {
        this.#iterating = false;
        this.#liveness.iterationEnded();
      }
      try {
        await this.#install();
      } catch (e) {
        log.error("installing the reloaded configuration failed", { error: e instanceof Error ? e.message : String(e) });
      }
      if (this.#stopping) break;
      if (performance.now() - start >= this.#config.global.interval * 1000) {
        log.warning("iteration overran the interval: the next one starts at once", {
          iteration_s: ((performance.now() - start) / 1000).toFixed(3),
          interval_s: this.#config.global.interval,
        });
        continue;
      }
      // Re-measured after each wake-up: an installed reload may have changed the interval.
      for (;;) {
        const wait = start + this.#config.global.interval * 1000 - performance.now();
        if (wait <= 0 || this.#stopping) break;
        const sleep = wakeableSleep(wait);
        this.#wake = sleep.wake;
        await sleep.done;
        this.#wake = null;
        while (this.#applying) await this.#applying;
      }
    }
    await Promise.all([this.#pool.close(), this.#inventories.stop()]);
    this.#reloadTimer?.cancel();
    for (const l of this.#pending?.server?.listeners ?? []) l.stop(true);
    this.#pending = null;
    for (const l of this.#servers) l.stop(true);
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
