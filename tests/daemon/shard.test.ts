/**
 * The shard function (rendezvous hashing on the target name) and the reading of a shard setting
 * from --shard and the environment. The merge that applies it is tested in
 * tests/inventory/merge-shard.test.ts, the daemons that share a config in
 * tests/privileged/daemon-shard.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  effectiveShard,
  murmur3,
  NO_SHARD,
  parseShardFlag,
  shardFromEnvironment,
  ShardFilter,
  shardOwner,
  ShardSettingError,
} from "../../src/daemon/shard.ts";

const REPO = join(import.meta.dir, "..", "..");
const names = (n: number, prefix = "target-") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const owners = (list: string[], count: number) => list.map((name) => shardOwner(name, count));

describe("the hash", () => {
  test("MurmurHash3 x86_32 gives the reference values (so another implementation can tell the owners)", () => {
    const e = new TextEncoder();
    const cases: [string, number, number][] = [
      ["", 0, 0],
      ["", 1, 0x514e28b7],
      ["abc", 0, 0xb3dd93fa],
      ["hello", 0, 0x248bfa47],
      ["Hello, world!", 1234, 0xfaf6cdb3],
      ["The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723],
    ];
    for (const [text, seed, want] of cases) expect({ text, seed, hash: murmur3(e.encode(text), seed) }).toEqual({ text, seed, hash: want });
  });

  test("owners are fixed: the same in every run and every build (a changed function would reshuffle a mixed fleet)", () => {
    expect(owners(names(24), 3).join("")).toBe(GOLDEN_3);
    expect(owners(names(24), 10).join(",")).toBe(GOLDEN_10);
  });

  test("the same owners in another process", async () => {
    const script = `import { shardOwner } from ${JSON.stringify(join(REPO, "src/daemon/shard.ts"))};
      console.log(Array.from({ length: 100 }, (_, i) => shardOwner("target-" + i, 3)).join(""));`;
    const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    expect(code).toBe(0);
    expect(out.trim()).toBe(owners(names(100), 3).join(""));
  });
});

describe("rendezvous hashing", () => {
  test("3 probers on one config cover 100 targets exactly once", () => {
    const targets = names(100);
    const filters = [0, 1, 2].map((index) => new ShardFilter({ index, count: 3 }));
    for (const name of targets) expect({ name, keptBy: filters.filter((f) => f.keeps(name)).length }).toEqual({ name, keptBy: 1 });
    const shares = filters.map((f) => targets.filter((n) => f.keeps(n)).length);
    expect(shares.reduce((a, b) => a + b)).toBe(100);
    // Each keeps a fair share: 33 or so, no prober idle.
    for (const share of shares) expect(share).toBeGreaterThanOrEqual(25);
  });

  test("going from 3 to 4 probers moves at most 35 of 100 targets, each to the new prober", () => {
    const targets = names(100);
    const before = owners(targets, 3);
    const after = owners(targets, 4);
    const moved = targets.filter((_, i) => before[i] !== after[i]);
    expect(moved.length).toBeLessThanOrEqual(35);
    expect(moved.length).toBeGreaterThan(0);
    for (const name of moved) expect({ name, to: shardOwner(name, 4) }).toEqual({ name, to: 3 });
  });

  test("from N to N+1 probers about 1/(N+1) of 10,000 targets move, all to the new one", () => {
    const targets = names(10_000, "inventory_host-");
    let before = owners(targets, 1);
    for (let n = 1; n <= 12; n++) {
      const after = owners(targets, n + 1);
      const moved = after.filter((o, i) => o !== before[i]);
      const expected = targets.length / (n + 1);
      expect({ n, movedWithin10Percent: Math.abs(moved.length - expected) <= expected * 0.1 }).toEqual({ n, movedWithin10Percent: true });
      expect(moved.every((o) => o === n)).toBe(true);
      before = after;
    }
  });

  test("shares are even: 10,000 targets over 2 to 16 probers, every share within 10% of the mean, chi-square unremarkable", () => {
    const targets = [...names(5_000), ...names(5_000, "file_web-").map((n) => `${n}.dc1.example.net`)];
    for (let count = 2; count <= 16; count++) {
      const shares = new Array<number>(count).fill(0);
      for (const o of owners(targets, count)) shares[o]!++;
      const mean = targets.length / count;
      const worst = Math.max(...shares.map((s) => Math.abs(s - mean) / mean));
      // count - 1 degrees of freedom; 2.5 * dof is far past the 99.9th percentile for these sizes.
      const chi2 = shares.reduce((sum, s) => sum + (s - mean) ** 2 / mean, 0);
      expect({ count, evenWithin10Percent: worst <= 0.1, chi2Plausible: chi2 < 2.5 * (count - 1) + 10 }).toEqual({
        count,
        evenWithin10Percent: true,
        chi2Plausible: true,
      });
    }
  });

  test("one prober alone keeps everything, without hashing", () => {
    const f = new ShardFilter(NO_SHARD);
    expect(f.keepsAll).toBe(true);
    expect(names(50).every((n) => f.keeps(n))).toBe(true);
  });

  test("a filter's remembered answers stay right across rounds, for names that come, go and come back", () => {
    const f = new ShardFilter({ index: 1, count: 5 });
    const all = names(300);
    for (let round = 0; round < 6; round++) {
      f.nextRound();
      const asked = all.filter((_, i) => (i + round) % 3 !== 0);
      for (const name of asked) expect(f.keeps(name)).toBe(shardOwner(name, 5) === 1);
    }
  });
});

describe("--shard I/N", () => {
  test("accepted: I from 0 to N-1", () => {
    expect(parseShardFlag("0/3")).toEqual({ index: 0, count: 3 });
    expect(parseShardFlag("2/3")).toEqual({ index: 2, count: 3 });
    expect(parseShardFlag("0/1")).toEqual({ index: 0, count: 1 });
    expect(parseShardFlag("255/256")).toEqual({ index: 255, count: 256 });
  });

  for (const [text, message] of [
    ["3/3", "--shard 3/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)"],
    ["1/1", "--shard 1/1: the index must be 0, below the count 1 (probers are numbered from 0)"],
    ["0/0", "--shard 0/0: the count must be an integer from 1 to 256"],
    ["-1/3", "--shard -1/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)"],
    ["1.5/3", "--shard 1.5/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)"],
    ["1/3.0", "--shard 1/3.0: the count must be an integer from 1 to 256"],
    ["0/257", "--shard 0/257: the count must be an integer from 1 to 256"],
    ["0/99999999999", "--shard 0/99999999999: the count must be an integer from 1 to 256"],
    ["x", "--shard x: expected INDEX/COUNT, such as 0/3 for the first of 3 probers"],
    ["1/2/3", "--shard 1/2/3: expected INDEX/COUNT, such as 0/3 for the first of 3 probers"],
    ["/3", "--shard /3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)"],
    ["1/", "--shard 1/: the count must be an integer from 1 to 256"],
    [" 1/3", "--shard  1/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)"],
  ] as const) {
    test(`refused: ${JSON.stringify(text)}`, () => {
      expect(() => parseShardFlag(text)).toThrow(new ShardSettingError(message));
    });
  }
});

describe("NETPROBIFY_SHARD_COUNT and NETPROBIFY_SHARD_INDEX", () => {
  const env = (count?: string, index?: string) => ({ NETPROBIFY_SHARD_COUNT: count, NETPROBIFY_SHARD_INDEX: index });
  const host = (name: string) => () => name;

  test("neither set: no shard from the environment", () => {
    expect(shardFromEnvironment({})).toBeNull();
  });

  test("an index, a StatefulSet pod name, or the ordinal of this host's name", () => {
    expect(shardFromEnvironment(env("3", "1"))).toEqual({ index: 1, count: 3 });
    expect(shardFromEnvironment(env("3", "netprobify-2"))).toEqual({ index: 2, count: 3 });
    expect(shardFromEnvironment(env("4", "probe.dc-1-0"))).toEqual({ index: 0, count: 4 });
    expect(shardFromEnvironment(env("3", "hostname"), host("netprobify-shard-2"))).toEqual({ index: 2, count: 3 });
    expect(shardFromEnvironment(env("12", "hostname"), host("web-11"))).toEqual({ index: 11, count: 12 });
  });

  for (const [count, index, hostname, message] of [
    ["3", undefined, "x-0", "NETPROBIFY_SHARD_COUNT is set but NETPROBIFY_SHARD_INDEX is not: set both, or neither"],
    [undefined, "1", "x-0", "NETPROBIFY_SHARD_INDEX is set but NETPROBIFY_SHARD_COUNT is not: set both, or neither"],
    ["0", "0", "x-0", 'NETPROBIFY_SHARD_COUNT="0": the count must be an integer from 1 to 256'],
    ["", "0", "x-0", 'NETPROBIFY_SHARD_COUNT="": the count must be an integer from 1 to 256'],
    ["-3", "0", "x-0", 'NETPROBIFY_SHARD_COUNT="-3": the count must be an integer from 1 to 256'],
    ["three", "0", "x-0", 'NETPROBIFY_SHARD_COUNT="three": the count must be an integer from 1 to 256'],
    ["3", "3", "x-0", 'NETPROBIFY_SHARD_INDEX="3": the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)'],
    ["3", "netprobify-3", "x-0", 'NETPROBIFY_SHARD_INDEX="netprobify-3": the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)'],
    ["3", "", "x-0", 'NETPROBIFY_SHARD_INDEX="": expected an index from 0, a pod name ending in -<ordinal> such as netprobify-2, or hostname'],
    ["3", "1.0", "x-0", 'NETPROBIFY_SHARD_INDEX="1.0": expected an index from 0, a pod name ending in -<ordinal> such as netprobify-2, or hostname'],
    ["3", "Netprobify-1", "x-0", 'NETPROBIFY_SHARD_INDEX="Netprobify-1": expected an index from 0, a pod name ending in -<ordinal> such as netprobify-2, or hostname'],
    [
      "3",
      "hostname",
      "node7",
      'NETPROBIFY_SHARD_INDEX="hostname": this host\'s name "node7" does not end in -<ordinal> as a StatefulSet pod\'s does (with hostNetwork, set NETPROBIFY_SHARD_INDEX from the downward API\'s metadata.name)',
    ],
    [
      "3",
      "hostname",
      "netprobify-5",
      'NETPROBIFY_SHARD_INDEX="hostname" (host name "netprobify-5"): the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0)',
    ],
  ] as const) {
    test(`refused: count ${JSON.stringify(count)}, index ${JSON.stringify(index)}${index === "hostname" ? ` on ${hostname}` : ""}`, () => {
      expect(() => shardFromEnvironment(env(count, index), host(hostname))).toThrow(new ShardSettingError(message));
    });
  }
});

test("the shard in force: the flag's or the environment's over the config's, else none", () => {
  const flag = { shard: { index: 1, count: 2 }, source: "--shard" } as const;
  expect(effectiveShard(flag, { index: 0, count: 5 })).toEqual(flag);
  expect(effectiveShard(null, { index: 0, count: 5 })).toEqual({ shard: { index: 0, count: 5 }, source: "global.shard" });
  expect(effectiveShard(null, undefined)).toEqual({ shard: NO_SHARD, source: "none" });
});

// Owners of target-0 ... target-23 among 3 and among 10 probers, as a separate Python
// implementation of MurmurHash3 and of the highest weight computes them; they must never change.
const GOLDEN_3 = "200001101221211102210210";
const GOLDEN_10 = "2,0,8,0,0,8,8,6,1,4,7,7,2,9,1,5,3,6,7,6,8,2,6,0";
