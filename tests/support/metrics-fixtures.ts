/**
 * Hand-made iterations for the Metrics unit tests: a config's targets, a series summary, an
 * IterationInput with every field set, a fresh Metrics under one probe name, and a strict scrape.
 */
import { parseConfigText } from "../../src/config/load.ts";
import type { TargetConfig } from "../../src/config/schema.ts";
import { Metrics, type IterationInput } from "../../src/daemon/metrics.ts";
import type { Series } from "../../src/daemon/plan.ts";
import type { SeriesSummary } from "../../src/engine/stats.ts";
import { parseExposition, type Exposition } from "./daemon-process.ts";

export const PN = "unit";

/** web (TCPsyn with state and thresholds), ping (ICMPping, IPv6), udp (a loss threshold), twamp. */
export const TARGETS: Record<string, TargetConfig> = (() => {
  const r = parseConfigText(
    `global: {probe_name: unit, interval: 10, nb_proc: 1, logging_level: INFO, prometheus_port: 9, dns_update_interval: 0}
groups: {a: {}, b: {}}
targets:
  web: {type: TCPsyn, destination: 198.18.0.1, dst_port: 443, state: in production, alert_level: paging, threshold: {latency: 0.02, loss: 5}}
  ping: {type: ICMPping, destination: "fd00::1"}
  udp: {type: UDPunreachable, destination: 198.18.0.2, dst_port: 33434, threshold: {loss: 0}}
  twamp: {type: TWAMPlight, destination: 198.18.0.3}
`,
    "metrics.yaml",
  );
  if (!r.ok) throw new Error("test config invalid");
  return r.config.targets;
})();

/** A series' result: 10 sent, none lost, RTTs 2 and 1 ms at the two default test percentiles. */
export function summary(o: Partial<SeriesSummary> = {}): SeriesSummary {
  return {
    sent: 10,
    lost: 0,
    percentiles: [0.002, 0.001],
    buckets: [],
    rttSum: 0,
    rttCount: 0,
    worstPathLossRatio: 0,
    pathsDown: 0,
    matchFail: 0,
    portMismatch: 0,
    timeOutOfOrder: 0,
    unroutable: "",
    extra: [],
    ...o,
  };
}

export function iteration(series: Series[], results: (SeriesSummary | null)[], o: Partial<IterationInput> = {}): IterationInput {
  return {
    probeName: PN,
    series,
    results,
    percentiles: [95, 50],
    histogramBuckets: [0.001, 0.01, 0.1],
    histogramPerDestination: false,
    targets: TARGETS,
    resolutions: [],
    stats: [],
    iterationSeconds: 0.5,
    endedAt: null,
    degraded: false,
    ...o,
  };
}

export function fresh(): Metrics {
  const m = new Metrics({ version: "9.9.9", bun: "1.0.0", libpcap: "1.10.3" });
  m.setProbeName(PN);
  return m;
}

export const scrape = async (m: Metrics): Promise<Exposition> => parseExposition(await m.exposition());
