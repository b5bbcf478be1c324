/**
 * Reading netprobify.yaml: YAML text in, a validated {@link Config} or a list of every problem
 * out, each one pinned to FILE:LINE:COL. Nothing here resolves a name or sends a packet, so
 * `netprobify check` and reloads can call it freely.
 */
import { constants, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
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
} from "yaml";
import {
  describeExpected,
  hintsOf,
  knownKeys,
  listItem,
  recordKey,
  recordValue,
  schemaAt,
  variantDiscriminator,
  typeNoun,
  type SchemaNode,
} from "./describe.ts";
import { DEFAULT_CONFIG_SOURCE, DEFAULT_CONFIG_YAML } from "./default-config.ts";
import { targetGroups } from "./iteration.ts";
import { MAX_CONFIG_FILE_BYTES } from "./limits.ts";
import { AnchorTable, documentData, YamlDataError } from "./yaml-data.ts";
import { ConfigSchema, splitIssueText, type Config } from "./schema.ts";

export { targetGroups };

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

export type ParseResult =
  | { readonly ok: true; readonly config: Config; readonly warnings: string[] }
  | { readonly ok: false; readonly issues: ConfigIssue[] };

export type LoadResult = ParseResult | { readonly ok: false; readonly unreadable: string };

/** Files tried, in this order, when no file is named: the README's name, then the original's default. */
export const CONFIG_FILE_NAMES = ["netprobify.yaml", "config.yaml"] as const;

/** `FILE:LINE:COL: path: message (expected)`, the form editors and CI logs link to. */
export function formatIssue(issue: ConfigIssue): string {
  const path = issue.path ? `${issue.path}: ` : "";
  const expected = issue.expected ? ` (${issue.expected})` : "";
  return `${issue.file}:${issue.line}:${issue.col}: ${path}${issue.message}${expected}`;
}

/**
 * Parses and validates configuration text.
 * @param text The YAML text.
 * @param file The name to print in front of each issue and warning.
 * @returns The config with its warnings, or every issue found, sorted by position.
 */
export function parseConfigText(text: string, file: string): ParseResult {
  const parsed = parseYamlText(text, file, ConfigSchema);
  if (!parsed.ok) return parsed;
  const warnings = [...parsed.warnings, ...configWarnings(parsed.value, parsed.data, parsed.locator)]
    .sort((a, b) => a.line - b.line || a.col - b.col)
    .map((w) => formatWarning(file, w));
  return { ok: true, config: parsed.value, warnings };
}

/** A schema that both validates (valibot) and describes itself (describe.ts walks it). */
export type DescribedSchema<T> = v.GenericSchema<unknown, T> & SchemaNode;

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
  const lines = new LineCounter();
  // YAML 1.1 with merge keys, because the original read its files with PyYAML: `yes`, `on` and
  // `<<: *defaults` must mean there what they meant there. Duplicate keys are only warned about:
  // PyYAML kept the last one silently, and files that relied on it must still load.
  const doc = parseDocument(text, {
    version: options.yaml11 === false ? "1.2" : "1.1",
    merge: options.yaml11 !== false,
    uniqueKeys: false,
    lineCounter: lines,
    prettyErrors: false,
  });
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

  const locator = new Locator(doc, lines, anchors);
  const checked = checkValue(schema, data);
  if (!checked.ok) {
    const placed = checked.raw.map((issue) => locator.place(issue, file));
    return { ok: false, issues: sortUnique(placed) };
  }
  const warnings = [...yamlWarnings(doc, at), ...duplicateKeyWarnings(doc, locator)];
  return { ok: true, value: checked.value, data, locator, warnings };
}

/** One problem of a value with no text behind it (a JSON request body): where, what, expected. */
export interface ValueProblem {
  /** "targets.web.dst_port", "[3].hostname"; "" for the value as a whole. */
  readonly path: string;
  readonly message: string;
  readonly expected: string;
  /** For "X is required": the path of the missing field ("owner"); `path` is the map lacking it. */
  readonly missing?: string;
}

/**
 * Validates an already parsed value (a JSON body, a message from an inventory) with the same
 * wording as the config file's issues, minus the positions.
 */
