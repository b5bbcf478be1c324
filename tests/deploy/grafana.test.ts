/**
 * The Grafana dashboards of deploy/grafana, checked as JSON (no Grafana runs here): known panel
 * types laid out on the 24-column grid without overlap, unique ids, every query on the dashboard's
 * data source variable with a refId of its own, heatmaps fed by histogram buckets in Grafana's
 * heatmap format, the variables probe_name, group and destination defined with All as `.*`,
 * no `$variable` used that is not defined, and every query parsing (promtool). Their queries are run against a real Prometheus
 * scraping real probers in tests/privileged/fleet.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadDashboards, panelQueries, panelsOf, type Dashboard } from "../support/deploy-files.ts";

/** Panel types of Grafana's core that the dashboards may use. */
const KNOWN_PANEL_TYPES = new Set(["row", "timeseries", "heatmap", "stat", "table", "state-timeline", "bargauge", "text"]);
/** Variables Grafana defines itself. */
const BUILTIN_VARIABLES = new Set(["__rate_interval", "__interval", "__range", "__url_time_range", "__all"]);

const dashboards = loadDashboards();
const variablesOf = (d: Dashboard) => ((d.json.templating as { list: Record<string, unknown>[] }).list ?? []);

/** `$name`, `${name}` and `${name:format}` references in a text. */
function referencedVariables(text: string): string[] {
  return [...text.matchAll(/\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)/g)].map((m) => m[1] ?? m[2]!);
}

