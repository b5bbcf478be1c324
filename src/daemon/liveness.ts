/**
 * What /-/healthy and /-/ready report: whether the main loop still ends iterations, and whether
 * the first iteration's results are published. The clock is injected so the verdicts can be
 * tested without waiting.
 */

export interface LoopLimits {
  /** global.interval, seconds. */
  interval: number;
  /** global.timeout, seconds. */
  timeout: number;
}

export class LoopLiveness {
  /** When the last iteration ended, or the loop started; null before the loop starts. */
  #since: number | null = null;
  #published = false;

  constructor(private readonly nowMs: () => number = () => performance.now()) {}

  /** The main loop begins (after the start's bounded wait for names to resolve). */
  loopStarted(): void {
    this.#since = this.nowMs();
  }

  /** An iteration ended, whether its results were good or not: the loop goes on. */
  iterationEnded(): void {
    this.#since = this.nowMs();
  }

  /** An iteration's results are in the metrics. */
  published(): void {
    this.#published = true;
  }

  /**
   * Null while the loop runs, else why not: no iteration has ended within 2 x interval + the
   * global timeout (an iteration may overrun its interval once, and its batch may take the
   * timeout). The limits are the running config's, read at each check. Before the loop starts
   * (a bounded wait) the loop counts as running.
   */
  unhealthy(limits: LoopLimits): string | null {
    if (this.#since === null) return null;
    const limit = 2 * limits.interval + limits.timeout;
    const waited = (this.nowMs() - this.#since) / 1000;
    if (waited <= limit) return null;
    return (
      `no iteration has ended for ${waited.toFixed(1)} s, more than 2 x interval (${limits.interval} s) ` +
      `+ timeout (${limits.timeout} s) = ${limit} s: the probing loop is stuck`
    );
  }

  /** Null once the first iteration's results are published, else why not. */
  notReady(): string | null {
    return this.#published ? null : "the first iteration's results are not published yet";
  }
}
