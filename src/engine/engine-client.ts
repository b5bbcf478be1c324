/**
 * The other side of engine-worker.ts: starts the Worker and turns its messages into promises.
 * A Worker that dies rejects what it had in hand; the caller decides whether to start another.
 */
import { closeSync, writeSync } from "node:fs";
import type { BatchResult, BatchStats, EngineOptions, ProbeTarget } from "./probe-engine.ts";
import type { SeriesSummary } from "./stats.ts";
import { workerUrl } from "../worker-url.ts";

/**
 * How long close() waits for the Worker to release its handles. An aborted batch returns within
 * one poll (the eventfd wakes it); only a Worker stuck elsewhere runs into this.
 */
const CLOSE_GRACE_MS = 3000;

/** What an eventfd write adds: 1, as 8 bytes in host (little-endian) order. */
const EVENTFD_ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

/** Asks the Worker to reduce a batch to per-series figures instead of returning every slot. */
export interface SeriesRequest {
  /** Series index of each target. */
  seriesOf: number[];
  seriesCount: number;
  percentiles: number[];
  buckets: number[];
}

export interface SeriesResult {
  series: SeriesSummary[];
  stats: BatchStats;
}

export type EngineRequest =
  | { type: "open"; options: Omit<EngineOptions, "wakeFd"> }
  | { type: "run"; id: number; targets: ProbeTarget[] }
  | { type: "series"; id: number; targets: ProbeTarget[]; request: SeriesRequest }
  | { type: "close" };

export type EngineReply =
  /** wakeFd: the eventfd the Worker's engine polls beside its capture (see EngineOptions.wakeFd). */
  | { type: "opened"; libpcap: string; wakeFd: number }
  | { type: "result"; id: number; result: BatchResult }
  | { type: "series"; id: number; result: SeriesResult }
  | { type: "log"; message: string }
  | { type: "error"; id: number | undefined; name: string; message: string }
  | { type: "closed" };

/** An error raised inside the Worker, with the original error's name (LibpcapUnavailable, PcapError...). */
export class EngineWorkerError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

type Waiter = { resolve: (r: BatchResult | SeriesResult) => void; reject: (e: Error) => void };

export class EngineClient {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiter>();
  #nextId = 1;
  #opened: { resolve: (v: string) => void; reject: (e: Error) => void } | null = null;
  #closed: (() => void) | null = null;
  #dead: Error | null = null;
  /** Shared with the engine: a batch in progress stops when asked (see EngineOptions.abortFlag). */
  readonly #abortFlag = new Int32Array(new SharedArrayBuffer(4));
  /**
   * The eventfd that wakes the engine's wait, opened by the Worker (an fd is the whole process's)
   * and closed here once the Worker is gone: signalled and closed with plain write and close.
   */
  #wakeFd = -1;
  #closing: Promise<boolean> | null = null;
  /** abort() was called: the shared flag stays set, so no batch can run to its end any more. */
  #aborted = false;

  private constructor(private readonly onLog: (message: string) => void) {
    // smol: JavaScriptCore's small-heap settings; the engine keeps its per-probe state in typed
    // arrays and allocates little, so a large heap would only hold garbage longer.
    this.#worker = new Worker(workerUrl("engine/engine-worker.ts"), { smol: true });
    this.#worker.onmessage = (event: MessageEvent<EngineReply>) => this.#onMessage(event.data);
    this.#worker.onerror = (event) => this.#die(new EngineWorkerError("WorkerCrashed", event.message));
    this.#worker.addEventListener("close", () => this.#die(new EngineWorkerError("WorkerCrashed", "engine Worker exited")));
  }

  /** Starts a Worker and opens its engine; resolves with the libpcap version it loaded. */
  static async start(options: Omit<EngineOptions, "abortFlag" | "wakeFd">, onLog: (message: string) => void = () => {}): Promise<{ client: EngineClient; libpcap: string }> {
    const client = new EngineClient(onLog);
    try {
      const libpcap = await new Promise<string>((resolve, reject) => {
        client.#opened = { resolve, reject };
        client.#post({ type: "open", options: { ...options, abortFlag: client.#abortFlag } });
      });
      return { client, libpcap };
    } catch (e) {
      await client.close();
      throw e;
    }
  }

  /** One batch, every slot's outcome returned. */
  run(targets: ProbeTarget[]): Promise<BatchResult> {
    const id = this.#nextId++;
    return this.#request(id, { type: "run", id, targets }) as Promise<BatchResult>;
  }

  /** One batch, reduced in the Worker to per-series figures: one small message per batch. */
  runSeries(targets: ProbeTarget[], request: SeriesRequest): Promise<SeriesResult> {
    const id = this.#nextId++;
    return this.#request(id, { type: "series", id, targets, request }) as Promise<SeriesResult>;
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  /**
   * Ends the batch in progress now (`probe` interrupted by Ctrl-C): its promise resolves with
   * what was measured so far, the probes not sent yet SLOT_UNSENT, neither sent nor lost. The
   * engine is then spent: a later batch would end at once, so run() refuses it.
   */
  abort(): void {
    if (this.#aborted || this.#dead) return;
    this.#aborted = true;
    Atomics.store(this.#abortFlag, 0, 1);
    if (this.#wakeFd >= 0) writeSync(this.#wakeFd, EVENTFD_ONE);
  }

  #request(id: number, message: EngineRequest): Promise<BatchResult | SeriesResult> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (this.#aborted) return Promise.reject(new EngineWorkerError("Aborted", "the engine was aborted: it runs no further batch"));
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#post(message);
    });
  }

  /**
   * Stops the batch in progress if any, has the engine release its pcap handles and sockets, then
   * ends the Worker. What was waiting is rejected at once. Resolves true when the Worker released
   * everything itself, false when it had to be terminated without (stuck past the grace period,
   * or already dead). Idempotent.
   */
  close(): Promise<boolean> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<boolean> {
    const wasAlive = this.#dead === null;
    this.#die(new EngineWorkerError("Closed", "engine is closed"));
    let released = false;
    if (wasAlive) {
      Atomics.store(this.#abortFlag, 0, 1);
      if (this.#wakeFd >= 0) writeSync(this.#wakeFd, EVENTFD_ONE);
      released = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), CLOSE_GRACE_MS);
        this.#closed = () => {
          clearTimeout(timer);
          resolve(true);
        };
        this.#post({ type: "close" });
      });
    }
    this.#worker.terminate();
    if (this.#wakeFd >= 0) closeSync(this.#wakeFd);
    this.#wakeFd = -1;
    return released;
  }

  #post(message: EngineRequest): void {
    this.#worker.postMessage(message);
  }

  #onMessage(m: EngineReply): void {
    switch (m.type) {
      case "opened":
        this.#wakeFd = m.wakeFd;
        this.#opened?.resolve(m.libpcap);
        this.#opened = null;
        return;
      case "result":
      case "series": {
        const w = this.#waiting.get(m.id);
        this.#waiting.delete(m.id);
        w?.resolve(m.result);
        return;
      }
      case "log":
        this.onLog(m.message);
        return;
      case "error": {
        const err = new EngineWorkerError(m.name, m.message);
        if (m.id === undefined) {
          this.#opened?.reject(err);
          this.#opened = null;
          return;
        }
        const w = this.#waiting.get(m.id);
        this.#waiting.delete(m.id);
        w?.reject(err);
        return;
      }
      case "closed":
        this.#closed?.();
        return;
    }
  }

  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    this.#opened?.reject(err);
    for (const w of this.#waiting.values()) w.reject(err);
    this.#waiting.clear();
  }
}
