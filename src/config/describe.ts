/**
 * Reads the valibot schema objects back, to describe them to people and to editors: the
 * "(what is expected)" half of every config message, the list of known fields, and the JSON
 * Schema written to schema_config.yaml. valibot schemas are plain objects (`type`, `pipe`,
 * `entries`, `wrapped`, `options`...), which is what makes this possible without a converter.
 */
import { stringify } from "yaml";
import { ConfigSchema, type FieldHints } from "./schema.ts";

// --- the shape of valibot objects, as far as this file reads them ---

/** A validation action, metadata or description inside a pipe. */
interface PipeItem {
  readonly kind: string;
  readonly type: string;
  readonly requirement?: unknown;
  readonly description?: string;
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/** Any valibot schema. Fields absent from a given schema type are simply undefined. */
export interface SchemaNode {
  readonly kind: string;
  readonly type: string;
  readonly pipe?: readonly (SchemaNode | PipeItem)[];
  readonly entries?: Readonly<Record<string, SchemaNode>>;
  readonly wrapped?: SchemaNode;
  readonly default?: unknown;
  readonly options?: readonly unknown[];
  readonly item?: SchemaNode;
  readonly key?: unknown;
  readonly value?: SchemaNode;
  readonly literal?: unknown;
}

/** The root of the configuration schema, seen through {@link SchemaNode}. */
export const CONFIG_ROOT: SchemaNode = ConfigSchema;

const WRAPPERS = new Set(["optional", "nullish", "nullable", "exact_optional"]);

const isSchema = (x: unknown): x is SchemaNode =>
  typeof x === "object" && x !== null && (x as { kind?: unknown }).kind === "schema";

/** The actions of a schema's pipe, nested pipes included, in order. */
function actionsOf(node: SchemaNode): PipeItem[] {
  if (!node.pipe) return [];
  const [first, ...rest] = node.pipe;
  const inner = isSchema(first) ? actionsOf(first) : [];
  return [...inner, ...rest.filter((item): item is PipeItem => !isSchema(item))];
}

/** Strips optional/nullish wrappers, keeping the outer ones' actions reachable. */
function unwrap(node: SchemaNode): { inner: SchemaNode; wrappers: SchemaNode[] } {
  const wrappers: SchemaNode[] = [];
  let inner = node;
  while (WRAPPERS.has(inner.type) && inner.wrapped) {
    wrappers.push(inner);
    inner = inner.wrapped;
  }
  return { inner, wrappers };
}

/**
 * Every action of a node, outer wrappers first. Kept per node (schemas never change): a file
 * with 100,000 problems asks for the same few fields' descriptions 100,000 times.
 */
const actionsByNode = new WeakMap<SchemaNode, readonly PipeItem[]>();
function allActions(node: SchemaNode): readonly PipeItem[] {
  let actions = actionsByNode.get(node);
  if (!actions) {
    const { inner, wrappers } = unwrap(node);
    actions = [...wrappers.flatMap(actionsOf), ...actionsOf(inner)];
    actionsByNode.set(node, actions);
  }
  return actions;
}

function action(node: SchemaNode, type: string): PipeItem | undefined {
  return allActions(node).find((a) => a.type === type);
}

function requirementOf(node: SchemaNode, type: string): number | undefined {
  const r = action(node, type)?.requirement;
  return typeof r === "number" ? r : undefined;
}

const hintsByNode = new WeakMap<SchemaNode, FieldHints>();

/** The hints of {@link FieldHints} attached with v.metadata, outer ones winning. */
export function hintsOf(node: SchemaNode): FieldHints {
  let hints = hintsByNode.get(node);
  if (!hints) {
    const merged: Record<string, unknown> = {};
    for (const a of [...allActions(node)].reverse()) {
      if (a.kind === "metadata" && a.metadata) Object.assign(merged, a.metadata);
    }
    hintsByNode.set(node, (hints = Object.freeze(merged) as FieldHints));
  }
  return hints;
}

export function descriptionOf(node: SchemaNode): string | undefined {
  return allActions(node).find((a) => a.type === "description")?.description;
}

/** The default of an optional field, or undefined when it has none. */
export function defaultOf(node: SchemaNode): unknown {
  for (const w of unwrap(node).wrappers) {
    if (w.default !== undefined) return typeof w.default === "function" ? (w.default as () => unknown)() : w.default;
  }
  return undefined;
}

const isOptional = (node: SchemaNode) => WRAPPERS.has(node.type);

// --- walking by path ---

/** The variant option a value selects, by its discriminator; undefined when none does. */
function variantOption(node: SchemaNode, value: unknown): SchemaNode | undefined {
  const key = typeof node.key === "string" ? node.key : undefined;
  if (key === undefined || typeof value !== "object" || value === null) return undefined;
  const wanted = (value as Record<string, unknown>)[key];
  return node.options?.filter(isSchema).find((option) => {
    const discriminator = option.entries?.[key];
    return discriminator !== undefined && unwrap(discriminator).inner.literal === wanted;
  });
}

/** The key a variant node discriminates on ("type"); undefined for any other node. */
export function variantKey(node: SchemaNode): string | undefined {
  const inner = unwrap(node).inner;
  return inner.type === "variant" && typeof inner.key === "string" ? inner.key : undefined;
}

/** Where a path leads in the schema, and the discriminator value of the last variant passed. */
export interface SchemaAt {
  readonly node: SchemaNode;
  /** e.g. "TCPsyn target": the variant option the parent map was validated as. */
  readonly variantLabel?: string;
}

/**
 * Follows `path` from `root` through maps, records, lists and variants, using `data` (the parsed
 * YAML) to pick variant options. Undefined when the path leaves the schema (an unknown key).
 */
export function schemaAt(root: SchemaNode, path: readonly PropertyKey[], data: unknown): SchemaAt | undefined {
  let node = root;
  let value = data;
  for (const key of path) {
    const next = childSchema(resolveVariant(unwrap(node).inner, value).node, key);
    if (!next) return undefined;
    node = next;
    value = typeof value === "object" && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  }
  return { node, variantLabel: resolveVariant(unwrap(node).inner, value).label };
}

function resolveVariant(node: SchemaNode, value: unknown): { node: SchemaNode; label?: string } {
  if (node.type !== "variant") return { node };
  const option = variantOption(node, value);
  if (!option) return { node };
  const key = String(node.key);
  const noun = hintsOf(node).noun ?? "value";
  return { node: option, label: `${String((value as Record<string, unknown>)[key])} ${noun}` };
}

function childSchema(node: SchemaNode, key: PropertyKey): SchemaNode | undefined {
  switch (node.type) {
    case "strict_object":
    case "object":
      return typeof key === "string" ? node.entries?.[key] : undefined;
    case "record":
      return node.value;
    case "array":
      return node.item;
    case "variant": {
      // No option chosen (bad or missing discriminator). The discriminator itself may be any
      // option's value; for other keys, any option that knows the key will do.
      const options = node.options?.filter(isSchema) ?? [];
      if (key === node.key) return discriminatorSchema(node, options);
      for (const option of options) {
        const found = childSchema(option, key);
        if (found) return found;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/** A picklist of every option's discriminator value, described like the first option's. */
function discriminatorSchema(node: SchemaNode, options: readonly SchemaNode[]): SchemaNode {
  const key = String(node.key);
  const fields = options.map((option) => option.entries?.[key]).filter((f): f is SchemaNode => f !== undefined);
  const description = fields[0] ? descriptionOf(fields[0]) : undefined;
  return {
    kind: "schema",
    type: "picklist",
    options: fields.map((f) => unwrap(f).inner.literal),
    pipe: description
      ? [{ kind: "schema", type: "picklist" }, { kind: "metadata", type: "description", description }]
      : undefined,
  };
}

/**
 * The keys a map may hold at this node for this value; undefined when the node is not a map
 * with fixed keys (records take any valid name).
 */
export function knownKeys(node: SchemaNode, value: unknown): string[] | undefined {
  const inner = unwrap(node).inner;
  if (inner.type === "strict_object" || inner.type === "object") return Object.keys(inner.entries ?? {});
  if (inner.type === "variant") {
    const option = variantOption(inner, value);
    const options = option ? [option] : (inner.options?.filter(isSchema) ?? []);
    return [...new Set(options.flatMap((o) => knownKeys(o, value) ?? []))];
  }
  return undefined;
}

/** The schema a record's keys follow (what a valid group or target name is). */
export function recordKey(node: SchemaNode): SchemaNode | undefined {
  const inner = unwrap(node).inner;
  return inner.type === "record" && isSchema(inner.key) ? inner.key : undefined;
}

/** The schema a map's values follow, for records. */
export function recordValue(node: SchemaNode): SchemaNode | undefined {
  const inner = unwrap(node).inner;
  return inner.type === "record" ? inner.value : undefined;
}

/** The schema of a list's items. */
export function listItem(node: SchemaNode): SchemaNode | undefined {
  const inner = unwrap(node).inner;
  return inner.type === "array" ? inner.item : undefined;
}

// --- phrases for people ---

/** Quotes every string choice when one has a space, so that "in production" reads as one choice. */
function quoteIfSpaced(options: readonly unknown[]): string[] {
  const quote = options.some((o) => typeof o === "string" && /\s/.test(o));
  return options.map((o) => (quote && typeof o === "string" ? JSON.stringify(o) : String(o)));
}

/** "A or B", "one of A, B, C". */
export function choices(options: readonly unknown[]): string {
  const shown = quoteIfSpaced(options);
  return shown.length === 2 ? `${shown[0]} or ${shown[1]}` : `one of ${shown.join(", ")}`;
}

/** What kind of value a schema type is, as the subject of "is not ...". */
export function typeNoun(type: string): string {
  switch (type) {
    case "number":
      return "a number";
    case "string":
      return "a string";
    case "boolean":
      return "a boolean";
    case "array":
      return "a list";
    case "strict_object":
    case "object":
    case "record":
    case "variant":
      return "a map";
    default:
      return `a ${type}`;
  }
}

const expectedByNode = new WeakMap<SchemaNode, string>();

/** The "(what is expected)" phrase of a field, e.g. "an integer from 1 to 65535". */
export function describeExpected(node: SchemaNode): string {
  let expected = expectedByNode.get(node);
  if (expected === undefined) expectedByNode.set(node, (expected = expectedOf(node)));
  return expected;
}

function expectedOf(node: SchemaNode): string {
  const hinted = hintsOf(node).expected;
  if (hinted) return hinted;
  const inner = unwrap(node).inner;
  switch (inner.type) {
    case "number":
      return describeNumber(node);
    case "string":
      // Examples from the documentation ranges (RFC 5737, RFC 3849).
      if (action(node, "ipv4")) return "an IPv4 address such as 192.0.2.1";
      if (action(node, "ipv6")) return "an IPv6 address such as 2001:db8::1";
      if (action(node, "ip")) return "an IPv4 or IPv6 address such as 0.0.0.0 or ::";
      if (action(node, "non_empty")) return "some text";
      return "text, in quotes if YAML would read it as something else";
    case "picklist":
      return choices(inner.options ?? []);
    case "boolean":
      return "true or false";
    case "literal":
      return String(inner.literal);
    case "strict_object":
      return `a map of ${Object.keys(inner.entries ?? {}).join(", ")}`;
    default:
      return typeNoun(inner.type);
  }
}

function describeNumber(node: SchemaNode): string {
  const noun = action(node, "integer") ? "an integer" : "a number";
  const min = requirementOf(node, "min_value");
  const max = requirementOf(node, "max_value");
  const above = requirementOf(node, "gt_value");
  if (min !== undefined && max !== undefined) return `${noun} from ${min} to ${max}`;
  if (min !== undefined) return `${noun} of at least ${min}`;
  if (above !== undefined && max !== undefined) return `${noun} above ${above} and at most ${max}`;
  if (above !== undefined) return `${noun} above ${above}`;
  if (max !== undefined) return `${noun} of at most ${max}`;
  return noun;
}

// --- JSON Schema ---

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema";

/** The JSON Schema (draft 2020-12) of the configuration file. */
export function configJsonSchema(): JsonObject {
  return { $schema: JSON_SCHEMA_DIALECT, title: "netprobify configuration", ...toJsonSchema(CONFIG_ROOT) };
}

/** Converts one valibot schema, with its description, default and constraints. */
export function toJsonSchema(node: SchemaNode): JsonObject {
  const { inner, wrappers } = unwrap(node);
  const out: JsonObject = {};
  const description = descriptionOf(node);
  if (description) out.description = description;
  Object.assign(out, typeJsonSchema(inner, node));
  if (wrappers.some((w) => w.type === "nullish" || w.type === "nullable") && typeof out.type === "string") {
    out.type = [out.type, "null"];
  }
  const fallback = defaultOf(node);
  if (fallback !== undefined) out.default = toJson(fallback);
  if (hintsOf(node).deprecated) out.deprecated = true;
  return out;
}

function toJson(value: unknown): Json {
  return JSON.parse(JSON.stringify(value)) as Json;
}

function typeJsonSchema(inner: SchemaNode, outer: SchemaNode): JsonObject {
  switch (inner.type) {
    case "number": {
      const out: JsonObject = { type: action(outer, "integer") ? "integer" : "number" };
      const min = requirementOf(outer, "min_value");
      const max = requirementOf(outer, "max_value");
      const above = requirementOf(outer, "gt_value");
      if (min !== undefined) out.minimum = min;
      if (above !== undefined) out.exclusiveMinimum = above;
      if (max !== undefined) out.maximum = max;
      return out;
    }
    case "string": {
      const out: JsonObject = { type: "string" };
      const regex = action(outer, "regex")?.requirement;
      if (regex instanceof RegExp) out.pattern = regex.source;
      if (action(outer, "non_empty")) out.minLength = 1;
      const longest = requirementOf(outer, "max_length");
      if (longest !== undefined) out.maxLength = longest;
      if (action(outer, "ipv4")) out.format = "ipv4";
      if (action(outer, "ipv6")) out.format = "ipv6";
      if (action(outer, "ip")) out.anyOf = [{ format: "ipv4" }, { format: "ipv6" }];
      return out;
    }
    case "boolean":
      return { type: "boolean" };
    case "picklist":
      return { enum: toJson(inner.options ?? []) };
    case "literal":
      return { const: toJson(inner.literal) };
    case "array": {
      const out: JsonObject = { type: "array", items: inner.item ? toJsonSchema(inner.item) : {} };
      const most = requirementOf(outer, "max_length");
      if (most !== undefined) out.maxItems = most;
      return out;
    }
    case "strict_object":
    case "object":
      return objectJsonSchema(inner, inner.type === "strict_object");
    case "record": {
      const key = isSchema(inner.key) ? action(inner.key, "regex")?.requirement : undefined;
      const value = inner.value ? toJsonSchema(inner.value) : {};
      const out: JsonObject =
        key instanceof RegExp
          ? { type: "object", patternProperties: { [key.source]: value }, additionalProperties: false }
          : { type: "object", additionalProperties: value };
      const most = requirementOf(outer, "max_entries");
      if (most !== undefined) out.maxProperties = most;
      return out;
    }
    case "variant":
      return variantJsonSchema(inner);
    case "unknown":
      // Any value: free-form module options.
      return {};
    default:
      throw new Error(`describe.ts cannot express valibot schema type "${inner.type}" in JSON Schema`);
  }
}

function objectJsonSchema(node: SchemaNode, strict: boolean): JsonObject {
  const entries = Object.entries(node.entries ?? {});
  const out: JsonObject = {
    type: "object",
    properties: Object.fromEntries(entries.map(([key, field]) => [key, toJsonSchema(field)])),
  };
  const required = entries.filter(([, field]) => !isOptional(field)).map(([key]) => key);
  if (required.length > 0) out.required = required;
  if (strict) out.additionalProperties = false;
  return out;
}

/**
 * A variant becomes one object whose properties hold what its options share, plus one
 * if/then per option for what differs (a required dst_port, a larger minimum payload). Editors
 * explain "dst_port is required" far better from this than from a oneOf of three near-copies.
 */
function variantJsonSchema(node: SchemaNode): JsonObject {
  const discriminator = String(node.key);
  const options = (node.options ?? []).filter(isSchema).map((option) => ({
    value: toJson(unwrap(option.entries?.[discriminator] ?? option).inner.literal),
    schema: objectJsonSchema(option, option.type === "strict_object"),
  }));
  const propsOf = (o: JsonObject) => (o.properties ?? {}) as JsonObject;
  const requiredOf = (o: JsonObject) => (o.required ?? []) as Json[];
  const keys = [...new Set(options.flatMap((o) => Object.keys(propsOf(o.schema))))];

  const properties: JsonObject = {};
  const differences: JsonObject[] = options.map(() => ({}));
  for (const key of keys) {
    const perOption = options.map((o) => propsOf(o.schema)[key] as JsonObject | undefined);
    if (key === discriminator) {
      const first = perOption[0] ?? {};
      const entry: JsonObject = {};
      if (first.description !== undefined) entry.description = first.description;
      entry.enum = options.map((o) => o.value);
      properties[key] = entry;
      continue;
    }
    const shared = sharedFields(perOption);
    properties[key] = shared;
    perOption.forEach((schema, i) => {
      const own = schema ? differingFields(schema, shared) : {};
      const difference = differences[i];
      if (difference && Object.keys(own).length > 0) difference[key] = own;
    });
  }
  const required = keys.filter((key) => options.every((o) => requiredOf(o.schema).includes(key)));
  const out: JsonObject = { type: "object", properties };
  if (required.length > 0) out.required = required;
  out.additionalProperties = false;
  const branches: Json[] = [];
  options.forEach((o, i) => {
    const then: JsonObject = {};
    const ownProperties = differences[i] ?? {};
    if (Object.keys(ownProperties).length > 0) then.properties = ownProperties;
    const ownRequired = requiredOf(o.schema).filter((key) => !required.includes(String(key)));
    if (ownRequired.length > 0) then.required = ownRequired;
    if (Object.keys(then).length === 0) return;
    branches.push({ if: { properties: { [discriminator]: { const: o.value } }, required: [discriminator] }, then });
  });
  if (branches.length > 0) out.allOf = branches;
  return out;
}

const same = (a: Json | undefined, b: Json | undefined) => JSON.stringify(a) === JSON.stringify(b);

/** The fields of a property's schema that have one value in every option that has it. */
function sharedFields(perOption: readonly (JsonObject | undefined)[]): JsonObject {
  const present = perOption.filter((s): s is JsonObject => s !== undefined);
  const [first, ...rest] = present;
  if (!first) return {};
  return Object.fromEntries(Object.entries(first).filter(([field, value]) => rest.every((s) => same(s[field], value))));
}

function differingFields(schema: JsonObject, shared: JsonObject): JsonObject {
  return Object.fromEntries(Object.entries(schema).filter(([field, value]) => !same(shared[field], value)));
}

/** Where schema_config.yaml comes from; also the header comment that says so. */
export const SCHEMA_FILE_HEADER = [
  "# GENERATED from src/config/schema.ts by `bun run scripts/gen-schema.ts`: do not edit by hand.",
  "# JSON Schema (draft 2020-12) of netprobify.yaml, for editors (yaml-language-server) and other tools.",
  "# tests/config/schema-drift.test.ts fails when this file and the schema disagree.",
].join("\n");

/** The full text of schema_config.yaml. */
export function renderSchemaYaml(): string {
  return `${SCHEMA_FILE_HEADER}\n${stringify(configJsonSchema(), { lineWidth: 100, minContentWidth: 40 })}`;
}

