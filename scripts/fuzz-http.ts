/**
 * The HTTP fuzzer at full size, against both listeners (the metrics port and the targets API),
 * each started as the program starts it on 127.0.0.1: malformed requests over raw TCP, a
 * normal request alongside every batch (tests/support/http-fuzz.ts says what counts).
 *
 *   bun scripts/fuzz-http.ts [COUNT] [SEED] [metrics|api|both]
 *
 * COUNT cases per listener (default 100000), SEED (default 0x5eed2026; decimal or 0x hex).
 * Prints, per listener, the status counts, Bun's parser's own answers and closes, and every
 * failure with the request that caused it. Exits 1 when any case failed.
 */
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../src/cli/exit.ts";
import { CI_OPTIONS, formatReport, fuzz } from "../tests/support/http-fuzz.ts";
import { startApiTarget, startMetricsTarget, type RunningTarget } from "../tests/support/http-fuzz-targets.ts";

const [countArg = "100000", seedArg = "0x5eed2026", which = "both"] = process.argv.slice(2);
const count = Number(countArg);
const seed = Number(seedArg);
if (!Number.isInteger(count) || count <= 0 || !Number.isInteger(seed) || !["metrics", "api", "both"].includes(which)) {
  console.error("usage: bun scripts/fuzz-http.ts [COUNT] [SEED] [metrics|api|both]");
  process.exit(EXIT_USAGE);
}

const starts: (() => RunningTarget | Promise<RunningTarget>)[] = [];
if (which !== "api") starts.push(startMetricsTarget);
if (which !== "metrics") starts.push(startApiTarget);

let failed = 0;
for (const start of starts) {
  const target = await start();
  try {
    const step = Math.max(1, Math.floor(count / 10));
    const report = await fuzz(target, { ...CI_OPTIONS, concurrency: 32, batch: 500, replays: 200, count, seed }, (done) => {
      if (done % step < 500 || done === count) process.stderr.write(`${target.name}: ${done}/${count}\n`);
    });
    console.log(formatReport(report));
    failed += report.failures.length;
  } finally {
    await target.stop();
  }
}
process.exit(failed > 0 ? EXIT_FAILURE : EXIT_OK);
