/**
 * LoopLiveness, on a hand-moved clock: healthy until 2 x interval + timeout pass without an
 * iteration's end (from the loop's start, then from each end), with the limits read at each check;
 * ready from the first publish on.
 */
import { describe, expect, test } from "bun:test";
import { LoopLiveness } from "../../src/daemon/liveness.ts";

function clocked() {
  const clock = { ms: 1_000_000 };
  return { clock, live: new LoopLiveness(() => clock.ms) };
}

describe("LoopLiveness.unhealthy", () => {
  const limits = { interval: 10, timeout: 5 }; // 25 s

  test("healthy before the loop starts and up to 2 x interval + timeout after it; then the reason, with the figures", () => {
    const { clock, live } = clocked();
    clock.ms += 3_600_000;
    expect(live.unhealthy(limits)).toBeNull();
    live.loopStarted();
    clock.ms += 25_000;
    expect(live.unhealthy(limits)).toBeNull();
    clock.ms += 100;
    expect(live.unhealthy(limits)).toBe(
      "no iteration has ended for 25.1 s, more than 2 x interval (10 s) + timeout (5 s) = 25 s: the probing loop is stuck",
    );
  });

  test("each iteration's end starts the wait again: a stalled loop recovers as soon as one ends", () => {
    const { clock, live } = clocked();
    live.loopStarted();
    for (let i = 0; i < 5; i++) {
      clock.ms += 20_000;
      live.iterationEnded();
      expect(live.unhealthy(limits)).toBeNull();
    }
    clock.ms += 60_000;
    expect(live.unhealthy(limits)).not.toBeNull();
    live.iterationEnded();
    expect(live.unhealthy(limits)).toBeNull();
  });

  test("the limits are read at each check: a reload to a longer interval makes the same wait healthy", () => {
    const { clock, live } = clocked();
    live.loopStarted();
    clock.ms += 30_000;
    expect(live.unhealthy(limits)).not.toBeNull();
    expect(live.unhealthy({ interval: 30, timeout: 5 })).toBeNull();
  });
});

describe("LoopLiveness.notReady", () => {
  test("not ready until the first publish, ready from then on", () => {
    const { live } = clocked();
    expect(live.notReady()).toBe("the first iteration's results are not published yet");
    live.loopStarted();
    live.iterationEnded();
    expect(live.notReady()).not.toBeNull();
    live.published();
    expect(live.notReady()).toBeNull();
  });
});
