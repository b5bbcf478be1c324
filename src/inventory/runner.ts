/**
 * The inventory side of the isolation boundary: runs one module's `start` and turns what it does
 * into {@link InventoryMessage}s. The same code serves a built-in in a Worker and a custom module
 * in a child process; only `send` differs.
 */
import { LEVELS, type LevelName, type LogFields } from "../log.ts";
import { HEARTBEAT_MS, type InventoryContext, type InventoryMessage, type InventorySpec, type InventoryStart } from "./contract.ts";

/** Runs `start` until it fails or `signal` aborts. Returns (or rejects) when the module is done. */
export async function runInventory(
  spec: InventorySpec,
  start: InventoryStart,
  send: (message: InventoryMessage) => void,
  signal: AbortSignal,
): Promise<void> {
  const heartbeat = setInterval(() => send({ kind: "heartbeat" }), HEARTBEAT_MS);
  signal.addEventListener("abort", () => clearInterval(heartbeat), { once: true });
  const threshold = LEVELS[spec.logLevel];
  const context: InventoryContext = {
    baseDir: spec.baseDir,
    logLevel: spec.logLevel,
    signal,
    log(level: LevelName, message: string, fields?: LogFields) {
      if (LEVELS[level] !== undefined && LEVELS[level] >= threshold) send({ kind: "log", level, message: String(message), fields: plainFields(fields) });
    },
    reportError(message: string, fields?: LogFields) {
      send({ kind: "error", message: String(message), fields: plainFields(fields) });
    },
  };
  const publish = (targets: readonly unknown[]) => {
    // A list that cannot cross the boundary (functions, cycles) is the module's error, not ours.
    let copy: unknown;
    try {
      copy = JSON.parse(JSON.stringify(targets));
    } catch (e) {
      context.reportError(`published a list that is not plain data: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    send({ kind: "publish", targets: copy });
  };
  try {
    await start(spec.name, spec.options, publish, context);
  } catch (e) {
    clearInterval(heartbeat);
    throw e;
  }
}

/** Log fields as plain strings and numbers, whatever a module passed. */
function plainFields(fields: LogFields | undefined): LogFields | undefined {
  if (!fields || typeof fields !== "object") return undefined;
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = typeof v === "number" || typeof v === "boolean" ? v : v === undefined ? undefined : String(v);
  }
  return out;
}

/** The errno name of a Node-style error ("ENOENT"), if it has one. */
export function errorCode(e: unknown): string | undefined {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

/** A thrown value as one line. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
