/**
 * A fast reader for the plain subset of YAML that configs and generated files are written in:
 * block maps and lists indented with spaces, one-line flow collections ({type: TCPsyn, ...},
 * [95, 50]), plain scalars and one-line quoted strings without escapes, comments.
 *
 * The yaml package builds a positioned document of every node, which for a 100,000-target file
 * (1.3 million lines, a million nodes) took 10 to 40 s and 2 GB. This reads the same text in a
 * fraction of a second into the same plain data, with no position kept: positions are only
 * needed for the few paths a problem or a warning names, and {@link subsetPositions} finds them
 * in a second pass when they are.
 *
 * Anything outside the subset (anchors, aliases, merge keys, tags, block scalars, multi-line
 * scalars or flow collections, escapes, duplicate keys, tabs, document markers after the first
 * line, anything the yaml package would call an error or warn about) makes it answer undefined,
 * and the caller reads the text with the yaml package as before. Inside the subset the data is
 * the data yaml-data.ts makes of the yaml package's document: plain scalars are resolved by the
 * yaml package's own tags for the same version and options (YAML 1.1: yes is true, 0x1F is 31),
 * keys are strings as there, and a scalar that would resolve to anything but a primitive (a
 * YAML 1.1 timestamp is a Date) leaves the subset too. scripts/fuzz-yaml-subset.ts (and
 * tests/config/yaml-subset.test.ts, at CI size) holds the two readers to the same data and the same
 * positions on the config corpus and mutants of it.
 */
import { isScalar, parseDocument, type DocumentOptions, type ParseOptions, type SchemaOptions } from "yaml";
import type { Key } from "./validate.ts";

/** 1-based, as yaml's LineCounter gives them (columns in UTF-16 code units). */
export interface YamlPosition {
  readonly line: number;
  readonly col: number;
}

/** What a path leads to in the text: its key (none for a list item or the root) and its value. */
export interface SubsetSpot {
  /** The key naming the node; undefined for a list item and for the root. */
  readonly key?: YamlPosition;
  /** Where the value starts; for `key:` with nothing after it, past the `:` and its spaces (as the yaml package has it). */
  readonly value: YamlPosition;
  /** `key:` with no value at all (null, without even a `~`). */
  readonly empty: boolean;
}

/** The options both readers parse with: the yaml package's, so that scalars resolve alike. */
export type YamlReadOptions = ParseOptions & DocumentOptions & SchemaOptions;

/** Nesting beyond which the subset stops (the yaml package path has its own bound). */
const MAX_DEPTH = 64;

/** Keys longer than this are left to the yaml package, which refuses implicit keys over 1024. */
const MAX_KEY_LENGTH = 1000;

/**
 * Characters the subset does not read: tabs, carriage returns and other control characters,
 * Unicode line separators and the byte order mark, which the yaml package treats specially.
 */
const OUTSIDE_CHARACTERS = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]/;

/** Thrown inside the reader when the text leaves the subset; never escapes this module. */
const OUTSIDE: unique symbol = Symbol("outside the YAML subset");

const SPACE = 32;
const HASH = 35;
const COLON = 58;
const DASH = 45;
const QUOTE_DOUBLE = 34;
const QUOTE_SINGLE = 39;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const COMMA = 44;

/** Characters a plain scalar (or key) of the subset may not start with. */
const INDICATORS = new Set([..."&*!|>%@`,[]{}#'\""].map((c) => c.charCodeAt(0)));

const isFlowIndicator = (c: number) =>
  c === COMMA || c === OPEN_BRACKET || c === CLOSE_BRACKET || c === OPEN_BRACE || c === CLOSE_BRACE;

/** Plain scalars to values, by the yaml package's tags for one set of options. */
class ScalarResolver {
  readonly #tags: { test: RegExp; resolve: (value: string, onError: (message: string) => void, options: unknown) => unknown }[];
  /** Any of the tags' tests: most scalars (names, addresses) match none and are strings. */
  readonly #any: RegExp;
  readonly #options: unknown;

