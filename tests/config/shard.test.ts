/**
 * global.shard as `netprobify check` sees it: every malformed setting is one FILE:LINE:COL line
 * naming the field (never a crash, never a config that would probe nothing), and a valid one is
 * summed up with the share it keeps.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfigText } from "../../src/config/load.ts";
import { formatIssue } from "../../src/config/validate-yaml.ts";
import { checkFile } from "../../src/daemon/configuration.ts";
import { shardOwner } from "../../src/daemon/shard.ts";

/** A config whose line 8 is `  shard: <shard>` (column 10 is where the value starts). */
function configText(shard: string, targets = 3): string {
  const list = Array.from({ length: targets }, (_, i) => `  t${i}:\n    type: ICMPping\n    destination: 198.18.0.${i + 1}\n`).join("");
  return `global:
  probe_name: p
  interval: 10
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 9
  dns_update_interval: 0
  shard: ${shard}
groups:
  g: {}
targets:
${list}`;
}

const issues = (shard: string) => {
  const r = parseConfigText(configText(shard), "c.yaml");
  return r.ok ? [] : r.issues.map(formatIssue);
};

describe("global.shard refused, one line each", () => {
  for (const [shard, lines] of [
    ["{index: 3, count: 3}", ["c.yaml:8:18: global.shard.index: 3 is not below count 3 (an integer from 0 to 2: the probers are numbered from 0)"]],
    ["{index: 1, count: 1}", ["c.yaml:8:18: global.shard.index: 1 is not below count 1 (0 when count is 1)"]],
    ["{index: 0, count: 0}", ["c.yaml:8:28: global.shard.count: 0 is out of range (an integer from 1 to 256)"]],
    ["{index: 0, count: -2}", ["c.yaml:8:28: global.shard.count: -2 is out of range (an integer from 1 to 256)"]],
    ["{index: 0, count: 257}", ["c.yaml:8:28: global.shard.count: 257 is out of range (an integer from 1 to 256)"]],
    ["{index: 0, count: 2.5}", ["c.yaml:8:28: global.shard.count: 2.5 is not an integer (an integer from 1 to 256)"]],
    ["{index: -1, count: 3}", ["c.yaml:8:18: global.shard.index: -1 is out of range (an integer from 0 to 255)"]],
    ["{index: 1.5, count: 3}", ["c.yaml:8:18: global.shard.index: 1.5 is not an integer (an integer from 0 to 255)"]],
    ["{index: 300, count: 3}", ["c.yaml:8:18: global.shard.index: 300 is out of range (an integer from 0 to 255)"]],
    ['{index: "1", count: 3}', ['c.yaml:8:18: global.shard.index: "1" is not a number (an integer from 0 to 255)']],
    ["{index: 0}", ["c.yaml:8:10: global.shard: count is required (an integer from 1 to 256)"]],
    ["{count: 2}", ["c.yaml:8:10: global.shard: index is required (an integer from 0 to 255)"]],
    ["1/3", ['c.yaml:8:10: global.shard: "1/3" is not a map (a map with index and count)']],
    ["{index: 0, count: 2, of: 3}", ["c.yaml:8:31: global.shard.of: unknown field (one of index, count)"]],
  ] as const) {
    test(shard, () => expect(issues(shard)).toEqual([...lines]));
  }
});

test("accepted: index from 0 to count - 1, and absent", () => {
  const shardOf = (text: string) => {
    const r = parseConfigText(text, "c.yaml");
    if (!r.ok) throw new Error(r.issues.map(formatIssue).join("\n"));
    return r.config.global.shard;
  };
  expect(shardOf(configText("{index: 0, count: 1}"))).toEqual({ index: 0, count: 1 });
  expect(shardOf(configText("{index: 2, count: 3}"))).toEqual({ index: 2, count: 3 });
  expect(shardOf(configText("{index: 255, count: 256}"))).toEqual({ index: 255, count: 256 });
  expect(shardOf(configText("{index: 0, count: 1}").replace("  shard: {index: 0, count: 1}\n", ""))).toBeUndefined();
});

test("check sums a sharded config up with the targets its shard keeps", async () => {
  const dir = mkdtempSync(join(tmpdir(), "netprobify-shard-check-"));
  try {
    const path = join(dir, "netprobify.yaml");
    writeFileSync(path, configText("{index: 1, count: 3}", 30));
    const kept = Array.from({ length: 30 }, (_, i) => `t${i}`).filter((n) => shardOwner(n, 3) === 1).length;
    expect(kept).toBeGreaterThan(0);
    expect(await checkFile(path)).toEqual({ exitCode: 0, lines: [`${path}: valid, 1 group and 30 targets (shard 1/3 keeps ${kept})`] });
    writeFileSync(path, configText("{index: 0, count: 1}", 30));
    expect((await checkFile(path)).lines).toEqual([`${path}: valid, 1 group and 30 targets`]);
    writeFileSync(path, configText("{index: 3, count: 3}", 30));
    expect(await checkFile(path)).toEqual({
      exitCode: 65,
      lines: [`${path}:8:18: global.shard.index: 3 is not below count 3 (an integer from 0 to 2: the probers are numbered from 0)`],
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
