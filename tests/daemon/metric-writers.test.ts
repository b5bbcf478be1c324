/**
 * One writer of metrics: only src/daemon/metrics.ts imports prom-client, and a Metrics object hands
 * out none of its prom-client objects, so every change to a series goes through one of its methods.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Counter, Gauge, Histogram, Registry, Summary } from "prom-client";
import { Metrics } from "../../src/daemon/metrics.ts";

const REPO = join(import.meta.dir, "..", "..");
const OWNER = "src/daemon/metrics.ts";

/** `from "prom-client"`, `import("prom-client")`, `require("prom-client")`, sub-paths included. */
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\bimport\s+)["']prom-client(?:\/[^"']*)?["']/;

describe("one writer of metrics", () => {
  test(`no module under src/ but ${OWNER} imports prom-client`, () => {
    const importers: string[] = [];
    for (const file of new Bun.Glob("src/**/*.{ts,js,mts,mjs,cts,cjs}").scanSync({ cwd: REPO })) {
      if (IMPORT.test(readFileSync(join(REPO, file), "utf8"))) importers.push(file);
    }
    expect(importers).toEqual([OWNER]);
  });

  test("the pattern finds each form of import (a pattern that finds nothing would pass the test above)", () => {
    for (const line of [
      'import { Gauge } from "prom-client";',
      "import * as prom from 'prom-client';",
      'import type { Registry } from "prom-client";',
      'const p = await import("prom-client");',
      'const p = require("prom-client");',
      'import "prom-client";',
      'import x from "prom-client/lib/gauge";',
    ]) {
      expect({ line, found: IMPORT.test(line) }).toEqual({ line, found: true });
    }
    expect(IMPORT.test('import { x } from "prom-client-extra";')).toBe(false);
  });

  test("a Metrics object exposes no prom-client object: no property or getter yields a registry or a metric", () => {
    const m = new Metrics({ version: "0", bun: "0", libpcap: "0" });
    const names = new Set([...Object.getOwnPropertyNames(m), ...Object.getOwnPropertyNames(Metrics.prototype)]);
    const leaks: string[] = [];
    for (const name of names) {
      if (name === "constructor") continue;
      const d = Object.getOwnPropertyDescriptor(m, name) ?? Object.getOwnPropertyDescriptor(Metrics.prototype, name)!;
      const value: unknown = d.get ? d.get.call(m) : d.value;
      if ([Registry, Counter, Gauge, Histogram, Summary].some((k) => value instanceof k)) leaks.push(name);
    }
    expect(leaks).toEqual([]);
  });
});
