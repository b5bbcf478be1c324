/**
 * The subset reader (src/config/yaml-subset.ts) against the yaml package: on the corpus of
 * scripts/fuzz-config.ts, its mutants, and mutants aimed at the subset's edges (indentation,
 * indicators, quotes, comments, flow brackets, YAML 1.1 scalars), in both YAML versions.
 *
 * Whenever the subset reader accepts a text, the yaml package must read it without an error or a
 * warning (nor a duplicate key, which parseYamlText warns about), yaml-data.ts must make the same
 * data of its document (the same keys in the same order, the same values), and every path into
 * the data must be placed at the same line and column by both locators, for a key, a value and a
 * map. Texts the subset reader refuses are counted, not compared: the yaml package reads those.
 *
 *   node_modules/.bin/bun scripts/fuzz-yaml-subset.ts [SEED] [COUNT]
 *
 * prints how many texts each reader took and every disagreement (exit 1 if any).
 * tests/config/yaml-subset.test.ts runs a few hundred on every test run.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { EXIT_FAILURE, EXIT_USAGE } from "../src/cli/exit.ts";
import type { Issue, Key } from "../src/config/validate.ts";
import { DocumentLocator, SubsetLocator, type Place } from "../src/config/validate-yaml.ts";
import { AnchorTable, documentData } from "../src/config/yaml-data.ts";
import { subsetData, type YamlReadOptions } from "../src/config/yaml-subset.ts";
import { mulberry32 } from "../tests/support/prng.ts";
import { corpus, mutate } from "./fuzz-config.ts";

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)]!;

/** Texts that sit at the subset's edges, inserted at random places. */
const PIECES = [
  " ", "  ", ":", ": ", "-", "- ", "#", " #", "'", "''", '"', '\\"', "[", "]", "{", "}", ",", ", ", "&a ", "*a", "!!str ",
  "|", ">", "?", "? ", "%", "@", "`", "~", "yes", "No", "on", "0x1F", "0o17", "017", "1_000", "1:30", ".inf", "-.5", "1e3",
  "2001-12-14", "null", "<<", "__proto__", "---", "...", "\n", "\n  ", "\n- ", "\t", "\r", "é", "\u2028", "::1",
];

/** One edit at the subset's edges: insert, delete, or re-indent. */
function edgeMutation(text: string, random: () => number): string {
  const at = Math.floor(random() * (text.length + 1));
  const r = random();
  if (r < 0.6) return text.slice(0, at) + pick(random, PIECES) + text.slice(at);
  if (r < 0.8) return text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 3));
  const lines = text.split("\n");
  const i = Math.floor(random() * lines.length);
  lines[i] = random() < 0.5 ? ` ${lines[i]}` : lines[i]!.replace(/^ /, "");
  return lines.join("\n");
}

/** Mutant `index` of `seed`: a corpus file with fuzz-config's mutations or edge mutations. */
export function subsetMutant(seed: number, index: number): { name: string; text: string } {
  const random = mulberry32((Math.imul(seed, 1_000_003) + index) >>> 0);
  const files = corpus();
  const from = pick(random, files);
  let text = from.text;
  if (random() < 0.5) text = mutate(text, random).text;
  else for (let n = 1 + Math.floor(random() * 3); n > 0; n--) text = edgeMutation(text, random);
  return { name: from.name, text };
}

