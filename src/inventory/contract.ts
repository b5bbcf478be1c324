/**
 * The contract between the prober and a dynamic inventory, built-in or custom.
 *
 * An inventory is a module exporting `start(name, options, publish, context)`. It runs isolated
 * from probing (built-ins in a Worker, custom modules in a child process of the same binary) and
 * calls `publish` with its whole list of targets whenever that list changes. The prober checks
 * every list against InventoryListSchema (src/config/schema.ts); a list that fails is logged,
 * counted in netprobify_inventory_errors_total and ignored, and the last good one stays in use.
 *
 * ```ts
 * // dynamic_inventories/cmdb.ts
 * import type { InventoryStart } from "netprobify/inventory";
 * export const start: InventoryStart = async (name, options, publish, context) => {
 *   for (;;) {
 *     publish([{ hostname: "db1.example", type: "ICMPping", groups: ["wan"] }]);
 *     await Bun.sleep(60_000);
 *   }
 * };
 * ```
 */
import type { LevelName, LogFields } from "../log.ts";
import type { ListenerSettings } from "../web/tls.ts";

/** What a module may do besides publishing. */
export interface InventoryContext {
  /** Directory that relative paths in the options are relative to: the config file's. */
  readonly baseDir: string;
  /** The prober's logging_level; `log` below already filters by it. */
  readonly logLevel: LevelName;
  /** Writes one key=value line in the prober's log, tagged with the inventory's name. */
  log(level: LevelName, message: string, fields?: LogFields): void;
  /**
   * Reports a failure the module recovered from (a source that did not answer, a broken file):
   * logged once and counted in netprobify_inventory_errors_total. The last published list stays.
   */
  reportError(message: string, fields?: LogFields): void;
  /** Aborted when the inventory is stopped (reload removed it, the prober exits). */
  readonly signal: AbortSignal;
}

/** Hands the prober the inventory's whole list of targets (each checked by InventoryTargetSchema). */
export type Publish = (targets: readonly unknown[]) => void;

/**
 * The one function a module exports. It may return at once (after starting timers or a server)
 * or run forever; if it throws or rejects, the inventory is restarted with backoff.
 */
export type InventoryStart = (
  name: string,
  options: Readonly<Record<string, unknown>>,
  publish: Publish,
  context: InventoryContext,
) => void | Promise<void>;

/** What each built-in or custom inventory is started with. */
export interface InventorySpec {
  /** Inventory name: the prefix of its targets' names and the `inventory` label. */
  readonly name: string;
  /** "api", "file", "http", "dns" (built-ins, run in a Worker) or "module" (a file, run in a child process). */
  readonly kind: "api" | "file" | "http" | "dns" | "module";
  /** For kind "module": the absolute path of the .ts or .js file. */
  readonly modulePath?: string;
  /**
   * For kind "module", set when a privileged prober will not run it (the file or a directory above
   * it could have been written by an untrusted user): the reason, logged and counted instead.
   */
  readonly refused?: string;
  readonly options: Readonly<Record<string, unknown>>;
  /** For kind "api": TLS and HTTP/2 of its listener, from --web.config.file; absent: plain HTTP. */
  readonly listener?: ListenerSettings;
  readonly baseDir: string;
  readonly logLevel: LevelName;
}

/** Messages from an inventory's Worker or child process to the prober. */
export type InventoryMessage =
  | { readonly kind: "publish"; readonly targets: unknown }
  | { readonly kind: "error"; readonly message: string; readonly fields?: LogFields }
  | { readonly kind: "log"; readonly level: LevelName; readonly message: string; readonly fields?: LogFields }
  /** Sent every HEARTBEAT_MS while the event loop runs: a module stuck in a loop stops sending it. */
  | { readonly kind: "heartbeat" }
  /** start() threw or rejected, or the module could not be loaded: the inventory is restarted. */
  | { readonly kind: "failed"; readonly message: string }
  /**
   * A child process has given up its privileges (which can mean starting itself again, losing
   * whatever it had read from the IPC channel): only now is it sent its "start".
   */
  | { readonly kind: "ready" };

/** Messages from the prober to an inventory. */
export type InventoryCommand = { readonly kind: "start"; readonly spec: InventorySpec } | { readonly kind: "stop" };

export const HEARTBEAT_MS = 1_000;
/** An inventory silent this long is stuck (a synchronous loop): it is killed and restarted. */
export const HEARTBEAT_TIMEOUT_MS = 15_000;
