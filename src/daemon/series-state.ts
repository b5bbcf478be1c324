/**
 * Per-series state for the bounded per-target metrics (global.per_target_series: false): what the
 * per-target families would hold for every series, kept in typed arrays indexed by series, so
 * that a target entering the worst list shows its true cumulative counts without a label string
 * or a map entry per hidden target. Also the ranking that picks the worst series of each
 * (type, group, address family).
 *
 * Series identity across iterations is the plan's: type, target, group, family and state. An
 * unchanged plan (the usual case: rebuilt each iteration with equal series) is recognised by
 * comparing fields, with no key built; a changed one (reload, inventory change, a resolution that
 * failed) re-maps the arrays by key once.
 */
import type { TargetType } from "../config/schema.ts";
import type { SeriesSummary } from "../engine/stats.ts";
import type { ProbeType } from "../probes/probe-type.ts";
import { PROBE_TYPE_LIST } from "../probes/registry.ts";
import type { Series } from "./plan.ts";

/** A (type, group, address family) of the plan: the unit the group families and the ranking work on. */
export interface SeriesBucket {
  type: TargetType;
  group: string;
  family: 4 | 6;
  /** Indexes of its series, in plan order. */
  members: Int32Array;
}

/** Where a type's own families (seriesMetrics) sit in a series' block of ownValues. */
interface OwnSlot {
  counter: boolean;
  offset: number;
}

const TYPES = new Map<TargetType, ProbeType>(PROBE_TYPE_LIST.map((t) => [t.type, t]));

function sameSeries(a: Series, b: Series): boolean {
  return a.type === b.type && a.target === b.target && a.group === b.group && a.family === b.family && a.state === b.state;
}

/** The series key of the per-target families with the L label set (state included). */
const fullKey = (s: Series) => `${s.type}\0${s.target}\0${s.group}\0${s.family}\0${s.state}`;
/** app_time_ooo_total's key: L without state, one family for every type. */
const oooKey = (s: Series) => `${s.target}\0${s.group}\0${s.family}`;
/** The *_match_ack_fail / *_port_mismatch key: per type, target and family, over groups. */
const shortKey = (s: Series) => `${s.type}\0${s.target}\0${s.family}`;

export class SeriesState {
  #series: readonly Series[] = [];
  #percentiles: readonly number[] = [];
  #own = new Map<TargetType, OwnSlot[]>();
  /** Numbers per series in ownValues, and own families per series in ownSeen. */
  #ownWidth = 0;
  #ownFamilies = 0;

  /** 1 once a result came for the series: before, its families have no sample. */
  seen = new Uint8Array(0);
  sent = new Float64Array(0);
  lost = new Float64Array(0);
  /** The last result's sent and lost (the loss ratio gauge's figures). */
  lastSent = new Float64Array(0);
  lastLost = new Float64Array(0);
  /** The last result's RTT at each configured percentile: series i at [i * P, (i + 1) * P). */
  rtt = new Float64Array(0);
  /** 1 once a result came under the current percentiles. */
  rttSeen = new Uint8Array(0);
  pathLossMax = new Float64Array(0);
  pathsDown = new Float64Array(0);
  ooo = new Float64Array(0);
  oooSeen = new Uint8Array(0);
  /** The series holding the count of its type, target and family (the first such in the plan). */
  shortOf = new Int32Array(0);
  /** At shortOf's series: the counts over every group. */
  matchFail = new Float64Array(0);
  portMismatch = new Float64Array(0);
  ownValues = new Float64Array(0);
  ownSeen = new Uint8Array(0);
  buckets: SeriesBucket[] = [];
  bucketOf = new Int32Array(0);

  get size(): number {
    return this.#series.length;
  }

  /** Own families of a type: whether each is a counter, and where its values sit. */
  ownSlots(type: TargetType): readonly OwnSlot[] {
    return this.#own.get(type) ?? [];
  }

