/**
 * The frame fuzzer, CI size: 50,000 mutated probes and answers through the decoder and the
 * matcher, every verdict checked against the reference rule (tests/support/frame-fuzz.ts).
 * Full size: `bun scripts/fuzz-frames.ts SEED COUNT` (README, Tests).
 */
import { expect, test } from "bun:test";
import { formatReport, runFrameFuzz } from "../support/frame-fuzz.ts";

test("50,000 mutated frames: no exception, no wrong or missed match, nothing read past the frame", () => {
  const r = runFrameFuzz({ seed: 20261201, count: 50_000 });
  console.log(formatReport(r));
  expect({
    exceptions: r.exceptions,
    wrongMatches: r.wrongMatches,
    missedMatches: r.missedMatches,
    readsPastEnd: r.readsPastEnd,
    failures: r.failures.map((f) => `${f.frame} ${f.what}: ${f.detail}`),
  }).toEqual({ exceptions: 0, wrongMatches: 0, missedMatches: 0, readsPastEnd: 0, failures: [] });
  // The fuzzer can fail only if it reaches every verdict: valid frames match as built, and every
  // kind of departure, answer and counted mismatch occurs, as every decoder status does.
  expect(r.validBuilt).toBeGreaterThan(5_000);
  expect(r.validMatched).toBe(r.validBuilt);
  const kinds = [
    "departure:tcp",
    "departure:udp",
    "departure:icmp",
    "answer:syn-ack",
    "answer:rst-ack",
    "answer:echo-reply",
    "answer:port-unreachable",
    "answer:unreachable",
    "match-fail",
    "port-mismatch",
    "none",
  ];
  expect(kinds.filter((k) => (r.matches[k] ?? 0) < 50)).toEqual([]);
  expect(["ok", "truncated", "ignored", "malformed"].filter((k) => (r.parse[k] ?? 0) < 100)).toEqual([]);
});
