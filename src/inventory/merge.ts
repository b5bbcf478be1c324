/**
 * Dynamic targets into the config the planner reads: names in each inventory's namespace, expiry,
 * group membership, the configured targets always winning, and this prober's shard of them all.
 * Pure but for the memory of when a target was first seen (its lifetime counts from then when it
 * has no creation_date), of what was already warned about, and of which names the shard keeps.
 *
 * The shard is applied here because this is where the set of targets to probe becomes final:
 * the planner, the resolver (no hostname of another prober's target is resolved) and the metrics
 * all read the merged config, and the iteration limits count this prober's share only.
 */
import type { Config, InventoryTarget, TargetConfig } from "../config/schema.ts";
import { creationSeconds, lifetimeSeconds, targetAddressFamily, withoutPrototype } from "../config/schema.ts";
import { iterationSize } from "../config/iteration.ts";
import { MAX_NB_PACKETS, MAX_PROBED_ADDRESSES_PER_ITERATION, MAX_PROBES_PER_ITERATION } from "../config/limits.ts";
import { onlyInGroups, targetGroups } from "../daemon/group-membership.ts";
import type { Logger } from "../log.ts";
import { NO_SHARD, ShardFilter, type Shard } from "../daemon/shard.ts";
import { hasPorts, probeType } from "../probes/registry.ts";
import { destinationSize } from "../targets/destinations.ts";
import type { InventoryList } from "./supervisor.ts";

/**
 * The API inventory's name (reserved: no other inventory may take it). Its targets were posted to
 * this prober by name, so no shard sends them elsewhere.
 */
export const API_INVENTORY = "api";

/** A hostname as the tail of a target name: lowercase, anything but [a-z0-9_.-] as "_". */
export function nameTail(hostname: string): string {
  return hostname.toLowerCase().replace(/[^a-z0-9_.-]/g, "_");
}

/** What tells two targets of one hostname apart, in the order the suffix names them. */
function distinguishing(t: InventoryTarget): string {
  const family = targetAddressFamily({ address_family: t.address_family, destination: t.destination ?? t.hostname }) === "ipv6" ? "_ipv6" : "";
  const port = !hasPorts(t.type) || t.dst_port === undefined ? "" : `_${t.dst_port}`;
  const size = t.ip_payload_size === undefined ? "" : `_${t.ip_payload_size}b`;
  return `_${probeType(t.type).name}${port}${family}${size}`;
}

/**
 * Names of one inventory's targets: `<inventory>_<hostname>`, and when one hostname carries
 * several targets (the API allows one per type, port, family and size), each of those gets a
 * suffix saying which it is: `api_web_tcpsyn_443`, `api_web_icmp`. Exact duplicates get null.
 */
export function inventoryNames(inventory: string, targets: readonly InventoryTarget[]): (string | null)[] {
  const bases = targets.map((t) => `${inventory}_${nameTail(t.hostname)}`);
  const byBase = new Map<string, number>();
  for (const base of bases) byBase.set(base, (byBase.get(base) ?? 0) + 1);
  const taken = new Set<string>();
  return targets.map((t, i) => {
    const base = bases[i]!;
    const name = byBase.get(base)! > 1 ? `${base}${distinguishing(t)}` : base;
    if (taken.has(name)) return null;
    taken.add(name);
    return name;
  });
}

/** A published target as a configured one. */
export function asTargetConfig(inventory: string, t: InventoryTarget): TargetConfig {
  const { hostname, groups, creation_date: _created, lifetime: _lifetime, destination, ...rest } = t;
  return {
    ...rest,
    destination: destination ?? hostname,
    description: rest.description ?? `from_${inventory}`,
    ...(groups ? onlyInGroups(groups) : {}),
  } as TargetConfig;
}

export interface Merged {
  /** This prober's share of the config's targets plus the dynamic ones: what the iteration plans from. */
  readonly config: Config;
  /** Targets this prober takes from each inventory now (after expiry, collisions, its shard and the limits). */
  readonly counts: ReadonlyMap<string, number>;
  /** Targets in `config`: the configured ones kept plus every count. */
  readonly kept: number;
  /** The configured targets: how many the file has, how many this prober's shard keeps. */
  readonly configured: { readonly total: number; readonly kept: number };
}

/** A config's targets as one shard keeps them, worked out once per config and shard. */
interface ConfiguredShare {
  readonly source: Config;
  readonly filter: ShardFilter | null;
  /** `source` itself when every target is kept, so that an unsharded prober sees no new object. */
  readonly config: Config;
  readonly total: number;
  readonly kept: number;
}

/**
 * What a target adds to an iteration, as the schema counts it for configured targets (one address
 * for a hostname, the expansion of a subnet or range, once per group).
 */
function iterationShare(config: Config, t: TargetConfig): { probes: number; addresses: number } {
  const size = destinationSize(t.destination);
  const addresses = (size.ok ? size.addresses : 0) * targetGroups(config, t).length;
  return { probes: addresses * Math.min(t.nb_packets, MAX_NB_PACKETS), addresses };
}

export class DynamicTargets {
  /** "<inventory>\0<name>" -> ms since the epoch when first published. */
  readonly #firstSeen = new Map<string, number>();
  readonly #warned = new Set<string>();
  /** The configured targets' share of the iteration, worked out once per config. */
  #base: { config: Config; probes: number; addresses: number } | undefined;
  /** Which names the current shard keeps; null: every name (one prober alone). */
  #filter: ShardFilter | null = null;
  #configured: ConfiguredShare | undefined;

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** The filter of `shard`, the one already in use when the shard is the same. */
  #filterFor(shard: Shard): ShardFilter | null {
    if (shard.count === 1) return (this.#filter = null);
    const f = this.#filter;
    if (f?.shard.index !== shard.index || f.shard.count !== shard.count) this.#filter = new ShardFilter(shard);
    return this.#filter;
  }