  /**
   * Makes the arrays describe `series` (this iteration's plan) under `percentiles`: state of a
   * series that stays is carried to its new index, a new series starts unseen, a gone one is
   * forgotten. Percentiles changed: every RTT and percentile value is unknown again.
   */
  sync(series: readonly Series[], percentiles: readonly number[]): void {
    const pctChanged = percentiles.length !== this.#percentiles.length || percentiles.some((p, k) => p !== this.#percentiles[k]);
    const same = series.length === this.#series.length && series.every((s, i) => sameSeries(s, this.#series[i]!));
    if (same && !pctChanged) {
      this.#series = series;
      return;
    }
    const old = this.#snapshot();
    const oldSeries = this.#series;
    const oldP = this.#percentiles.length;
    this.#series = series;
    this.#percentiles = [...percentiles];
    this.#layOutOwn(series);
    const n = series.length;
    const P = percentiles.length;
    this.seen = new Uint8Array(n);
    this.sent = new Float64Array(n);
    this.lost = new Float64Array(n);
    this.lastSent = new Float64Array(n);
    this.lastLost = new Float64Array(n);
    this.rtt = new Float64Array(n * P);
    this.rttSeen = new Uint8Array(n);
    this.pathLossMax = new Float64Array(n);
    this.pathsDown = new Float64Array(n);
    this.ooo = new Float64Array(n);
    this.oooSeen = new Uint8Array(n);
    this.shortOf = new Int32Array(n);
    this.matchFail = new Float64Array(n);
    this.portMismatch = new Float64Array(n);
    this.ownValues = new Float64Array(n * this.#ownWidth);
    this.ownSeen = new Uint8Array(n * this.#ownFamilies);

    // Keys are built here only, when the plan changed, and dropped at the end.
    const oldIndex = new Map<string, number>();
    const oldOoo = new Map<string, number>();
    const oldShort = new Map<string, number>();
    oldSeries.forEach((s, j) => {
      oldIndex.set(fullKey(s), j);
      oldOoo.set(oooKey(s), j);
      if (old.shortOf[j] === j) oldShort.set(shortKey(s), j);
    });
    const shortFirst = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const s = series[i]!;
      const sk = shortKey(s);
      let rep = shortFirst.get(sk);
      if (rep === undefined) {
        shortFirst.set(sk, (rep = i));
        const j = oldShort.get(sk);
        if (j !== undefined) {
          this.matchFail[i] = old.matchFail[j]!;
          this.portMismatch[i] = old.portMismatch[j]!;
        }
      }
      this.shortOf[i] = rep;
      const o = oldOoo.get(oooKey(s));
      if (o !== undefined && old.oooSeen[o]) {
        this.ooo[i] = old.ooo[o]!;
        this.oooSeen[i] = 1;
      }
      const j = oldIndex.get(fullKey(s));
      if (j === undefined) continue;
      this.seen[i] = old.seen[j]!;
      this.sent[i] = old.sent[j]!;
      this.lost[i] = old.lost[j]!;
      this.lastSent[i] = old.lastSent[j]!;
      this.lastLost[i] = old.lastLost[j]!;
      this.pathLossMax[i] = old.pathLossMax[j]!;
      this.pathsDown[i] = old.pathsDown[j]!;
      if (!pctChanged) {
        this.rtt.set(old.rtt.subarray(j * oldP, (j + 1) * oldP), i * P);
        this.rttSeen[i] = old.rttSeen[j]!;
      }
      const slots = this.ownSlots(s.type);
      slots.forEach((slot, f) => {
        // A percentile family's values are unknown under new percentiles; a counter's are kept.
        if (!slot.counter && pctChanged) return;
        const width = slot.counter ? 1 : P;
        const from = j * old.ownWidth + old.own.get(s.type)![f]!.offset;
        this.ownValues.set(old.ownValues.subarray(from, from + width), i * this.#ownWidth + slot.offset);
        this.ownSeen[i * this.#ownFamilies + f] = old.ownSeen[j * old.ownFamilies + f]!;
      });
    }
    this.#bucketize(series);
  }

  #snapshot() {
    return {
      seen: this.seen,
      sent: this.sent,
      lost: this.lost,
      lastSent: this.lastSent,
      lastLost: this.lastLost,
      rtt: this.rtt,
      rttSeen: this.rttSeen,
      pathLossMax: this.pathLossMax,
      pathsDown: this.pathsDown,
      ooo: this.ooo,
      oooSeen: this.oooSeen,
      shortOf: this.shortOf,
      matchFail: this.matchFail,
      portMismatch: this.portMismatch,
      ownValues: this.ownValues,
      ownSeen: this.ownSeen,
      own: this.#own,
      ownWidth: this.#ownWidth,
      ownFamilies: this.#ownFamilies,
    };
  }

  /** Room for the own families of the types in the plan only: none when no such type is probed. */
  #layOutOwn(series: readonly Series[]): void {
    const P = this.#percentiles.length;
    const present = new Set<TargetType>();
    for (const s of series) present.add(s.type);
    this.#own = new Map();
    this.#ownWidth = 0;
    this.#ownFamilies = 0;
    for (const type of present) {
      const families = TYPES.get(type)?.seriesMetrics?.families ?? [];
      let offset = 0;
      const slots = families.map((m) => {
        const slot = { counter: m.kind === "counter", offset };
        offset += slot.counter ? 1 : P;
        return slot;
      });
      this.#own.set(type, slots);
      this.#ownWidth = Math.max(this.#ownWidth, offset);
      this.#ownFamilies = Math.max(this.#ownFamilies, slots.length);
    }
  }

  #bucketize(series: readonly Series[]): void {
    // Nested maps: no key string per series.
    const index = new Map<TargetType, Map<string, [number, number]>>();
    const counts: number[] = [];
    this.buckets = [];
    this.bucketOf = new Int32Array(series.length);
    series.forEach((s, i) => {
      let byGroup = index.get(s.type);
      if (!byGroup) index.set(s.type, (byGroup = new Map()));
      let pair = byGroup.get(s.group);
      if (!pair) byGroup.set(s.group, (pair = [-1, -1]));
      const f = s.family === 4 ? 0 : 1;
      if (pair[f] === -1) {
        pair[f] = this.buckets.length;
        this.buckets.push({ type: s.type, group: s.group, family: s.family, members: new Int32Array(0) });
        counts.push(0);
      }
      this.bucketOf[i] = pair[f]!;
      counts[pair[f]!]!++;
    });
    const filled = counts.map(() => 0);
    this.buckets.forEach((b, k) => (b.members = new Int32Array(counts[k]!)));
    for (let i = 0; i < series.length; i++) {
      const k = this.bucketOf[i]!;
      this.buckets[k]!.members[filled[k]!++] = i;
    }
  }

