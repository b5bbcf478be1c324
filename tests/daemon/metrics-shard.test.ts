/**
 * netprobify_shard_targets and netprobify_shard_info, written through Metrics.setShard: one series
 * each under the current probe_name, following the shard and the count.
 */
import { expect, test } from "bun:test";
import { Metrics } from "../../src/daemon/metrics.ts";
import { parseExposition } from "../support/daemon-process.ts";

const scrape = async (m: Metrics) => parseExposition(await m.exposition());
const info = async (m: Metrics): Promise<Record<string, string | number>[]> =>
  (await scrape(m)).get("netprobify_shard_info").map((s) => ({ ...s.labels, value: s.value }));

test("the shard and the targets kept, one series each; a new shard replaces the info series, a new probe_name both", async () => {
  const m = new Metrics({ version: "0", bun: "0", libpcap: "0" });
  m.setProbeName("unit");
  m.setShard({ index: 1, count: 3 }, 34);
  let e = await scrape(m);
  expect(e.families.get("netprobify_shard_targets")?.type).toBe("gauge");
  expect(e.families.get("netprobify_shard_info")?.type).toBe("gauge");
  expect(e.get("netprobify_shard_targets").map((s) => [s.labels, s.value])).toEqual([[{ probe_name: "unit" }, 34]]);
  expect(await info(m)).toEqual([{ probe_name: "unit", index: "1", count: "3", value: 1 }]);

  m.setShard({ index: 1, count: 3 }, 40);
  expect((await scrape(m)).value("netprobify_shard_targets", { probe_name: "unit" })).toBe(40);
  m.setShard({ index: 0, count: 1 }, 100);
  expect(await info(m)).toEqual([{ probe_name: "unit", index: "0", count: "1", value: 1 }]);

  m.setProbeName("renamed");
  e = await scrape(m);
  expect(e.get("netprobify_shard_targets")).toEqual([]);
  expect(e.get("netprobify_shard_info")).toEqual([]);
  m.setShard({ index: 0, count: 1 }, 100);
  expect(await info(m)).toEqual([{ probe_name: "renamed", index: "0", count: "1", value: 1 }]);
  expect((await scrape(m)).value("netprobify_shard_targets", { probe_name: "renamed" })).toBe(100);
});
