/**
 * The Prometheus rules of deploy/prometheus, offline, with Debian's promtool:
 *
 * - `promtool check rules` passes every rule file;
 * - `promtool test rules` passes every unit test file (deploy/prometheus/*.test.yml);
 * - those unit tests cover every rule: each alert fires in at least one test case, and every
 *   recording rule is tested, or is a tested one for another probe type (the same expression
 *   with tcpsyn_, icmp_ or udp_unreachable_ in place of another of the three);
 * - every alert has a severity and a summary and description;
 * - what the comments of alerts.yml say of the original README's expressions: the "only if
 *   sending" example does not parse, its corrected form does, and the threshold example fails
 *   with many-to-many matching on a target in two groups, where the shipped rule fires.
 *
 * Needs promtool (the prometheus package; scripts/setup.sh installs it).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { PROMETHEUS_DIR, loadRules, ruleFiles } from "../support/deploy-files.ts";

interface UnitTests {
  rule_files: string[];
  tests: {
    name: string;
    alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[];
    promql_expr_test?: { expr: string; exp_samples: unknown[] }[];
  }[];
}

function promtool(args: string[], cwd = PROMETHEUS_DIR): { code: number; out: string } {
  const p = Bun.spawnSync(["promtool", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
}

const unitTestFiles = () =>
  ruleFiles()
    .map((f) => f.replace(/\.yml$/, ".test.yml"))
    .map((f) => ({ file: f, parsed: parseYaml(readFileSync(join(PROMETHEUS_DIR, f), "utf8")) as UnitTests }));

/** The expression with every probe type's prefix replaced by one placeholder. */
const typeless = (s: string) => s.replace(/\b(tcpsyn|icmp|udp_unreachable)_/g, "TYPE_");

const ORIGINAL_ONLY_IF_SENDING =
  'tcpsyn_loss_ratio{probe_name="lab"} * 100 > 0.1 and on(probe_name) sum by(probe_name) (increase(tcp_syn_sent_total,probe_name="lab"}[10m])) > 0';
const ORIGINAL_ONLY_IF_SENDING_CORRECTED =
  'tcpsyn_loss_ratio{probe_name="lab"} * 100 > 0.1 and on(probe_name) sum by(probe_name) (increase(tcpsyn_sent_total{probe_name="lab"}[10m])) > 0';
const ORIGINAL_THRESHOLD =
  'tcpsyn_round_trip_seconds{probe_name="lab",percentile="95"} * 1000 > on(destination, probe_name) threshold{alert_level="paging",type="latency"} * 1000';

