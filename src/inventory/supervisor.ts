/**
 * The prober's side of the dynamic inventories: starts each one isolated (built-ins in a Worker,
 * custom modules in a child process of this binary), checks every list it publishes, keeps the
 * last good one, and restarts an inventory that fails, hangs or exits, with exponential backoff.
 * Probing never waits on an inventory: the daemon reads {@link InventorySupervisor.lists} between
 * iterations.
 */
import { readFileSync } from "node:fs";
import { validateValue, formatProblem } from "../config/validate.ts";
import { InventoryListSchema, type InventoryTarget } from "../config/schema.ts";
import type { Logger, LogFields } from "../log.ts";
import { selfCommand, workerUrl } from "../worker-url.ts";
import {
  HEARTBEAT_TIMEOUT_MS,
  type InventoryCommand,
  type InventoryMessage,
  type InventorySpec,
} from "./contract.ts";

/** A running inventory, whatever isolates it. */
export interface InventoryProcess {
  send(command: InventoryCommand): void;
  /** Ends it at once (SIGKILL, Worker.terminate). */
  kill(): void;
}

/** Starts one inventory; `onExit` is called once when it ends by itself (crash, exit). */
export type Launch = (
  spec: InventorySpec,
  onMessage: (message: InventoryMessage) => void,
  onExit: (reason: string) => void,
  /** A line the inventory wrote on its stdout or stderr (a child process's console.log). */
  onOutput?: (stream: "stdout" | "stderr", line: string) => void,
) => InventoryProcess;

export interface SupervisorHooks {
  /** One failure of an inventory (bad list, crash, hang, reported error): netprobify_inventory_errors_total. */
  onError(inventory: string): void;
}

export interface InventoryList {
  readonly targets: readonly InventoryTarget[];
  /** When this list was received (ms since the epoch). */
  readonly receivedAt: number;
}

/** First restart delay; doubled after each failure in a row, up to MAX_BACKOFF_MS. */
export const MIN_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 60_000;
/** Running this long without failing resets the backoff. */
const HEALTHY_AFTER_MS = 60_000;
/** A stopping inventory gets this long to close its server or watcher before it is killed. */
const STOP_GRACE_MS = 1_500;
/** Problems of a rejected list quoted in its log line. */
const PROBLEMS_SHOWN = 3;

interface Slot {
  spec: InventorySpec;
  key: string;
  process: InventoryProcess | null;
  /** Failures in a row, for the backoff. */
  failures: number;
  restartTimer: ReturnType<typeof setTimeout> | null;
  startedAt: number;
  lastBeat: number;
  list: InventoryList | null;
  /** The last error logged, so a source failing the same way every minute logs once. */
  lastError: string | null;
  removed: boolean;
  /** Bumped at each start and at each failure, so a dead process's late messages are ignored. */
  generation: number;
}

/** Built-ins run in a Worker: cheap, and the code is ours. */
export const launchWorker: Launch = (spec, onMessage, onExit) => {
  const worker = new Worker(workerUrl("inventory/inventory-worker.ts"), { smol: true });
  let ended = false;
  const end = (reason: string) => {
    if (ended) return;
    ended = true;
    onExit(reason);
  };
  worker.onmessage = (event: MessageEvent<InventoryMessage>) => onMessage(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    end(`crashed: ${event.message}`);
    worker.terminate();
  };
  worker.addEventListener("close", () => end("its Worker ended"));
  worker.postMessage({ kind: "start", spec } satisfies InventoryCommand);
  return {
    send: (command) => worker.postMessage(command),
    kill: () => {
      ended = true;
      worker.terminate();
    },
  };
};

/**
 * Custom modules run in a child process of this binary: a crash, a hang or memory exhaustion in
 * one ends that process only. The child gives up every privilege before it says "ready", and is
 * sent its module only then (src/inventory/child.ts). Bun has no heap cap that holds
 * (BUN_JSC_gcMaxHeapSize only tunes the collector), so the process is watched and killed past
 * CHILD_MAX_RSS_BYTES; the kernel's OOM killer is pointed at it before the prober too.
 */
