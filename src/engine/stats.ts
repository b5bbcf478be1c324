/**
 * Figures of a batch: loss, RTT percentiles and per-path loss over a range of slots. Pure
 * functions over the engine's BatchResult.
 *
 * Sent means left the prober: a probe that never did (SLOT_UNSENT: no route, the interface gone,
 * the send call failed) is the prober's failure, counted in the batch's sendErrors, and is
 * neither sent nor lost here, on any path.
 */
import type { SeriesMetrics } from "../probes/probe-type.ts";
import { PROBE_TYPE_LIST } from "../probes/registry.ts";
import { SLOT_ANSWERED, SLOT_UNSENT, type BatchResult } from "./probe-engine.ts";

/**
 * The spec's percentile over sorted samples: k = (n - 1) * p / 100; the value at k when k is
 * whole, else linear interpolation between floor(k) and ceil(k). No sample: 0.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const k = ((n - 1) * p) / 100;
  const f = Math.floor(k);
  const c = Math.ceil(k);
  if (f === c) return sorted[f]!;
  return sorted[f]! + (sorted[c]! - sorted[f]!) * (k - f);
}

export interface RangeSummary {
  sent: number;
  answered: number;
  lost: number;
  lossRatio: number;
  /** RTTs in seconds, sorted ascending (probes answered and timed). */
  rtts: Float64Array;
}

/** Loss and sorted RTTs of the probes sent from slots [from, to) that satisfy `include` (all when omitted). */
export function summarize(r: BatchResult, from: number, to: number, include?: (slot: number) => boolean): RangeSummary {
  let sent = 0;
  let answered = 0;
  let timed = 0;
  const rtts = new Float64Array(to - from);
  for (let s = from; s < to; s++) {
    if (r.status[s] === SLOT_UNSENT || (include && !include(s))) continue;
    sent++;
    if (r.status[s] !== SLOT_ANSWERED) continue;
    answered++;
    const v = r.rttNs[s]!;
    if (!Number.isNaN(v)) rtts[timed++] = v / 1e9;
  }
  const sorted = rtts.subarray(0, timed).sort();
  const lost = sent - answered;
  return { sent, answered, lost, lossRatio: sent === 0 ? 0 : lost / sent, rtts: sorted };
}

export interface PathSummary {
  /** Source address index and port of the path (the ECMP hash inputs the prober varies). */
  srcIndex: number;
  srcPort: number;
  sent: number;
  lost: number;
}

/** Per-path (source address, source port) loss of the probes sent from slots [from, to). */
export function paths(r: BatchResult, from: number, to: number): PathSummary[] {
  const byKey = new Map<number, PathSummary>();
  for (let s = from; s < to; s++) {
    if (r.status[s] === SLOT_UNSENT) continue;
    const key = r.srcIndex[s]! * 65536 + r.srcPort[s]!;
    let p = byKey.get(key);
    if (!p) {
      p = { srcIndex: r.srcIndex[s]!, srcPort: r.srcPort[s]!, sent: 0, lost: 0 };
      byKey.set(key, p);
    }
    p.sent++;
    if (r.status[s] !== SLOT_ANSWERED) p.lost++;
  }
  return [...byKey.values()].sort((a, b) => a.srcIndex - b.srcIndex || a.srcPort - b.srcPort);
}

/** A path is down when it carried at least this many probes and none was answered. */
export const PATH_DOWN_MIN_PROBES = 3;

/** Worst path's loss ratio and the number of paths that lost everything (spec's added metrics). */
export function pathHealth(list: PathSummary[]): { worstLossRatio: number; pathsDown: number } {
  const acc = { worstLossRatio: 0, pathsDown: 0 };
  for (const p of list) foldPath(acc, p.sent, p.lost);
  return acc;
}

/** One path's share of the health figures: the one rule both path counters apply. */
function foldPath(acc: { worstLossRatio: number; pathsDown: number }, sent: number, lost: number): void {
  if (sent > 0) acc.worstLossRatio = Math.max(acc.worstLossRatio, lost / sent);
  if (sent >= PATH_DOWN_MIN_PROBES && lost === sent) acc.pathsDown++;
}

