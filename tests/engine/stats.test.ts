import { expect, test } from "bun:test";
import { pathHealth, percentile } from "../../src/engine/stats.ts";

test("percentile: k = (n - 1) * p, interpolated between neighbours", () => {
  const v = [1, 2, 3, 4];
  expect(percentile(v, 50)).toBe(2.5); // k = 1.5
  expect(percentile(v, 100)).toBe(4);
  expect(percentile(v, 0)).toBe(1);
  expect(percentile([1, 2, 3, 4, 5], 50)).toBe(3); // k = 2, whole
  expect(percentile([10, 20], 95)).toBeCloseTo(19.5, 12);
});

test("percentile of no sample is 0, of one sample that sample", () => {
  expect(percentile([], 95)).toBe(0);
  expect(percentile([7], 95)).toBe(7);
});

test("a path is down after three or more probes all lost; the worst path's ratio is kept", () => {
  const h = pathHealth([
    { srcIndex: 0, srcPort: 65000, sent: 4, lost: 0 },
    { srcIndex: 0, srcPort: 65001, sent: 4, lost: 4 },
    { srcIndex: 0, srcPort: 65002, sent: 2, lost: 2 },
    { srcIndex: 0, srcPort: 65003, sent: 4, lost: 1 },
  ]);
  expect(h.pathsDown).toBe(1);
  expect(h.worstLossRatio).toBe(1);
});
