/**
 * The line `probe` keeps up to date on a terminal's stderr while a long run goes on, as a
 * download tool does: rewritten in place (carriage return, erase to end of line), shown only once
 * the run has lasted PROGRESS_AFTER_MS (a short run prints nothing), and erased at the end so the
 * summary starts on a clean line.
 */

/** A run shorter than this shows no progress line. */
export const PROGRESS_AFTER_MS = 2000;
const REFRESH_MS = 250;

/** What the run is expected to take, from its schedule. */
export interface RunSchedule {
  /** From the start to the last probe's departure, ms. */
  sendMs: number;
  /** Wait for answers after the last probe, ms. */
  timeoutMs: number;
}

/** The schedule of `count` probes per target every `intervalMs`, `targets` targets, under `rate` probes per second. */
export function runSchedule(targets: number, count: number, intervalMs: number, rate: number, timeoutMs: number): RunSchedule {
  const paced = (count - 1) * intervalMs;
  const byRate = ((targets * count) / rate) * 1000;
  return { sendMs: Math.max(paced, byRate), timeoutMs };
}

/** The progress line's text at `elapsedMs` into the run. */
export function progressText(elapsedMs: number, s: RunSchedule): string {
  const total = s.sendMs + s.timeoutMs;
  const phase = elapsedMs < s.sendMs ? "sending" : "waiting for the last answers";
  const pct = Math.min(99, Math.floor((elapsedMs / total) * 100));
  return `${(elapsedMs / 1000).toFixed(1)} s of about ${(total / 1000).toFixed(1)} s (${pct}%), ${phase}; Ctrl-C prints the summary so far`;
}

export interface Ticker {
  every(ms: number, tick: () => void): { cancel(): void };
}

const realTicker: Ticker = {
  every(ms, tick) {
    const id = setInterval(tick, ms);
    return { cancel: () => clearInterval(id) };
  },
};

/** The line on the terminal: started with the run, stopped (and erased) before the summary. */
export class ProgressLine {
  readonly #write: (text: string) => void;
  readonly #now: () => number;
  readonly #ticker: Ticker;
  readonly #columns: () => number | undefined;
  #timer: { cancel(): void } | null = null;
  #shown = false;

  /** `columns`: the terminal's width; a longer line would wrap, and the carriage return then rewrites only its last part. */
  constructor(write: (text: string) => void, opts: { now?: () => number; ticker?: Ticker; columns?: () => number | undefined } = {}) {
    this.#write = write;
    this.#columns = opts.columns ?? (() => undefined);
    this.#now = opts.now ?? (() => performance.now());
    this.#ticker = opts.ticker ?? realTicker;
  }

  start(schedule: RunSchedule): void {
    const t0 = this.#now();
    this.#timer = this.#ticker.every(REFRESH_MS, () => {
      const elapsed = this.#now() - t0;
      if (elapsed < PROGRESS_AFTER_MS) return;
      this.#shown = true;
      const text = progressText(elapsed, schedule);
      const width = this.#columns();
      this.#write(`\r${width ? text.slice(0, Math.max(0, width - 1)) : text}\x1b[K`);
    });
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
    if (this.#shown) this.#write("\r\x1b[K");
    this.#shown = false;
  }
}
