/**
 * YAML (or JSON) text into a value checked against a schema, every problem pinned to the
 * FILE:LINE:COL of the node that causes it, plus the warnings of the text itself (duplicate keys,
 * YAML's own). netprobify.yaml, api.yaml and the file inventory's files are read through it.
 */
import {
  isAlias,
  isMap,
  isNode,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node,
  type Pair,
  type YAMLMap,
} from "yaml";
import { describeExpected } from "./describe.ts";
import { checkValue, formatPath, type DescribedSchema, type Issue, type Key } from "./validate.ts";
import { AnchorTable, documentData, YamlDataError } from "./yaml-data.ts";
import { subsetData, subsetPositions, type YamlPosition, type YamlReadOptions } from "./yaml-subset.ts";

/** One problem of a configuration file, at the node that causes it. */
export interface ConfigIssue {
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  /** 1-based. */
  readonly col: number;
  /** "targets.web.dst_port"; "" for the file as a whole. */
  readonly path: string;
  /** What is wrong: "70000 is out of range". */
  readonly message: string;
  /** What would be right: "an integer from 1 to 65535"; "" when nothing useful can be said. */
  readonly expected: string;
}

/** `FILE:LINE:COL: path: message (expected)`, the form editors and CI logs link to. */
export function formatIssue(issue: ConfigIssue): string {
  const path = issue.path ? `${issue.path}: ` : "";
  const expected = issue.expected ? ` (${issue.expected})` : "";
  return `${issue.file}:${issue.line}:${issue.col}: ${path}${issue.message}${expected}`;
}

/**
 * Problems printed in full before the rest are only counted: a generated file with a fault in
 * each of its 100,000 targets is told in a screenful, not in 100,000 lines.
 */
export const MAX_SHOWN_ISSUES = 100;

/** The first `max` issues as {@link formatIssue} prints them, then `... and N more problems`. */
export function formatIssues(issues: readonly ConfigIssue[], max = MAX_SHOWN_ISSUES): string[] {
  const lines = issues.slice(0, max).map(formatIssue);
  const rest = issues.length - lines.length;
  if (rest > 0) lines.push(`... and ${rest.toLocaleString("en-US")} more problem${rest === 1 ? "" : "s"}`);
  return lines;
}

/** {@link parseYamlText}'s result: the value and what is needed to place further warnings. */
export type YamlParse<T> =
  | { readonly ok: true; readonly value: T; readonly data: unknown; readonly locator: Locator; readonly warnings: Warning[] }
  | { readonly ok: false; readonly issues: ConfigIssue[] };

/**
 * Parses YAML (or JSON, a subset of it) text and validates it against `schema`, every problem
 * pinned to FILE:LINE:COL. Shared by netprobify.yaml, api.yaml and the file inventory's files.
 * @param options.yaml11 Read as YAML 1.1 with merge keys, as PyYAML did (the original's files).
 */
export function parseYamlText<T>(
  text: string,
  file: string,
  schema: DescribedSchema<T>,
  options: { yaml11?: boolean } = { yaml11: true },
): YamlParse<T> {
  // YAML 1.1 with merge keys, because the original read its files with PyYAML: `yes`, `on` and
  // `<<: *defaults` must mean there what they meant there. Duplicate keys are only warned about:
  // PyYAML kept the last one silently, and files that relied on it must still load.
  const readOptions: YamlReadOptions = {
    version: options.yaml11 === false ? "1.2" : "1.1",
    merge: options.yaml11 !== false,
    uniqueKeys: false,
    prettyErrors: false,
  };
  // Most files are plain YAML, which the subset reader reads many times faster, with no
  // positions kept: those of the problems found, if any, are looked up afterwards.
  const subset = subsetData(text, readOptions);
  if (subset) return checkData(schema, subset.data, new SubsetLocator(text, readOptions), file, () => []);

  const lines = new LineCounter();
  const doc = parseDocument(text, { ...readOptions, lineCounter: lines });
  const at = (offset: number) => lines.linePos(offset);

  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((error) => {
        const quote = error.code === "MISSING_CHAR" && /quote/.test(error.message);
        const unclosed = quote ? unclosedQuote(doc, error.pos[0]) : undefined;
        const { line, col } = at(unclosed ?? error.pos[0]);
        const firstLine = cutLong(cutQuotes(error.message.split("\n")[0] ?? error.message));
        const message =
          unclosed !== undefined
            ? "a quoted string is never closed"
            : error.code === "MULTIPLE_DOCS"
              ? "the file holds more than one document (a second --- line)"
              : firstLine;
        return { file, line, col, path: "", message: `YAML syntax error: ${message}`, expected: "" };
      }),
    };
  }

  const anchors = new AnchorTable(doc);
  let data: unknown;
  try {
    data = documentData(doc, anchors, { merge: options.yaml11 !== false });
  } catch (error) {
    // An alias without its anchor, or aliases expanding without bound ("billion laughs").
    const offset = error instanceof YamlDataError ? error.offset : 0;
    const message = error instanceof Error ? error.message : String(error);
    const issue = { file, ...at(offset), path: "", message: `YAML cannot be expanded: ${message}`, expected: "" };
    return { ok: false, issues: [issue] };
  }
  if (data === null || data === undefined) {
    const expected = describeExpected(schema);
    const issue = { file, line: 1, col: 1, path: "", message: "the file holds no settings", expected };
    return { ok: false, issues: [issue] };
  }

  const locator = new DocumentLocator(doc, lines, anchors);
  return checkData(schema, data, locator, file, () => [...yamlWarnings(doc, at), ...duplicateKeyWarnings(doc, locator)]);
}