/** What the daemon needs of one series (a target in a group) after a batch: no per-probe data. */
export interface SeriesSummary {
  sent: number;
  lost: number;
  /** RTT percentiles in seconds, in the order they were asked for. */
  percentiles: number[];
  /** RTTs per histogram bucket (not cumulative), the last entry for +Inf; empty without buckets. */
  buckets: number[];
  rttSum: number;
  rttCount: number;
  worstPathLossRatio: number;
  pathsDown: number;
  matchFail: number;
  portMismatch: number;
  timeOutOfOrder: number;
  /** Why some of its probes could not leave, or "". */
  unroutable: string;
  /**
   * The series type's own families (seriesMetrics), in its order: a counter's value, or the
   * values at each percentile asked for; empty when the family is absent for the series.
   */
  extra: number[][];
}

/** RTTs of the series being summarized, reused from one series (and batch) to the next. */
let scratchRtts = new Float64Array(1024);

/**
 * Summaries per series: targets t with seriesOf[t] = k are aggregated into series k (a subnet
 * target probes many addresses under one name). Computed where the slots are, in the Worker,
 * with no allocation per target or per probe: the one object per series is what is sent back.
 */
export function summarizeSeries(
  r: BatchResult,
  seriesOf: ArrayLike<number>,
  seriesCount: number,
  percentiles: readonly number[],
  bucketBounds: readonly number[],
): SeriesSummary[] {
  // Targets grouped by series (a counting sort of target indexes), in target order.
  const first = new Int32Array(seriesCount + 1);
  for (let t = 0; t < seriesOf.length; t++) first[seriesOf[t]! + 1]!++;
  for (let k = 0; k < seriesCount; k++) first[k + 1]! += first[k]!;
  const members = new Int32Array(seriesOf.length);
  const filled = first.slice(0, seriesCount);
  for (let t = 0; t < seriesOf.length; t++) members[filled[seriesOf[t]!]!++] = t;
  const out: SeriesSummary[] = [];
  for (let k = 0; k < seriesCount; k++) {
    let slots = 0;
    for (let m = first[k]!; m < first[k + 1]!; m++) slots += r.targetStart[members[m]! + 1]! - r.targetStart[members[m]!]!;
    if (scratchRtts.length < slots) scratchRtts = new Float64Array(Math.max(slots, 2 * scratchRtts.length));
    const rtts = scratchRtts;
    let sent = 0;
    let lost = 0;
    let timed = 0;
    let matchFail = 0;
    let portMismatch = 0;
    let timeOoo = 0;
    let unroutable = "";
    const health = { worstLossRatio: 0, pathsDown: 0 };
    for (let m = first[k]!; m < first[k + 1]!; m++) {
      const t = members[m]!;
      const from = r.targetStart[t]!;
      const to = r.targetStart[t + 1]!;
      for (let s = from; s < to; s++) {
        const status = r.status[s];
        if (status === SLOT_UNSENT) continue;
        sent++;
        if (status !== SLOT_ANSWERED) {
          lost++;
          continue;
        }
        const v = r.rttNs[s]!;
        if (!Number.isNaN(v)) rtts[timed++] = v / 1e9;
      }
      addPathHealth(r, from, to, health);
      matchFail += r.matchFail[t]!;
      portMismatch += r.portMismatch[t]!;
      timeOoo += r.timeOutOfOrder[t]!;
      unroutable ||= r.unroutable[t]!;
    }
    const own = PROBE_TYPE_LIST[r.kind[members[first[k]!]!] ?? 0]?.seriesMetrics;
    const extra = own && first[k + 1]! > first[k]! ? typeSeries(r, members.subarray(first[k]!, first[k + 1]!), own, percentiles) : [];
    const sorted = rtts.subarray(0, timed).sort();
    const buckets = bucketBounds.length === 0 ? [] : new Array<number>(bucketBounds.length + 1).fill(0);
    let rttSum = 0;
    for (let i = 0; i < timed; i++) {
      const v = sorted[i]!;
      rttSum += v;
      if (buckets.length === 0) continue;
      let b = 0;
      while (b < bucketBounds.length && v > bucketBounds[b]!) b++;
      buckets[b]!++;
    }
    out.push({
      sent,
      lost,
      percentiles: percentiles.map((p) => percentile(sorted, p)),
      buckets,
      rttSum,
      rttCount: timed,
      worstPathLossRatio: health.worstLossRatio,
      pathsDown: health.pathsDown,
      matchFail,
      portMismatch,
      timeOutOfOrder: timeOoo,
      unroutable,
      extra,
    });
  }
  return out;
}

