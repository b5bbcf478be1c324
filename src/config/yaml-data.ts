/**
 * A parsed YAML document into plain data, with the work bounded by the size of the text.
 *
 * This replaces the yaml package's Document.toJS, which gives the same values but not the same
 * bounds: it resolves each alias by scanning the anchors that come before it (100,000 targets
 * merging one `<<: *defaults` took a minute), scans the whole document again for every alias
 * inside an anchored node (a 12 kB file of nested lists and aliases took 45 s), and stops alias
 * bombs with a per-anchor count that also refused any anchor used more than 100 times.
 *
 * Here anchors are looked up in a table, and the limit is on what aliases add: every value an
 * alias brings in is one more value for the validation to walk, so they may add at most as many
 * values as the document holds, plus ALIAS_ALLOWANCE. A billion laughs stops at once; a config
 * where 100,000 targets merge the same defaults passes.
 *
 * The values are toJS's: scalars as the schema resolved them (YAML 1.1: yes is true), keys as
 * strings (null as "", `yes` as "true"), every key an own property (even __proto__), the last of
 * two equal keys winning, and YAML 1.1 merge keys (<<) adding the keys a map lacks, earlier sources
 * before later ones.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Node, type Pair } from "yaml";

/** Values aliases may add beyond the document's own count. */
export const ALIAS_ALLOWANCE = 1_000_000;

/** Deepest nesting of collections: configs nest six levels; this only keeps the stack safe. */
export const MAX_YAML_DEPTH = 256;

/** Why the document cannot be turned into data, and where (an offset in the text). */
export class YamlDataError extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
    this.name = "YamlDataError";
  }
}

/** Anchors by name, in document order: an alias names the last one before it. */
export class AnchorTable {
  readonly #byName = new Map<string, { offset: number; node: Node }[]>();

  constructor(doc: Document) {
    const stack: unknown[] = [doc.contents];
    while (stack.length > 0) {
      const node = stack.pop();
      if (isScalar(node) || isMap(node) || isSeq(node)) {
        if (node.anchor) {
          const list = this.#byName.get(node.anchor) ?? [];
          list.push({ offset: node.range?.[0] ?? 0, node });
          this.#byName.set(node.anchor, list);
        }
      }
      if (isMap(node)) for (const pair of node.items) stack.push(pair.key, pair.value);
      else if (isSeq(node)) stack.push(...node.items);
    }
    for (const list of this.#byName.values()) list.sort((a, b) => a.offset - b.offset);
  }

  /** The node an alias stands for, or undefined when no anchor of its name comes before it. */
  resolve(alias: { source: string; range?: readonly number[] | null }): Node | undefined {
    const at = alias.range?.[0] ?? Infinity;
    const list = this.#byName.get(alias.source);
    if (!list) return undefined;
    let found: Node | undefined;
    for (let lo = 0, hi = list.length - 1; lo <= hi; ) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.offset < at) {
        found = list[mid]!.node;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}

/** Nodes of the document, aliases counted once each (what the text itself holds). */
function countNodes(doc: Document): number {
  let n = 0;
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || node === undefined) continue;
    n++;
    if (isMap(node)) for (const pair of node.items) stack.push(pair.key, pair.value);
    else if (isSeq(node)) stack.push(...node.items);
  }
  return n;
}

const isMergeKey = (key: unknown) =>
  isScalar(key) &&
  ((typeof key.value === "symbol" && key.value.description === "<<") || (key.value === "<<" && (!key.type || key.type === "PLAIN")));

const offsetOf = (node: unknown) => (node && typeof node === "object" && "range" in node ? ((node as Node).range?.[0] ?? 0) : 0);

/**
 * The document's data.
 * @param options.merge YAML 1.1 merge keys (<<); without it, << is an ordinary key.
 * @throws {YamlDataError} an alias with no anchor before it, an alias inside the node it names,
 *   aliases adding more than allowed, nesting deeper than MAX_YAML_DEPTH, a merge of a non-map.
 */
export function documentData(doc: Document, anchors: AnchorTable, options: { merge: boolean }): unknown {
  const allowance = countNodes(doc) + ALIAS_ALLOWANCE;
  let added = 0;
  /** Converted anchored nodes, and how many values each holds (what a use of it adds). */
  const done = new Map<Node, { value: unknown; size: number }>();
  const inProgress = new Set<Node>();
  let produced = 0;

  const aliasTarget = (alias: Node & { source: string }): { value: unknown; size: number } => {
    const target = anchors.resolve(alias);
    if (!target) throw new YamlDataError(offsetOf(alias), `alias *${alias.source} names no anchor before it`);
    if (inProgress.has(target)) throw new YamlDataError(offsetOf(alias), `alias *${alias.source} is inside the node it names`);
    const entry = done.get(target);
    // An anchor is converted where it stands, before any alias after it: always found.
    if (!entry) throw new YamlDataError(offsetOf(alias), `alias *${alias.source} names no anchor before it`);
    // The values it brings in count as this node's own, for the size of any anchor around it.
    added += entry.size;
    produced += entry.size;
    if (added > allowance) {
      const most = allowance.toLocaleString("en-US");
      const plus = ALIAS_ALLOWANCE.toLocaleString("en-US");
      throw new YamlDataError(offsetOf(alias), `its aliases add more than ${most} values (as many as the document holds, plus ${plus})`);
    }
    return entry;
  };

  const keyText = (key: unknown, depth: number): string => {
    const value = isAlias(key) ? aliasTarget(key).value : isScalar(key) ? key.toJSON() : convert(key, depth);
    if (value === null || value === undefined) return "";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  };

  const own = (map: Record<string, unknown>, key: string, value: unknown) =>
    Object.defineProperty(map, key, { value, writable: true, enumerable: true, configurable: true });

  const merge = (map: Record<string, unknown>, source: unknown, depth: number) => {
    const sources = isAlias(source) ? aliasTarget(source).value : convert(source, depth);
    const list = isSeq(isAlias(source) ? anchors.resolve(source) : source) ? (sources as unknown[]) : [sources];
    for (const item of list) {
      if (item === null || typeof item !== "object" || Array.isArray(item)) {
        throw new YamlDataError(offsetOf(source), "merge sources must be maps or map aliases");
      }
      for (const key of Object.keys(item)) if (!Object.hasOwn(map, key)) own(map, key, (item as Record<string, unknown>)[key]);
    }
  };

  function convert(node: unknown, depth: number): unknown {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) return aliasTarget(node).value;
    if (depth > MAX_YAML_DEPTH) throw new YamlDataError(offsetOf(node), `the document nests deeper than ${MAX_YAML_DEPTH} levels`);
    const anchored = (node as Node).anchor ? (node as Node) : undefined;
    if (anchored) inProgress.add(anchored);
    const before = produced;
    produced++;
    let value: unknown;
    if (isScalar(node)) {
      value = node.toJSON();
    } else if (isMap(node)) {
      const map: Record<string, unknown> = {};
      for (const pair of node.items as Pair<unknown, unknown>[]) {
        if (options.merge && isMergeKey(pair.key)) merge(map, pair.value, depth + 1);
        else own(map, keyText(pair.key, depth + 1), convert(pair.value, depth + 1));
      }
      value = map;
    } else if (isSeq(node)) {
      value = node.items.map((item) => convert(item, depth + 1));
    } else {
      throw new YamlDataError(offsetOf(node), "an unknown kind of YAML node");
    }
    if (anchored) {
      inProgress.delete(anchored);
      done.set(anchored, { value, size: produced - before });
    }
    return value;
  }

  return convert(doc.contents, 0);
}
