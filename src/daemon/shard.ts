/**
 * Sharding: N probers on one config split its targets without talking to each other. Each keeps
 * the targets whose name it wins by rendezvous hashing (highest random weight): prober i's weight
 * for a target is MurmurHash3 (x86, 32 bits) of the name's UTF-8 bytes seeded with i, and the
 * highest weight wins, the lower index on a tie. So every target has exactly one owner among the
 * N, the owners are spread evenly, and going from N to N+1 probers moves only the targets the new
 * prober wins, about 1/(N+1) of them, each to the new prober.
 *
 * The function is written out (not Bun.hash) so that probers of different builds agree, and so
 * that anyone can work out which prober owns a target (Python: mmh3.hash(name, i, signed=False)).
 *
 * Where the shard comes from: --shard I/N, else NETPROBIFY_SHARD_COUNT with
 * NETPROBIFY_SHARD_INDEX, else the config's global.shard, else no sharding (0/1).
 */
import { hostname as systemHostname } from "node:os";
import { MAX_SHARD_COUNT } from "../config/limits.ts";

/** This prober is number `index` (from 0) of `count` sharing the targets. */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** One prober alone: it keeps every target. */
export const NO_SHARD: Shard = Object.freeze({ index: 0, count: 1 });

/** Where a shard setting was read, for the log. */
export type ShardSource = "--shard" | "environment" | "global.shard" | "none";

export interface ShardSetting {
  readonly shard: Shard;
  readonly source: ShardSource;
}