describe("deploy/grafana dashboards", () => {
  test("an overview and a prober-health board, each with a uid, a title and the netprobify tag", () => {
    expect(dashboards.map((d) => [d.file, d.json.uid])).toEqual([
      ["netprobify-overview.json", "netprobify-overview"],
      ["netprobify-prober-health.json", "netprobify-prober-health"],
    ]);
    for (const d of dashboards) {
      expect(typeof d.json.title).toBe("string");
      expect(d.json.tags).toContain("netprobify");
      expect(typeof d.json.schemaVersion).toBe("number");
    }
  });

  test("panels: known types, unique ids, on the 24-column grid, none overlapping another", () => {
    for (const d of dashboards) {
      const panels = panelsOf(d);
      expect(panels.length).toBeGreaterThan(5);
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      const boxes: { id: unknown; x: number; y: number; w: number; h: number }[] = [];
      for (const p of panels) {
        expect({ d: d.file, id: p.id, known: KNOWN_PANEL_TYPES.has(String(p.type)) }).toEqual({ d: d.file, id: p.id, known: true });
        const g = p.gridPos as { x: number; y: number; w: number; h: number };
        expect(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.y >= 0 && g.h > 0).toBe(true);
        for (const b of boxes) {
          const overlap = g.x < b.x + b.w && b.x < g.x + g.w && g.y < b.y + b.h && b.y < g.y + g.h;
          expect({ d: d.file, panels: [b.id, p.id], overlap }).toEqual({ d: d.file, panels: [b.id, p.id], overlap: false });
        }
        boxes.push({ id: p.id, ...g });
      }
      // __requires lists every panel type used, as Grafana's export does.
      const required = ((d.json.__requires ?? []) as { type: string; id: string }[]).filter((r) => r.type === "panel").map((r) => r.id);
      expect(required.sort()).toEqual([...new Set(panels.map((p) => String(p.type)).filter((t) => t !== "row"))].sort());
    }
  });

  test("queries: every panel has some, each on the ${datasource} variable with its own refId; heatmaps read histogram buckets in heatmap format", () => {
    for (const d of dashboards) {
      for (const p of panelsOf(d).filter((x) => x.type !== "row")) {
        const targets = (p.targets ?? []) as Record<string, unknown>[];
        expect({ d: d.file, panel: p.title, targets: targets.length > 0 }).toEqual({ d: d.file, panel: p.title, targets: true });
        expect((p.datasource as { uid: string }).uid).toBe("${datasource}");
        const refIds = targets.map((t) => t.refId);
        expect(new Set(refIds).size).toBe(refIds.length);
        for (const t of targets) {
          expect((t.datasource as { uid: string }).uid).toBe("${datasource}");
          expect(typeof t.expr === "string" && t.expr.trim().length > 0).toBe(true);
          if (p.type === "heatmap") {
            expect(t.format).toBe("heatmap");
            expect(String(t.expr)).toMatch(/^sum by \(le\) \(rate\([a-z_]+_round_trip_duration_seconds_bucket\{/);
          }
        }
      }
    }
    expect(panelQueries().length).toBeGreaterThan(30);
  });

  test("variables: a Prometheus data source, probe_name, group and destination (the overview) with All as .*, and nothing used that is not defined", () => {
    const expected: Record<string, string[]> = {
      "netprobify-overview.json": ["datasource", "probe_name", "group", "destination"],
      "netprobify-prober-health.json": ["datasource", "probe_name"],
    };
    for (const d of dashboards) {
      const vars = variablesOf(d);
      expect(vars.map((v) => v.name)).toEqual(expected[d.file]!);
      expect(vars[0]).toMatchObject({ type: "datasource", query: "prometheus" });
      for (const v of vars.slice(1)) expect(v).toMatchObject({ type: "query", includeAll: true, allValue: ".*", multi: true });
      const defined = new Set(vars.map((v) => String(v.name)));
      const used = new Set<string>();
      const texts = [
        ...panelsOf(d).flatMap((p) => [String(p.title), ...((p.targets ?? []) as { expr?: string }[]).map((t) => t.expr ?? "")]),
        ...vars.map((v) => String(v.definition ?? "")),
      ];
      // label_replace's "$1" is a capture group, not a variable.
      for (const text of texts) for (const name of referencedVariables(text.replaceAll('"$1"', ""))) used.add(name);
      expect([...used].filter((n) => !defined.has(n) && !BUILTIN_VARIABLES.has(n))).toEqual([]);
      // A variable's query only uses variables defined before it (Grafana resolves them in order).
      vars.forEach((v, i) => {
        for (const name of referencedVariables(String(v.definition ?? ""))) expect(vars.slice(0, i).map((x) => x.name)).toContain(name);
      });
    }
  });

  test("with the variables at All and a 1m rate window, no $ is left in any query, and every query parses (promtool check rules)", () => {
    const queries = panelQueries();
    for (const q of queries) expect({ panel: q.panelTitle, left: referencedVariables(q.evaluated.replaceAll('"$1"', "")) }).toEqual({ panel: q.panelTitle, left: [] });
    if (Bun.which("promtool") === null) throw new Error("promtool is not installed (scripts/setup.sh installs the prometheus package)");
    // Each query as a recording rule: promtool parses every expression and names the bad ones.
    const dir = mkdtempSync(join(tmpdir(), "netprobify-dashboards-"));
    try {
      const rules = queries.map((q, i) => `      - record: panel_${i}\n        expr: ${JSON.stringify(q.evaluated)}\n`).join("");
      writeFileSync(join(dir, "panels.yml"), `groups:\n  - name: panels\n    rules:\n${rules}`);
      const r = Bun.spawnSync(["promtool", "check", "rules", join(dir, "panels.yml")], { stdout: "pipe", stderr: "pipe" });
      expect(r.stdout.toString() + r.stderr.toString()).toContain(`SUCCESS: ${queries.length} rules found`);
      // And the check can fail: a query with a missing brace.
      writeFileSync(join(dir, "bad.yml"), `groups:\n  - name: panels\n    rules:\n      - record: bad\n        expr: ${JSON.stringify(queries[0]!.evaluated.replace("{", ""))}\n`);
      expect(Bun.spawnSync(["promtool", "check", "rules", join(dir, "bad.yml")]).exitCode).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