/** The data checked against the schema, its problems placed with `locator`. */
function checkData<T>(
  schema: DescribedSchema<T>,
  data: unknown,
  locator: Locator,
  file: string,
  warnings: () => Warning[],
): YamlParse<T> {
  const checked = checkValue(schema, data);
  if (!checked.ok) {
    const positions = locator.positions(checked.raw);
    const placed = checked.raw.map(
      (issue, i): ConfigIssue => ({ file, ...positions[i]!, path: formatPath(issue.path), message: issue.message, expected: issue.expected }),
    );
    return { ok: false, issues: sortUnique(placed) };
  }
  return { ok: true, value: checked.value, data, locator, warnings: warnings() };
}

function formatWarning(file: string, w: Warning): string {
  return `${file}:${w.line}:${w.col}: warning: ${w.path ? `${w.path}: ` : ""}${w.message}`;
}

/** Formats the warnings of a {@link parseYamlText} result, sorted by position. */
export function formatWarnings(file: string, warnings: readonly Warning[]): string[] {
  return [...warnings].sort((a, b) => a.line - b.line || a.col - b.col).map((w) => formatWarning(file, w));
}

/** A warning before it is formatted; sorted by position like issues. */
export interface Warning {
  readonly line: number;
  readonly col: number;
  readonly path: string;
  readonly message: string;
}

/**
 * Where the quoted string that swallowed the rest of the file begins: the parser reports a
 * missing quote at the end of the file, far from the mistake.
 */
function unclosedQuote(doc: Document, errorOffset: number): number | undefined {
  // Depth first in document order, on a stack: yaml's visit() costs the square of the depth, which
  // made a 10 kB file of nested lists with a stray quote take 4 s.
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isScalar(node)) {
      const quoted = node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE";
      if (quoted && node.range && node.range[1] >= errorOffset) return node.range[0];
    } else if (isMap(node)) {
      for (let i = node.items.length - 1; i >= 0; i--) stack.push(node.items[i]!.value, node.items[i]!.key);
    } else if (isSeq(node)) {
      for (let i = node.items.length - 1; i >= 0; i--) stack.push(node.items[i]);
    }
  }
  return undefined;
}

/**
 * A parser's message with every long quoted text in it cut short: the yaml package quotes the
 * token it stopped at, which may be a megabyte of one scalar.
 */
function cutQuotes(message: string): string {
  return message.replace(
    /"((?:[^"\\]|\\.){64,})"/g,
    (_, inner: string) => `"${inner.slice(0, 40)}..." (${inner.length.toLocaleString("en-US")} characters)`,
  );
}

/** A message cut at 200 characters: the parser may also echo a long token without quotes. */
const cutLong = (message: string) =>
  message.length <= 200 ? message : `${message.slice(0, 160)}... (${message.length.toLocaleString("en-US")} characters)`;

function sortUnique(issues: ConfigIssue[]): ConfigIssue[] {
  issues.sort((a, b) => a.line - b.line || a.col - b.col || a.path.localeCompare(b.path));
  // Equal issues are in the same run of one place and path once sorted: each is compared with
  // the few kept before it in its run, rather than every issue formatted into a set.
  const kept: ConfigIssue[] = [];
  let runStart = 0;
  for (const issue of issues) {
    const last = kept[kept.length - 1];
    if (!last || last.line !== issue.line || last.col !== issue.col || last.path !== issue.path) runStart = kept.length;
    let seen = false;
    for (let i = runStart; i < kept.length && !seen; i++) {
      seen = kept[i]!.message === issue.message && kept[i]!.expected === issue.expected && kept[i]!.file === issue.file;
    }
    if (!seen) kept.push(issue);
  }
  return kept;
}

/** A path into the data and the part of its node to point at (see {@link Issue}). */
export interface Place {
  readonly keys: readonly Key[];
  readonly at: Issue["at"];
}

/** Turns paths into the data into positions in the text. */
export interface Locator {
  /** Where one path leads. */
  position(keys: readonly Key[], at: Issue["at"]): YamlPosition;
  /** Where each of many paths leads, in order: a large file is gone through once for them all. */
  positions(places: readonly Place[]): YamlPosition[];
}

/**
 * Places paths in text the subset reader read (yaml-subset.ts): one more pass over the text per
 * call, only when a problem or a warning needs a position.
 */