export const launchChild: Launch = (spec, onMessage, onExit, onOutput) => {
  let ended = false;
  let watch: ReturnType<typeof setInterval> | null = null;
  const end = (reason: string) => {
    if (watch) clearInterval(watch);
    if (ended) return;
    ended = true;
    onExit(reason);
  };
  const proc = Bun.spawn([...selfCommand(), "__inventory"], {
    stdin: "ignore",
    // Through the prober's logger, never straight onto its stdout or stderr: a module's
    // console.log becomes a log line that names the inventory.
    stdout: "pipe",
    stderr: "pipe",
    ipc: (message: InventoryMessage) => {
      if (message?.kind === "ready") proc.send({ kind: "start", spec } satisfies InventoryCommand);
      onMessage(message);
    },
    onExit: (_p, code, signal) => end(signal ? `its process was killed by ${signal}` : `its process exited with status ${code}`),
  });
  void Bun.write(`/proc/${proc.pid}/oom_score_adj`, "1000").catch(() => undefined);
  void readLines(proc.stdout, (line) => onOutput?.("stdout", line));
  void readLines(proc.stderr, (line) => onOutput?.("stderr", line));
  watch = setInterval(() => {
    const rss = residentBytes(proc.pid);
    if (rss > CHILD_MAX_RSS_BYTES) {
      proc.kill("SIGKILL");
      end(`its process used ${Math.round(rss / 2 ** 20)} MiB, over the ${CHILD_MAX_RSS_BYTES / 2 ** 20} MiB ceiling`);
    }
  }, RSS_CHECK_MS);
  watch.unref?.();
  return {
    send: (command) => {
      try {
        proc.send(command);
      } catch {
        // Already gone: onExit says so.
      }
    },
    kill: () => {
      ended = true;
      if (watch) clearInterval(watch);
      proc.kill("SIGKILL");
    },
  };
};

const RSS_CHECK_MS = 250;

/** A line of a child's output longer than this is logged in pieces of this length. */
const OUTPUT_LINE_MAX = 4096;

/**
 * Calls `onLine` with each non-empty line of `stream` (without its newline), the last one even
 * unterminated; a line longer than OUTPUT_LINE_MAX is passed on in pieces rather than held.
 */
async function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let partial = "";
  const emit = (line: string) => {
    for (let at = 0; at < line.length; at += OUTPUT_LINE_MAX) onLine(line.slice(at, at + OUTPUT_LINE_MAX));
  };
  try {
    for await (const chunk of stream) {
      const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
      partial = lines.pop()!;
      for (const line of lines) emit(line);
      while (partial.length >= OUTPUT_LINE_MAX) {
        onLine(partial.slice(0, OUTPUT_LINE_MAX));
        partial = partial.slice(OUTPUT_LINE_MAX);
      }
    }
  } catch {
    // The process is gone: what it wrote until then has been passed on.
  }
  emit(partial + decoder.decode());
}

/** VmRSS of a process, 0 when it cannot be read (gone). */
function residentBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Memory ceiling of a custom module's process. */
export const CHILD_MAX_RSS_BYTES = 512 * 1024 * 1024;

/** Test seams; the defaults are what the daemon runs with. */
export interface SupervisorOptions {
  /** How each inventory is isolated: a Worker for built-ins, a child process for modules. */
  launch?: (spec: InventorySpec) => Launch;
  now?: () => number;
  heartbeatTimeoutMs?: number;
  minBackoffMs?: number;
}

export class InventorySupervisor {
  readonly #slots = new Map<string, Slot>();
  readonly #watchdog: ReturnType<typeof setInterval>;
  #version = 0;

  readonly #launch: (spec: InventorySpec) => Launch;
  readonly #now: () => number;
  readonly #heartbeatTimeoutMs: number;
  readonly #minBackoffMs: number;

