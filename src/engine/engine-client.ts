/**
 * The other side of engine-worker.ts: starts the Worker and turns its messages into promises.
 * A Worker that dies rejects what it had in hand; the caller decides whether to start another.
 */
import type { BatchResult, EngineOptions, ProbeTarget } from "./probe-engine.ts";

export type EngineRequest =
  | { type: "open"; options: Omit<EngineOptions, "log"> }
  | { type: "run"; id: number; targets: ProbeTarget[] }
  | { type: "close" };

export type EngineReply =
  | { type: "opened"; libpcap: string }
  | { type: "result"; id: number; result: BatchResult }
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

/**
 * Where a Worker entry lives: inside the compiled binary, `bun build --compile` stores each extra
 * entrypoint under /$bunfs/root/ by its path relative to src/ (import.meta.url there names the
 * binary, not this file); from source, beside this module's directory.
 */
export function workerUrl(pathFromSrc: string): string {
  if (import.meta.url.includes("/$bunfs/")) return `/$bunfs/root/${pathFromSrc}`;
  return new URL(`../${pathFromSrc}`, import.meta.url).href;
}

type Waiter = { resolve: (r: BatchResult) => void; reject: (e: Error) => void };

export class EngineClient {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiter>();
  #nextId = 1;
  #opened: { resolve: (v: string) => void; reject: (e: Error) => void } | null = null;
  #closed: (() => void) | null = null;
  #dead: Error | null = null;

  private constructor(private readonly onLog: (message: string) => void) {
    this.#worker = new Worker(workerUrl("engine/engine-worker.ts"));
    this.#worker.onmessage = (event: MessageEvent<EngineReply>) => this.#onMessage(event.data);
    this.#worker.onerror = (event) => this.#die(new EngineWorkerError("WorkerCrashed", event.message));
    this.#worker.addEventListener("close", () => this.#die(new EngineWorkerError("WorkerCrashed", "engine Worker exited")));
  }

  /** Starts a Worker and opens its engine; resolves with the libpcap version it loaded. */
  static async start(options: Omit<EngineOptions, "log">, onLog: (message: string) => void = () => {}): Promise<{ client: EngineClient; libpcap: string }> {
    const client = new EngineClient(onLog);
    const libpcap = await new Promise<string>((resolve, reject) => {
      client.#opened = { resolve, reject };
      client.#post({ type: "open", options });
    });
    return { client, libpcap };
  }

  run(targets: ProbeTarget[]): Promise<BatchResult> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#post({ type: "run", id, targets });
    });
  }

  /** Closes the engine's pcap handles, then ends the Worker. */
  async close(): Promise<void> {
    if (this.#dead) return;
    await new Promise<void>((resolve) => {
      this.#closed = resolve;
      this.#post({ type: "close" });
      // A Worker stuck in a long poll still closes: it is ended after a bounded wait.
      setTimeout(resolve, 1000).unref();
    });
    this.#dead = new EngineWorkerError("Closed", "engine is closed");
    this.#worker.terminate();
  }

  #post(message: EngineRequest): void {
    this.#worker.postMessage(message);
  }

  #onMessage(m: EngineReply): void {
    switch (m.type) {
      case "opened":
        this.#opened?.resolve(m.libpcap);
        this.#opened = null;
        return;
      case "result": {
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
