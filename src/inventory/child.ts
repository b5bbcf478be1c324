/**
 * A custom inventory's child process: `netprobify __inventory`, the same binary started by the
 * supervisor with an IPC channel. It loads the module named by the "start" command and runs it;
 * whatever the module does (throw, loop forever, exhaust its heap) ends here, never in the prober.
 *
 * A module never runs with the prober's privilege: before it says "ready", the child gives up
 * every capability and sets no_new_privs (src/native/capabilities.ts), starting itself again when
 * threads from before the drop still hold some. When the prober was privileged (root, or the
 * setcap'd binary), every file the module loads is also checked against the ownership rule of
 * src/trusted-code.ts, and read from the descriptor that was checked.
 */
import { plugin } from "bun";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, extname } from "node:path";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../cli/exit.ts";
import { dropCapabilities, reexecSelf } from "../native/capabilities.ts";
import { holdsPrivilege, threadsNotConfined } from "../privilege.ts";
import { checkCodeDirectory, readCodeFile, UntrustedCode } from "../trusted-code.ts";
import type { InventoryCommand, InventoryMessage, InventoryStart } from "./contract.ts";
import { describeError, runInventory } from "./runner.ts";

/** How long a stopping module gets to close its sockets before the process exits anyway. */
const STOP_GRACE_MS = 1_000;

/** Added to the command line when the child starts itself again: the process before held privileges. */
export const PRIVILEGED_PARENT_FLAG = "--privileged-parent";

/**
 * Gives up every privilege of this process, for every thread; returns whether the process
 * held any (so that the modules it loads must pass the ownership rule). May start the process
 * again: the call then never returns. Throws when a privilege cannot be given up.
 */
function confine(argv: readonly string[]): boolean {
  const reexecuted = argv.includes(PRIVILEGED_PARENT_FLAG);
  // Started from /proc/self/exe, the process would be listed as "exe".
  if (reexecuted) nameProcess();
  const privileged = reexecuted || holdsPrivilege();
  dropCapabilities();
  if (!privileged) return false;
  const left = threadsNotConfined();
  if (left.length === 0) return true;
  if (reexecuted) throw new Error(`threads ${left.join(", ")} still hold capabilities after a fresh start`);
  return reexecSelf(PRIVILEGED_PARENT_FLAG);
}

function nameProcess(): void {
  try {
    const argv0 = readFileSync("/proc/self/cmdline", "utf8").split("\0")[0] ?? "";
    writeFileSync("/proc/self/comm", basename(argv0).slice(0, 15));
  } catch {
    // Cosmetic only.
  }
}

/** How each kind of file a module imports is compiled, when the prober is privileged. */
const LOADERS: Readonly<Record<string, "ts" | "tsx" | "js" | "jsx" | "toml" | "yaml">> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
  ".toml": "toml",
  ".yaml": "yaml",
  ".yml": "yaml",
};

/**
 * Every file the module's imports load from disk passes the ownership rule and is compiled from
 * the bytes that were checked. JSON is parsed here (Bun 1.4's runtime plugins cannot hand it to
 * the json loader), so require() of it also sees a `default` field. Other kinds (native addons,
 * WebAssembly) cannot be handed over as checked bytes, and are refused.
 */
function checkEveryImport(): void {
  plugin({
    name: "netprobify-trusted-code",
    setup(build) {
      build.onLoad({ filter: /.*/, namespace: "file" }, (args) => {
        const ext = extname(args.path);
        const loader = LOADERS[ext];
        if (!loader && ext !== ".json") {
          const kinds = [...Object.keys(LOADERS), ".json"].join(", ");
          throw new Error(`${args.path}: not loaded: a module of a prober running as root or with capabilities imports only ${kinds} files`);
        }
        const { contents } = readCodeFile(args.path);
        if (loader) return { contents: contents.toString("utf8"), loader };
        const value: unknown = JSON.parse(contents.toString("utf8"));
        const fields = typeof value === "object" && value !== null && !Array.isArray(value) ? value : {};
        // Its fields as named exports too, as Bun gives a JSON file's.
        return { exports: { ...fields, default: value }, loader: "object" };
      });
    },
  });
}

export function runInventoryChild(argv: readonly string[], err: (line: string) => void): Promise<number> {
  return new Promise((resolve) => {
    if (!process.send) {
      err("netprobify: __inventory is started by the prober, not by hand");
      resolve(EXIT_USAGE);
      return;
    }
    const controller = new AbortController();
    const send = (m: InventoryMessage) => {
      try {
        process.send!(m);
      } catch {
        // The prober is gone: the disconnect handler below ends this process.
      }
    };
    const fail = (message: string) => {
      send({ kind: "failed", message });
      // Let the IPC message leave before exiting.
      setTimeout(() => resolve(EXIT_FAILURE), 50);
    };
    let privileged: boolean;
    try {
      privileged = confine(argv);
    } catch (e) {
      fail(`cannot give up the prober's privileges, so no module is loaded: ${describeError(e)}`);
      return;
    }
    if (privileged) checkEveryImport();
    // A runtime warning in the module is the prober's log line, as the module's own log calls are.
    process.on("warning", (w: Error & { code?: string }) => send({ kind: "log", level: "WARNING", message: w.message, fields: { warning: w.name, code: w.code } }));
    process.on("uncaughtException", (e) => fail(`uncaught: ${describeError(e)}`));
    process.on("unhandledRejection", (e) => fail(`unhandled rejection: ${describeError(e)}`));
    // No orphans: when the prober goes, so does every inventory.
    process.on("disconnect", () => resolve(EXIT_OK));
    process.on("message", (command: InventoryCommand) => {
      if (command.kind === "stop") {
        controller.abort();
        setTimeout(() => resolve(EXIT_OK), STOP_GRACE_MS);
        return;
      }
      const { spec } = command;
      void (async () => {
        let start: unknown;
        try {
          // Checked again here, the plan's check being a moment old: the directory's files all run.
          if (privileged) checkCodeDirectory(dirname(spec.modulePath!));
          const mod = (await import(spec.modulePath!)) as { start?: unknown; default?: { start?: unknown } };
          start = mod.start ?? mod.default?.start;
        } catch (e) {
          fail(e instanceof UntrustedCode ? e.message : `cannot load ${spec.modulePath}: ${describeError(e)}`);
          return;
        }
        if (typeof start !== "function") {
          fail(`${spec.modulePath} exports no start function`);
          return;
        }
        try {
          await runInventory(spec, start as InventoryStart, send, controller.signal);
        } catch (e) {
          if (!controller.signal.aborted) fail(describeError(e));
        }
      })();
    });
    send({ kind: "ready" });
  });
}
