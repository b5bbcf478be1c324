/**
 * Targets and groups named like the properties of every JavaScript object (__proto__,
 * constructor, prototype) are ordinary names: counted by check, planned, published and merged
 * like any other. valibot's record dropped them silently, so "3 targets" read as 0.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { parseConfigText } from "../../src/config/load.ts";
import { validateValue } from "../../src/config/validate.ts";
import { InventoryListSchema, type Config } from "../../src/config/schema.ts";
import { checkFile, loadAll } from "../../src/daemon/configuration.ts";
import { Metrics } from "../../src/daemon/metrics.ts";
import { buildPlan } from "../../src/daemon/plan.ts";
import { Resolver } from "../../src/daemon/resolver.ts";
import { DynamicTargets } from "../../src/inventory/merge.ts";
import type { Logger } from "../../src/log.ts";
import { parseExposition } from "../support/daemon-process.ts";

const FIXTURE = join(import.meta.dir, "..", "fixtures", "config", "prototype-names.yaml");
const NAMES = ["__proto__", "constructor", "prototype"];
const quiet: Logger = { debug() {}, info() {}, warning() {}, error() {}, critical() {}, enabled: () => false };

async function loaded(isolated: boolean): Promise<Config> {
  const r = await loadAll(FIXTURE, { isolated });
  if ("exitCode" in r) throw new Error(r.lines.join("\n"));
  return r.config;
}

/** Every target|group series of the plan, with literal destinations expanded as the daemon does. */
function planned(c: Config): string[] {
  const resolver = new Resolver(quiet, async () => []);
  resolver.sync(c);
  return buildPlan(c, (t) => resolver.addressesOf(t), 1)
    .series.map((s) => `${s.target}|${s.group}`)
    .sort();
}

const EXPECTED_SERIES = [
  "__proto__|__proto__",
  "__proto__|constructor",
  "__proto__|prototype",
  "constructor|__proto__",
  "constructor|constructor",
  "constructor|prototype",
  "prototype|__proto__",
  "prototype|prototype",
];

test("check counts every one of them", async () => {
  expect(await checkFile(FIXTURE)).toEqual({ exitCode: 0, lines: [`${FIXTURE}: valid, 3 groups and 3 targets`] });
});

test("they are all planned, in this thread and after the loader Worker's structured clone", async () => {
  for (const isolated of [false, true]) {
    const c = await loaded(isolated);
    expect(Object.keys(c.groups).sort()).toEqual(NAMES);
    expect(Object.keys(c.targets).sort()).toEqual(NAMES);
    expect(planned(c)).toEqual(EXPECTED_SERIES);
  }
});

test("the maps have no prototype, so a name a config lacks is never found in it", async () => {
  for (const isolated of [false, true]) {
    const r = await loadAll(join(import.meta.dir, "..", "fixtures", "config", "minimal.yaml"), { isolated });
    if ("exitCode" in r) throw new Error(r.lines.join("\n"));
    expect(Object.getPrototypeOf(r.config.groups)).toBeNull();
    expect(Object.getPrototypeOf(r.config.targets)).toBeNull();
    expect("constructor" in r.config.groups).toBe(false);
    expect("toString" in r.config.targets).toBe(false);
  }
});

test("a register_to naming a group the config lacks is warned about, even when it is called constructor", () => {
  const r = parseConfigText(
    `global: {probe_name: p, interval: 10, nb_proc: 1, logging_level: INFO, prometheus_port: 9, dns_update_interval: 0}
groups: {g: {}}
targets:
  t: {type: ICMPping, destination: 198.18.0.1, explicit_groups: {register_to: [constructor]}}
`,
    "w.yaml",
  );
  expect(r.ok && r.warnings).toEqual(['w.yaml:4:80: warning: targets.t.explicit_groups.register_to[0]: group "constructor" does not exist; ignored']);
});

test("toString is refused for what it is, a name with a capital letter, not dropped", () => {
  const r = parseConfigText(
    `global: {probe_name: p, interval: 10, nb_proc: 1, logging_level: INFO, prometheus_port: 9, dns_update_interval: 0}
groups: {toString: {}}
`,
    "t.yaml",
  );
  expect(r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)).toEqual(['groups.toString: "toString" is not a valid name']);
});

test("their series are published under their names", async () => {
  const c = await loaded(false);
  const resolver = new Resolver(quiet, async () => []);
  resolver.sync(c);
  const plan = buildPlan(c, (t) => resolver.addressesOf(t), 1);
  const m = new Metrics({ version: "0", bun: "0", libpcap: "0" });
  m.setProbeName(c.global.probe_name);
  await m.applyIteration({
    probeName: c.global.probe_name,
    series: plan.series,
    results: plan.series.map(() => ({
      sent: 1,
      lost: 0,
      percentiles: [0.001, 0.001],
      buckets: [],
      rttSum: 0.001,
      rttCount: 1,
      worstPathLossRatio: 0,
      pathsDown: 0,
      matchFail: 0,
      portMismatch: 0,
      timeOutOfOrder: 0,
      unroutable: "",
      extra: [],
    })),
    percentiles: c.global.percentile,
    histogramBuckets: [],
    histogramPerDestination: false,
    targets: c.targets,
    resolutions: resolver.resolutions(),
    stats: [],
    iterationSeconds: 0,
    endedAt: null,
    degraded: false,
  });
  const e = parseExposition(await m.exposition());
  const series = e.get("app_host_resolution_status").map((s) => s.labels.destination).sort();
  expect(series).toEqual(NAMES);
  expect(e.get("icmp_loss_ratio").map((s) => `${s.labels.destination}|${s.labels.group}`).sort()).toEqual(
    EXPECTED_SERIES.filter((s) => !s.startsWith("prototype")),
  );
});

test("a dynamic target whose name is __proto__ (inventory _, hostname proto__) is merged like any other", () => {
  const c = parseConfigText(
    `global: {probe_name: p, interval: 10, nb_proc: 1, logging_level: INFO, prometheus_port: 9, dns_update_interval: 0}
groups: {g: {}}
`,
    "d.yaml",
  );
  if (!c.ok) throw new Error("test config invalid");
  const list = validateValue(InventoryListSchema, [{ hostname: "proto__", destination: "198.18.0.9", type: "ICMPping" }]);
  if (!list.ok) throw new Error("test list invalid");
  const merged = new DynamicTargets(quiet).merge(c.config, new Map([["_", { targets: list.value, receivedAt: 0 }]]));
  expect(Object.keys(merged.config.targets)).toEqual(["__proto__"]);
  expect(merged.counts.get("_")).toBe(1);
});