/** The same data: same keys in the same order, same prototypes, same values (Object.is). */
function sameData(a: unknown, b: unknown, path = "$"): string | undefined {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) {
    return Object.is(a, b) ? undefined : `${path}: ${String(a)} (${typeof a}) vs ${String(b)} (${typeof b})`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: list vs map`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path}: prototypes differ`;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.join("\u0000") !== kb.join("\u0000")) return `${path}: keys ${JSON.stringify(ka)} vs ${JSON.stringify(kb)}`;
  for (const k of ka) {
    const d = sameData((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    if (d) return d;
  }
  return undefined;
}

/** Every path into the data, with the root. */
function allPaths(data: unknown, keys: Key[] = [], out: Key[][] = []): Key[][] {
  out.push(keys);
  if (Array.isArray(data)) data.forEach((item, i) => allPaths(item, [...keys, i], out));
  else if (data && typeof data === "object") for (const [k, v] of Object.entries(data)) allPaths(v, [...keys, k], out);
  return out;
}

function hasDuplicateKeys(node: unknown): boolean {
  if (isSeq(node)) return node.items.some(hasDuplicateKeys);
  if (!isMap(node)) return false;
  const seen = new Set<string>();
  for (const pair of node.items) {
    if (isScalar(pair.key)) {
      const name = String(pair.key.value);
      if (seen.has(name)) return true;
      seen.add(name);
    }
    if (hasDuplicateKeys(pair.value)) return true;
  }
  return false;
}

/**
 * Both readers on one text. undefined when the subset reader refuses it or both agree; else what
 * differs.
 */
export function compareReaders(text: string, yaml11: boolean): { inSubset: boolean; problem?: string } {
  const options: YamlReadOptions = { version: yaml11 ? "1.1" : "1.2", merge: yaml11, uniqueKeys: false, prettyErrors: false };
  const subset = subsetData(text, options);
  if (!subset) return { inSubset: false };
  const lines = new LineCounter();
  const doc = parseDocument(text, { ...options, lineCounter: lines });
  const complaints = [...doc.errors, ...doc.warnings].map((e) => `${e.code}: ${e.message.split("\n")[0]}`);
  if (complaints.length > 0) return { inSubset: true, problem: `the yaml package complains: ${complaints.join("; ")}` };
  if (hasDuplicateKeys(doc.contents)) return { inSubset: true, problem: "a duplicate key" };
  const anchors = new AnchorTable(doc);
  let data: unknown;
  try {
    data = documentData(doc, anchors, { merge: yaml11 });
  } catch (error) {
    return { inSubset: true, problem: `yaml-data throws: ${String(error)}` };
  }
  const differs = sameData(subset.data, data);
  if (differs) return { inSubset: true, problem: `data differs at ${differs}` };
  const places: Place[] = allPaths(data).flatMap((keys) => (["key", "value", "map"] as Issue["at"][]).map((at) => ({ keys, at })));
  // Paths that lead nowhere too: one key past each map or list.
  for (const keys of allPaths(data)) places.push({ keys: [...keys, "missing"], at: "value" }, { keys: [...keys, 0], at: "key" });
  const bySubset = new SubsetLocator(text, options).positions(places);
  const byDocument = new DocumentLocator(doc, lines, anchors).positions(places);
  for (let i = 0; i < places.length; i++) {
    const [s, d] = [bySubset[i]!, byDocument[i]!];
    if (s.line !== d.line || s.col !== d.col) {
      const { keys, at } = places[i]!;
      return { inSubset: true, problem: `${JSON.stringify(keys)} at ${at}: subset ${s.line}:${s.col}, document ${d.line}:${d.col}` };
    }
  }
  return { inSubset: true };
}

/** `count` mutants of `seed` (plus the corpus itself), both YAML versions each. */
export function fuzzSubset(seed: number, count: number): { texts: number; inSubset: number; failures: { name: string; text: string; yaml11: boolean; problem: string }[] } {
  const failures: { name: string; text: string; yaml11: boolean; problem: string }[] = [];
  let texts = 0;
  let inSubset = 0;
  const cases = [...corpus().map((s) => ({ name: s.name, text: s.text })), ...Array.from({ length: count }, (_, i) => subsetMutant(seed, i))];
  for (const c of cases) {
    for (const yaml11 of [true, false]) {
      texts++;
      const r = compareReaders(c.text, yaml11);
      if (r.inSubset) inSubset++;
      if (r.problem) failures.push({ ...c, yaml11, problem: r.problem });
    }
  }
  return { texts, inSubset, failures };
}

if (import.meta.main) {
  const seed = Number(process.argv[2] ?? 1);
  const count = Number(process.argv[3] ?? 20_000);
  if (!Number.isInteger(seed) || !Number.isInteger(count) || count < 0) {
    console.error("usage: bun scripts/fuzz-yaml-subset.ts [SEED] [COUNT]");
    process.exit(EXIT_USAGE);
  }
  const t0 = performance.now();
  const s = fuzzSubset(seed, count);
  console.log(`seed ${seed}: ${s.texts} texts (corpus and ${count} mutants, YAML 1.1 and 1.2) in ${((performance.now() - t0) / 1000).toFixed(1)} s; the subset reader took ${s.inSubset}, the yaml package the rest`);
  for (const f of s.failures.slice(0, 20)) console.log(`FAIL ${f.name} (YAML ${f.yaml11 ? "1.1" : "1.2"}): ${f.problem}\n${JSON.stringify(f.text.slice(0, 300))}`);
  if (s.failures.length > 0) process.exit(EXIT_FAILURE);
}
