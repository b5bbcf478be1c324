/**
 * The frame fuzzer at full size: mutated probes and answers through the decoder and the matcher,
 * every verdict checked against the reference rule (tests/support/frame-fuzz.ts says how).
 *
 *   node_modules/.bin/bun scripts/fuzz-frames.ts [SEED] [COUNT]      (defaults: 1, 1000000)
 *
 * Needs nothing (no root, no pcap). Prints frames/s, exceptions, wrong and missed matches, reads
 * past the frame, and the verdicts by kind; exits 1 when any failure was found, with the first
 * frames that failed (hex, link type) to replay.
 */
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../src/cli/exit.ts";
import { formatReport, runFrameFuzz } from "../tests/support/frame-fuzz.ts";

const usage = "usage: bun scripts/fuzz-frames.ts [SEED] [COUNT]";
const [seedArg, countArg] = process.argv.slice(2);
const seed = seedArg === undefined ? 1 : Number(seedArg);
const count = countArg === undefined ? 1_000_000 : Number(countArg.replaceAll(/[_,]/g, ""));
if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff || !Number.isInteger(count) || count < 1) {
  console.error(usage);
  process.exit(EXIT_USAGE);
}
const report = runFrameFuzz({
  seed,
  count,
  progressEvery: 100_000,
  onProgress: (done) => process.stderr.write(`  ${done.toLocaleString("en-US")} frames\n`),
});
console.log(formatReport(report));
const failed = report.exceptions + report.wrongMatches + report.missedMatches + report.readsPastEnd + (report.validBuilt - report.validMatched);
process.exit(failed > 0 ? EXIT_FAILURE : EXIT_OK);