export class SubsetLocator implements Locator {
  constructor(
    private readonly text: string,
    private readonly options: YamlReadOptions,
  ) {}

  position(keys: readonly Key[], at: Issue["at"]): YamlPosition {
    return this.positions([{ keys, at }])[0]!;
  }

  positions(places: readonly Place[]): YamlPosition[] {
    if (places.length === 0) return [];
    const found = subsetPositions(
      this.text,
      this.options,
      places.map((place) => place.keys),
    );
    return places.map(({ keys, at }, i) => {
      const { spot, depth } = found[i]!;
      // As DocumentLocator does: the key of a key issue or of an empty value, else the value;
      // for a path that leads nowhere, the deepest node on its way.
      if (depth < keys.length) return spot.value;
      return at === "key" || spot.empty ? (spot.key ?? spot.value) : spot.value;
    });
  }
}

/** Finds the YAML node behind a path in the yaml package's document. */
export class DocumentLocator implements Locator {
  /** Each map's keys, the last of equal ones winning, built the first time a path goes through it. */
  private readonly indexes = new WeakMap<YAMLMap, Map<string, Pair>>();

  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly anchors: AnchorTable,
  ) {}

  positions(places: readonly Place[]): YamlPosition[] {
    return places.map((place) => this.position(place.keys, place.at));
  }

  position(keys: readonly Key[], at: Issue["at"]): YamlPosition {
    const found = this.find(keys);
    let node: Node | undefined;
    if (found.complete) {
      const emptyValue = isScalar(found.value) && found.value.value === null && !found.value.source;
      if (at === "key" || ((found.value === undefined || emptyValue) && found.key)) node = found.key ?? found.value;
      else node = found.value;
    }
    node ??= found.nearest;
    return this.at(node?.range?.[0] ?? 0);
  }

  at(offset: number): { line: number; col: number } {
    return this.lines.linePos(offset);
  }

  /** Walks keys from the root; `nearest` is the deepest node reached when the path stops early. */
  private find(keys: readonly Key[]): { complete: boolean; key?: Node; value?: Node; nearest?: Node } {
    let value: Node | undefined = isNode(this.doc.contents) ? this.doc.contents : undefined;
    let key: Node | undefined;
    let nearest = value;
    for (const step of keys) {
      const container = this.resolve(value);
      const next = container ? this.child(container, step) : undefined;
      if (!next) return { complete: false, nearest };
      ({ key, value } = next);
      nearest = value ?? key ?? nearest;
    }
    return { complete: true, key, value, nearest };
  }

  private resolve(node: Node | undefined): Node | undefined {
    return isAlias(node) ? this.anchors.resolve(node) : node;
  }

  private child(container: Node, step: Key): { key?: Node; value?: Node } | undefined {
    if (isSeq(container) && typeof step === "number") {
      const item = container.items[step];
      return isNode(item) ? { value: item } : undefined;
    }
    if (!isMap(container)) return undefined;
    // Looked up in an index: scanning the pairs for every issue made 100,000 issues in a map of
    // 100,000 targets take five billion comparisons.
    let index = this.indexes.get(container);
    if (!index) {
      index = new Map();
      // The last pair wins, as it does in the parsed data when a key repeats.
      for (const pair of container.items) if (isScalar(pair.key)) index.set(String(pair.key.value), pair as Pair);
      this.indexes.set(container, index);
    }
    const pair = index.get(String(step));
    if (pair) return { key: pair.key as Node, value: isNode(pair.value) ? pair.value : undefined };
    // A key brought in by `<<: *anchor` lives in the anchored map.
    for (const pair of container.items) {
      if (!isScalar(pair.key) || pair.key.source !== "<<") continue;
      const sources = isSeq(pair.value) ? pair.value.items : [pair.value];
      for (const source of sources) {
        const resolved = this.resolve(isNode(source) ? source : undefined);
        const found = resolved ? this.child(resolved, step) : undefined;
        if (found) return found;
      }
    }
    return undefined;
  }
}

function yamlWarnings(doc: Document, at: (offset: number) => { line: number; col: number }): Warning[] {
  return doc.warnings.map((w) => ({ ...at(w.pos[0]), path: "", message: w.message.split("\n")[0] ?? w.message }));
}

function duplicateKeyWarnings(doc: Document, locator: DocumentLocator): Warning[] {
  const warnings: Warning[] = [];
  const visit = (node: unknown, keys: Key[]) => {
    if (isSeq(node)) node.items.forEach((item, i) => visit(item, [...keys, i]));
    if (!isMap(node)) return;
    const seen = new Set<string>();
    for (const pair of node.items) {
      if (!isScalar(pair.key)) continue;
      const name = String(pair.key.value);
      if (seen.has(name)) {
        const pos = locator.at(pair.key.range?.[0] ?? 0);
        warnings.push({ ...pos, path: formatPath([...keys, name]), message: "duplicate key; this last one wins" });
      }
      seen.add(name);
      visit(pair.value, [...keys, name]);
    }
  };
  visit(doc.contents, []);
  return warnings;
}
