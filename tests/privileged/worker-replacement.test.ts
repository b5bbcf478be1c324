/**
 * Replacing engine Workers must give back everything the old one held: its capture ring (a
 * mapping of captureBufferBytes), its pcap, raw and netlink sockets, and its count in
 * app_worker_restarts_total must be one per replacement. 200 batches overrun their time limit
 * on purpose; after each, the pool has stopped the Worker and starts another at the next batch.
 *
 * Needs root (the engine opens a capture handle).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorkerPool, type PoolOptions } from "../../src/daemon/pool.ts";
import type { WorkerJob } from "../../src/daemon/plan.ts";
import type { ProbeTarget } from "../../src/engine/probe-engine.ts";
import { recordLog } from "../support/log-recorder.ts";
import { requireRoot } from "../support/testnet.ts";

const ROUNDS = Number(process.env.NETPROBIFY_REPLACEMENT_ROUNDS ?? 200);
const WARM_UP = 10;
const OPTIONS: PoolOptions = { l3RawSocket: false, maxProbesPerSecond: 100_000, captureBufferBytes: 16 << 20 };

/** Three echo requests to loopback a second apart: a batch of about 2.3 s, cut at 30 ms. */
const slow: ProbeTarget = {
  kind: "icmp",
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

const openFds = () => readdirSync("/proc/self/fd").length;
const rssBytes = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
// Whatever the Workers write to $TMPDIR (a compiled binary extracts embedded files there) lands
// in a directory of this test's own, so other processes' files do not count.
const privateTmp = mkdtempSync(join(tmpdir(), "netprobify-replacement-"));
const tmpFiles = () => readdirSync(privateTmp).length;

let pool: WorkerPool;
let restarts = 0;
let timeouts = 0;
const { log, lines } = recordLog();

beforeAll(async () => {
  requireRoot();
  process.env.TMPDIR = privateTmp;
  pool = new WorkerPool(OPTIONS, log, { onRestart: () => restarts++, onTimeout: () => timeouts++ });
  await pool.start(1, OPTIONS);
});

afterAll(async () => {
  await pool?.close();
  rmSync(privateTmp, { recursive: true, force: true });
});

/** One batch that overruns its limit, then the wait for the Worker it ended to be gone. */
async function overrun(): Promise<void> {
  const [result] = await pool.run([job], [50], [], 30);
  expect(result).toBeNull();
  await pool.resize(1); // waits for Workers being retired
}

test(`${ROUNDS} Workers replaced after overrunning their time limit: fds, $TMPDIR and RSS back to the level after warm-up; each replacement counted once`, async () => {
  for (let i = 0; i < WARM_UP; i++) await overrun();
  Bun.gc(true);
  const base = { fds: openFds(), rss: rssBytes(), tmp: tmpFiles(), restarts, timeouts };
  for (let i = 0; i < ROUNDS; i++) await overrun();
  Bun.gc(true);
  const end = { fds: openFds(), rss: rssBytes(), tmp: tmpFiles() };
  console.log(`replacements: ${ROUNDS}; fds ${base.fds} -> ${end.fds}; RSS ${(base.rss / 2 ** 20).toFixed(1)} -> ${(end.rss / 2 ** 20).toFixed(1)} MiB; tmp files ${base.tmp} -> ${end.tmp}`);
  expect(end.fds).toBe(base.fds);
  expect(end.tmp).toBe(base.tmp);
  expect(end.rss - base.rss).toBeLessThan(20 * 2 ** 20);
  expect(timeouts - base.timeouts).toBe(ROUNDS);
  expect(restarts - base.restarts).toBe(ROUNDS);
  expect(lines.filter((l) => l.msg.includes("did not release its handles"))).toEqual([]);
}, 240_000);
