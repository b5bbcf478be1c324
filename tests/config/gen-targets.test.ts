/**
 * scripts/gen-targets.ts, the generator the scale tests and benchmarks share: deterministic, the
 * fields a large datacenter's config sets, addresses in 198.18.0.0/15, and with --invalid exactly
 * one fault per target.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { EXIT_USAGE } from "../../src/cli/exit.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { INVALID_KINDS, targetFile, targetName } from "../../scripts/gen-targets.ts";

const SCRIPT = join(import.meta.dir, "..", "..", "scripts", "gen-targets.ts");

test("the same options give the same text; every target has description, state, alert_level and threshold", () => {
  expect(targetFile({ targets: 300 })).toBe(targetFile({ targets: 300 }));
  const parsed = parseConfigText(targetFile({ targets: 300, packets: 7 }), "gen.yaml");
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues.slice(0, 3)));
  expect(parsed.warnings).toEqual([]);
  const targets = Object.values(parsed.config.targets);
  expect(targets.length).toBe(300);
  for (const t of targets) {
    expect(t).toMatchObject({ type: "TCPsyn", dst_port: 443, nb_packets: 7 });
    expect(t.description).toStartWith("web frontend ");
    expect(t.state).toBeDefined();
    expect(t.threshold?.latency).toBeGreaterThan(0);
    expect(t.threshold?.loss).toBeGreaterThan(0);
    expect(t.destination).toMatch(/^198\.1[89]\.\d+\.\d+$/);
  }
  expect(Object.keys(parsed.config.targets)).toEqual(Array.from({ length: 300 }, (_, i) => targetName(i)));
  expect(new Set(targets.map((t) => t.alert_level)).size).toBe(4);
});

test("--invalid: one fault per target, of each kind in turn", () => {
  const n = INVALID_KINDS.length * 5;
  const parsed = parseConfigText(targetFile({ targets: n, invalid: true }), "bad.yaml");
  if (parsed.ok) throw new Error("an invalid file passed");
  expect(parsed.issues.map((i) => i.path.split(".")[1])).toEqual(Array.from({ length: n }, (_, i) => targetName(i)));
  expect(parsed.issues.slice(0, 4).map((i) => i.message)).toEqual([
    "70000 is out of range",
    '"in prod" is not allowed',
    "unknown field, did you mean threshold?",
    "dst_port is required for a TCPsyn target",
  ]);
});

test("the bounds: up to 131,071 targets (one address each in 198.18.0.0/15); a bad option exits 64", () => {
  expect(() => targetFile({ targets: 131_072 })).toThrow(RangeError);
  expect(targetFile({ targets: 0 })).toEndWith("targets:\n");
  const bun = process.execPath;
  const bad = spawnSync(bun, [SCRIPT, "--targets", "many"], { encoding: "utf8" });
  expect(bad.status).toBe(EXIT_USAGE);
  expect(bad.stderr).toContain("--targets wants a non-negative integer");
  const unknown = spawnSync(bun, [SCRIPT, "--target", "3"], { encoding: "utf8" });
  expect(unknown.status).toBe(EXIT_USAGE);
  const ok = spawnSync(bun, [SCRIPT, "--targets", "2", "--packets", "3"], { encoding: "utf8" });
  expect(ok.status).toBe(0);
  expect(ok.stdout).toBe(targetFile({ targets: 2, packets: 3 }));
});
