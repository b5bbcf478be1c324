/**
 * A child's peak memory as the benchmarks report it: its own, not what its parent held when it
 * forked (which the rusage maxrss of a child includes on Linux).
 */
import { expect, test } from "bun:test";
import { runMeasured } from "../../scripts/proc-stats.ts";

const MB = 1024 * 1024;

test("runMeasured: a small child beside a 300 MB parent reads small; a child that fills 200 MB reads at least that", async () => {
  const hold = Buffer.alloc(300 * MB, 1);
  // What the benchmarks read before: the child's rusage maxrss carries the parent's 300 MB.
  const sync = Bun.spawnSync(["sleep", "0.05"]);
  expect(sync.resourceUsage.maxRSS / MB).toBeGreaterThan(250);
  const small = await runMeasured(["sleep", "0.05"]);
  expect(small.exitCode).toBe(0);
  expect(small.peakMb).toBeGreaterThan(0);
  expect(small.peakMb).toBeLessThan(50);
  const big = await runMeasured(["python3", "-c", "import time; x = b'\\x01' * (200 * 1024 * 1024); time.sleep(0.1)"]);
  expect(big.exitCode).toBe(0);
  expect(big.peakMb).toBeGreaterThan(200);
  expect(big.peakMb).toBeLessThan(300);
  expect(hold[0]).toBe(1);
});

test("runMeasured: output, exit code, CPU, and a timeout that kills", async () => {
  const r = await runMeasured(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  expect({ code: r.exitCode, out: r.stdout, err: r.stderr, killed: r.killed }).toEqual({ code: 3, out: "out\n", err: "err\n", killed: false });
  expect(r.cpuS).toBeGreaterThanOrEqual(0);
  const slow = await runMeasured(["sleep", "5"], { timeoutS: 0.2 });
  expect(slow.killed).toBe(true);
  expect(slow.exitCode).toBeNull();
  expect(slow.wallS).toBeLessThan(4);
});
