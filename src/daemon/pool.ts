/**
 * nb_proc engine Workers sharing an iteration's targets. A Worker that dies or overruns the
 * global batch timeout is stopped (its batch aborted, its handles released), logged once and
 * replaced at its next batch, where the replacement is counted; its batch yields no figures (its
 * series keep their counters) and probing goes on in the others.
 */
import { EngineClient, type SeriesResult } from "../engine/engine-client.ts";
import type { Logger } from "../log.ts";
import { emptyBatchStats, IDENT_WINDOW_BITS } from "../engine/probe-engine.ts";
import type { WorkerJob } from "./plan.ts";
import { longTimeout } from "./timers.ts";

export interface PoolOptions {
  l3RawSocket: boolean;
  /** Global cap, shared evenly by the Workers. */
  maxProbesPerSecond: number;
  captureBufferBytes: number;
}

export interface PoolEvents {
  /** A Worker was started in place of one that died, timed out or failed a batch. */
  onRestart(): void;
  /** A batch overran the global timeout. */
  onTimeout(): void;
}

/**
 * Each Worker's identifiers start in their own 2^28 window, at a random place in its first half
 * so a restarted Worker does not reuse the sequence numbers of its predecessor's last batch.
 */
function identBase(index: number): number {
  const window = 2 ** IDENT_WINDOW_BITS;
  return ((index & 15) * window + Math.floor(Math.random() * (window / 2))) >>> 0;
}

export class WorkerPool {
  #clients: (EngineClient | null)[] = [];
  #options: PoolOptions;
  #closing = false;
  /** Workers being stopped in the background: close() and resize() wait for them. */
  readonly #retiring = new Set<Promise<void>>();
  libpcap = "";

  constructor(
    options: PoolOptions,
    private readonly log: Logger,
    private readonly events: PoolEvents,
  ) {
    this.#options = options;
  }

  /** Starts the first Worker now, so a missing libpcap or privilege fails at start-up. */
  async start(size: number, options: PoolOptions): Promise<void> {
    this.#options = options;
    await this.resize(size);
    const first = this.#clients[0] ?? (await this.#spawn(0));
    this.#clients[0] = first;
  }

  /** Follows nb_proc and the engine options; Workers whose options changed are replaced. */
  async resize(size: number, options?: PoolOptions): Promise<void> {
    const changed = options !== undefined && JSON.stringify(options) !== JSON.stringify(this.#options);
    if (options) this.#options = options;
    const doomed = changed ? this.#clients : this.#clients.slice(size);
    this.#clients = changed ? [] : this.#clients.slice(0, size);
    await Promise.all(doomed.map((c) => c?.close()));
    await this.#retired();
    while (this.#clients.length < size) this.#clients.push(null);
  }

  async #spawn(index: number): Promise<EngineClient> {
    const n = Math.max(1, this.#clients.length);
    const { client, libpcap } = await EngineClient.start(
      {
        captureBufferBytes: this.#options.captureBufferBytes,
        l3RawSocket: this.#options.l3RawSocket,
        maxProbesPerSecond: Math.max(1, Math.floor(this.#options.maxProbesPerSecond / n)),
        identBase: identBase(index),
      },
      (message) => this.log.info(message, { worker: index }),
    );
    this.libpcap = libpcap;
    return client;
  }

  /**
   * Runs job k on Worker k. Resolves with one entry per job: its figures, or null when its
   * Worker failed or overran `timeoutMs`.
   */
  async run(
    jobs: WorkerJob[],
    percentiles: number[],
    buckets: number[],
    timeoutMs: number,
  ): Promise<(SeriesResult | null)[]> {
    return Promise.all(
      jobs.map(async (job, k) => {
        if (job.targets.length === 0) return { series: [], stats: emptyBatchStats() };
        let client = this.#clients[k] ?? null;
        try {
          if (!client || !client.alive) {
            if (client) this.events.onRestart();
            client = await this.#spawn(k);
            this.#clients[k] = client;
          }
        } catch (e) {
          this.log.error("engine Worker cannot start: its targets are skipped this iteration", {
            worker: k,
            error: e instanceof Error ? e.message : String(e),
          });
          return null;
        }
        let timer: { cancel(): void } | undefined;
        const expired = new Promise<"timeout">((resolve) => (timer = longTimeout(() => resolve("timeout"), timeoutMs)));
        try {
          const r = await Promise.race([
            client.runSeries(job.targets, { seriesOf: job.seriesOf, seriesCount: job.series.length, percentiles, buckets }),
            expired,
          ]);
          if (r === "timeout") {
            this.log.error("batch exceeded the global timeout: Worker stopped and replaced", { worker: k, timeout_s: timeoutMs / 1000 });
            this.events.onTimeout();
            this.#retire(client, k);
            return null;
          }
          return r;
        } catch (e) {
          const err = e instanceof Error ? e : new Error(String(e));
          if (this.#closing) return null;
          this.log.error("engine Worker failed: it is replaced for the next iteration", { worker: k, error: `${err.name}: ${err.message}` });
          // A failed batch may have left the engine's handles broken: never reuse that Worker.
          this.#retire(client, k);
          return null;
        } finally {
          timer?.cancel();
        }
      }),
    );
  }

  /**
   * Stops a Worker in the background; it stays in its slot, no longer alive, so the next batch
   * there starts (and counts) its replacement.
   */
  #retire(client: EngineClient, k: number): void {
    const done = client.close().then((released) => {
      if (!released) this.log.error("engine Worker did not release its handles in time: terminated", { worker: k });
    });
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
  }

  async #retired(): Promise<void> {
    await Promise.all(this.#retiring);
  }

  async close(): Promise<void> {
    this.#closing = true;
    const all = this.#clients;
    this.#clients = [];
    await Promise.all(all.map((c) => c?.close()));
    await this.#retired();
  }
}