describe("deploy/prometheus with promtool", () => {
  beforeAll(() => {
    if (Bun.which("promtool") === null) throw new Error("promtool is not installed (scripts/setup.sh installs the prometheus package)");
  });

  test("promtool check rules: every rule file", () => {
    expect(ruleFiles()).toEqual(["alerts.yml", "recording.yml"]);
    for (const f of ruleFiles()) {
      const r = promtool(["check", "rules", f]);
      expect({ f, code: r.code, out: r.out }).toEqual({ f, code: 0, out: expect.stringMatching(/SUCCESS: \d+ rules found/) });
    }
  });

  test("promtool test rules: every unit test file, each for its rule file", () => {
    for (const { file, parsed } of unitTestFiles()) {
      expect(parsed.rule_files).toEqual([file.replace(".test.yml", ".yml")]);
      const r = promtool(["test", "rules", file]);
      expect({ file, code: r.code, out: r.out }).toEqual({ file, code: 0, out: expect.stringContaining("SUCCESS") });
    }
  }, 30_000);

  test("the unit tests cover every rule: each alert fires in one, each recording rule (or its twin of another probe type) is tested", () => {
    const rules = loadRules();
    const tests = unitTestFiles().flatMap((u) => u.parsed.tests);
    const firing = new Set(tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    const alertNames = [...new Set(rules.filter((r) => r.kind === "alert").map((r) => r.name))];
    expect(alertNames.filter((n) => !firing.has(n))).toEqual([]);
    const tested = new Set(tests.flatMap((t) => (t.promql_expr_test ?? []).map((p) => typeless(p.expr))));
    const records = rules.filter((r) => r.kind === "record");
    expect(records.length).toBeGreaterThan(0);
    expect(records.filter((r) => !tested.has(typeless(r.name))).map((r) => r.name)).toEqual([]);
    // A twin really is the same rule for another type.
    const byTypeless = new Map<string, Set<string>>();
    for (const r of records) byTypeless.set(typeless(r.name), (byTypeless.get(typeless(r.name)) ?? new Set()).add(typeless(r.expr)));
    for (const [name, exprs] of byTypeless) expect({ name, exprs: exprs.size }).toEqual({ name, exprs: 1 });
  });

  test("every alert has a severity, a summary and a description", () => {
    for (const r of loadRules().filter((x) => x.kind === "alert")) {
      expect({ alert: r.name, severity: typeof r.labels.severity }).toEqual({ alert: r.name, severity: "string" });
      expect({ alert: r.name, annotations: Object.keys(r.annotations).sort() }).toEqual({ alert: r.name, annotations: ["description", "summary"] });
    }
  });

  test("the original README's examples, as alerts.yml's comments say: 'only if sending' does not parse; the threshold rule fails on a target in two groups", () => {
    const dir = mkdtempSync(join(tmpdir(), "netprobify-rules-"));
    try {
      const ruleFile = (expr: string) => `groups:\n  - name: original\n    rules:\n      - alert: Original\n        expr: ${JSON.stringify(expr)}\n`;
      writeFileSync(join(dir, "only-if-sending.yml"), ruleFile(ORIGINAL_ONLY_IF_SENDING));
      const bad = promtool(["check", "rules", "only-if-sending.yml"], dir);
      expect(bad.code).not.toBe(0);
      expect(bad.out).toContain("parse error");
      writeFileSync(join(dir, "corrected.yml"), ruleFile(ORIGINAL_ONLY_IF_SENDING_CORRECTED));
      expect(promtool(["check", "rules", "corrected.yml"], dir).code).toBe(0);

      // One target in groups g1 and g2, 20 ms at p95 against a 10 ms paging threshold.
      const series = (name: string, labels: string, value: string) =>
        `      - series: '${name}{probe_name="lab",destination="web",address_family="ipv4",state="None",${labels}}'\n        values: '${value}x5'\n`;
      let input = "";
      for (const g of ["g1", "g2"]) {
        input += series("tcpsyn_round_trip_seconds", `group="${g}",percentile="95"`, "0.02");
        input += series("threshold", `group="${g}",type="latency",alert_level="paging"`, "0.01");
      }
      const unitTest = (ruleFiles: string, expr: string) =>
        `rule_files: [${ruleFiles}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n${input}    promql_expr_test:\n      - expr: ${JSON.stringify(expr)}\n        eval_time: 2m\n        exp_samples: []\n`;
      writeFileSync(join(dir, "threshold.yml"), ruleFile(ORIGINAL_THRESHOLD));
      writeFileSync(join(dir, "original.test.yml"), unitTest("threshold.yml", ORIGINAL_THRESHOLD));
      const original = promtool(["test", "rules", "original.test.yml"], dir);
      expect(original.code).not.toBe(0);
      expect(original.out).toMatch(/many-to-many matching not allowed|multiple matches for labels/);
      // The shipped rule's expression on the same series: both groups above the threshold.
      const shipped = loadRules().find((r) => r.name === "NetprobifyLatencyAboveThreshold" && r.labels.probe_type === "tcpsyn")!;
      writeFileSync(join(dir, "alerts.yml"), readFileSync(join(PROMETHEUS_DIR, "alerts.yml")));
      writeFileSync(join(dir, "shipped.test.yml"), unitTest("alerts.yml", shipped.expr).replace("exp_samples: []", "exp_samples: [{labels: 'x', value: 0}]"));
      const r = promtool(["test", "rules", "shipped.test.yml"], dir);
      // promtool lists what the expression gave: one sample per group, with the alert_level.
      expect(r.out).not.toMatch(/many-to-many|multiple matches/);
      const got = r.out.slice(r.out.indexOf("got:"));
      for (const g of ["g1", "g2"]) expect(got).toMatch(new RegExp(`\\{[^}]*alert_level="paging"[^}]*group="${g}"[^}]*\\} (0\\.02|2E-02)`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
