/**
 * What one iteration of a configuration holds, worked out from the config alone (nothing resolved,
 * no subnet expanded): how many addresses and packets its targets make in the groups they send in.
 * The schema bounds the totals (limits.ts) with these figures, counting groups by the planner's
 * own membership rule (daemon/group-membership.ts), so the two cannot disagree.
 */
import { destinationSize } from "../targets/destinations.ts";
import { MAX_NB_PACKETS } from "./limits.ts";
import { targetGroups, type GroupMembershipFields, type TargetMembershipFields } from "../daemon/group-membership.ts";

export interface IterationSize {
  /** Packets sent: nb_packets x addresses x groups, summed over the targets. */
  readonly probes: number;
  /** Addresses probed, once per group each: the entries of the plan. */
  readonly addresses: number;
  /** The target sending the most packets, to point at in a message; undefined without targets. */
  readonly largest?: { readonly name: string; readonly probes: number };
}

/** Sizes already worked out: the schema asks twice (probes, then addresses) for one config. */
const sizes = new WeakMap<object, IterationSize>();

/**
 * The size of an iteration of `config`'s own targets. A hostname counts as one address (the
 * resolver probes one). A target the schema refuses on its own (a destination too large, too
 * many packets) counts as none: it is reported once, for itself, not again in the totals.
 */
export function iterationSize(config: {
  readonly groups: Readonly<Record<string, GroupMembershipFields>>;
  readonly targets: Readonly<Record<string, TargetMembershipFields & { readonly destination: string; readonly nb_packets: number }>>;
}): IterationSize {
  const known = sizes.get(config);
  if (known) return known;
  let probes = 0;
  let addresses = 0;
  let largest: IterationSize["largest"];
  for (const name of Object.keys(config.targets)) {
    const t = config.targets[name]!;
    const size = destinationSize(t.destination);
    const perGroup = size.ok && t.nb_packets <= MAX_NB_PACKETS ? size.addresses : 0;
    const n = perGroup * targetGroups(config, t).length;
    const p = n * t.nb_packets;
    addresses += n;
    probes += p;
    if (!largest || p > largest.probes) largest = { name, probes: p };
  }
  const size = { probes, addresses, largest };
  sizes.set(config, size);
  return size;
}
