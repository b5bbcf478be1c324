/**
 * Replacing engine Workers must give back everything the old one held: its capture ring (a
 * mapping of captureBufferBytes), its pcap, raw and netlink sockets, and its count in
 * netprobify_worker_restarts_total must be one per replacement. 200 batches overrun their time limit
 * on purpose; after each, the pool has stopped the Worker and starts another at the next batch
 * (the loop is tests/support/worker-replacement.ts, which scripts/soak.ts runs 1,000 times).
 *
 * Needs root (the engine opens a capture handle).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireRoot } from "../support/testnet.ts";
import { replaceWorkers } from "../support/worker-replacement.ts";

const ROUNDS = Number(process.env.NETPROBIFY_REPLACEMENT_ROUNDS ?? 200);
const WARM_UP = 10;
const privateTmp = mkdtempSync(join(tmpdir(), "netprobify-replacement-"));

afterAll(() => rmSync(privateTmp, { recursive: true, force: true }));

test(`${ROUNDS} Workers replaced after overrunning their time limit: fds, $TMPDIR and RSS back to the level after warm-up; each replacement counted once`, async () => {
  requireRoot();
  const r = await replaceWorkers({ rounds: ROUNDS, warmUp: WARM_UP, tmpDir: privateTmp });
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log(
    `replacements: ${ROUNDS}; fds ${r.afterWarmUp.fds} -> ${r.end.fds}; RSS ${mib(r.afterWarmUp.rssBytes)} -> ${mib(r.end.rssBytes)} MiB; ` +
      `tmp files ${r.afterWarmUp.tmpFiles} -> ${r.end.tmpFiles}`,
  );
  // Every batch, warm-up included, overran its limit.
  expect(r.completedBatches).toBe(0);
  // Measured once the last retired Worker's thread has exited (see level() there).
  expect(r.end.workerThreads).toBe(0);
  expect(r.end.fds).toBe(r.afterWarmUp.fds);
  expect(r.end.tmpFiles).toBe(r.afterWarmUp.tmpFiles);
  expect(r.end.rssBytes - r.afterWarmUp.rssBytes).toBeLessThan(20 * 2 ** 20);
  expect(r.timeouts).toBe(ROUNDS);
  expect(r.restarts).toBe(ROUNDS);
  expect(r.unreleased).toEqual([]);
}, 240_000);
