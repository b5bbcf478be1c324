/**
 * The shipped deploy/ files as the tests read them: the Kubernetes manifests (every YAML document
 * of deploy/kubernetes), the Grafana dashboards (every PromQL expression of their panels, with the
 * dashboard variables set to All) and the Prometheus rule files (every alert and recording rule,
 * and a test copy with short windows and no `for:`). One reader, so that the offline checks and
 * the test against a real Prometheus (tests/privileged/fleet.test.ts) see the same expressions.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from "yaml";

export const DEPLOY = join(import.meta.dir, "..", "..", "deploy");
export const KUBERNETES_DIR = join(DEPLOY, "kubernetes");
export const GRAFANA_DIR = join(DEPLOY, "grafana");
export const PROMETHEUS_DIR = join(DEPLOY, "prometheus");

// ---------------------------------------------------------------------------------------------
// Kubernetes

export interface Manifest {
  /** The file's name in deploy/kubernetes. */
  file: string;
  /** The document's position in its file, from 1. */
  document: number;
  /** The line of the document's first content in the file, from 1. */
  line: number;
  apiVersion: string;
  kind: string;
  name: string;
  object: Record<string, unknown>;
}

/** Every document of every deploy/kubernetes/*.yaml, in apply order; a YAML error throws with its place. */
export function loadManifests(dir = KUBERNETES_DIR): Manifest[] {
  const out: Manifest[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
    const text = readFileSync(join(dir, file), "utf8");
    const docs = parseAllDocuments(text, { prettyErrors: true });
    if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
    docs.forEach((doc, i) => {
      const problems = [...doc.errors, ...doc.warnings];
      if (problems.length > 0) throw new Error(`${file}, document ${i + 1}: ${problems.map((e) => e.message).join("; ")}`);
      const object = doc.toJS() as unknown;
      if (object === null || object === undefined) return;
      if (typeof object !== "object" || Array.isArray(object)) throw new Error(`${file}, document ${i + 1}: not a mapping`);
      const o = object as Record<string, unknown>;
      const metadata = (o.metadata ?? {}) as Record<string, unknown>;
      const start = doc.contents?.range?.[0] ?? 0;
      out.push({
        file,
        document: i + 1,
        line: text.slice(0, start).split("\n").length,
        apiVersion: String(o.apiVersion),
        kind: String(o.kind),
        name: String(metadata.name),
        object: o,
      });
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Grafana

export interface PanelQuery {
  dashboard: string;
  panelId: number;
  panelTitle: string;
  panelType: string;
  refId: string;
  /** As written in the dashboard. */
  expr: string;
  /** With the variables set as the tests run them: All (`.*`), rate windows of 1m. */
  evaluated: string;
}

export interface Dashboard {
  file: string;
  json: Record<string, unknown>;
}

export function loadDashboards(dir = GRAFANA_DIR): Dashboard[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(dir, file), "utf8")) as Record<string, unknown> }));
}

/** Every panel of a dashboard, those inside collapsed rows included. */
export function panelsOf(d: Dashboard): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const p of (d.json.panels ?? []) as Record<string, unknown>[]) {
    out.push(p);
    for (const inner of (p.panels ?? []) as Record<string, unknown>[]) out.push(inner);
  }
  return out;
}

/**
 * Grafana's variables as the tests set them: every query variable to All (its allValue, `.*`),
 * and the rate window Grafana would compute to 1m (four scrape intervals of Prometheus' default;
 * the tests scrape every second, so 1m holds plenty of samples).
 */
export function withVariables(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__interval", "1m")
    .replace(/\$\{(probe_name|group|destination)(?::regex)?\}|\$(probe_name|group|destination)\b/g, ".*");
}

export function panelQueries(dashboards: Dashboard[] = loadDashboards()): PanelQuery[] {
  const out: PanelQuery[] = [];
  for (const d of dashboards) {
    for (const p of panelsOf(d)) {
      for (const t of (p.targets ?? []) as Record<string, unknown>[]) {
        if (typeof t.expr !== "string") continue;
        out.push({
          dashboard: d.file,
          panelId: Number(p.id),
          panelTitle: String(p.title),
          panelType: String(p.type),
          refId: String(t.refId),
          expr: t.expr,
          evaluated: withVariables(t.expr),
        });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules

export interface Rule {
  file: string;
  group: string;
  /** The alert's or the recording rule's name. */
  name: string;
  kind: "alert" | "record";
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

interface RuleFile {
  groups: { name: string; interval?: string; rules: Record<string, unknown>[] }[];
}

/** The rule files: deploy/prometheus/*.yml other than the promtool unit tests (*.test.yml). */
export function ruleFiles(dir = PROMETHEUS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yml") && !f.endsWith(".test.yml"))
    .sort();
}

export function loadRules(dir = PROMETHEUS_DIR): Rule[] {
  const out: Rule[] = [];
  for (const file of ruleFiles(dir)) {
    const parsed = parseYaml(readFileSync(join(dir, file), "utf8")) as RuleFile;
    for (const g of parsed.groups) {
      for (const r of g.rules) {
        const kind = "alert" in r ? "alert" : "record";
        out.push({
          file,
          group: g.name,
          name: String(r[kind]),
          kind,
          expr: String(r.expr),
          ...(r.for !== undefined ? { for: String(r.for) } : {}),
          labels: (r.labels ?? {}) as Record<string, string>,
          annotations: (r.annotations ?? {}) as Record<string, string>,
        });
      }
    }
  }
  return out;
}

/** Every range window of an expression (`[10m]`, `[1h]`) set to `window`. */
export function withWindow(expr: string, window: string): string {
  return expr.replace(/\[(\d+[smhdwy])+\]/g, `[${window}]`);
}

/**
 * A copy of a rule file for a test Prometheus that scrapes every second: every range window set
 * to `window`, no `for:` (an alert fires at the first evaluation that finds its condition) and
 * every group evaluated every `interval`. Labels, annotations and expressions otherwise as shipped.
 */
export function testCopyOfRules(file: string, opts: { window: string; interval: string }, dir = PROMETHEUS_DIR): string {
  const parsed = parseYaml(readFileSync(join(dir, file), "utf8")) as RuleFile;
  for (const g of parsed.groups) {
    g.interval = opts.interval;
    for (const r of g.rules) {
      r.expr = withWindow(String(r.expr), opts.window);
      delete r.for;
    }
  }
  return stringifyYaml(parsed);
}
