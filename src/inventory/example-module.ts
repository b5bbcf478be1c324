/**
 * An example custom inventory: copy it to `dynamic_inventories/hostlist.ts` beside the config
 * and netprobify starts it at launch, in a child process of its own.
 *
 * It probes the hosts listed in a plain text file, one per line (`#` starts a comment), re-read
 * every `refresh_interval` seconds. Options, under `inventories.modules.hostlist` in the config:
 *
 * ```yaml
 * inventories:
 *   modules:
 *     hostlist:
 *       path: hosts.txt          # relative to the config file's directory
 *       type: TCPsyn             # any target field may be given here and applies to every host
 *       dst_port: 443
 *       groups: [wan]
 *       refresh_interval: 60
 * ```
 *
 * The contract (src/inventory/contract.ts): export `start(name, options, publish, context)`.
 * Call `publish` with the whole list whenever it changes; each entry is a target as in the
 * config's `targets` section plus `hostname` (required: the target is named
 * `<inventory>_<hostname>`), `groups`, `creation_date` and `lifetime`. A list that does not
 * validate is refused as a whole and the last good one stays. `context.reportError` logs and
 * counts a failure you recovered from; `context.signal` aborts when the inventory is stopped.
 * A module that throws, exits, hangs or runs out of memory is restarted with backoff; probing
 * goes on meanwhile with its last good list.
 *
 * Only plain TypeScript/JavaScript and Bun's built-ins are available: the module runs inside the
 * netprobify binary, which carries no node_modules.
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";

/** The parts of the contract this module uses (kept inline: modules live outside the source tree). */
interface Context {
  readonly baseDir: string;
  readonly signal: AbortSignal;
  log(level: "DEBUG" | "INFO" | "WARNING" | "ERROR", message: string, fields?: Record<string, string | number>): void;
  reportError(message: string, fields?: Record<string, string | number>): void;
}

type Target = Record<string, unknown> & { hostname: string };

export async function start(
  name: string,
  options: Readonly<Record<string, unknown>>,
  publish: (targets: readonly Target[]) => void,
  context: Context,
): Promise<void> {
  const { path = "hosts.txt", refresh_interval: refresh = 60, ...targetFields } = options;
  if (typeof path !== "string") throw new Error("option path must be a string");
  // Bounded as the config's own durations are: setTimeout fires at once past 2^31-1 ms (24.8 days).
  if (typeof refresh !== "number" || !(refresh > 0 && refresh <= 86_400)) {
    throw new Error("option refresh_interval must be a number of seconds above 0 and at most 86400 (a day)");
  }
  const file = resolve(context.baseDir, path);
  const defaults = { type: "ICMPping", ...targetFields };
  let last = "";

  while (!context.signal.aborted) {
    try {
      const text = await readFile(file, "utf8");
      const hosts = text
        .split("\n")
        .map((line) => line.replace(/#.*/, "").trim())
        .filter((line) => line.length > 0);
      const targets = [...new Set(hosts)].map((hostname) => ({ ...defaults, hostname }));
      const json = JSON.stringify(targets);
      if (json !== last) {
        publish(targets);
        context.log("INFO", "host list loaded", { inventory: name, file, hosts: targets.length });
        last = json;
      }
    } catch (e) {
      context.reportError(`cannot read the host list: ${e instanceof Error ? e.message : String(e)}`, { file });
    }
    await new Promise<void>((done) => {
      const timer = setTimeout(done, refresh * 1000);
      context.signal.addEventListener("abort", () => (clearTimeout(timer), done()), { once: true });
    });
  }
}
