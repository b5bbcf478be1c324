/**
 * The subset reader (src/config/yaml-subset.ts) gives what the yaml package and yaml-data.ts give,
 * or steps aside: the same data, keys in the same order, every path placed at the same line and
 * column; and it does read the shapes configs are written in. scripts/fuzz-yaml-subset.ts runs
 * the comparison at full size.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { subsetData, subsetPositions, type YamlReadOptions } from "../../src/config/yaml-subset.ts";
import { compareReaders, fuzzSubset } from "../../scripts/fuzz-yaml-subset.ts";
import { targetFile } from "../../scripts/gen-targets.ts";

const YAML11: YamlReadOptions = { version: "1.1", merge: true, uniqueKeys: false, prettyErrors: false };
const FIXTURES = join(import.meta.dir, "..", "fixtures", "config");

test("300 mutants of the corpus and the corpus itself: wherever the subset reader reads, both readers agree", () => {
  const s = fuzzSubset(20261202, 300);
  expect(s.failures.map((f) => `${f.name}: ${f.problem}`)).toEqual([]);
  // The comparison is not vacuous: a good share of the texts is read by the subset reader.
  expect(s.inSubset).toBeGreaterThan(s.texts / 4);
}, 30_000);

describe("the shapes configs are written in are read by the subset reader, as the yaml package reads them", () => {
  const shapes: Record<string, string> = {
    "block maps, a leading ---, comments": "---\n# c\nglobal:\n  a: 1 # one\n  b: x#y\n\n  # between\n  c:\n    d: 'it''s'\n",
    "flow maps and lists on one line": "t: {type: TCPsyn, destination: 198.18.0.1, dst_port: 443}\np: [95, 50]\nn: {a: [1, {b: []}], c: {}}\n",
    "IPv6 addresses in flow and block": "a: {d: fd00::1, e: '::1'}\nb: [fd00::1, fd00::2]\nc: fd00::1\n",
    "lists: nested, of maps, at the key's indent": "a:\n- b\n- c\nd:\n  - e: 1\n    f: [2]\n  -\n  - g\ne: 1\n",
    "YAML 1.1 scalars": "a: yes\nb: off\nc: 0x1F\nd: 017\ne: 1_000\nf: 1:30\ng: .inf\nh: ~\ni: -.5\nj: 1e3\nk: null\nl: 'yes'\n",
    "keys that are not plain names": "'a b': 1\n\"c\": 2\n1: 3\nyes: 4\n__proto__: 5\nd : 6\n",
  };
  for (const [name, text] of Object.entries(shapes)) {
    test(name, () => {
      for (const yaml11 of [true, false]) expect(compareReaders(text, yaml11)).toEqual({ inSubset: true });
    });
  }

  test("the committed example config and the generator's files", () => {
    for (const text of [
      readFileSync(join(FIXTURES, "example.yaml"), "utf8"),
      readFileSync(join(FIXTURES, "original-readme.yaml"), "utf8"),
      targetFile({ targets: 50 }),
      targetFile({ targets: 50, invalid: true }),
    ]) {
      expect(compareReaders(text, true)).toEqual({ inSubset: true });
    }
  });
});

describe("what the subset reader leaves to the yaml package", () => {
  const outside: Record<string, string> = {
    "an anchor, an alias, a merge key": "d: &d {a: 1}\ne:\n  <<: *d\n",
    "a tag": "a: !!str 1\n",
    "a block scalar": "a: |\n  x\n",
    "a scalar over two lines": "a: b\n  c\n",
    "a flow collection over two lines": "a: [1,\n  2]\n",
    "an escape in double quotes": 'a: "x\\ty"\n',
    "a duplicate key (the yaml path warns about it)": "a: 1\na: 2\n",
    "a tab": "a:\t1\n",
    "a carriage return": "a: 1\r\nb: 2\r\n",
    "a byte order mark": "\ufeffa: 1\n",
    "a second document": "a: 1\n---\nb: 2\n",
    "a YAML 1.1 timestamp (a Date)": "a: 2001-12-14\n",
    "an explicit key": "? a\n: b\n",
    "a list in a list on one line": "- - a\n",
    "an empty file, only comments": "# nothing\n",
    "a root scalar": "just text\n",
    "bad indentation": "a:\n    b: 1\n  c: 2\n",
    "a trailing comma": "a: [1, 2, ]\n",
    "a comment right after a quote": "a: 'x'# c\n",
    "a: b: c": "a: b: c\n",
  };
  for (const [name, text] of Object.entries(outside)) {
    test(name, () => expect(subsetData(text, YAML11)).toBeUndefined());
  }
});

test("a colon-less line far from the next colon costs one line's scan, not the rest of the file's", () => {
  // 200,000 list items without a colon: a search for ':' from each would scan the rest of the
  // file each time (20 billion characters); the reader looks within the line only.
  const text = `a:\n${"  - 198.18.0.1\n".repeat(200_000)}b: 1\n`;
  // The test's timeout is the bound: tens of milliseconds here, half a minute or more scanning on.
  const read = subsetData(text, YAML11);
  expect((read?.data as { a: unknown[] }).a.length).toBe(200_000);
}, 15_000);

test("subsetPositions: the key and value of each path, the deepest node reached for a path that leads nowhere", () => {
  const text = "global:\n  a: 1\n  b:\ntargets:\n  t1: {type: TCPsyn, dst_port: 70000}\n  t2:\n    - x\n";
  const found = subsetPositions(text, YAML11, [
    ["global", "a"],
    ["global", "b"],
    ["targets", "t1", "dst_port"],
    ["targets", "t2", 0],
    ["targets", "t1", "nothing", "deeper"],
    [],
  ]);
  expect(found).toEqual([
    { spot: { key: { line: 2, col: 3 }, value: { line: 2, col: 6 }, empty: false }, depth: 2 },
    { spot: { key: { line: 3, col: 3 }, value: { line: 3, col: 5 }, empty: true }, depth: 2 },
    { spot: { key: { line: 5, col: 22 }, value: { line: 5, col: 32 }, empty: false }, depth: 3 },
    { spot: { key: undefined, value: { line: 7, col: 7 }, empty: false }, depth: 3 },
    { spot: { key: { line: 5, col: 3 }, value: { line: 5, col: 7 }, empty: false }, depth: 2 },
    { spot: { key: undefined, value: { line: 1, col: 1 }, empty: false }, depth: 0 },
  ]);
});