export function validateValue<T>(
  schema: DescribedSchema<T>,
  data: unknown,
): { ok: true; value: T } | { ok: false; problems: ValueProblem[] } {
  const checked = checkValue(schema, data);
  if (checked.ok) return checked;
  const seen = new Set<string>();
  const problems: ValueProblem[] = [];
  for (const issue of checked.raw) {
    const p: ValueProblem = {
      path: formatPath(issue.path),
      message: issue.message,
      expected: issue.expected,
      ...(issue.missing !== undefined ? { missing: formatPath([...issue.path, issue.missing]) } : {}),
    };
    const key = `${p.path}\u0000${p.message}`;
    if (!seen.has(key)) problems.push(p), seen.add(key);
  }
  return { ok: false, problems };
}

/** `path: message (expected)`, as a config issue reads without its position. */
export function formatProblem(p: ValueProblem): string {
  return `${p.path ? `${p.path}: ` : ""}${p.message}${p.expected ? ` (${p.expected})` : ""}`;
}

function checkValue<T>(schema: DescribedSchema<T>, data: unknown): { ok: true; value: T } | { ok: false; raw: Issue[] } {
  const shape = shapeIssues(schema, data, []);
  const result = v.safeParse(schema, data, { abortEarly: false });
  const issues: Issue[] = [...shape.issues];
  if (!result.success) {
    for (const issue of result.issues) {
      const converted = fromValibot(schema, issue, data);
      if (converted && !shape.listsForMaps.some((prefix) => startsWith(converted.keys, prefix))) issues.push(converted);
    }
  }
  if (issues.length > 0 || !result.success) return { ok: false, raw: issues };
  return { ok: true, value: result.output };
}

function formatWarning(file: string, w: Warning): string {
  return `${file}:${w.line}:${w.col}: warning: ${w.path ? `${w.path}: ` : ""}${w.message}`;
}

/** Formats the warnings of a {@link parseYamlText} result, sorted by position. */
export function formatWarnings(file: string, warnings: readonly Warning[]): string[] {
  return [...warnings].sort((a, b) => a.line - b.line || a.col - b.col).map((w) => formatWarning(file, w));
}

/** What a file was found to be instead of a regular file. */
function fileKind(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/**
 * The text of a settings file (netprobify.yaml, api.yaml), or why it cannot be had: only a
 * regular file of at most MAX_CONFIG_FILE_BYTES is read. The file is opened without blocking (a
 * FIFO would wait for a writer forever) and examined with fstat before a byte is read (a device
 * such as /dev/zero would never end); a file that grows meanwhile is still cut off at the limit.
 * @returns The text, or `failure`: a few words ("no such file", "it is a FIFO, not a regular file").
 */
export async function readSettingsFile(path: string): Promise<{ text: string } | { failure: string; code?: string }> {
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
    return { failure: readFailure(error), ...(typeof code === "string" ? { code } : {}) };
  }
  const tooLarge = (size: string) =>
    `it is ${size} bytes, over the limit of ${MAX_CONFIG_FILE_BYTES.toLocaleString("en-US")} (${MAX_CONFIG_FILE_BYTES / 1024 / 1024} MiB)`;
  try {
    const st = await file.stat();
    if (st.isDirectory()) return { failure: "it is a directory", code: "EISDIR" };
    if (!st.isFile()) return { failure: `it is ${fileKind(st)}, not a regular file` };
    if (st.size > MAX_CONFIG_FILE_BYTES) return { failure: tooLarge(st.size.toLocaleString("en-US")) };
    let buffer = Buffer.allocUnsafe(st.size + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > MAX_CONFIG_FILE_BYTES) return { failure: tooLarge(`more than ${MAX_CONFIG_FILE_BYTES.toLocaleString("en-US")}`) };
        const grown = Buffer.allocUnsafe(Math.min(buffer.length * 2, MAX_CONFIG_FILE_BYTES + 1));
        buffer.copy(grown, 0, 0, length);
        buffer = grown;
      }
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return { text: buffer.toString("utf8", 0, length) };
  } catch (error) {
    return { failure: readFailure(error) };
  } finally {
    await file.close();
  }
}

