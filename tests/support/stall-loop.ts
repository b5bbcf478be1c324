/**
 * Preloaded into a daemon under test (`BUN_OPTIONS=--preload THIS`, with
 * NETPROBIFY_TEST_STALL_FILE=PATH): while PATH exists, each batch waits before it starts, so the
 * main loop ends no iteration until the file goes. The daemon's own code runs unchanged: this
 * replaces WorkerPool.prototype.run in the one module instance the daemon imports, as a Worker
 * that never answers would hold the loop if the pool had no timeout of its own.
 *
 * The two variables are removed from this process's environment, so neither the engine Workers
 * nor the inventories' processes load this file again.
 */
import { existsSync } from "node:fs";

const stallFile = process.env.NETPROBIFY_TEST_STALL_FILE;
delete process.env.NETPROBIFY_TEST_STALL_FILE;
delete process.env.BUN_OPTIONS;

if (stallFile) {
  const { WorkerPool } = await import("../../src/daemon/pool.ts");
  const run = WorkerPool.prototype.run;
  WorkerPool.prototype.run = async function (this: InstanceType<typeof WorkerPool>, ...args: Parameters<typeof run>) {
    while (existsSync(stallFile)) await Bun.sleep(20);
    return run.apply(this, args);
  };
}
