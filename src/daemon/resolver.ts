/**
 * Target destinations to addresses. Literals, subnets and ranges expand at once; hostnames
 * resolve per family in the background, again every dns_update_interval, so a slow or dead
 * resolver never delays an iteration: probing uses the last answer. A failure disables the
 * target (its measurement series go away) until a later lookup succeeds.
 */
import { lookup } from "node:dns/promises";
import type { Config } from "../config/schema.ts";
import { targetAddressFamily } from "../config/schema.ts";
import type { Family } from "../packet/address.ts";
import { destinationForm, expandDestination } from "../targets/destinations.ts";
import type { Logger } from "../log.ts";

export type LookupFn = (host: string, family: Family) => Promise<string[]>;

const LOOKUP_TIMEOUT_MS = 5000;

export const systemLookup: LookupFn = async (host, family) => {
  const found = await lookup(host, { family, all: true });
  return found.map((a) => a.address);
};

export interface Resolution {
  target: string;
  family: Family;
  /** 1 resolved, 0 failed (app_host_resolution_status). */
  status: 0 | 1;
  /** Times the address set changed, the first resolution included (app_host_resolution_change_total). */
  changes: number;
  addresses: string[] | null;
}

interface Entry extends Resolution {
  destination: string;
  hostname: boolean;
  everyMs: number;
  nextAt: number;
  inFlight: boolean;
  /** Logged once when a name starts failing, not at every retry. */
  failing: boolean;
  /** The last successful answer: a name that comes back unchanged after an outage is no change. */
  lastGood: string[] | null;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export class Resolver {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly log: Logger,
    private readonly lookupFn: LookupFn = systemLookup,
    private readonly now: () => number = Date.now,
  ) {}

  /** Follows the config: new targets are added, removed ones forgotten, changed ones redone. */
  sync(config: Config): void {
    const seen = new Set<string>();
    for (const [name, t] of Object.entries(config.targets ?? {})) {
      seen.add(name);
      const family: Family = targetAddressFamily(t) === "ipv6" ? 6 : 4;
      const everyS = t.dns_update_interval ?? config.global.dns_update_interval;
      const old = this.#entries.get(name);
      if (old && old.destination === t.destination && old.family === family) {
        old.everyMs = everyS * 1000;
        continue;
      }
      const hostname = destinationForm(t.destination) === "hostname";
      const e: Entry = {
        target: name,
        family,
        destination: t.destination,
        hostname,
        everyMs: everyS * 1000,
        nextAt: 0,
        inFlight: false,
        failing: false,
        lastGood: null,
        status: 0,
        changes: old?.changes ?? 0,
        addresses: null,
      };
      if (!hostname) {
        this.#record(e, expandDestination(t.destination).addresses);
      }
      this.#entries.set(name, e);
    }
    for (const name of [...this.#entries.keys()]) if (!seen.has(name)) this.#entries.delete(name);
  }

  #record(e: Entry, addresses: string[]): void {
    const sorted = [...new Set(addresses)].sort();
    const changed = e.lastGood === null || sorted.join() !== e.lastGood.join();
    if (changed) {
      e.changes++;
      if (e.lastGood !== null) this.log.info("address changed", { target: e.target, was: e.lastGood.join(","), now: sorted.join(",") });
    }
    e.addresses = sorted;
    e.lastGood = sorted;
    e.status = 1;
  }

  /** Starts the lookups that are due; returns a promise of their completion (never rejects). */
  refresh(): Promise<void> {
    const now = this.now();
    const running: Promise<void>[] = [];
    for (const e of this.#entries.values()) {
      if (!e.hostname || e.inFlight || now < e.nextAt) continue;
      e.inFlight = true;
      e.nextAt = e.everyMs > 0 ? now + e.everyMs : Infinity;
      running.push(this.#resolve(e));
    }
    return Promise.all(running).then(() => undefined);
  }

  async #resolve(e: Entry): Promise<void> {
    try {
      const found = await withTimeout(this.lookupFn(e.destination, e.family), LOOKUP_TIMEOUT_MS);
      if (found.length === 0) throw new Error("no address");
      // Several addresses: the first in sorted order, stable across answers in any order.
      this.#record(e, [found.sort()[0]!]);
      e.failing = false;
    } catch (err) {
      if (!e.failing) {
        e.failing = true;
        this.log.warning("hostname does not resolve: target disabled until it does", {
          target: e.target,
          destination: e.destination,
          family: `ipv${e.family}`,
          error: err instanceof Error ? err.message : String(err),
        });
      }
      e.status = 0;
      e.addresses = null;
      // A failed name is retried on the next refresh rather than after a whole interval.
      e.nextAt = this.now();
    } finally {
      e.inFlight = false;
    }
  }

  addressesOf(target: string): string[] | null {
    return this.#entries.get(target)?.addresses ?? null;
  }

  resolutions(): Resolution[] {
    return [...this.#entries.values()].map(({ target, family, status, changes, addresses }) => ({
      target,
      family,
      status,
      changes,
      addresses,
    }));
  }
}