/**
 * Reads and validates a file.
 * @returns As {@link parseConfigText}, or `unreadable` with one line saying why the file could not be read.
 */
export async function loadConfigFile(path: string): Promise<LoadResult> {
  const read = await readSettingsFile(path);
  if ("failure" in read) return { ok: false, unreadable: `${path}: cannot read the file: ${read.failure}` };
  return parseConfigText(read.text, path);
}

/** The built-in configuration, used when no file is named and none of {@link CONFIG_FILE_NAMES} exists. */
export function loadDefaultConfig(): ParseResult {
  return parseConfigText(DEFAULT_CONFIG_YAML, DEFAULT_CONFIG_SOURCE);
}

/**
 * The first of {@link CONFIG_FILE_NAMES} present in `dir`, or undefined when the built-in
 * default applies.
 */
export async function findConfigFile(dir: string): Promise<string | undefined> {
  for (const name of CONFIG_FILE_NAMES) {
    const path = join(dir, name);
    if (await Bun.file(path).exists()) return path;
  }
  return undefined;
}

// --- internal ---

type Key = string | number;

/** An issue before it has a position: `keys` leads to the node, `at` says which part of it. */
interface Issue {
  readonly keys: readonly Key[];
  /** "value": the node at keys; "key": the key naming it; "map": the map at keys (for a missing field). */
  readonly at: "value" | "key" | "map";
  readonly path: readonly Key[];
  readonly message: string;
  readonly expected: string;
  /** The key of a missing field (at "map"). */
  readonly missing?: Key;
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

/** Why a file could not be read, in a few words ("no such file", "permission denied"). */
export function readFailure(error: unknown): string {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "it is a directory";
    default:
      return error instanceof Error ? error.message : String(error);
  }
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

/** A key as a path shows it: a huge one (a mistake, or an attack) cut short like a huge value. */
const pathKey = (key: string) => (key.length <= 64 ? key : `${key.slice(0, 40)}...(${key.length.toLocaleString("en-US")} characters)`);

function formatPath(keys: readonly Key[]): string {
  return keys.map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? pathKey(key) : `.${pathKey(key)}`)).join("");
}

const startsWith = (keys: readonly Key[], prefix: readonly Key[]) => prefix.every((key, i) => keys[i] === key);

const isPlainMap = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** A value as a message shows it: strings quoted (a long one cut short), collections by kind. */
function show(value: unknown): string {
  if (typeof value === "string") {
    if (value.length <= 64) return JSON.stringify(value);
    return `${JSON.stringify(value.slice(0, 40))}... (${value.length.toLocaleString("en-US")} characters)`;
  }
  if (Array.isArray(value)) return "a list";
  if (value === null || value === undefined) return "an empty value";
  if (typeof value === "object") return "a map";
  return String(value);
}

/**
 * What valibot cannot say (it stops at the first unknown key of a map, and treats a list as a
 * map): every unknown key, with a suggestion, and every list given where a map belongs.
 */
