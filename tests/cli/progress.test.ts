/**
 * probe's progress line (src/cli/progress.ts) on a fake clock: nothing for a run under 2 s; after
 * that the line is rewritten in place (carriage return, erase to end of line), never longer than
 * the terminal, and erased when the run ends.
 */
import { describe, expect, test } from "bun:test";
import { PROGRESS_AFTER_MS, ProgressLine, progressText, runSchedule, type Ticker } from "../../src/cli/progress.ts";

function fakeTerminal(columns?: number) {
  let now = 0;
  let tick: (() => void) | null = null;
  const written: string[] = [];
  const ticker: Ticker = {
    every(_ms, f) {
      tick = f;
      return { cancel: () => void (tick = null) };
    },
  };
  const line = new ProgressLine((t) => written.push(t), { now: () => now, ticker, columns: () => columns });
  return {
    line,
    written,
    /** Moves the clock and fires the refresh. */
    at(ms: number) {
      now = ms;
      tick?.();
    },
    get ticking() {
      return tick !== null;
    },
  };
}

describe("the progress line", () => {
  const schedule = runSchedule(1, 100, 100, 100000, 1000); // 9.9 s of sending, 1 s of waiting

  test("a run that ends before 2 s writes nothing at all", () => {
    const t = fakeTerminal();
    t.line.start(schedule);
    t.at(500);
    t.at(PROGRESS_AFTER_MS - 1);
    t.line.stop();
    expect(t.written).toEqual([]);
    expect(t.ticking).toBe(false);
  });

  test("past 2 s: rewritten in place, then erased at the end", () => {
    const t = fakeTerminal();
    t.line.start(schedule);
    t.at(2500);
    t.at(10500);
    t.line.stop();
    expect(t.written).toEqual([
      `\r${progressText(2500, schedule)}\x1b[K`,
      `\r${progressText(10500, schedule)}\x1b[K`,
      "\r\x1b[K",
    ]);
    expect(t.written[0]).toContain("sending");
    expect(t.written[1]).toContain("waiting for the last answers");
  });

  test("never wider than the terminal (a wrapped line could not be rewritten in place)", () => {
    const t = fakeTerminal(30);
    t.line.start(schedule);
    t.at(3000);
    expect(t.written[0]).toBe(`\r${progressText(3000, schedule).slice(0, 29)}\x1b[K`);
  });
});

describe("the schedule", () => {
  test("paced by the interval, or by the rate cap when that is slower", () => {
    expect(runSchedule(1, 11, 100, 100000, 1000)).toEqual({ sendMs: 1000, timeoutMs: 1000 });
    expect(runSchedule(1000, 10, 0, 1000, 500)).toEqual({ sendMs: 10000, timeoutMs: 500 });
  });

  test("the text: elapsed, total and share, never 100% before the end", () => {
    const s = { sendMs: 8000, timeoutMs: 2000 };
    expect(progressText(4000, s)).toBe("4.0 s of about 10.0 s (40%), sending; Ctrl-C prints the summary so far");
    expect(progressText(12000, s)).toStartWith("12.0 s of about 10.0 s (99%), waiting for the last answers");
  });
});
