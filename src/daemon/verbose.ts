/**
 * global.verbose: 1. The original had scapy print, for every target it sent to, how many packets
 * left and how many were answered; here that is one INFO line per series (a target in a group)
 * after each iteration, from the summaries the Workers return anyway: nothing per packet.
 */
import type { SeriesSummary } from "../engine/stats.ts";
import type { Logger } from "../log.ts";
import type { Series } from "./plan.ts";

/** Logs sent, answered and lost for every series with a result (a failed batch has none). */
export function logSeriesPackets(log: Logger, series: readonly Series[], results: readonly (SeriesSummary | null)[]): void {
  series.forEach((s, i) => {
    const r = results[i];
    if (!r) return;
    log.info("packets sent and answered", {
      target: s.target,
      group: s.group,
      address_family: `ipv${s.family}`,
      sent: r.sent,
      answered: r.sent - r.lost,
      lost: r.lost,
    });
  });
}
