/**
 * The DNS decoder fuzzer at full size: random valid messages checked to decode as encoded, then
 * mutated and decoded again (tests/support/dns-fuzz.ts says what is checked).
 *
 *   node_modules/.bin/bun scripts/fuzz-dns.ts [SEED] [COUNT]      (defaults: 1, 1000000)
 *
 * Needs nothing (no root, no network). Prints the cases, how many the decoder refused or decoded,
 * the malformed records it kept, the rate, and the first failures with their bytes (hex) to
 * replay; exits 1 when any was found.
 */
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../src/cli/exit.ts";
import { fuzzDns } from "../tests/support/dns-fuzz.ts";

const usage = "usage: bun scripts/fuzz-dns.ts [SEED] [COUNT]";
const [seedArg, countArg] = process.argv.slice(2);
const seed = seedArg === undefined ? 1 : Number(seedArg);
const count = countArg === undefined ? 1_000_000 : Number(countArg.replaceAll(/[_,]/g, ""));
if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff || !Number.isInteger(count) || count < 1) {
  console.error(usage);
  process.exit(EXIT_USAGE);
}
const began = performance.now();
const chunk = 100_000;
let failures: string[] = [];
const total = { cases: 0, refused: 0, decoded: 0, malformedRecords: 0 };
// In chunks, each from its own seed derived from the one given, so that progress shows and a
// failure is replayed with a short run: `fuzz-dns.ts <chunk seed> <case + 1>`.
for (let done = 0, part = 0; done < count; part++) {
  const n = Math.min(chunk, count - done);
  const chunkSeed = (seed + part * 0x9e3779b1) >>> 0;
  const stats = fuzzDns(chunkSeed, n);
  total.cases += stats.cases;
  total.refused += stats.refused;
  total.decoded += stats.decoded;
  total.malformedRecords += stats.malformedRecords;
  failures = [...failures, ...stats.failures].slice(0, 20);
  done += n;
  if (count > chunk) process.stderr.write(`  ${done.toLocaleString("en-US")} messages\n`);
}
const seconds = (performance.now() - began) / 1000;
const fmt = (n: number) => n.toLocaleString("en-US");
console.log(`| seed | messages | refused | decoded | malformed records kept | failures | messages/s |`);
console.log(`|---|---|---|---|---|---|---|`);
console.log(
  `| ${seed} | ${fmt(total.cases)} | ${fmt(total.refused)} | ${fmt(total.decoded)} | ${fmt(total.malformedRecords)} | ${failures.length} | ${fmt(Math.round(total.cases / seconds))} |`,
);
for (const f of failures) console.log(f);
process.exit(failures.length > 0 ? EXIT_FAILURE : EXIT_OK);