  constructor(options: YamlReadOptions) {
    const doc = parseDocument("", options);
    this.#options = doc.options;
    this.#tags = [];
    for (const tag of doc.schema.tags) {
      // findScalarTagByTest: the first tag whose default is true and whose test matches.
      if (tag.default !== true || !("test" in tag) || !(tag.test instanceof RegExp) || !("resolve" in tag)) continue;
      this.#tags.push({ test: tag.test, resolve: tag.resolve as never });
    }
    // Anchored as a whole, or the engine would try every alternative at every offset.
    const flagless = this.#tags.every((tag) => tag.test.flags === "");
    this.#any = flagless ? new RegExp(`^(?:${this.#tags.map((tag) => `(?:${tag.test.source})`).join("|")})`) : /[^]*/;
  }

  /** The value of a plain scalar; throws OUTSIDE for anything but a primitive. */
  resolve(text: string): unknown {
    if (!this.#any.test(text)) return text;
    const tag = this.#tags.find((t) => t.test.test(text));
    if (!tag) return text;
    let failed = false;
    const resolved = tag.resolve(text, () => (failed = true), this.#options);
    const value = isScalar(resolved) ? resolved.value : resolved;
    if (failed) throw OUTSIDE;
    if (value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value;
    throw OUTSIDE;
  }

  /** A plain key as yaml-data.ts names it: resolved, then as text (null is ""). */
  key(text: string): string {
    const value = this.resolve(text);
    return value === null ? "" : String(value);
  }
}

const resolvers = new Map<string, ScalarResolver>();
function resolverFor(options: YamlReadOptions): ScalarResolver {
  const id = JSON.stringify(options);
  let resolver = resolvers.get(id);
  if (!resolver) resolvers.set(id, (resolver = new ScalarResolver(options)));
  return resolver;
}

/** Paths whose positions are wanted, as a tree of keys. */
class Wanted {
  children?: Map<Key, Wanted>;
  key?: YamlPosition;
  value?: YamlPosition;
  empty = false;
  found = false;

  child(key: Key): Wanted {
    this.children ??= new Map();
    let node = this.children.get(key);
    if (!node) this.children.set(key, (node = new Wanted()));
    return node;
  }
}

/** A plain scalar's text and value, as {@link SubsetReader}'s recall keeps them. */
interface Recalled {
  raw: string;
  value: unknown;
}

const RECALL_SLOTS = 4096;

/** The reader: one pass over the text, line by line. */
class SubsetReader {
  /** Offset of the current line's first character. */
  private lineStart = 0;
  /** Offset of the current line's newline (or the text's end). */
  private lineEnd = 0;
  /** 0-based number of the current line. */
  private line = 0;
  /** Spaces before the current line's content; -1 past the last line. */
  private indent = -1;
  /** Before the first line with content: the only place a `---` may stand. */
  private firstLine = true;
  /** Plain keys and values last seen, by length and a few of their characters (see recall). */
  private readonly keys: Recalled[] = [];
  private readonly values: Recalled[] = [];

  constructor(
    private readonly text: string,
    private readonly resolver: ScalarResolver,
    /** Make the data; false when only positions are wanted (the text is known to be in the subset). */
    private readonly build: boolean,
  ) {}

  read(root?: Wanted): unknown {
    const { text } = this;
    this.lineEnd = this.endOf(0);
    this.settle();
    // One leading document marker, alone on its line, is common and harmless.
    if (this.indent === 0 && text.startsWith("---", this.lineStart)) {
      if (!this.restIsBlank(this.lineStart + 3)) throw OUTSIDE;
      this.firstLine = false;
      this.advance();
    }
    this.firstLine = false;
    if (this.indent !== 0) throw OUTSIDE;
    const p = this.lineStart;
    if (root) this.place(root, undefined, p, false);
    let data: unknown;
    if (this.isDash(p)) data = this.seq(0, 0, root, false);
    else if (this.entryColon(p) >= 0) data = this.map(0, p, 0, root);
    else throw OUTSIDE;
    if (!this.atEnd()) throw OUTSIDE;
    return data;
  }

  /** Past the last line with content. */
  private atEnd(): boolean {
    return this.indent < 0;
  }

  private endOf(start: number): number {
    const end = this.text.indexOf("\n", start);
    return end < 0 ? this.text.length : end;
  }

  /** Moves to the next line, then past blank and comment lines. */
  private advance(): void {
    if (this.lineEnd >= this.text.length) {
      this.indent = -1;
      return;
    }
    this.lineStart = this.lineEnd + 1;
    this.lineEnd = this.endOf(this.lineStart);
    this.line++;
    this.settle();
  }

  /** Stays on the current line if it holds content, else moves to the next one that does. */
  private settle(): void {
    const { text } = this;
    for (;;) {
      if (this.lineStart >= text.length) {
        this.indent = -1;
        return;
      }
      let p = this.lineStart;
      while (p < this.lineEnd && text.charCodeAt(p) === SPACE) p++;
      if (p < this.lineEnd && text.charCodeAt(p) !== HASH) {
        this.indent = p - this.lineStart;
        // A document marker (---, ...) past the first line: a second document, or the end of one.
        if (this.indent === 0 && this.isMarker(p) && !(this.firstLine && text.startsWith("---", p))) throw OUTSIDE;
        return;
      }
      if (this.lineEnd >= text.length) {
        this.indent = -1;
        return;
      }
      this.lineStart = this.lineEnd + 1;
      this.lineEnd = this.endOf(this.lineStart);
      this.line++;
    }
  }

  /** `---` or `...` followed by a space or the line's end. */
  private isMarker(p: number): boolean {
    const { text } = this;
    if (!text.startsWith("---", p) && !text.startsWith("...", p)) return false;
    return p + 3 >= this.lineEnd || text.charCodeAt(p + 3) === SPACE;
  }

  private restIsBlank(p: number): boolean {
    while (p < this.lineEnd && this.text.charCodeAt(p) === SPACE) p++;
    return p === this.lineEnd;
  }

  /** `-` followed by a space or the line's end: a list item. */
  private isDash(p: number): boolean {
    return this.text.charCodeAt(p) === DASH && (p + 1 === this.lineEnd || this.text.charCodeAt(p + 1) === SPACE);
  }

  /** Only spaces, then the line's end or a comment, from `p`. */
  private tail(p: number): void {
    const from = p;
    while (p < this.lineEnd && this.text.charCodeAt(p) === SPACE) p++;
    if (p === this.lineEnd) return;
    if (this.text.charCodeAt(p) === HASH && p > from) return;
    throw OUTSIDE;
  }

  private position(p: number): YamlPosition {
    return { line: this.line + 1, col: p - this.lineStart + 1 };
  }

  private place(wanted: Wanted, keyAt: number | undefined, valueAt: number, empty: boolean): void {
    wanted.found = true;
    if (keyAt !== undefined) wanted.key = this.position(keyAt);
    wanted.value = this.position(valueAt);
    wanted.empty = empty;
  }

  /**
   * Where the `:` of a `key: value` entry starting at `p` is, or -1 when the line does not start
   * one. A plain key ends at the first `:` followed by a space or the line's end.
   */
  private entryColon(p: number): number {
    const { text } = this;
    const c = text.charCodeAt(p);
    let colon: number;
    if (c === QUOTE_DOUBLE || c === QUOTE_SINGLE) {
      const close = this.quoteEnd(p);
      colon = close;
      while (colon < this.lineEnd && text.charCodeAt(colon) === SPACE) colon++;
      if (text.charCodeAt(colon) !== COLON) return -1;
    } else {
      // Searched within the line only: indexOf could run on through a file of colon-less lines.
      for (colon = p; ; colon++) {
        if (colon >= this.lineEnd) return -1;
        if (text.charCodeAt(colon) === COLON && (colon + 1 === this.lineEnd || text.charCodeAt(colon + 1) === SPACE)) break;
      }
    }
    return colon + 1 === this.lineEnd || text.charCodeAt(colon + 1) === SPACE ? colon : -1;
  }

  /** The offset just past the quoted scalar starting at `p`; it must close on its line. */
  private quoteEnd(p: number): number {
    const { text } = this;
    const quote = text.charCodeAt(p);
    let q = p + 1;
    for (;;) {
      q = text.indexOf(quote === QUOTE_DOUBLE ? '"' : "'", q);
      if (q < 0 || q >= this.lineEnd) throw OUTSIDE;
      if (quote === QUOTE_SINGLE && text.charCodeAt(q + 1) === QUOTE_SINGLE) {
        q += 2;
        continue;
      }
      return q + 1;
    }
  }

  /** The value of the quoted scalar from `p` to `end` (past its closing quote). */
  private quoted(p: number, end: number): string {
    const inner = this.text.slice(p + 1, end - 1);
    if (this.text.charCodeAt(p) === QUOTE_SINGLE) return inner.includes("''") ? inner.replaceAll("''", "'") : inner;
    // Escapes (\n, \x41, \u00e9, a backslash before a line break...) are the yaml package's to read.
    if (inner.includes("\\")) throw OUTSIDE;
    return inner;
  }

  /** A key as yaml-data.ts names it, from `p` to its colon. */
  private keyText(p: number, colon: number): string {
    const { text } = this;
    if (colon - p > MAX_KEY_LENGTH) throw OUTSIDE;
    const c = text.charCodeAt(p);
    if (c === QUOTE_DOUBLE || c === QUOTE_SINGLE) return this.quoted(p, this.quoteEnd(p));
    this.plainStart(p);
    let end = colon;
    while (end > p && text.charCodeAt(end - 1) === SPACE) end--;
    const seen = this.recall(this.keys, p, end);
    if (seen) return seen.value as string;
    const raw = text.slice(p, end);
    // A comment inside (a #: b), and the merge key, are the yaml package's.
    if (raw.includes(" #") || raw === "<<") throw OUTSIDE;
    const key = this.resolver.key(raw);
    this.remember(this.keys, p, end, raw, key);
    return key;
  }

  /**
   * The value of the plain scalar text from `p` to `end` if it is the one last seen in its slot:
   * keys and values repeat (type, TCPsyn, 443), and a hit costs no new string, no resolution
   * and, for a key, the same string each time (a property name looked up once).
   */
  private recall(slots: Recalled[], p: number, end: number): Recalled | undefined {
    const seen = slots[this.slot(p, end)];
    return seen && seen.raw.length === end - p && this.text.startsWith(seen.raw, p) ? seen : undefined;
  }

  private remember(slots: Recalled[], p: number, end: number, raw: string, value: unknown): void {
    const slot = this.slot(p, end);
    const kept = slots[slot];
    if (!kept) {
      slots[slot] = { raw, value };
      return;
    }
    // A number or a boolean, which costs a resolution, is not pushed out by a text (a stream of
    // distinct addresses would keep evicting the few thresholds that repeat).
    if (typeof value === "string" && typeof kept.value !== "string") return;
    kept.raw = raw;
    kept.value = value;
  }

  /** A scalar's slot: its length, first, middle and last characters. */
  private slot(p: number, end: number): number {
    const { text } = this;
    const hash = (end - p) * 961 + text.charCodeAt(p) * 31 + text.charCodeAt((p + end) >> 1) * 7 + text.charCodeAt(end - 1);
    return hash & (RECALL_SLOTS - 1);
  }

  /**
   * Refuses a plain scalar starting with an indicator, or with `-`, `?` or `:` before a space or
   * a flow indicator (`[?]` is an empty key, not the text "?").
   */
  private plainStart(p: number): void {
    const c = this.text.charCodeAt(p);
    if (INDICATORS.has(c)) throw OUTSIDE;
    if (c === DASH || c === COLON || c === 63 /* ? */) {
      const next = p + 1 < this.lineEnd ? this.text.charCodeAt(p + 1) : SPACE;
      if (next === SPACE || isFlowIndicator(next)) throw OUTSIDE;
    }
  }

  private static set(map: Record<string, unknown>, key: string, value: unknown): void {
    if (Object.hasOwn(map, key)) throw OUTSIDE; // the yaml package warns about a duplicate key
    if (key === "__proto__") {
      Object.defineProperty(map, key, { value, writable: true, enumerable: true, configurable: true });
    } else {
      map[key] = value;
    }
  }

  /** A block map whose entries start at column `col`, the first one at `p` on the current line. */
  private map(col: number, p: number, depth: number, wanted: Wanted | undefined): Record<string, unknown> {
    if (depth > MAX_DEPTH) throw OUTSIDE;
    const map: Record<string, unknown> = {};
    for (;;) {
      const colon = this.entryColon(p);
      if (colon < 0) throw OUTSIDE;
      const key = this.build || wanted?.children ? this.keyText(p, colon) : "";
      const want = wanted?.children?.get(key);
      let v = colon + 1;
      while (v < this.lineEnd && this.text.charCodeAt(v) === SPACE) v++;
      let value: unknown;
      if (v === this.lineEnd || this.text.charCodeAt(v) === HASH) {
        value = this.below(col, depth, want, true, p, v);
      } else {
        if (want) this.place(want, p, v, false);
        value = this.inline(v, depth, want);
        this.advance();
      }
      if (this.build) SubsetReader.set(map, key, value);
      if (this.indent !== col) {
        if (this.indent > col) throw OUTSIDE;
        return map;
      }
      p = this.lineStart + col;
      if (this.isDash(p)) throw OUTSIDE;
    }
  }

  /**
   * The value of a key or list item with nothing after it on its line: the block indented below
   * it, a list at the key's own indent, or null.
   */
  private below(col: number, depth: number, want: Wanted | undefined, inMap: boolean, keyAt: number, emptyAt: number): unknown {
    const keyLine = this.line;
    const keyLineStart = this.lineStart;
    this.advance();
    const p = this.lineStart + this.indent;
    if (this.indent > col || (inMap && this.indent === col && this.isDash(p))) {
      if (want) {
        this.place(want, undefined, p, false);
        want.key = inMap ? { line: keyLine + 1, col: keyAt - keyLineStart + 1 } : undefined;
      }
      if (this.isDash(p)) return this.seq(this.indent, depth + 1, want, this.indent === col);
      return this.map(this.indent, p, depth + 1, want);
    }
    if (want) {
      // The yaml package puts the empty value past the `:` or `-` and the spaces after it.
      want.found = true;
      want.empty = true;
      want.key = inMap ? { line: keyLine + 1, col: keyAt - keyLineStart + 1 } : undefined;
      want.value = { line: keyLine + 1, col: emptyAt - keyLineStart + 1 };
    }
    return null;
  }

  /** A block list whose items' dashes are at column `col` (the same as its key's when `atKeyIndent`). */
  private seq(col: number, depth: number, wanted: Wanted | undefined, atKeyIndent: boolean): unknown[] {
    if (depth > MAX_DEPTH) throw OUTSIDE;
    const list: unknown[] = [];
    let index = 0;
    for (;;) {
      const p = this.lineStart + col;
      if (!this.isDash(p)) {
        if (atKeyIndent) return list;
        throw OUTSIDE;
      }
      const want = wanted?.children?.get(index++);
      let v = p + 1;
      while (v < this.lineEnd && this.text.charCodeAt(v) === SPACE) v++;
      if (v === this.lineEnd || this.text.charCodeAt(v) === HASH) {
        const item = this.below(col, depth, want, false, p, v);
        if (this.build) list.push(item);
      } else if (this.isDash(v)) {
        throw OUTSIDE; // - - a: a list in a list on one line
      } else {
        if (want) this.place(want, undefined, v, false);
        const c = this.text.charCodeAt(v);
        if (c !== OPEN_BRACKET && c !== OPEN_BRACE && this.entryColon(v) >= 0) {
          const item = this.map(v - this.lineStart, v, depth + 1, want);
          if (this.build) list.push(item);
        } else {
          const item = this.inline(v, depth, want);
          if (this.build) list.push(item);
          this.advance();
        }
      }
      if (this.indent !== col) {
        if (this.indent > col) throw OUTSIDE;
        return list;
      }
    }
  }

  /** A value that starts at `p` and ends on the current line: a scalar or a flow collection. */
  private inline(p: number, depth: number, want: Wanted | undefined): unknown {
    const { text } = this;
    const c = text.charCodeAt(p);
    if (c === QUOTE_DOUBLE || c === QUOTE_SINGLE) {
      const end = this.quoteEnd(p);
      this.tail(end);
      return this.build ? this.quoted(p, end) : null;
    }
    if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      const [value, end] = this.flow(p, depth + 1, want);
      this.tail(end);
      return value;
    }
    this.plainStart(p);
    let end = p;
    for (; end < this.lineEnd; end++) {
      const k = text.charCodeAt(end);
      if (k === HASH && text.charCodeAt(end - 1) === SPACE) break; // a comment
      // `a: b: c` is an error, and `a: b:` a map on one line: the yaml package's to report.
      if (k === COLON && (end + 1 === this.lineEnd || text.charCodeAt(end + 1) === SPACE)) throw OUTSIDE;
    }
    while (end > p && text.charCodeAt(end - 1) === SPACE) end--;
    return this.plain(p, end);
  }

  /** The value of a plain scalar from `p` to `end`. */
  private plain(p: number, end: number): unknown {
    if (!this.build) return null;
    const seen = this.recall(this.values, p, end);
    if (seen) return seen.value;
    const raw = this.text.slice(p, end);
    const value = this.resolver.resolve(raw);
    this.remember(this.values, p, end, raw, value);
    return value;
  }

  /** A flow collection from `p` (its bracket) to its closing bracket on the same line. */
  private flow(p: number, depth: number, wanted: Wanted | undefined): [unknown, number] {
    if (depth > MAX_DEPTH) throw OUTSIDE;
    const { text } = this;
    const isList = text.charCodeAt(p) === OPEN_BRACKET;
    const close = isList ? CLOSE_BRACKET : CLOSE_BRACE;
    const list: unknown[] = [];
    const map: Record<string, unknown> = {};
    let q = this.skipSpaces(p + 1);
    if (text.charCodeAt(q) === close) return [isList ? list : map, q + 1];
    for (let index = 0; ; index++) {
      if (isList) {
        const want = wanted?.children?.get(index);
        if (want) this.place(want, undefined, q, false);
        const [item, end] = this.flowItem(q, depth, want);
        if (this.build) list.push(item);
        q = end;
      } else {
        const keyAt = q;
        const [key, colon] = this.flowKey(q);
        const want = wanted?.children?.get(key);
        q = this.skipSpaces(colon + 1);
        if (want) this.place(want, keyAt, q, false);
        const [value, end] = this.flowItem(q, depth, want);
        if (this.build) SubsetReader.set(map, key, value);
        q = end;
      }
      q = this.skipSpaces(q);
      const c = text.charCodeAt(q);
      if (c === close && q < this.lineEnd) return [isList ? list : map, q + 1];
      if (c !== COMMA || q >= this.lineEnd) throw OUTSIDE;
      q = this.skipSpaces(q + 1);
      if (text.charCodeAt(q) === close) throw OUTSIDE; // a trailing comma
    }
  }

  /**
   * Whether a `:` inside a flow collection ends a plain scalar (a key): followed by a space, a
   * flow indicator or the line's end. Followed by anything else it is part of it (fd00::1).
   */
  private flowColonEnds(colon: number): boolean {
    if (colon + 1 >= this.lineEnd) return true;
    const next = this.text.charCodeAt(colon + 1);
    return next === SPACE || isFlowIndicator(next);
  }

  private skipSpaces(q: number): number {
    while (q < this.lineEnd && this.text.charCodeAt(q) === SPACE) q++;
    return q;
  }

  /** A flow map's key, up to its `: `; returns the key and the colon's offset. */
  private flowKey(q: number): [string, number] {
    const { text } = this;
    const c = text.charCodeAt(q);
    if (c === QUOTE_DOUBLE || c === QUOTE_SINGLE) {
      const end = this.quoteEnd(q);
      const colon = this.skipSpaces(end);
      if (text.charCodeAt(colon) !== COLON || text.charCodeAt(colon + 1) !== SPACE) throw OUTSIDE;
      return [this.quoted(q, end), colon];
    }
    this.plainStart(q);
    let colon = q;
    for (; colon < this.lineEnd; colon++) {
      const k = text.charCodeAt(colon);
      if (k === COLON && this.flowColonEnds(colon)) break;
      if (isFlowIndicator(k) || k === HASH) throw OUTSIDE;
    }
    if (colon >= this.lineEnd || text.charCodeAt(colon + 1) !== SPACE) throw OUTSIDE;
    let end = colon;
    while (end > q && text.charCodeAt(end - 1) === SPACE) end--;
    if (end - q > MAX_KEY_LENGTH) throw OUTSIDE;
    const raw = text.slice(q, end);
    if (raw === "<<") throw OUTSIDE;
    return [this.resolver.key(raw), colon];
  }

  /** A value inside a flow collection: a quoted or plain scalar, or a nested collection. */
  private flowItem(q: number, depth: number, want: Wanted | undefined): [unknown, number] {
    const { text } = this;
    const c = text.charCodeAt(q);
    if (c === QUOTE_DOUBLE || c === QUOTE_SINGLE) {
      const end = this.quoteEnd(q);
      return [this.build ? this.quoted(q, end) : null, end];
    }
    if (c === OPEN_BRACKET || c === OPEN_BRACE) return this.flow(q, depth + 1, want);
    this.plainStart(q);
    let end = q;
    for (; end < this.lineEnd; end++) {
      const k = text.charCodeAt(end);
      if (k === COMMA || k === CLOSE_BRACKET || k === CLOSE_BRACE) break;
      if ((k === COLON && this.flowColonEnds(end)) || k === HASH || k === OPEN_BRACKET || k === OPEN_BRACE) throw OUTSIDE;
    }
    let last = end;
    while (last > q && text.charCodeAt(last - 1) === SPACE) last--;
    if (last === q) throw OUTSIDE;
    return [this.plain(q, last), end];
  }
}

function readSubset(text: string, options: YamlReadOptions, root?: Wanted): { data: unknown } | undefined {
  if (OUTSIDE_CHARACTERS.test(text)) return undefined;
  try {
    return { data: new SubsetReader(text, resolverFor(options), root === undefined).read(root) };
  } catch (error) {
    if (error === OUTSIDE) return undefined;
    throw error;
  }
}

/**
 * The data of `text`, as yaml-data.ts makes it of the yaml package's document; undefined when
 * the text is outside the subset (then read it with the yaml package).
 */
export function subsetData(text: string, options: YamlReadOptions): { data: unknown } | undefined {
  return readSubset(text, options);
}

/**
 * Where each path leads in a text {@link subsetData} read: one more pass over the text, however
 * many paths. A path is followed as far as the text goes; `depth` says how many of its keys were
 * found (the whole path when it equals the path's length).
 * @returns One spot per path, in order: the deepest node found (the root for none).
 */
export function subsetPositions(
  text: string,
  options: YamlReadOptions,
  paths: readonly (readonly Key[])[],
): { spot: SubsetSpot; depth: number }[] {
  const root = new Wanted();
  for (const keys of paths) {
    let node = root;
    for (const key of keys) node = node.child(key);
  }
  if (!readSubset(text, options, root)) throw new Error("subsetPositions: the text is not in the subset subsetData reads");
  return paths.map((keys) => {
    let node = root;
    let depth = 0;
    for (const key of keys) {
      const next = node.children?.get(key);
      if (!next?.found) break;
      node = next;
      depth++;
    }
    const value = node.value ?? { line: 1, col: 1 };
    return { spot: { key: node.key, value, empty: node.empty }, depth };
  });
}