  constructor(
    private readonly log: Logger,
    private readonly hooks: SupervisorHooks,
    options: SupervisorOptions = {},
  ) {
    this.#launch = options.launch ?? ((spec) => (spec.kind === "module" ? launchChild : launchWorker));
    this.#now = options.now ?? Date.now;
    this.#heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS;
    this.#minBackoffMs = options.minBackoffMs ?? MIN_BACKOFF_MS;
    this.#watchdog = setInterval(() => this.#checkHeartbeats(), Math.min(5_000, this.#heartbeatTimeoutMs / 3));
    this.#watchdog.unref?.();
  }

  /** Bumped whenever a list is accepted or an inventory with a list removed: tells a caller the lists changed. */
  get version(): number {
    return this.#version;
  }

  /**
   * Follows the wanted set: starts new inventories, stops removed ones, restarts changed ones.
   * An unchanged inventory keeps running (and its list).
   */
  apply(specs: readonly InventorySpec[]): void {
    const wanted = new Map(specs.map((s) => [s.name, s]));
    for (const [name, slot] of this.#slots) {
      const spec = wanted.get(name);
      if (!spec || JSON.stringify(spec) !== slot.key) this.#remove(slot, spec ? "its settings changed" : "it was removed");
    }
    for (const spec of specs) {
      if (this.#slots.has(spec.name)) continue;
      const slot: Slot = {
        spec,
        key: JSON.stringify(spec),
        process: null,
        failures: 0,
        restartTimer: null,
        startedAt: 0,
        lastBeat: 0,
        list: null,
        lastError: null,
        removed: false,
        generation: 0,
      };
      this.#slots.set(spec.name, slot);
      this.#start(slot);
    }
  }

  /** The last good list of each inventory that has published one. */
  lists(): ReadonlyMap<string, InventoryList> {
    const out = new Map<string, InventoryList>();
    for (const [name, slot] of this.#slots) if (slot.list) out.set(name, slot.list);
    return out;
  }

  /** Names of the inventories running or waiting to restart. */
  names(): string[] {
    return [...this.#slots.keys()];
  }

  /** Stops every inventory; resolves when they are all down. */
  async stop(): Promise<void> {
    clearInterval(this.#watchdog);
    const slots = [...this.#slots.values()];
    const running = slots.flatMap((s) => (s.process ? [s.process] : []));
    for (const slot of slots) this.#remove(slot, "the prober is stopping", false);
    // A short grace: the API Worker closes its listener, a module its connections.
    if (running.length > 0) await Bun.sleep(300);
    for (const proc of running) proc.kill();
  }

  #start(slot: Slot): void {
    slot.restartTimer = null;
    if (slot.removed) return;
    const { spec } = slot;
    slot.startedAt = this.#now();
    slot.lastBeat = slot.startedAt;
    const fields = { inventory: spec.name, kind: spec.kind, module: spec.modulePath };
    if (spec.refused) {
      // Not started, so not retried either: a reload plans it afresh once its files are fixed.
      this.#error(slot, spec.refused);
      return;
    }
    // Messages of a process that was replaced meanwhile are dropped: `generation` tells them apart.
    const generation = ++slot.generation;
    const current = () => slot.generation === generation;
    try {
      slot.process = this.#launch(spec)(
        spec,
        (message) => current() && this.#onMessage(slot, message),
        (reason) => current() && this.#failed(slot, `stopped: ${reason}`),
        // Even a replaced process's last words (what it printed as it crashed) are logged.
        (stream, line) => {
          const where = { inventory: spec.name, stream };
          if (stream === "stderr") this.log.warning(line, where);
          else this.log.info(line, where);
        },
      );
      this.log.info("inventory started", fields);
    } catch (e) {
      slot.process = null;
      this.#failed(slot, `cannot start: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  #onMessage(slot: Slot, message: InventoryMessage): void {
    if (slot.removed || typeof message !== "object" || message === null) return;
    const name = slot.spec.name;
    slot.lastBeat = this.#now();
    switch (message.kind) {
      case "heartbeat":
      case "ready":
        return;
      case "log": {
        const log = this.log;
        const fields: LogFields = { ...message.fields, inventory: name };
        const text = String(message.message);
        if (message.level === "DEBUG") log.debug(text, fields);
        else if (message.level === "INFO") log.info(text, fields);
        else if (message.level === "WARNING") log.warning(text, fields);
        else if (message.level === "ERROR") log.error(text, fields);
        else if (message.level === "CRITICAL") log.critical(text, fields);
        return;
      }
      case "error":
        this.#error(slot, String(message.message), message.fields);
        return;
      case "publish":
        this.#accept(slot, message.targets);
        return;
      case "failed":
        this.#failed(slot, `failed: ${message.message}`);
        return;
      default:
        this.#error(slot, "sent a message of unknown kind");
    }
  }

  #accept(slot: Slot, targets: unknown): void {
    const checked = validateValue(InventoryListSchema, targets);
    if (!checked.ok) {
      const shown = checked.problems.slice(0, PROBLEMS_SHOWN).map(formatProblem).join("; ");
      const more = checked.problems.length > PROBLEMS_SHOWN ? ` (and ${checked.problems.length - PROBLEMS_SHOWN} more)` : "";
      this.#error(slot, `published a list that is not valid, the last good one stays: ${shown}${more}`);
      return;
    }
    const first = slot.list === null;
    slot.list = { targets: checked.value, receivedAt: this.#now() };
    slot.lastError = null;
    this.#version++;
    const fields = { inventory: slot.spec.name, targets: checked.value.length };
    if (first) this.log.info("inventory published its targets", fields);
    else this.log.debug("inventory published its targets", fields);
  }

  /** A recovered failure: logged (once while it repeats) and counted. */
  #error(slot: Slot, text: string, fields?: LogFields): void {
    this.hooks.onError(slot.spec.name);
    if (slot.lastError === text) return;
    slot.lastError = text;
    this.log.error(text, { ...fields, inventory: slot.spec.name });
  }

  /** The inventory is down: counted, and restarted after the backoff. Its last good list stays. */
  #failed(slot: Slot, why: string): void {
    if (slot.removed) return;
    slot.process?.kill();
    slot.process = null;
    if (slot.restartTimer) return;
    slot.generation++;
    if (this.#now() - slot.startedAt >= HEALTHY_AFTER_MS) slot.failures = 0;
    slot.failures++;
    const delay = Math.min(MAX_BACKOFF_MS, this.#minBackoffMs * 2 ** (slot.failures - 1));
    this.hooks.onError(slot.spec.name);
    this.log.error(`inventory ${why}; restarting it, its last good list stays in use`, {
      inventory: slot.spec.name,
      restart_in_s: delay / 1000,
      failures_in_a_row: slot.failures,
    });
    slot.restartTimer = setTimeout(() => this.#start(slot), delay);
  }

  #checkHeartbeats(): void {
    const now = this.#now();
    for (const slot of this.#slots.values()) {
      if (slot.process && now - slot.lastBeat > this.#heartbeatTimeoutMs) {
        this.#failed(slot, `hung (no sign of life for ${((now - slot.lastBeat) / 1000).toFixed(1)} s)`);
      }
    }
  }

  #remove(slot: Slot, why: string, log = true): void {
    slot.removed = true;
    if (slot.restartTimer) clearTimeout(slot.restartTimer);
    const proc = slot.process;
    slot.process = null;
    if (proc) {
      proc.send({ kind: "stop" });
      setTimeout(() => proc.kill(), STOP_GRACE_MS).unref?.();
    }
    this.#slots.delete(slot.spec.name);
    if (slot.list) this.#version++;
    if (log) this.log.info(`inventory stopped: ${why}`, { inventory: slot.spec.name });
  }
}