/** A type's own families for one series (its targets `members`): see SeriesMetrics. */
function typeSeries(r: BatchResult, members: Int32Array, own: SeriesMetrics, percentiles: readonly number[]): number[][] {
  const acc = new Float64Array(own.families.length).fill(NaN);
  for (const t of members) own.fold(r, r.targetStart[t]!, r.targetStart[t + 1]!, acc);
  return own.families.map((f, i) => {
    if (f.kind === "counter") return Number.isNaN(acc[i]!) ? [] : [acc[i]!];
    let n = 0;
    for (const t of members) {
      for (let s = r.targetStart[t]!; s < r.targetStart[t + 1]!; s++) {
        if (r.status[s] !== SLOT_ANSWERED) continue;
        const v = r.values[s * r.valueWidth + f.value];
        if (v === undefined || Number.isNaN(v)) continue;
        if (scratchRtts.length <= n) scratchRtts = growCopy(scratchRtts);
        scratchRtts[n++] = v * f.scale;
      }
    }
    if (n === 0) return [];
    const sorted = scratchRtts.subarray(0, n).sort();
    return percentiles.map((p) => percentile(sorted, p));
  });
}

function growCopy(a: Float64Array): Float64Array<ArrayBuffer> {
  const b = new Float64Array(a.length * 2);
  b.set(a);
  return b;
}

// Per-path counting without an object per path: 10,000 targets x 100 ports would otherwise make
// a million short-lived objects per batch. An open-addressing table in reused typed arrays.
// Keys (source index x 65536 + port + 1) reach 2^32: they do not fit an Int32Array.
let pathKeys = new Float64Array(1024);
let pathSent = new Int32Array(1024);
let pathLost = new Int32Array(1024);
/** Table entries in use, to clear them after a range without scanning the table. */
let pathUsed = new Int32Array(1024);

/** Folds the paths of the probes sent from slots [from, to) into `acc` (worst loss ratio, paths down), as pathHealth(paths()). */
export function addPathHealth(r: BatchResult, from: number, to: number, acc: { worstLossRatio: number; pathsDown: number }): void {
  let size = pathKeys.length;
  if (size < 2 * (to - from)) {
    while (size < 2 * (to - from)) size <<= 1;
    pathKeys = new Float64Array(size);
    pathSent = new Int32Array(size);
    pathLost = new Int32Array(size);
  }
  const mask = size - 1;
  if (pathUsed.length < to - from) pathUsed = new Int32Array(size);
  let used = 0;
  for (let s = from; s < to; s++) {
    if (r.status[s] === SLOT_UNSENT) continue;
    const key = r.srcIndex[s]! * 65536 + r.srcPort[s]! + 1;
    let i = Math.imul(key, 0x9e3779b1) >>> 0 & mask;
    while (pathKeys[i] !== 0 && pathKeys[i] !== key) i = (i + 1) & mask;
    if (pathKeys[i] === 0) {
      pathKeys[i] = key;
      pathUsed[used++] = i;
    }
    pathSent[i]!++;
    if (r.status[s] !== SLOT_ANSWERED) pathLost[i]!++;
  }
  for (let u = 0; u < used; u++) {
    const i = pathUsed[u]!;
    foldPath(acc, pathSent[i]!, pathLost[i]!);
    pathKeys[i] = 0;
    pathSent[i] = 0;
    pathLost[i] = 0;
  }
}