/** "1/3": as --shard takes it and the log and `check` show it. */
export function shardText(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

// --- the hash ---

const encoder = new TextEncoder();

/** MurmurHash3_x86_32 of `bytes` with `seed`, as an unsigned 32-bit integer. */
export function murmur3(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = bytes.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = bytes.length & 3;
  if (tail > 0) {
    let k = bytes[blocks]!;
    if (tail > 1) k |= bytes[blocks + 1]! << 8;
    if (tail > 2) k |= bytes[blocks + 2]! << 16;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The index, from 0 to count - 1, of the prober that owns the target `name` among `count`. */
export function shardOwner(name: string, count: number): number {
  const bytes = encoder.encode(name);
  let owner = 0;
  let best = -1;
  for (let i = 0; i < count; i++) {
    const weight = murmur3(bytes, i);
    if (weight > best) {
      best = weight;
      owner = i;
    }
  }
  return owner;
}

/**
 * Whether a shard keeps targets by name, remembering the answers: a name is hashed `count` times
 * once, not at every iteration. Answers are kept for the names asked about in this round and the
 * one before (see {@link nextRound}), so names that stop coming (a churning inventory) are
 * forgotten.
 */
export class ShardFilter {
  #current = new Map<string, boolean>();
  #previous = new Map<string, boolean>();

  constructor(readonly shard: Shard) {}

  /** Whether every target is kept (one prober alone): callers may skip the filter. */
  get keepsAll(): boolean {
    return this.shard.count === 1;
  }

  keeps(name: string): boolean {
    if (this.shard.count === 1) return true;
    let kept = this.#current.get(name);
    if (kept === undefined) {
      kept = this.#previous.get(name) ?? shardOwner(name, this.shard.count) === this.shard.index;
      this.#current.set(name, kept);
    }
    return kept;
  }

  /** Starts a round (an iteration's merge): answers not asked for since the last round go. */
  nextRound(): void {
    this.#previous = this.#current;
    this.#current = new Map();
  }
}

// --- reading a shard setting ---

/** A shard setting that cannot be used: the message names what was given and what is expected. */
export class ShardSettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ShardSettingError";
  }
}

const COUNT_EXPECTED = `an integer from 1 to ${MAX_SHARD_COUNT}`;

/** A whole number written in decimal digits only ("3", not "3.0", "+3", "0x3" or "3e0"). */
function digits(text: string): number | undefined {
  return /^\d{1,9}$/.test(text) ? Number(text) : undefined;
}

/** `label` shows the setting as given: `--shard 3/3`, `NETPROBIFY_SHARD_COUNT="0"`. */
function checkCount(count: number | undefined, label: string): number {
  if (count === undefined || count < 1 || count > MAX_SHARD_COUNT) throw new ShardSettingError(`${label}: the count must be ${COUNT_EXPECTED}`);
  return count;
}

function checkIndex(index: number | undefined, count: number, label: string): number {
  if (index === undefined || index >= count) {
    const range = count === 1 ? "0" : `an integer from 0 to ${count - 1}`;
    throw new ShardSettingError(`${label}: the index must be ${range}, below the count ${count} (probers are numbered from 0)`);
  }
  return index;
}

/** `--shard I/N`: this prober is I (from 0) of N. */
export function parseShardFlag(text: string): Shard {
  const m = /^([^/]*)\/([^/]*)$/.exec(text);
  if (!m) throw new ShardSettingError(`--shard ${text}: expected INDEX/COUNT, such as 0/3 for the first of 3 probers`);
  const count = checkCount(digits(m[2]!), `--shard ${text}`);
  return { index: checkIndex(digits(m[1]!), count, `--shard ${text}`), count };
}

export const SHARD_COUNT_VARIABLE = "NETPROBIFY_SHARD_COUNT";
export const SHARD_INDEX_VARIABLE = "NETPROBIFY_SHARD_INDEX";

/** The value of NETPROBIFY_SHARD_INDEX that takes the ordinal from this host's name. */
export const INDEX_FROM_HOSTNAME = "hostname";

/**
 * The shard the environment sets, or null when neither variable is set. NETPROBIFY_SHARD_COUNT
 * is the number of probers; NETPROBIFY_SHARD_INDEX is this one's index: a number, a StatefulSet
 * pod's name `<name>-<ordinal>` (from the downward API's metadata.name), or `hostname` for the
 * ordinal at the end of this host's name (a StatefulSet pod's hostname is its pod name, unless it
 * runs in the host's network namespace).
 */
export function shardFromEnvironment(
  env: Readonly<Record<string, string | undefined>>,
  hostname: () => string = systemHostname,
): Shard | null {
  const countText = env[SHARD_COUNT_VARIABLE];
  const indexText = env[SHARD_INDEX_VARIABLE];
  if (countText === undefined && indexText === undefined) return null;
  if (countText === undefined) throw new ShardSettingError(`${SHARD_INDEX_VARIABLE} is set but ${SHARD_COUNT_VARIABLE} is not: set both, or neither`);
  if (indexText === undefined) throw new ShardSettingError(`${SHARD_COUNT_VARIABLE} is set but ${SHARD_INDEX_VARIABLE} is not: set both, or neither`);
  const count = checkCount(digits(countText), `${SHARD_COUNT_VARIABLE}=${JSON.stringify(countText)}`);
  const label = `${SHARD_INDEX_VARIABLE}=${JSON.stringify(indexText)}`;
  if (indexText === INDEX_FROM_HOSTNAME) {
    const host = hostname();
    const ordinal = /-(\d{1,9})$/.exec(host);
    if (!ordinal) {
      throw new ShardSettingError(
        `${label}: this host's name ${JSON.stringify(host)} does not end in -<ordinal> as a StatefulSet pod's does ` +
          `(with hostNetwork, set ${SHARD_INDEX_VARIABLE} from the downward API's metadata.name)`,
      );
    }
    return { count, index: checkIndex(Number(ordinal[1]), count, `${label} (host name ${JSON.stringify(host)})`) };
  }
  const pod = /^[a-z0-9][a-z0-9.-]*-(\d{1,9})$/.exec(indexText);
  const index = digits(indexText) ?? (pod ? Number(pod[1]) : undefined);
  if (index === undefined) {
    throw new ShardSettingError(`${label}: expected an index from 0, a pod name ending in -<ordinal> such as netprobify-2, or ${INDEX_FROM_HOSTNAME}`);
  }
  return { count, index: checkIndex(index, count, label) };
}

/** The shard in force: the flag's or the environment's (given at start, for good), else the config's. */
export function effectiveShard(override: ShardSetting | null, configured: Shard | undefined): ShardSetting {
  if (override) return override;
  return configured ? { shard: configured, source: "global.shard" } : { shard: NO_SHARD, source: "none" };
}
