/**
 * Timers for waits that come from the config. setTimeout takes at most 2^31 - 1 ms (24.8 days)
 * and fires at once beyond that (with a TimeoutOverflowWarning): a longer wait is cut into chunks.
 */

/** The longest delay setTimeout honours. */
export const MAX_TIMER_MS = 0x7fffffff;

export interface LongTimer {
  cancel(): void;
}

const chunk = (ms: number) => Math.min(Math.max(0, Math.ceil(ms)), MAX_TIMER_MS);

/** Calls fn once, ms from now (any value: Infinity never fires, negative or NaN fires at once). */
export function longTimeout(fn: () => void, ms: number): LongTimer {
  const due = performance.now() + (ms > 0 ? ms : 0);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const check = () => {
    const left = due - performance.now();
    if (left > 0) timer = setTimeout(check, chunk(left));
    else {
      timer = undefined;
      fn();
    }
  };
  timer = setTimeout(check, chunk(due - performance.now()));
  return {
    cancel: () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}

/** A sleep of ms that wake() ends early. */
export function wakeableSleep(ms: number): { done: Promise<void>; wake(): void } {
  let wake!: () => void;
  const done = new Promise<void>((resolve) => {
    const t = longTimeout(resolve, ms);
    wake = () => {
      t.cancel();
      resolve();
    };
  });
  return { done, wake };
}

/** Waits ms, or less if the signal aborts; leaves no timer or listener behind. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    if (signal.aborted) return done();
    const onAbort = () => {
      timer.cancel();
      done();
    };
    const timer = longTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      done();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
