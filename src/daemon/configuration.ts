/**
 * The daemon's whole configuration as one verdict: netprobify.yaml (or the built-in default),
 * api.yaml beside it and the inventories they start, the web config (--web.config.file) when one
 * is given, with the checks that span them (the API's port against the metrics port). Daemon start, reload and `netprobify check` all go through
 * {@link loadAll}, so `check` accepts exactly what the daemon would run. The plan stage has no
 * checks of its own to repeat here: what it could fail on (a subnet too large to expand, an
 * iteration too large to hold) is refused by the schema, with the figures, before it gets there.
 */
import { dirname, resolve } from "node:path";
import { loadConfigFile, loadDefaultConfig, type LoadResult } from "../config/load.ts";
import { formatIssues } from "../config/validate-yaml.ts";
import { withoutPrototype, type Config } from "../config/schema.ts";
import { EXIT_DATAERR, EXIT_NOINPUT, EXIT_OK } from "../cli/exit.ts";
import { logger } from "../log.ts";
import { planInventories, type InventoryPlan } from "../inventory/specs.ts";
import { shardOwner, shardText } from "./shard.ts";
import { workerUrl } from "../worker-url.ts";
import { describeWebSettings, loadWebConfig, type WebSettings } from "../web/config.ts";

const log = logger("daemon");

/** Outcome of loading: exit code when the daemon cannot start (65 invalid, 66 unreadable). */
export type StartFailure = { exitCode: typeof EXIT_DATAERR | typeof EXIT_NOINPUT; lines: string[] };

/** A usable configuration: the file (or the built-in default) and the inventories it starts. */
export interface Loaded {
  config: Config;
  warnings: string[];
  inventories: InventoryPlan;
  /** The web config's settings; null when none is given. */
  web: WebSettings | null;
}

/**
 * Gives the user-keyed maps of a config back their null prototype, which a structured clone
 * (the loader Worker's message) replaces with Object.prototype: `"constructor" in groups` must
 * stay false for a config without such a group.
 */
function restorePrototypes(config: Config): Config {
  const inv = config.inventories;
  return {
    ...config,
    groups: withoutPrototype(config.groups),
    targets: withoutPrototype(config.targets),
    ...(inv
      ? {
          inventories: {
            ...inv,
            file: withoutPrototype(inv.file),
            http: withoutPrototype(inv.http),
            dns: withoutPrototype(inv.dns),
            modules: withoutPrototype(
              Object.fromEntries(Object.entries(inv.modules).map(([name, options]) => [name, withoutPrototype(options)])),
            ),
          },
        }
      : {}),
  };
}

/**
 * Loads the config in a short-lived Worker (src/config/load-worker.ts): the parse's garbage goes
 * with it. Falls back to this thread if the Worker cannot run.
 */
export function loadConfigIsolated(path: string): Promise<LoadResult> {
  return new Promise((done) => {
    const settle = (r: LoadResult) => done(r.ok ? { ...r, config: restorePrototypes(r.config) } : r);
    let worker: Worker;
    try {
      worker = new Worker(workerUrl("config/load-worker.ts"), { smol: true });
    } catch {
      void loadConfigFile(path).then(done);
      return;
    }
    worker.onmessage = (event: MessageEvent<LoadResult>) => {
      worker.terminate();
      settle(event.data);
    };
    worker.onerror = (event) => {
      worker.terminate();
      log.warning("config loader Worker failed: loading in the main thread", { error: event.message });
      void loadConfigFile(path).then(done);
    };
    worker.postMessage(path);
  });
}

/**
 * Reads the config (null: the built-in default), api.yaml beside it and the web config, and plans
 * the inventories; a problem anywhere stops a start (65 invalid, 66 unreadable) and fails a
 * reload. The problems of the config and of the web config are told together.
 * @param options.isolated Parse the config in a Worker (the daemon, whose heap lives on); `check`
 *   and tests parse in this thread.
 * @param options.webConfigPath --web.config.file; none: no TLS, PROM_USER/PROM_PASSWORD auth.
 */
