/**
 * The config fuzzer (scripts/fuzz-config.ts) at CI size: a few hundred mutants of the corpus
 * through what `check` runs, in this process, and a handful through the real CLI process. Each
 * must exit 0, 65 or 66, print no stack trace and no unbounded line, and when accepted, get
 * through the daemon's plan stage. `bun scripts/fuzz-config.ts SEED COUNT` runs it at full size.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkByCli, checkMutant, corpus, fuzz, mutant } from "../../scripts/fuzz-config.ts";

const SEED = 20261125;

test("400 mutants in process: only 0, 65 or 66, no stack trace, bounded lines, accepted ones plan", async () => {
  const s = await fuzz(SEED, 400, 0);
  expect(s.failures).toEqual([]);
  expect(Object.keys(s.byExit).every((code) => ["0", "65", "66"].includes(code))).toBe(true);
  // Both verdicts occur: the mutants reach the schema's rules and get past them.
  expect(s.byExit["0"]).toBeGreaterThan(0);
  expect(s.byExit["65"]).toBeGreaterThan(0);
}, 60_000);

const work = mkdtempSync(join(tmpdir(), "netprobify-fuzz-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("6 mutants through `bun src/main.ts check FILE`: the same exit code as in process", async () => {
  const seeds = corpus();
  for (let i = 0; i < 6; i++) {
    const m = mutant(seeds, SEED + 1, i);
    const v = await checkMutant(join(work, String(i)), m);
    expect({ i, problem: v.problem }).toEqual({ i, problem: undefined });
    expect({ i, cli: checkByCli(v.path, v.exitCode) }).toEqual({ i, cli: undefined });
  }
}, 60_000);
