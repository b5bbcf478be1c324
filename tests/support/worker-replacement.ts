/**
 * Engine Workers replaced on purpose: a WorkerPool in this process whose every batch overruns a
 * 30 ms limit, so the pool stops that Worker (batch aborted, handles released) and starts, and
 * counts, another at the next batch. Each round is one such replacement. Shared by
 * tests/privileged/worker-replacement.test.ts (200 rounds, asserted) and scripts/soak.ts (1,000
 * by default, reported in its table).
 *
 * Needs root (the engine opens a capture handle). Measures this process: open fds, RSS and the
 * entries of a private $TMPDIR, each after a full garbage collection.
 */
import { readdirSync, readFileSync } from "node:fs";
import { WorkerPool, type PoolOptions } from "../../src/daemon/pool.ts";
import type { WorkerJob } from "../../src/daemon/plan.ts";
import type { ProbeTarget } from "../../src/engine/probe-engine.ts";
import { recordLog, type LogLine } from "./log-recorder.ts";

const OPTIONS: PoolOptions = { l3RawSocket: false, maxProbesPerSecond: 100_000, captureBufferBytes: 16 << 20 };
/** The batch's time limit: far shorter than the batch. */
const LIMIT_MS = 30;

/** Three echo requests to loopback a second apart: a batch of about 2.3 s, cut at 30 ms. */
const slow: ProbeTarget = {
  type: "ICMPping",
  family: 4,
  dst: "127.0.0.1",
  dstPort: 0,
  srcAddresses: null,
  srcPortA: 0,
  srcPortZ: 0,
  dscp: 0,
  dontFragment: true,
  ipPayloadSize: null,
  count: 3,
  intervalMs: 1000,
  startMs: 0,
  timeoutMs: 300,
};
const job: WorkerJob = { targets: [slow], seriesOf: [0], series: [0] };

export interface ProcessLevel {
  fds: number;
  rssBytes: number;
  /** Entries directly in the private $TMPDIR. */
  tmpFiles: number;
  /** Worker threads still there when measured (more than expected: one did not exit in 2 s). */
  workerThreads: number;
}

export interface ReplacementReport {
  rounds: number;
  warmUp: number;
  /** The pool started, before the warm-up rounds. */
  start: ProcessLevel;
  afterWarmUp: ProcessLevel;
  end: ProcessLevel;
  /** Every `sampleEvery` rounds after the warm-up, from round 0 (= afterWarmUp) to the last. */
  samples: { round: number; level: ProcessLevel }[];
  /** Counted by the pool's events over the rounds after the warm-up. */
  restarts: number;
  timeouts: number;
  /** Batches, warm-up included, that returned figures instead of overrunning (should be none). */
  completedBatches: number;
  /** "engine Worker did not release its handles in time" lines. */
  unreleased: LogLine[];
  seconds: number;
}

export interface ReplacementOptions {
  rounds: number;
  warmUp?: number;
  /** A directory of the caller's own: $TMPDIR while the rounds run (restored after). */
  tmpDir: string;
  sampleEvery?: number;
  /** Called after each sample, for progress lines. */
  onSample?: (round: number, level: ProcessLevel) => void;
}

/** Threads of this process named "Worker" (Bun's Worker threads). */
function workerThreads(): number {
  let n = 0;
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim() === "Worker") n++;
    } catch {
      // ended meanwhile
    }
  }
  return n;
}

/**
 * The process's level once at most `workers` Worker threads are left. A retired Worker's thread
 * is still exiting for a few milliseconds after the pool has let it go, holding its event loop's
 * epoll and eventfd descriptors: measured then, fds read 2 more at random.
 */
async function level(tmpDir: string, workers: number): Promise<ProcessLevel> {
  for (let waited = 0; workerThreads() > workers && waited < 2000; waited += 5) await Bun.sleep(5);
  Bun.gc(true);
  return {
    fds: readdirSync("/proc/self/fd").length,
    rssBytes: Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024,
    tmpFiles: readdirSync(tmpDir).length,
    workerThreads: workerThreads(),
  };
}

/** Runs warm-up rounds, then `rounds` measured ones; the pool is closed whatever happens. */
export async function replaceWorkers(opts: ReplacementOptions): Promise<ReplacementReport> {
  const warmUp = opts.warmUp ?? 10;
  const sampleEvery = opts.sampleEvery ?? Math.max(1, Math.floor(opts.rounds / 20));
  const savedTmpdir = process.env.TMPDIR;
  // Whatever the Workers write to $TMPDIR (a compiled binary extracts embedded files there) lands
  // in the caller's directory, so other processes' files do not count.
  process.env.TMPDIR = opts.tmpDir;
  const { log, lines } = recordLog();
  let restarts = 0;
  let timeouts = 0;
  let completedBatches = 0;
  const pool = new WorkerPool(OPTIONS, log, { onRestart: () => restarts++, onTimeout: () => timeouts++ });
  const t0 = performance.now();
  try {
    await pool.start(1, OPTIONS);
    const start = await level(opts.tmpDir, 1); // the pool's first Worker
    /** One batch that overruns its limit, then the wait for the Worker it ended to be gone. */
    const overrun = async () => {
      const [result] = await pool.run([job], [50], [], LIMIT_MS);
      if (result !== null) completedBatches++;
      await pool.resize(1); // waits for Workers being retired
    };
    for (let i = 0; i < warmUp; i++) await overrun();
    const afterWarmUp = await level(opts.tmpDir, 0);
    const base = { restarts, timeouts };
    const samples = [{ round: 0, level: afterWarmUp }];
    opts.onSample?.(0, afterWarmUp);
    let end = afterWarmUp;
    for (let i = 1; i <= opts.rounds; i++) {
      await overrun();
      if (i % sampleEvery === 0 || i === opts.rounds) {
        end = await level(opts.tmpDir, 0);
        samples.push({ round: i, level: end });
        opts.onSample?.(i, end);
      }
    }
    return {
      rounds: opts.rounds,
      warmUp,
      start,
      afterWarmUp,
      end,
      samples,
      restarts: restarts - base.restarts,
      timeouts: timeouts - base.timeouts,
      completedBatches,
      unreleased: lines.filter((l) => l.msg.includes("did not release its handles")),
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await pool.close();
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
  }
}
