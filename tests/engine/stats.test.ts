import { describe, expect, test } from "bun:test";
import { addPathHealth, pathHealth, paths, percentile, summarize, summarizeSeries } from "../../src/engine/stats.ts";
import { emptyBatchStats, SLOT_ANSWERED, SLOT_LOST, SLOT_UNSENT, type BatchResult } from "../../src/engine/probe-engine.ts";

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
      kind: new Uint8Array(1),
      status: Uint8Array.from({ length: n }, () => {
        const x = rnd();
        return x < 0.2 ? SLOT_LOST : x < 0.3 ? SLOT_UNSENT : SLOT_ANSWERED;
      }),
      reply: new Uint8Array(n),
      rttNs: new Float64Array(n),
      srcPort: Uint16Array.from({ length: n }, (_, k) => 65000 + (Math.floor(k / srcs) % ports)),
      srcIndex: Uint16Array.from({ length: n }, (_, k) => k % srcs),
      matchFail: new Uint32Array(1),
      portMismatch: new Uint32Array(1),
      timeOutOfOrder: new Uint32Array(1),
      unroutable: [""],
      ident: new Uint32Array(n),
      values: new Float64Array(0),
      valueWidth: 1,
      stats: emptyBatchStats(),
    };
    const acc = { worstLossRatio: 0, pathsDown: 0 };
    addPathHealth(r, 0, n, acc);
    expect(acc).toEqual(pathHealth(paths(r, 0, n)));
  }
});

/** A one-target batch with the given slot states, two source ports alternating. */
function batch(status: number[]): BatchResult {
  const n = status.length;
  return {
    targetStart: new Int32Array([0, n]),
    kind: new Uint8Array(1),
    status: Uint8Array.from(status),
    reply: new Uint8Array(n),
    rttNs: Float64Array.from(status, (s) => (s === SLOT_ANSWERED ? 1e6 : NaN)),
    srcPort: Uint16Array.from({ length: n }, (_, k) => 65000 + (k % 2)),
    srcIndex: new Uint16Array(n),
    matchFail: new Uint32Array(1),
    portMismatch: new Uint32Array(1),
    timeOutOfOrder: new Uint32Array(1),
    unroutable: [""],
    ident: new Uint32Array(n),
    values: new Float64Array(0),
    valueWidth: 1,
    stats: emptyBatchStats(),
  };
}

describe("a probe that never left (SLOT_UNSENT) is neither sent nor lost", () => {
  // Port 65000 carries slots 0, 2, 4, 6, 8; port 65001 slots 1, 3, 5, 7, 9. Slots 6..9 never
  // left (the interface went away mid-batch); of those that did, slot 1 was lost.
  const A = SLOT_ANSWERED;
  const L = SLOT_LOST;
  const U = SLOT_UNSENT;
  const r = batch([A, L, A, A, A, A, U, U, U, U]);

  test("summarize: 6 sent, 1 lost, 5 answered", () => {
    const s = summarize(r, 0, 10);
    expect({ sent: s.sent, answered: s.answered, lost: s.lost, lossRatio: s.lossRatio, rtts: s.rtts.length }).toEqual({
      sent: 6,
      answered: 5,
      lost: 1,
      lossRatio: 1 / 6,
      rtts: 5,
    });
  });

  test("summarizeSeries (what the metrics publish): 6 sent, 1 lost", () => {
    const [s] = summarizeSeries(r, [0], 1, [50], []);
    expect({ sent: s!.sent, lost: s!.lost, rttCount: s!.rttCount }).toEqual({ sent: 6, lost: 1, rttCount: 5 });
  });

  test("paths: unsent probes count on no path", () => {
    expect(paths(r, 0, 10).map((p) => [p.srcPort, p.sent, p.lost])).toEqual([
      [65000, 3, 0],
      [65001, 3, 1],
    ]);
  });

  test("path health: a path whose probes never left is not down, and unsent probes are not its loss", () => {
    // Port 65001: 1 of 3 sent probes lost; port 65000 all answered.
    const acc = { worstLossRatio: 0, pathsDown: 0 };
    addPathHealth(r, 0, 10, acc);
    expect(acc).toEqual({ worstLossRatio: 1 / 3, pathsDown: 0 });
    const none = batch([U, U, U, U, U, U]);
    const empty = { worstLossRatio: 0, pathsDown: 0 };
    addPathHealth(none, 0, 6, empty);
    expect(empty).toEqual({ worstLossRatio: 0, pathsDown: 0 });
    expect(pathHealth(paths(none, 0, 6))).toEqual({ worstLossRatio: 0, pathsDown: 0 });
    const [s] = summarizeSeries(none, [0], 1, [50], []);
    expect({ sent: s!.sent, lost: s!.lost, worst: s!.worstPathLossRatio, down: s!.pathsDown }).toEqual({ sent: 0, lost: 0, worst: 0, down: 0 });
  });
});