function shapeIssues(
  node: SchemaNode,
  value: unknown,
  keys: Key[],
): { issues: Issue[]; listsForMaps: Key[][] } {
  const issues: Issue[] = [];
  const listsForMaps: Key[][] = [];
  // What a schema node allows depends on the node and, for a variant, on its discriminator's
  // value alone: worked out once per pair, not once per target (100,000 targets share three).
  type Shape = { allowed?: string[]; values?: SchemaNode; children: Map<string, SchemaNode | undefined> };
  const shapes = new Map<SchemaNode, Map<unknown, Shape>>();
  const shapeOf = (schema: SchemaNode, data: unknown) => {
    let byVariant = shapes.get(schema);
    if (!byVariant) shapes.set(schema, (byVariant = new Map()));
    const variant = variantDiscriminator(schema, data);
    let shape = byVariant.get(variant);
    if (!shape) byVariant.set(variant, (shape = { allowed: knownKeys(schema, data), values: recordValue(schema), children: new Map() }));
    return shape;
  };
  const childOf = (schema: SchemaNode, data: unknown, key: string) => {
    const children = shapeOf(schema, data).children;
    if (!children.has(key)) children.set(key, schemaAt(schema, [key], data)?.node);
    return children.get(key);
  };
  const visit = (schema: SchemaNode, data: unknown, at: Key[]) => {
    const { allowed, values } = shapeOf(schema, data);
    if ((allowed || values) && Array.isArray(data)) {
      listsForMaps.push(at);
      const expected = describeExpected(schema);
      issues.push({ keys: at, at: "value", path: at, message: `${show(data)} is not a map`, expected });
      return;
    }
    if (allowed && isPlainMap(data)) {
      for (const [key, child] of Object.entries(data)) {
        if (!allowed.includes(key)) {
          issues.push(unknownField([...at, key], key, allowed, schema));
          continue;
        }
        const next = childOf(schema, data, key);
        if (next) visit(next, child, [...at, key]);
      }
    } else if (values && isPlainMap(data)) {
      for (const [key, child] of Object.entries(data)) visit(values, child, [...at, key]);
    } else if (Array.isArray(data)) {
      const item = listItem(schema);
      if (item) data.forEach((child, i) => visit(item, child, [...at, i]));
    }
  };
  visit(node, value, keys);
  return { issues, listsForMaps };
}

function unknownField(keys: Key[], key: string, allowed: readonly string[], parent: SchemaNode): Issue {
  const offered = allowed.filter((name) => {
    const field = schemaAt(parent, [name], undefined);
    return !(field && hintsOf(field.node).deprecated);
  });
  const guess = closest(key, offered);
  return {
    keys,
    at: "key",
    path: keys,
    message: guess ? `unknown field, did you mean ${guess}?` : "unknown field",
    expected: `one of ${offered.join(", ")}`,
  };
}

