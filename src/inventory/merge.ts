/**
 * Dynamic targets into the config the planner reads: names in each inventory's namespace, expiry,
 * group membership, and the configured targets always winning. Pure but for the memory of when
 * a target was first seen (its lifetime counts from then when it has no creation_date) and of
 * what was already warned about.
 */
import type { Config, InventoryTarget, TargetConfig } from "../config/schema.ts";
import { creationSeconds, lifetimeSeconds, targetAddressFamily, withoutPrototype } from "../config/schema.ts";
import { iterationSize } from "../config/iteration.ts";
import { MAX_NB_PACKETS, MAX_PROBED_ADDRESSES_PER_ITERATION, MAX_PROBES_PER_ITERATION } from "../config/limits.ts";
import { onlyInGroups, targetGroups } from "../daemon/group-membership.ts";
import type { Logger } from "../log.ts";
import { hasPorts, probeType } from "../probes/registry.ts";
import { destinationSize } from "../targets/destinations.ts";
import type { InventoryList } from "./supervisor.ts";

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
  /** The config with the dynamic targets added: what the iteration plans from. */
  readonly config: Config;
  /** Targets each inventory holds now (after expiry and collisions). */
  readonly counts: ReadonlyMap<string, number>;
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

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  merge(config: Config, lists: ReadonlyMap<string, InventoryList>): Merged {
    if (lists.size === 0 && this.#firstSeen.size === 0) return { config, counts: new Map() };
    const nowMs = this.now();
    // Keyed by names from outside (inventory "_" and hostname "proto__" make "__proto__"): no
    // prototype, so that every name is an own key like any other.
    const targets: Record<string, TargetConfig> = withoutPrototype(config.targets);
    const counts = new Map<string, number>();
    const seen = new Set<string>();
    // Dynamic targets stay within the iteration limits the schema sets for the configured ones:
    // those past them are left out (in inventory order), not handed to a Worker that cannot hold them.
    if (this.#base?.config !== config) this.#base = { config, ...iterationSize(config) };
    let probes = this.#base.probes;
    let addresses = this.#base.addresses;
    const warnedNow = new Set<string>();
    const warnOnce = (key: string, message: string, fields: Record<string, string>) => {
      if (!this.#warned.has(key) && !warnedNow.has(key)) this.log.warning(message, fields);
      warnedNow.add(key);
    };
    for (const [inventory, list] of [...lists].sort(([a], [b]) => a.localeCompare(b))) {
      const names = inventoryNames(inventory, list.targets);
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
    }
    for (const key of this.#firstSeen.keys()) if (!seen.has(key)) this.#firstSeen.delete(key);
    // Warn again if a problem goes away and comes back.
    for (const key of this.#warned) if (!warnedNow.has(key)) this.#warned.delete(key);
    for (const key of warnedNow) this.#warned.add(key);
    return { config: { ...config, targets }, counts };
  }
}
