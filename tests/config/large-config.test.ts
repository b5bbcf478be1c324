/**
 * The limits admit what they promise: a file of 100,000 targets (the MAX_TARGETS bound) as
 * scripts/gen-targets.ts writes them (block style, each with description, state, alert_level and
 * threshold), sending 10,000,000 probes per iteration (MAX_PROBES_PER_ITERATION), passes `check`
 * and plans without a throw. And the same file with a fault in every target is reported in full
 * for its first MAX_SHOWN_ISSUES problems, then counted, exactly.
 *
 * Time and memory are printed for the record, not asserted (the machine is shared):
 * `node_modules/.bin/bun scripts/bench-config.ts` measures them, each case in a fresh process.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_DATAERR } from "../../src/cli/exit.ts";
import { MAX_PROBES_PER_ITERATION, MAX_TARGETS } from "../../src/config/limits.ts";
import { MAX_SHOWN_ISSUES } from "../../src/config/validate-yaml.ts";
import { checkFile, checkOutcome, loadAll } from "../../src/daemon/configuration.ts";
import { buildPlan } from "../../src/daemon/plan.ts";
import { INVALID_KINDS, targetFile, targetName } from "../../scripts/gen-targets.ts";

const dir = mkdtempSync(join(tmpdir(), "netprobify-large-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const figures = (what: string, t0: number) => {
  const seconds = (performance.now() - t0) / 1000;
  const peakMb = process.resourceUsage().maxRSS / 1024;
  console.log(`${what}: ${seconds.toFixed(2)} s, peak RSS of the test process so far ${peakMb.toFixed(0)} MB`);
};

test(`a file of ${MAX_TARGETS.toLocaleString("en-US")} targets and ${MAX_PROBES_PER_ITERATION.toLocaleString("en-US")} probes per iteration passes check and plans`, async () => {
  const path = join(dir, "large.yaml");
  writeFileSync(path, targetFile({ targets: MAX_TARGETS, packets: MAX_PROBES_PER_ITERATION / MAX_TARGETS }));
  const t0 = performance.now();
  // What checkFile does (`check` prints these lines), keeping the config for the plan.
  const loaded = await loadAll(path, { isolated: false });
  figures(`check of ${MAX_TARGETS} targets`, t0);
  expect(checkOutcome(path, loaded)).toEqual({ exitCode: 0, lines: [`${path}: valid, 1 group and 100000 targets`] });
  if ("exitCode" in loaded) throw new Error(loaded.lines.join("\n"));
  const last = loaded.config.targets[targetName(MAX_TARGETS - 1)]!;
  expect(last).toMatchObject({ type: "TCPsyn", destination: "198.19.134.160", dst_port: 443, state: "validation", alert_level: "no_alert" });
  expect(last.threshold).toEqual({ latency: 0.14, loss: 5 });
  // Every destination is a literal address: the plan needs no resolver to be complete.
  const plan = buildPlan(loaded.config, (name) => [loaded.config.targets[name]!.destination], 2);
  expect(plan.probes).toBe(MAX_PROBES_PER_ITERATION);
  expect(plan.series.length).toBe(MAX_TARGETS);
}, 60_000);

test(`a file of ${MAX_TARGETS.toLocaleString("en-US")} faulty targets: the first ${MAX_SHOWN_ISSUES} problems in full, in file order, then an exact count of the rest`, async () => {
  const path = join(dir, "invalid.yaml");
  writeFileSync(path, targetFile({ targets: MAX_TARGETS, invalid: true }));
  const t0 = performance.now();
  const outcome = await checkFile(path);
  figures(`check of ${MAX_TARGETS} faulty targets`, t0);
  expect(outcome.exitCode).toBe(EXIT_DATAERR);
  expect(outcome.lines.length).toBe(MAX_SHOWN_ISSUES + 1);
  // Every target has exactly one fault (gen-targets.ts), so the count is the targets less those shown.
  expect(outcome.lines.at(-1)).toBe(`... and ${(MAX_TARGETS - MAX_SHOWN_ISSUES).toLocaleString("en-US")} more problems`);
  // The first ones are the first targets', each placed at its line, of the four kinds in turn.
  const shown = outcome.lines.slice(0, MAX_SHOWN_ISSUES);
  shown.forEach((line, i) => expect(line).toStartWith(`${path}:`));
  expect(shown.map((line) => /: targets\.(t\d+)[.:]/.exec(line)?.[1])).toEqual(
    Array.from({ length: MAX_SHOWN_ISSUES }, (_, i) => targetName(i)),
  );
  expect(shown.slice(0, INVALID_KINDS.length)).toEqual([
    `${path}:17:15: targets.t000000.dst_port: 70000 is out of range (an integer from 1 to 65535)`,
    `${path}:30:12: targets.t000001.state: "in prod" is not allowed ("in production" or "validation")`,
    `${path}:43:5: targets.t000002.treshold: unknown field, did you mean threshold? (one of type, description, destination, address_family, dont_fragment, is_subnet, nb_packets, threshold, alert_level, state, timeout, dns_update_interval, auto_register_to_groups, explicit_groups, dst_port, ip_payload_size)`,
    `${path}:47:5: targets.t000003: dst_port is required for a TCPsyn target (an integer from 1 to 65535)`,
  ]);
}, 60_000);