/** The known name nearest a misspelt one, if it is within two edits. */
function closest(word: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of names) {
    // The length difference is a lower bound of the distance: a long key costs nothing here.
    if (Math.abs(word.length - name.length) >= bestDistance) continue;
    const d = editDistance(word, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Turns a valibot issue into an {@link Issue}; undefined for the unknown keys shapeIssues reports. */
function fromValibot(root: SchemaNode, issue: v.BaseIssue<unknown>, data: unknown): Issue | undefined {
  const items = issue.path ?? [];
  const keys = items.map((item) => item.key as Key);
  const last = items.at(-1);
  const lastKey = keys.at(-1);

  if (last?.origin === "key" && issue.expected === "never") return undefined;

  const parentValue = last?.input;
  const missing =
    issue.input === undefined && lastKey !== undefined && isPlainMap(parentValue) && !(String(lastKey) in parentValue);
  if (missing) {
    const parentKeys = keys.slice(0, -1);
    const parent = schemaAt(root, parentKeys, data);
    const field = schemaAt(root, keys, data);
    const context = parent?.variantLabel ? ` for a ${parent.variantLabel}` : "";
    return {
      keys: parentKeys,
      at: "map",
      path: parentKeys,
      message: `${String(lastKey)} is required${context}`,
      missing: lastKey,
      expected: field ? describeExpected(field.node) : "",
    };
  }

  const field = schemaAt(root, keys, data);
  if (last?.origin === "key") {
    // A group or target name that does not match the name pattern.
    const parent = schemaAt(root, keys.slice(0, -1), data);
    const name = parent ? recordKey(parent.node) : undefined;
    const hints = name ? hintsOf(name) : {};
    return {
      keys,
      at: "key",
      path: keys,
      message: `${show(lastKey)} is not ${hints.noun ?? "a valid name"}`,
      expected: hints.expected ?? "",
    };
  }

  const expected = field ? describeExpected(field.node) : "";
  const custom = splitIssueText(issue.message);
  if (custom) return { keys, at: "value", path: keys, message: custom.problem, expected: custom.expected };
  return { keys, at: "value", path: keys, message: problem(issue, field?.node), expected };
}

/** The "what is wrong" half for valibot's own issues. */
function problem(issue: v.BaseIssue<unknown>, node: SchemaNode | undefined): string {
  const value = show(issue.input);
  switch (issue.type) {
    case "min_value":
    case "max_value":
    case "gt_value":
    case "lt_value":
      return `${value} is out of range`;
    case "integer":
      return `${value} is not an integer`;
    case "finite":
      return `${value} is not a finite number`;
    case "non_empty":
      return `the value is empty`;
    case "max_length":
      return Array.isArray(issue.input)
        ? `a list of ${issue.input.length.toLocaleString("en-US")} items is too long`
        : `a text of ${String(issue.input).length.toLocaleString("en-US")} characters is too long`;
    case "max_entries":
      return `a map of ${Object.keys(issue.input ?? {}).length.toLocaleString("en-US")} entries is too large`;
    case "ipv4":
      return `${value} is not an IPv4 address`;
    case "ipv6":
      return `${value} is not an IPv6 address`;
    case "ip":
      return `${value} is not an IP address`;
    case "regex":
    case "check":
      return `${value} is not ${(node && hintsOf(node).noun) ?? "valid"}`;
    case "picklist":
    case "literal":
    case "variant":
      return issue.input === undefined || issue.input === null ? "the value is empty" : `${value} is not allowed`;
    default:
      if (issue.input === null || issue.input === undefined) return "the value is empty";
      return `${value} is not ${typeNoun(issue.type)}`;
  }
}

function sortUnique(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues
    .sort((a, b) => a.line - b.line || a.col - b.col || a.path.localeCompare(b.path))
    .filter((issue) => {
      const text = formatIssue(issue);
      if (seen.has(text)) return false;
      seen.add(text);
      return true;
    });
}

/** Finds the YAML node behind a path, to turn issues into positions. */
export class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly anchors: AnchorTable,
  ) {}

  place(issue: Issue, file: string): ConfigIssue {
    const { line, col } = this.position(issue.keys, issue.at);
    return { file, line, col, path: formatPath(issue.path), message: issue.message, expected: issue.expected };
  }

  position(keys: readonly Key[], at: Issue["at"]): { line: number; col: number } {
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
    // The last pair wins, as it does in the parsed data when a key repeats.
    for (let i = container.items.length - 1; i >= 0; i--) {
      const pair = container.items[i];
      if (pair && isScalar(pair.key) && String(pair.key.value) === String(step)) {
        return { key: pair.key, value: isNode(pair.value) ? pair.value : undefined };
      }
    }
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

/** A warning before it is formatted; sorted by position like issues. */
export interface Warning {
  readonly line: number;
  readonly col: number;
  readonly path: string;
  readonly message: string;
}

function yamlWarnings(doc: Document, at: (offset: number) => { line: number; col: number }): Warning[] {
  return doc.warnings.map((w) => ({ ...at(w.pos[0]), path: "", message: w.message.split("\n")[0] ?? w.message }));
}

function duplicateKeyWarnings(doc: Document, locator: Locator): Warning[] {
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

function configWarnings(config: Config, data: unknown, locator: Locator): Warning[] {
  const warnings: Warning[] = [];
  const warn = (keys: Key[], at: Issue["at"], message: string) =>
    warnings.push({ ...locator.position(keys, at), path: formatPath(keys), message });

  const rawGroups = isPlainMap(data) && isPlainMap(data.groups) ? data.groups : {};
  for (const [name, raw] of Object.entries(rawGroups)) {
    if (isPlainMap(raw) && "src_ip" in raw) {
      warn(["groups", name, "src_ip"], "key", "deprecated; write src_ipv4 instead");
    }
  }

  for (const [name, target] of Object.entries(config.targets)) {
    for (const list of ["register_to", "exclude_from"] as const) {
      target.explicit_groups[list].forEach((group, i) => {
        if (!Object.hasOwn(config.groups, group)) {
          warn(["targets", name, "explicit_groups", list, i], "value", `group "${group}" does not exist; ignored`);
        }
      });
    }
    if (targetGroups(config, target).length === 0) {
      warn(["targets", name], "key", "belongs to no group, so it is not probed");
    }
  }
  return warnings;
}
