import { expect, test } from "bun:test";
import { addPathHealth, pathHealth, paths, percentile } from "../../src/engine/stats.ts";
import { emptyBatchStats, SLOT_ANSWERED, SLOT_LOST } from "../../src/engine/probe-engine.ts";

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

test("addPathHealth agrees with pathHealth(paths()) on seeded random batches", () => {
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let round = 0; round < 50; round++) {
    const n = 1 + Math.floor(rnd() * 400);
    const ports = 1 + Math.floor(rnd() * 40);
    const srcs = 1 + Math.floor(rnd() * 3);
    const r = {
      targetStart: new Int32Array([0, n]),
      status: Uint8Array.from({ length: n }, () => (rnd() < 0.3 ? SLOT_LOST : SLOT_ANSWERED)),
      reply: new Uint8Array(n),
      rttNs: new Float64Array(n),
      srcPort: Uint16Array.from({ length: n }, (_, k) => 65000 + (Math.floor(k / srcs) % ports)),
      srcIndex: Uint16Array.from({ length: n }, (_, k) => k % srcs),
      matchFail: new Uint32Array(1),
      portMismatch: new Uint32Array(1),
      timeOutOfOrder: new Uint32Array(1),
      unroutable: [""],
      stats: emptyBatchStats(),
    };
    const acc = { worstLossRatio: 0, pathsDown: 0 };
    addPathHealth(r, 0, n, acc);
    expect(acc).toEqual(pathHealth(paths(r, 0, n)));
  }
});