export async function loadAll(
  configPath: string | null,
  options: { isolated?: boolean; webConfigPath?: string | null } = {},
): Promise<Loaded | StartFailure> {
  const isolated = options.isolated ?? true;
  const web = options.webConfigPath ? await loadWebConfig(options.webConfigPath) : null;
  const fail = (exitCode: StartFailure["exitCode"], lines: string[]): StartFailure => {
    if (!web || web.ok) return { exitCode, lines };
    return { exitCode: web.unreadable ? EXIT_NOINPUT : exitCode, lines: [...lines, ...web.lines] };
  };
  const r = configPath ? await (isolated ? loadConfigIsolated(configPath) : loadConfigFile(configPath)) : loadDefaultConfig();
  if ("unreadable" in r) return fail(EXIT_NOINPUT, [r.unreadable]);
  if (!r.ok) return fail(EXIT_DATAERR, formatIssues(r.issues));
  if (web && !web.ok) return fail(EXIT_DATAERR, []);
  const listener = web?.ok ? web.settings.listener : null;
  const baseDir = configPath ? dirname(resolve(configPath)) : process.cwd();
  const inventories = await planInventories(r.config, baseDir, undefined, listener);
  if (inventories.unreadable.length > 0) return { exitCode: EXIT_NOINPUT, lines: inventories.unreadable };
  if (inventories.problems.length > 0) return { exitCode: EXIT_DATAERR, lines: inventories.problems };
  const webWarnings = web?.ok ? web.warnings : [];
  return { config: r.config, warnings: [...r.warnings, ...webWarnings], inventories, web: web?.ok ? web.settings : null };
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;

/**
 * `netprobify check FILE`: {@link loadAll}, told as the tool prints it.
 * @returns 0 with the warnings and a summary (the inventories it would start included), 65 with one
 *   FILE:LINE:COL line per issue (the first MAX_SHOWN_ISSUES, then a count of the rest), 66 with
 *   one line saying why a file cannot be read.
 */
export async function checkFile(path: string): Promise<CheckOutcome> {
  return checkOutcome(path, await loadAll(path, { isolated: false }));
}

/**
 * `netprobify check [FILE] [--web.config.file WEB]`: the config, the web config, or both as the
 * daemon would load them together.
 */
export async function checkFiles(files: { config?: string; web?: string }): Promise<CheckOutcome> {
  if (files.config) {
    const loaded = await loadAll(files.config, { isolated: false, webConfigPath: files.web ?? null });
    return checkOutcome(files.config, loaded, files.web);
  }
  if (!files.web) return { exitCode: EXIT_OK, lines: [] };
  const web = await loadWebConfig(files.web);
  if (!web.ok) return { exitCode: web.unreadable ? EXIT_NOINPUT : EXIT_DATAERR, lines: web.lines };
  return { exitCode: EXIT_OK, lines: [...web.warnings, `${files.web}: valid web config: ${describeWebSettings(web.settings)}`] };
}

export type CheckOutcome = { exitCode: typeof EXIT_OK | StartFailure["exitCode"]; lines: string[] };

/** {@link checkFile}'s lines for what {@link loadAll} made of `path` (and of the web config `webPath`). */
export function checkOutcome(path: string, loaded: Loaded | StartFailure, webPath?: string): CheckOutcome {
  if ("exitCode" in loaded) return loaded;
  const { config, warnings, inventories } = loaded;
  const names = inventories.specs.map((s) => `${s.name} (${s.kind}${s.refused ? ", refused" : ""})`);
  const started = names.length > 0 ? `, inventories: ${names.join(", ")}` : "";
  const refused = inventories.specs.flatMap((s) => (s.refused ? [s.refused] : []));
  const targetNames = Object.keys(config.targets);
  const shard = config.global.shard;
  const share = shard && shard.count > 1 ? ` (shard ${shardText(shard)} keeps ${targetNames.filter((n) => shardOwner(n, shard.count) === shard.index).length})` : "";
  const counts = `${plural(Object.keys(config.groups).length, "group")} and ${plural(targetNames.length, "target")}${share}`;
  const web = loaded.web && webPath ? [`${webPath}: valid web config: ${describeWebSettings(loaded.web)}`] : [];
  return {
    exitCode: EXIT_OK,
    lines: [...warnings, ...[...inventories.warnings, ...refused].map((w) => `warning: ${w}`), `${path}: valid, ${counts}${started}`, ...web],
  };
}