  /** The configured targets `filter` keeps, the same object as long as the config and the shard are. */
  #configuredShare(config: Config, filter: ShardFilter | null): ConfiguredShare {
    const c = this.#configured;
    if (c?.source === config && c.filter === filter) return c;
    const names = Object.keys(config.targets);
    let share = config;
    if (filter) {
      const kept: Record<string, TargetConfig> = Object.create(null);
      for (const name of names) if (filter.keeps(name)) kept[name] = config.targets[name]!;
      share = { ...config, targets: kept };
    }
    this.#configured = { source: config, filter, config: share, total: names.length, kept: Object.keys(share.targets).length };
    return this.#configured;
  }

  /**
   * @param shard Which share of the targets this prober keeps: every configured and dynamic target
   *   whose name the shard does not win is left out, except the API's (posted to this prober).
   */
  merge(config: Config, lists: ReadonlyMap<string, InventoryList>, shard: Shard = NO_SHARD): Merged {
    const filter = this.#filterFor(shard);
    filter?.nextRound();
    const share = this.#configuredShare(config, filter);
    const configured = { total: share.total, kept: share.kept };
    if (lists.size === 0 && this.#firstSeen.size === 0) return { config: share.config, counts: new Map(), kept: share.kept, configured };
    const nowMs = this.now();
    // Keyed by names from outside (inventory "_" and hostname "proto__" make "__proto__"): no
    // prototype, so that every name is an own key like any other.
    const targets: Record<string, TargetConfig> = withoutPrototype(share.config.targets);
    let kept = share.kept;
    const counts = new Map<string, number>();
    const seen = new Set<string>();
    // Dynamic targets stay within the iteration limits the schema sets for the configured ones:
    // those past them are left out (in inventory order), not handed to a Worker that cannot hold them.
    if (this.#base?.config !== share.config) this.#base = { config: share.config, ...iterationSize(share.config) };
    let probes = this.#base.probes;
    let addresses = this.#base.addresses;
    const warnedNow = new Set<string>();
    const warnOnce = (key: string, message: string, fields: Record<string, string>) => {
      if (!this.#warned.has(key) && !warnedNow.has(key)) this.log.warning(message, fields);
      warnedNow.add(key);
    };
    for (const [inventory, list] of [...lists].sort(([a], [b]) => a.localeCompare(b))) {
      const names = inventoryNames(inventory, list.targets);
      const sharded = filter !== null && inventory !== API_INVENTORY;
      let count = 0;
      list.targets.forEach((t, i) => {
        const name = names[i];
        if (!name) {
          warnOnce(`dup\0${inventory}\0${t.hostname}`, "inventory publishes the same target twice: the second is ignored", {
            inventory,
            hostname: t.hostname,
          });
          return;
        }
        const seenKey = `${inventory}\0${name}`;
        seen.add(seenKey);
        const first = this.#firstSeen.get(seenKey) ?? list.receivedAt;
        this.#firstSeen.set(seenKey, first);
        const lifetime = t.lifetime === undefined ? undefined : lifetimeSeconds(t.lifetime);
        if (lifetime !== undefined) {
          const created = creationSeconds(t.creation_date) ?? first / 1000;
          if ((created + lifetime) * 1000 <= nowMs) return;
        }
        // Another prober's: nothing to say about it here (its owner warns about its clashes).
        if (sharded && !filter.keeps(name)) return;
        if (Object.hasOwn(config.targets, name)) {
          warnOnce(`clash\0${name}`, "a configured target has this dynamic target's name: the configured one is probed", {
            inventory,
            target: name,
          });
          return;
        }
        if (Object.hasOwn(targets, name)) {
          warnOnce(`clash\0${name}`, "two inventories give a target the same name: the first inventory's is probed", {
            inventory,
            target: name,
          });
          return;
        }
        const target = asTargetConfig(inventory, t);
        const share = iterationShare(config, target);
        if (probes + share.probes > MAX_PROBES_PER_ITERATION || addresses + share.addresses > MAX_PROBED_ADDRESSES_PER_ITERATION) {
          warnOnce(`limit\0${inventory}`, "targets past the iteration limits are left out", {
            inventory,
            max_probes: String(MAX_PROBES_PER_ITERATION),
            max_addresses: String(MAX_PROBED_ADDRESSES_PER_ITERATION),
          });
          return;
        }
        probes += share.probes;
        addresses += share.addresses;
        for (const g of target.explicit_groups.register_to) {
          if (!Object.hasOwn(config.groups, g)) {
            warnOnce(`group\0${name}\0${g}`, "dynamic target names a group that does not exist: ignored", {
              inventory,
              target: name,
              group: g,
            });
          }
        }
        targets[name] = target;
        count++;
      });
      counts.set(inventory, count);
      kept += count;
    }
    for (const key of this.#firstSeen.keys()) if (!seen.has(key)) this.#firstSeen.delete(key);
    // Warn again if a problem goes away and comes back.
    for (const key of this.#warned) if (!warnedNow.has(key)) this.#warned.delete(key);
    for (const key of warnedNow) this.#warned.add(key);
    return { config: { ...config, targets }, counts, kept, configured };
  }
}