  /** Folds series i's result in, as the per-target families fold it. */
  fold(i: number, r: SeriesSummary): void {
    const P = this.#percentiles.length;
    this.seen[i] = 1;
    this.sent[i]! += r.sent;
    this.lost[i]! += r.lost;
    this.lastSent[i] = r.sent;
    this.lastLost[i] = r.lost;
    for (let k = 0; k < P; k++) this.rtt[i * P + k] = r.percentiles[k] ?? NaN;
    this.rttSeen[i] = 1;
    this.pathLossMax[i] = r.worstPathLossRatio;
    this.pathsDown[i] = r.pathsDown;
    this.ooo[i]! += r.timeOutOfOrder;
    this.oooSeen[i] = 1;
    const rep = this.shortOf[i]!;
    this.matchFail[rep]! += r.matchFail;
    this.portMismatch[rep]! += r.portMismatch;
    const slots = this.ownSlots(this.#series[i]!.type);
    for (let f = 0; f < slots.length; f++) {
      const { counter, offset } = slots[f]!;
      const v = r.extra[f] ?? [];
      const at = i * this.#ownWidth + offset;
      const seenAt = i * this.#ownFamilies + f;
      if (counter) {
        if (v.length > 0) {
          this.ownValues[at]! += v[0]!;
          this.ownSeen[seenAt] = 1;
        }
      } else if (v.length > 0) {
        for (let k = 0; k < P; k++) this.ownValues[at + k] = v[k] ?? NaN;
        this.ownSeen[seenAt] = 1;
      } else {
        // A result without the family: absent for the series, as a direction no probe revealed.
        this.ownSeen[seenAt] = 0;
      }
    }
  }

  /** Own family f of series i: its value(s), or null while absent. */
  own(i: number, f: number): Float64Array | null {
    const slot = this.ownSlots(this.#series[i]!.type)[f];
    if (!slot || !this.ownSeen[i * this.#ownFamilies + f]) return null;
    const at = i * this.#ownWidth + slot.offset;
    return this.ownValues.subarray(at, at + (slot.counter ? 1 : this.#percentiles.length));
  }

  /** The last loss ratio of series i; -1 before its first result (ranked after every measured one). */
  lossRatio(i: number): number {
    if (!this.seen[i]) return -1;
    return this.lastSent[i] === 0 ? 0 : this.lastLost[i]! / this.lastSent[i]!;
  }

  /**
   * The `count` worst series of a bucket, worst first: by last loss ratio (highest first), then
   * by the RTT at the highest configured percentile (highest first, unknown last), then by target
   * name, so that the list is the same for the same figures.
   */
  worst(bucket: SeriesBucket, count: number): number[] {
    const P = this.#percentiles.length;
    let hi = -1;
    for (let k = 0; k < P; k++) if (hi === -1 || this.#percentiles[k]! > this.#percentiles[hi]!) hi = k;
    const rttOf = (i: number) => (hi === -1 || !this.rttSeen[i] ? NaN : this.rtt[i * P + hi]!);
    /** Negative when a ranks before b (is worse). */
    const order = (a: number, b: number): number => {
      const la = this.lossRatio(a);
      const lb = this.lossRatio(b);
      if (la !== lb) return lb - la;
      const ra = rttOf(a);
      const rb = rttOf(b);
      if (Number.isNaN(ra) !== Number.isNaN(rb)) return Number.isNaN(ra) ? 1 : -1;
      if (!Number.isNaN(ra) && ra !== rb) return rb - ra;
      const ta = this.#series[a]!.target;
      const tb = this.#series[b]!.target;
      return ta < tb ? -1 : ta > tb ? 1 : a - b;
    };
    const members = bucket.members;
    if (count <= 0) return [];
    if (members.length <= count) return Array.from(members).sort(order);
    // A heap of the `count` worst so far, the least bad of them at the root: O(n log count).
    const heap: number[] = [];
    const up = (k: number) => {
      while (k > 0) {
        const p = (k - 1) >> 1;
        if (order(heap[k]!, heap[p]!) <= 0) break;
        [heap[k], heap[p]] = [heap[p]!, heap[k]!];
        k = p;
      }
    };
    const down = (k: number) => {
      for (;;) {
        const l = 2 * k + 1;
        const r = l + 1;
        let m = k;
        if (l < heap.length && order(heap[l]!, heap[m]!) > 0) m = l;
        if (r < heap.length && order(heap[r]!, heap[m]!) > 0) m = r;
        if (m === k) return;
        [heap[k], heap[m]] = [heap[m]!, heap[k]!];
        k = m;
      }
    };
    for (const i of members) {
      if (heap.length < count) {
        heap.push(i);
        up(heap.length - 1);
      } else if (order(i, heap[0]!) < 0) {
        heap[0] = i;
        down(0);
      }
    }
    return heap.sort(order);
  }
}
