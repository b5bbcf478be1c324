/**
 * A type's own metric families (ProbeType.seriesMetrics): summarized per series in the Worker
 * (summarizeSeries: counters from the type's fold, percentiles of a per-slot value) and rendered
 * by src/daemon/metrics.ts with nothing written for the type by name. A registered module is
 * given such families for the test, then put back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Metrics } from "../../src/daemon/metrics.ts";
import { emptyBatchStats, SLOT_ANSWERED, SLOT_LOST, SLOT_UNSENT, type BatchResult } from "../../src/engine/probe-engine.ts";
import { summarizeSeries } from "../../src/engine/stats.ts";
import type { SeriesMetrics, SlotResults } from "../../src/probes/probe-type.ts";
import { PROBE_CODE, PROBE_TYPES } from "../../src/probes/registry.ts";

/** Counts lost probes on even identifiers as "even", and leaves "odd" absent unless an odd one is lost. */
const OWN: SeriesMetrics = {
  families: [
    { kind: "counter", name: "even_loss_total", help: "lost probes with an even identifier." },
    { kind: "counter", name: "odd_loss_total", help: "lost probes with an odd identifier." },
    { kind: "percentiles", name: "held_seconds", help: "the far end's hold.", value: 0, scale: 1e-9 },
  ],
  fold(r: SlotResults, from: number, to: number, acc: Float64Array) {
    acc[0] = Number.isNaN(acc[0]!) ? 0 : acc[0]!;
    for (let s = from; s < to; s++) {
      if (r.status[s] !== SLOT_LOST) continue;
      const i = r.ident[s]! % 2;
      acc[i] = (Number.isNaN(acc[i]!) ? 0 : acc[i]!) + 1;
    }
  },
};

const mod = PROBE_TYPES.ICMPping as unknown as { seriesMetrics: SeriesMetrics | null };
beforeAll(() => {
  mod.seriesMetrics = OWN;
});
afterAll(() => {
  mod.seriesMetrics = null;
});

/** Two ICMP targets of 4 slots; held times per slot in ns (NaN: none). */
function batch(status: number[], ident: number[], held: number[]): BatchResult {
  const n = status.length;
  return {
    targetStart: new Int32Array([0, 4, 8]),
    kind: new Uint8Array([PROBE_CODE.ICMPping, PROBE_CODE.ICMPping]),
    status: Uint8Array.from(status),
    reply: new Uint8Array(n),
    rttNs: new Float64Array(n).fill(1e6),
    srcPort: new Uint16Array(n),
    srcIndex: new Uint16Array(n),
    matchFail: new Uint32Array(2),
    portMismatch: new Uint32Array(2),
    timeOutOfOrder: new Uint32Array(2),
    unroutable: ["", ""],
    ident: Uint32Array.from(ident),
    values: Float64Array.from(held),
    valueWidth: 1,
    stats: emptyBatchStats(),
  };
}

const A = SLOT_ANSWERED;
const L = SLOT_LOST;
const U = SLOT_UNSENT;

describe("summarizeSeries: a type's own families", () => {
  test("counters come from the type's fold over every target of the series; NaN left by it is an absent family", () => {
    const r = batch([A, L, A, L, A, A, U, A], [0, 2, 4, 6, 8, 10, 11, 12], [1e6, NaN, 3e6, NaN, 2e6, 4e6, NaN, 5e6]);
    // Series 0: both targets; series 1: none.
    const [both] = summarizeSeries(r, [0, 0], 2, [50, 100], []);
    expect(both!.extra).toEqual([[2], [], [3e-3, 5e-3]]);
    const [first, second] = summarizeSeries(r, [0, 1], 2, [0], []);
    expect(first!.extra).toEqual([[2], [], [1e-3]]);
    expect(second!.extra).toEqual([[0], [], [2e-3]]);
  });

  test("a percentile family without a sample is absent", () => {
    const r = batch([L, L, L, L, L, L, L, L], [1, 2, 3, 4, 5, 6, 7, 8], new Array(8).fill(NaN));
    expect(summarizeSeries(r, [0, 0], 1, [50], [])[0]!.extra).toEqual([[4], [4], []]);
  });
});

describe("metrics: a type's own families rendered with the type's labels", () => {
  test("a counter is absent until it has a value, then added up and kept; percentiles per configured percentile", async () => {
    const m = new Metrics({ version: "0", bun: "0", libpcap: "0" });
    m.setProbeName("unit");
    const series = [{ target: "ping", group: "a", type: "ICMPping" as const, family: 6 as const, state: "None" }];
    const base = { sent: 4, lost: 1, percentiles: [0.001, 0.001], buckets: [], rttSum: 0, rttCount: 3, worstPathLossRatio: 0, pathsDown: 0, matchFail: 0, portMismatch: 0, timeOutOfOrder: 0, unroutable: "" };
    const it = (extra: number[][] | null) => ({
      probeName: "unit",
      series,
      results: [extra === null ? null : { ...base, extra }],
      percentiles: [95, 50],
      histogramBuckets: [],
      histogramPerDestination: false,
      targets: {},
      resolutions: [],
      stats: [],
      iterationSeconds: 0,
      endedAt: null,
      degraded: false,
    });
    const lines = async () => (await m.exposition()).split("\n").filter((l) => /^icmp_(even|odd)_loss_total|^icmp_held_seconds|^# TYPE icmp_(even|odd|held)/.test(l));
    const labels = 'address_family="ipv6",destination="ping",group="a",probe_name="unit",state="None"';
    const pct = (p: string) => `address_family="ipv6",destination="ping",group="a",percentile="${p}",probe_name="unit",state="None"`;
    await m.applyIteration(it([[1], [], [0.002, 0.001]]));
    expect(await lines()).toEqual([
      "# TYPE icmp_even_loss_total counter",
      `icmp_even_loss_total{${labels}} 1`,
      "# TYPE icmp_odd_loss_total counter",
      "# TYPE icmp_held_seconds gauge",
      `icmp_held_seconds{${pct("95")}} 0.002`,
      `icmp_held_seconds{${pct("50")}} 0.001`,
    ]);
    await m.applyIteration(it([[2], [5], []]));
    expect(await lines()).toEqual([
      "# TYPE icmp_even_loss_total counter",
      `icmp_even_loss_total{${labels}} 3`,
      "# TYPE icmp_odd_loss_total counter",
      `icmp_odd_loss_total{${labels}} 5`,
      "# TYPE icmp_held_seconds gauge",
    ]);
    // A failed Worker advances nothing and removes nothing; a later absent value keeps the counter.
    await m.applyIteration(it(null));
    await m.applyIteration(it([[0], [], []]));
    expect((await lines()).filter((l) => !l.startsWith("#"))).toEqual([`icmp_even_loss_total{${labels}} 3`, `icmp_odd_loss_total{${labels}} 5`]);
  });
});
