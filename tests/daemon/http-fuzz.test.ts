/**
 * Malformed HTTP on the metrics listener, started as the daemon starts it (serveMetrics), over raw
 * TCP from a fixed seed (tests/support/http-fuzz.ts says what is sent and what counts): no answer
 * is a 5xx or shows internal detail, nothing is logged as an error, and a normal scrape is
 * answered alongside every batch. A few hundred cases here; scripts/fuzz-http.ts runs 100,000.
 * Rerun with FUZZ_SEED=<seed> to get the same requests.
 */
import { expect, test } from "bun:test";
import { CI_OPTIONS, formatReport, fuzz } from "../support/http-fuzz.ts";
import { startMetricsTarget } from "../support/http-fuzz-targets.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_2026);
const CASES = 400;

test(`${CASES} malformed requests on the metrics port: no 5xx, no internal detail, scrapes answered alongside`, async () => {
  const target = startMetricsTarget();
  try {
    const report = await fuzz(target, { ...CI_OPTIONS, count: CASES, seed: SEED });
    if (report.failures.length > 0) console.error(formatReport(report));
    expect(report.failures).toEqual([]);
    expect(Object.keys(report.kinds).length).toBeGreaterThanOrEqual(20);
    // The handler's own answers include the 400s, 401s, 404s and 405s the cases aim at.
    for (const status of ["200", "400", "401", "404", "405"]) expect({ status, seen: (report.statuses[status] ?? 0) > 0 }).toEqual({ status, seen: true });
    expect(report.normalRequests).toBe(Math.ceil(CASES / CI_OPTIONS.batch) + 1);
  } finally {
    await target.stop();
  }
}, 60_000);
