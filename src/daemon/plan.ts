/**
 * Config plus name resolutions into the work of one iteration: which series exist (a target in
 * a group), and for each Worker the probes it sends. Pure: no I/O, no clock, so a plan can be
 * printed or tested without sending anything.
 */
import type { Config, GroupConfig, TargetConfig, TargetType } from "../config/schema.ts";
import { ipPayloadSize, targetAddressFamily } from "../config/schema.ts";
import { targetGroups } from "./group-membership.ts";
import type { ProbeTarget } from "../engine/probe-engine.ts";
import type { Family } from "../packet/address.ts";
import { destinationPort } from "../probes/registry.ts";
import { expandDestination } from "../targets/destinations.ts";

/** One set of measurement series: a target probed in one group. */
export interface Series {
  target: string;
  group: string;
  type: TargetType;
  family: Family;
  /** The state label: "None" when the target has none, as the original prints it. */
  state: string;
}

export interface WorkerJob {
  targets: ProbeTarget[];
  /** For each entry of targets, its index in `series` below. */
  seriesOf: number[];
  /** Global series indexes of this job's local series. */
  series: number[];
}

export interface Plan {
  series: Series[];
  jobs: WorkerJob[];
  /** Probes in the whole iteration. */
  probes: number;
}

/** The addresses a target probes this iteration, or null when it is disabled (failed resolution). */
export type AddressesOf = (target: string) => string[] | null;

/** Source addresses to rotate over, from a group's src_subnet_* (hosts of the subnet) or src_ip*. */
export function sourceAddresses(group: GroupConfig, family: Family): string[] | null {
  const subnet = family === 4 ? group.src_subnet_ipv4 : group.src_subnet_ipv6;
  if (subnet) return expandDestination(subnet).addresses;
  const single = family === 4 ? group.src_ipv4 : group.src_ipv6;
  return single ? [single] : null;
}

/** Target starts are spread over at most this long, so a long interval does not stretch results. */
export const MAX_START_SPREAD_MS = 30_000;

/**
 * The share of an iteration's slack (interval less the longest target's own duration) that target
 * starts are spread over. Most of it: the Workers' send rate, not the plan, should bound how many
 * probes an interval holds (spreading over half capped a daemon at half the rate it can send,
 * scripts/bench-capacity.ts). The tenth left over absorbs send lag and publishing the results
 * before the next iteration starts.
 */
export const START_SPREAD_SHARE = 0.9;

/**
 * Spreads target starts evenly over START_SPREAD_SHARE of the slack, at most MAX_START_SPREAD_MS,
 * so 10,000 targets do not all fire in their first millisecond. Returns ms offsets.
 */
export function startOffsets(count: number, intervalMs: number, longestTargetMs: number): number[] {
  const window = Math.min(MAX_START_SPREAD_MS, Math.max(0, (intervalMs - longestTargetMs) * START_SPREAD_SHARE));
  return Array.from({ length: count }, (_, i) => (count <= 1 ? 0 : (window * i) / count));
}

export function buildPlan(config: Config, addressesOf: AddressesOf, workers: number): Plan {
  const g = config.global;
  const intervalPacketsMs = g.interval_packets * 1000;
  const series: Series[] = [];
  const jobs: WorkerJob[] = Array.from({ length: Math.max(1, workers) }, () => ({ targets: [], seriesOf: [], series: [] }));
  const names = Object.keys(config.targets ?? {}).sort();
  let probes = 0;
  let longest = 0;
  names.forEach((name, i) => {
    const t = config.targets![name]! as TargetConfig;
    const addresses = addressesOf(name);
    if (!addresses || addresses.length === 0) return;
    const family: Family = targetAddressFamily(t) === "ipv6" ? 6 : 4;
    // Every series of one target goes to one Worker: the same destination is never probed
    // from two captures, which would see (and count) each other's answers.
    const job = jobs[i % jobs.length]!;
    for (const groupName of targetGroups(config, t)) {
      const group = config.groups[groupName]!;
      const seriesIndex = series.length;
      series.push({ target: name, group: groupName, type: t.type, family, state: t.state ?? "None" });
      const local = job.series.length;
      job.series.push(seriesIndex);
      longest = Math.max(longest, (t.nb_packets - 1) * intervalPacketsMs + t.timeout * 1000);
      for (const dst of addresses) {
        const probe: ProbeTarget = {
          type: t.type,
          family,
          dst,
          dstPort: destinationPort(t.type, t.dst_port),
          srcAddresses: sourceAddresses(group, family),
          srcPortA: group.src_port_a,
          srcPortZ: group.src_port_z,
          dscp: group.dscp,
          dontFragment: t.dont_fragment,
          ipPayloadSize: ipPayloadSize(t, group),
          count: t.nb_packets,
          intervalMs: intervalPacketsMs,
          startMs: 0,
          timeoutMs: t.timeout * 1000,
        };
        job.targets.push(probe);
        job.seriesOf.push(local);
        probes += t.nb_packets;
      }
    }
  });
  for (const job of jobs) {
    const offsets = startOffsets(job.targets.length, g.interval * 1000, longest);
    job.targets.forEach((p, i) => (p.startMs = offsets[i]!));
  }
  return { series, jobs, probes };
}
