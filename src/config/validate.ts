/**
 * A value checked against a schema that describes itself, every problem worded for people: what is
 * wrong ("70000 is out of range"), what would be right ("an integer from 1 to 65535"), and where,
 * as a path of keys. Every unknown key is reported with a suggestion (valibot stops at the first).
 * The config file, api.yaml, the inventories' files and the API's request bodies share this
 * wording; validate-yaml.ts adds the FILE:LINE:COL of text.
 */
import * as v from "valibot";
import {
  describeExpected,
  hintsOf,
  knownKeys,
  listItem,
  recordKey,
  recordValue,
  schemaAt,
  variantKey,
  typeNoun,
  type SchemaNode,
} from "./describe.ts";
import { splitIssueText } from "./schema.ts";

/** A schema that both validates (valibot) and describes itself (describe.ts walks it). */
export type DescribedSchema<T> = v.GenericSchema<unknown, T> & SchemaNode;

/** One step of a path into a value: a map key or a list index. */
export type Key = string | number;

/** An issue before it has a position: `keys` leads to the node, `at` says which part of it. */
export interface Issue {
  readonly keys: readonly Key[];
  /** "value": the node at keys; "key": the key naming it; "map": the map at keys (for a missing field). */
  readonly at: "value" | "key" | "map";
  readonly path: readonly Key[];
  readonly message: string;
  readonly expected: string;
  /** The key of a missing field (at "map"). */
  readonly missing?: Key;
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

/** The value, or every problem of it before it is worded or placed. */
export function checkValue<T>(schema: DescribedSchema<T>, data: unknown): { ok: true; value: T } | { ok: false; raw: Issue[] } {
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

/** A key as a path shows it: a huge one (a mistake, or an attack) cut short like a huge value. */
const pathKey = (key: string) => (key.length <= 64 ? key : `${key.slice(0, 40)}...(${key.length.toLocaleString("en-US")} characters)`);

export function formatPath(keys: readonly Key[]): string {
  return keys.map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? pathKey(key) : `.${pathKey(key)}`)).join("");
}

const startsWith = (keys: readonly Key[], prefix: readonly Key[]) => prefix.every((key, i) => keys[i] === key);

export const isPlainMap = (value: unknown): value is Record<string, unknown> =>
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
  type Shape = {
    allowed?: Set<string>;
    values?: SchemaNode;
    children: Map<string, SchemaNode | undefined>;
    /** What is said of each unknown key met: the same misspelling in every target is worded once. */
    unknown: Map<string, Pick<Issue, "message" | "expected">>;
  };
  const shapes = new Map<SchemaNode, { key: string | undefined; byVariant: Map<unknown, Shape> }>();
  const shapeOf = (schema: SchemaNode, data: unknown) => {
    let known = shapes.get(schema);
    if (!known) shapes.set(schema, (known = { key: variantKey(schema), byVariant: new Map() }));
    const { key, byVariant } = known;
    const variant = key !== undefined && typeof data === "object" && data !== null ? (data as Record<string, unknown>)[key] : undefined;
    let shape = byVariant.get(variant);
    if (!shape) {
      const allowed = knownKeys(schema, data);
      shape = { allowed: allowed && new Set(allowed), values: recordValue(schema), children: new Map(), unknown: new Map() };
      byVariant.set(variant, shape);
    }
    return shape;
  };
  const childOf = (schema: SchemaNode, shape: Shape, data: unknown, key: string) => {
    if (!shape.children.has(key)) shape.children.set(key, schemaAt(schema, [key], data)?.node);
    return shape.children.get(key);
  };
  // The path being walked, as a stack: a path is only copied for an issue, not made for every
  // node (a million of them in a 100,000-target file).
  const at: Key[] = [...keys];
  const visit = (schema: SchemaNode, data: unknown) => {
    const shape = shapeOf(schema, data);
    const { allowed, values } = shape;
    if ((allowed || values) && Array.isArray(data)) {
      const here = [...at];
      listsForMaps.push(here);
      issues.push({ keys: here, at: "value", path: here, message: `${show(data)} is not a map`, expected: describeExpected(schema) });
      return;
    }
    if (allowed && isPlainMap(data)) {
      for (const key of Object.keys(data)) {
        if (!allowed.has(key)) {
          let words = shape.unknown.get(key);
          if (!words) shape.unknown.set(key, (words = unknownField(key, [...allowed], schema)));
          const here = [...at, key];
          issues.push({ keys: here, at: "key", path: here, ...words });
          continue;
        }
        const next = childOf(schema, shape, data, key);
        if (!next) continue;
        at.push(key);
        visit(next, data[key]);
        at.pop();
      }
    } else if (values && isPlainMap(data)) {
      for (const key of Object.keys(data)) {
        at.push(key);
        visit(values, data[key]);
        at.pop();
      }
    } else if (Array.isArray(data)) {
      const item = listItem(schema);
      if (!item) return;
      for (let i = 0; i < data.length; i++) {
        at.push(i);
        visit(item, data[i]);
        at.pop();
      }
    }
  };
  visit(node, value);
  return { issues, listsForMaps };
}

/** What is said of an unknown key: a suggestion when a known one is near, and the known ones. */
function unknownField(key: string, allowed: readonly string[], parent: SchemaNode): Pick<Issue, "message" | "expected"> {
  const offered = allowed.filter((name) => {
    const field = schemaAt(parent, [name], undefined);
    return !(field && hintsOf(field.node).deprecated);
  });
  const guess = closest(key, offered);
  return {
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
