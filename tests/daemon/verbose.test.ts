/**
 * global.verbose: 1's per-series lines, from the summaries an iteration returns. The daemon's use
 * of it (verbose: 1 logs them, 0 does not) is tested end to end in tests/privileged/daemon.test.ts.
 */
import { expect, test } from "bun:test";
import type { Series } from "../../src/daemon/plan.ts";
import { logSeriesPackets } from "../../src/daemon/verbose.ts";
import type { SeriesSummary } from "../../src/engine/stats.ts";
import { recordLog } from "../support/log-recorder.ts";

const summary = (sent: number, lost: number): SeriesSummary => ({
  sent,
  lost,
  percentiles: [],
  buckets: [],
  rttSum: 0,
  rttCount: sent - lost,
  worstPathLossRatio: 0,
  pathsDown: 0,
  matchFail: 0,
  portMismatch: 0,
  timeOutOfOrder: 0,
  unroutable: "",
  extra: [],
});

test("one INFO line per series with a result: target, group, family, sent, answered and lost", () => {
  const series: Series[] = [
    { target: "web", group: "g1", type: "TCPsyn", family: 4, state: "None" },
    { target: "web", group: "g2", type: "TCPsyn", family: 4, state: "None" },
    { target: "dns6", group: "g1", type: "UDPunreachable", family: 6, state: "None" },
    { target: "lost-batch", group: "g1", type: "ICMPping", family: 4, state: "None" },
  ];
  const { log, lines } = recordLog();
  logSeriesPackets(log, series, [summary(10, 0), summary(10, 3), summary(4, 4), null]);
  expect(lines).toEqual([
    { level: "INFO", msg: "packets sent and answered", fields: { target: "web", group: "g1", address_family: "ipv4", sent: 10, answered: 10, lost: 0 } },
    { level: "INFO", msg: "packets sent and answered", fields: { target: "web", group: "g2", address_family: "ipv4", sent: 10, answered: 7, lost: 3 } },
    { level: "INFO", msg: "packets sent and answered", fields: { target: "dns6", group: "g1", address_family: "ipv6", sent: 4, answered: 0, lost: 4 } },
  ]);
});
