/**
 * How a benchmark tells other work on the machine from its own: processes outside its tree are
 * counted (their reaped children too), its own descendants and kernel threads are not.
 */
import { afterEach, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { otherWork, startRun, underLoad } from "../../scripts/bench-context.ts";
import { otherProcessCpu } from "../../scripts/proc-stats.ts";

const spawned: Subprocess[] = [];
afterEach(() => {
  for (const p of spawned.splice(0)) p.kill("SIGKILL");
});
const spawn = (script: string) => {
  const p = Bun.spawn(["sh", "-c", script], { stdout: "ignore", stderr: "ignore" });
  spawned.push(p);
  return p;
};

test("a busy process outside the tree is other work; the tree's own busy descendant is not", async () => {
  const busy = spawn("end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do :; done");
  const bench = spawn("sleep 30");
  const before = otherProcessCpu(bench.pid);
  await Bun.sleep(800);
  // Seen from `bench` (as if it were the benchmark), the busy sibling used CPU meanwhile.
  const after = otherProcessCpu(bench.pid);
  expect(after.has(busy.pid)).toBe(true);
  expect(after.get(busy.pid)! - (before.get(busy.pid) ?? 0)).toBeGreaterThan(0.3);
  expect(after.has(bench.pid)).toBe(false);
  // Seen from this test process, both are its own descendants: neither is other work.
  const mine = otherProcessCpu(process.pid);
  expect(mine.has(busy.pid)).toBe(false);
  expect(mine.has(process.pid)).toBe(false);
  // Kernel threads never count.
  expect(after.has(2)).toBe(false);
});

test("the run's verdict: under load when other work took more than a tenth of the machine", () => {
  const ctx = startRun("bench-test.ts", []);
  const other = otherWork(ctx);
  expect(other.cpuS).toBeGreaterThanOrEqual(0);
  expect(Number.isFinite(other.share)).toBe(true);
  expect(underLoad(0.05)).toBe(false);
  expect(underLoad(0.2)).toBe(true);
});
