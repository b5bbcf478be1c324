/**
 * The limits admit what they promise: a generated file of 100,000 targets (the MAX_TARGETS
 * bound), sending 10,000,000 probes per iteration (MAX_PROBES_PER_ITERATION), passes `check` and
 * plans without a throw. Time and memory are printed for the record, not asserted (the machine
 * is shared): about 5 s and 1 GB of peak RSS on the 2-vCPU test machine, most of it the YAML
 * parser building a positioned document of a million nodes.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_PROBES_PER_ITERATION, MAX_TARGETS } from "../../src/config/limits.ts";
import { checkOutcome, loadAll } from "../../src/daemon/configuration.ts";
import { buildPlan } from "../../src/daemon/plan.ts";

const dir = mkdtempSync(join(tmpdir(), "netprobify-large-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One target a line, as a generator writes them: 100 packets each, one group. */
function generated(targets: number): string {
  const lines = [
    "global: {probe_name: large, interval: 60, nb_proc: 2, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}",
    "groups:",
    "  wan: {src_port_a: 65000, src_port_z: 65099}",
    "targets:",
  ];
  for (let i = 0; i < targets; i++) {
    const address = `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    lines.push(`  t${i}: {type: TCPsyn, destination: ${address}, dst_port: 443, nb_packets: 100}`);
  }
  return `${lines.join("\n")}\n`;
}

test(`a file of ${MAX_TARGETS.toLocaleString("en-US")} targets and ${MAX_PROBES_PER_ITERATION.toLocaleString("en-US")} probes per iteration passes check and plans`, async () => {
  const path = join(dir, "large.yaml");
  writeFileSync(path, generated(MAX_TARGETS));
  const t0 = performance.now();
  // What checkFile does (`check` prints these lines), keeping the config for the plan.
  const loaded = await loadAll(path, { isolated: false });
  const seconds = (performance.now() - t0) / 1000;
  expect(checkOutcome(path, loaded)).toEqual({ exitCode: 0, lines: [`${path}: valid, 1 group and 100000 targets`] });
  if ("exitCode" in loaded) throw new Error(loaded.lines.join("\n"));
  // Every destination is a literal address: the plan needs no resolver to be complete.
  const plan = buildPlan(loaded.config, (name) => [loaded.config.targets[name]!.destination], 2);
  expect(plan.probes).toBe(MAX_PROBES_PER_ITERATION);
  expect(plan.series.length).toBe(MAX_TARGETS);
  const peakMb = process.resourceUsage().maxRSS / 1024;
  console.log(`check of ${MAX_TARGETS} targets: ${seconds.toFixed(2)} s, peak RSS of the test process ${peakMb.toFixed(0)} MB`);
}, 60_000);
