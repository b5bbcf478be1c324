/**
 * The `dns` built-in inventory, in the spirit of Prometheus dns_sd: names looked up every
 * refresh_interval, every address behind them a target. With a Kubernetes headless Service whose
 * endpoints are the probers themselves, each prober probes all the others: the full mesh.
 *
 * - record_type A or AAAA: each address of the answer is a target on `port`. SRV: each SRV record's
 *   target name is looked up with A (address_family ipv4, the default) or AAAA (ipv6), and each
 *   address is a target on the record's port. A target is named `<inventory>_<address>` like any
 *   dynamic target (merge.ts adds a `_tcpsyn_8443` suffix when one address comes with two ports).
 * - Servers: `servers` in order, else the nameservers of /etc/resolv.conf (read at every
 *   refresh); the names are looked up as given, without the search list. UDP first, TCP when the
 *   answer is truncated (dns-client.ts).
 * - As in Prometheus: NXDOMAIN or no records makes the name give no targets (NXDOMAIN is reported
 *   and counted, no records logged); a server failure (SERVFAIL, REFUSED...), no answer or a
 *   malformed one keeps the name's last good addresses, and is reported and counted. An SRV
 *   target that cannot be looked up counts as a failure of its name. The problems of one refresh
 *   make one report (one count in netprobify_inventory_errors_total).
 * - Records that cannot be targets are ignored and counted: an A record in the answer to an AAAA
 *   query (or the other way), a record of another type or another name, one whose data is
 *   malformed. CNAME chains inside the answer are followed.
 * - Bounds: at most MAX_DNS_ADDRESSES_PER_NAME addresses per name (SRV targets past it are not
 *   looked up) and MAX_INVENTORY_TARGETS targets in all; the excess is left out, counted and
 *   logged, and the rest is still published.
 * - exclude_self (default true): the addresses of the prober's own interfaces, read at every
 *   refresh, are skipped.
 * - Addresses are sorted (servers rotate their order) and the list is published only when it
 *   differs from the last one published.
 */
import { networkInterfaces } from "node:os";
import { MAX_DNS_ADDRESSES_PER_NAME, MAX_DNS_SERVERS } from "../config/limits.ts";
import {
  DNS_RECORD_TYPES,
  dnsRecordType,
  dnsTargetFamily,
  isDnsName,
  MAX_INVENTORY_TARGETS,
  parseDnsServer,
  TARGET_TYPES,
  type AddressFamily,
  type DnsRecordType,
  type DnsServerAddress,
  type TargetType,
} from "../config/schema.ts";
import { formatAddress, parseAddress } from "../packet/address.ts";
import { hasPorts } from "../probes/registry.ts";
import { formatCount } from "../targets/destinations.ts";
import type { InventoryContext, InventoryStart, Publish } from "./contract.ts";
import { query, RESOLV_CONF, systemServers, type QueryTiming } from "./dns-client.ts";
import { canonicalName, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_SRV, typeName, type Message } from "./dns-wire.ts";
import { abortableSleep } from "../daemon/timers.ts";

/** How the inventory asks and what it reads; tests change these. */
export interface DnsTiming extends QueryTiming {
  /** Where the system's nameservers are listed. */
  readonly resolvConf: string;
  /** The prober's own addresses, in canonical form; called at every refresh. */
  readonly ownAddresses: () => ReadonlySet<string>;
  /** Lookups in flight at once: names, and the SRV targets of one name. */
  readonly concurrency: number;
}

/** The addresses of this host's interfaces, canonical (RFC 5952 for IPv6, no zone). */
export function interfaceAddresses(): ReadonlySet<string> {
  const own = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) {
      const canonical = canonicalAddress(info.address);
      if (canonical) own.add(canonical);
    }
  }
  return own;
}

function canonicalAddress(text: string): string | undefined {
  const parsed = parseAddress(text);
  return parsed ? formatAddress(parsed.family, parsed.bytes) : undefined;
}

const DEFAULT_TIMING: DnsTiming = {
  timeoutMs: 2_000,
  attempts: 2,
  resolvConf: RESOLV_CONF,
  ownAddresses: interfaceAddresses,
  concurrency: 8,
};

/** The options, as the prober's schema (DnsInventoryConfig) guarantees them. */
interface DnsOptions {
  readonly names: readonly string[];
  readonly recordType: DnsRecordType;
  /** The family of every target: the record type's, or for SRV address_family. */
  readonly family: AddressFamily;
  readonly port: number | undefined;
  readonly refreshMs: number;
  /** Undefined: the system's. */
  readonly servers: readonly DnsServerAddress[] | undefined;
  readonly excludeSelf: boolean;
  readonly type: TargetType;
  /** The target fields every target gets (type, groups, nb_packets...). */
  readonly template: Readonly<Record<string, unknown>>;
}

/** The inventory's own options; every other option is a target field. */
const OWN_OPTIONS = new Set(["names", "record_type", "port", "refresh_interval", "servers", "exclude_self"]);

function readOptions(options: Readonly<Record<string, unknown>>): DnsOptions {
  const { names, record_type, port, refresh_interval, servers, exclude_self, type, address_family } = options;
  const fail = (what: string): never => {
    throw new Error(`the dns inventory's ${what}`);
  };
  if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === "string" && isDnsName(n))) {
    fail("names must be a non-empty list of DNS names");
  }
  if (record_type !== undefined && !DNS_RECORD_TYPES.includes(record_type as DnsRecordType)) fail("record_type must be A, AAAA or SRV");
  if (address_family !== undefined && address_family !== "ipv4" && address_family !== "ipv6") fail("address_family must be ipv4 or ipv6");
  if (!TARGET_TYPES.includes(type as TargetType)) fail(`type must be one of ${TARGET_TYPES.join(", ")}`);
  if (port !== undefined && !(Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535)) fail("port must be an integer from 1 to 65535");
  const refresh = refresh_interval ?? 30;
  if (typeof refresh !== "number" || !(refresh > 0) || !Number.isFinite(refresh)) fail("refresh_interval must be a positive number");
  let parsedServers: DnsServerAddress[] | undefined;
  if (servers !== undefined) {
    if (!Array.isArray(servers) || servers.length === 0) fail("servers must be a non-empty list of ADDRESS:PORT");
    parsedServers = (servers as unknown[]).map((s) => (typeof s === "string" ? parseDnsServer(s) : undefined) ?? fail(`server ${JSON.stringify(s)} is not ADDRESS:PORT`));
  }
  const which = { record_type: record_type as DnsRecordType | undefined, address_family: address_family as AddressFamily | undefined };
  const template = Object.fromEntries(Object.entries(options).filter(([k]) => !OWN_OPTIONS.has(k)));
  return {
    names: names as string[],
    recordType: dnsRecordType(which),
    family: dnsTargetFamily(which),
    port: port as number | undefined,
    refreshMs: (refresh as number) * 1000,
    servers: parsedServers,
    excludeSelf: exclude_self !== false,
    type: type as TargetType,
    template,
  };
}

/** The dns inventory with its timing; `start` below is it with the defaults. */
export function dnsInventory(timing: Partial<DnsTiming> = {}): InventoryStart {
  const t: DnsTiming = { ...DEFAULT_TIMING, ...timing };
  return async (_name, options, publish, context) => {
    const inventory = new DnsInventory(readOptions(options), t, publish, context);
    const { signal } = context;
    while (!signal.aborted) {
      const began = performance.now();
      await inventory.refresh();
      await abortableSleep(Math.max(0, inventory.refreshMs - (performance.now() - began)), signal);
    }
  };
}

export const start: InventoryStart = dnsInventory();

/** One target-to-be: an address, and the port of the SRV record or the `port` option. */
interface Entry {
  readonly address: string;
  readonly port: number | undefined;
}

/** What one name gave at one refresh. */
type NameResult =
  | {
      readonly ok: true;
      readonly entries: readonly Entry[];
      /** Problems worth counting (NXDOMAIN, ignored records, the excess past a limit). */
      readonly errors: readonly string[];
      /** Worth a log line when it changes (no records). */
      readonly notice: string | undefined;
    }
  | { readonly ok: false; readonly problem: string };

/** The records of an answer that are what was asked, and a count of the others by why they were ignored. */
interface Picked {
  readonly records: Message["answers"];
  readonly ignored: Map<string, number>;
}

/** Problems quoted in the one report of a refresh; the rest are counted in it. */
const MAX_REPORTED_PROBLEMS = 5;

/** Most CNAMEs followed inside one answer. */
const MAX_CNAME_HOPS = 16;

class DnsInventory {
  /** The last good addresses of each name (kept through failures). */
  private readonly lastGood = new Map<string, readonly Entry[]>();
  /** The notice last logged per name, so that a lasting one is logged once. */
  private readonly notices = new Map<string, string | undefined>();
  private lastServerProblem: string | undefined;
  private lastPublished: string | undefined;

  constructor(
    private readonly opts: DnsOptions,
    private readonly timing: DnsTiming,
    private readonly publish: Publish,
    private readonly context: InventoryContext,
  ) {}

  get refreshMs(): number {
    return this.opts.refreshMs;
  }

  /** Looks every name up, then publishes the list if it changed. */
  async refresh(): Promise<void> {
    const { signal } = this.context;
    const servers = this.opts.servers ?? (await this.systemServers());
    const results = await mapLimit(this.opts.names, this.timing.concurrency, (name) => this.lookUp(name, servers));
    if (signal.aborted) return;
    const problems: string[] = [];
    this.opts.names.forEach((name, i) => {
      const result = results[i]!;
      if (!result.ok) {
        const kept = this.lastGood.get(name)?.length ?? 0;
        problems.push(`${name}: ${result.problem}; keeping its last ${counted(kept, "address", "addresses")}`);
        return;
      }
      this.lastGood.set(name, result.entries);
      for (const error of result.errors) problems.push(`${name}: ${error}`);
      if (result.notice !== this.notices.get(name)) {
        if (result.notice !== undefined) this.context.log("WARNING", `${name}: ${result.notice}`, { name });
        else if (result.entries.length > 0) this.context.log("INFO", `${name}: gives addresses again`, { name });
        this.notices.set(name, result.notice);
      }
    });
    this.assemble(problems);
    // One report per refresh, however many names had problems: one count, and one log line
    // while the problems stay the same (the supervisor logs a repeated report once).
    if (problems.length > 0) {
      const more = problems.length > MAX_REPORTED_PROBLEMS ? `; and ${problems.length - MAX_REPORTED_PROBLEMS} more problems` : "";
      this.report(problems.slice(0, MAX_REPORTED_PROBLEMS).join("; ") + more, { problems: problems.length });
    }
  }

  /**
   * The targets from every name's last good addresses: own addresses and duplicates out, then
   * the limit (a problem line for the excess).
   */
  private assemble(problems: string[]): void {
    // Until a name has been looked up once, there is nothing to say: not even an empty list.
    if (this.lastGood.size === 0) return;
    const own = this.opts.excludeSelf ? this.timing.ownAddresses() : new Set<string>();
    const seen = new Set<string>();
    const targets: Record<string, unknown>[] = [];
    let self = 0;
    let excess = 0;
    for (const name of this.opts.names) {
      for (const e of this.lastGood.get(name) ?? []) {
        const key = `${e.address} ${e.port ?? ""}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (own.has(e.address)) {
          self++;
          continue;
        }
        if (targets.length >= MAX_INVENTORY_TARGETS) {
          excess++;
          continue;
        }
        targets.push(this.target(e));
      }
    }
    if (excess > 0) {
      problems.push(
        `the names give ${formatCount(targets.length + excess)} targets, over the limit of ${formatCount(MAX_INVENTORY_TARGETS)}: ` +
          `${formatCount(excess)} left out`,
      );
    }
    const text = JSON.stringify(targets);
    if (text === this.lastPublished) return;
    this.lastPublished = text;
    this.context.log("INFO", "publishing targets", { names: this.opts.names.length, targets: targets.length, own_addresses_skipped: self });
    this.publish(targets);
  }

  private target(e: Entry): Record<string, unknown> {
    const port = e.port !== undefined && hasPorts(this.opts.type) ? { dst_port: e.port } : {};
    return { ...this.opts.template, hostname: e.address, address_family: e.address.includes(":") ? "ipv6" : "ipv4", ...port };
  }

  private async systemServers(): Promise<readonly DnsServerAddress[]> {
    const { servers, problem } = await systemServers(this.timing.resolvConf, MAX_DNS_SERVERS);
    if (problem !== this.lastServerProblem && problem !== undefined) this.context.log("WARNING", problem);
    this.lastServerProblem = problem;
    return servers;
  }

  /** The record type that gives the targets' addresses. */
  private get addressType(): number {
    return this.opts.family === "ipv6" ? TYPE_AAAA : TYPE_A;
  }

  private async lookUp(name: string, servers: readonly DnsServerAddress[]): Promise<NameResult> {
    const type = this.opts.recordType === "SRV" ? TYPE_SRV : this.addressType;
    const answer = await query(servers, name, type, this.timing, this.context.signal);
    if (!answer.ok) return answer;
    if (answer.message.header.rcode === RCODE_NXDOMAIN) {
      return { ok: true, entries: [], errors: [`does not exist (NXDOMAIN from ${answer.server}): no targets from it`], notice: undefined };
    }
    const picked = this.pick(answer.message, name, type);
    const errors: string[] = [];
    const ignored = ignoredText(picked.ignored, type, this.opts.family);
    if (ignored) errors.push(ignored);
    if (picked.records.length === 0) {
      return { ok: true, entries: [], errors, notice: `no ${typeName(type)} records (NOERROR from ${answer.server}): no targets from it` };
    }
    if (type !== TYPE_SRV) {
      const entries = picked.records.flatMap((r) =>
        r.data.kind === "A" || r.data.kind === "AAAA" ? [{ address: r.data.address, port: this.opts.port }] : [],
      );
      return { ok: true, entries: this.capped(entries, errors), errors, notice: undefined };
    }
    return this.lookUpTargets(name, picked, servers, errors);
  }

  /** The addresses behind an SRV answer's records, each on its record's port. */
  private async lookUpTargets(name: string, picked: Picked, servers: readonly DnsServerAddress[], errors: string[]): Promise<NameResult> {
    const srv = picked.records
      .flatMap((r) => (r.data.kind === "SRV" ? [r.data] : []))
      // A fixed order, so that the limit cuts the same records every time.
      .sort((a, b) => a.priority - b.priority || b.weight - a.weight || cmp(canonicalName(a.target), canonicalName(b.target)) || a.port - b.port);
    // "." as the target: the service is decidedly not available there (RFC 2782).
    const usable = srv.filter((r) => r.target !== "");
    const ports = new Map<string, number[]>();
    for (const r of usable) {
      const key = canonicalName(r.target);
      const list = ports.get(key);
      if (list) list.push(r.port);
      else ports.set(key, [r.port]);
    }
    const targets = [...ports.keys()];
    const entries: Entry[] = [];
    const missing: string[] = [];
    const ignored = new Map<string, number>();
    let next = 0;
    while (next < targets.length && entries.length < MAX_DNS_ADDRESSES_PER_NAME && !this.context.signal.aborted) {
      const batch = targets.slice(next, next + this.timing.concurrency);
      next += batch.length;
      const answers = await Promise.all(batch.map((t) => query(servers, t, this.addressType, this.timing, this.context.signal)));
      for (let i = 0; i < batch.length; i++) {
        const target = batch[i]!;
        const answer = answers[i]!;
        if (!answer.ok) return { ok: false, problem: `SRV target ${target}: ${answer.problem}` };
        if (answer.message.header.rcode === RCODE_NXDOMAIN) {
          missing.push(target);
          continue;
        }
        const p = this.pick(answer.message, target, this.addressType);
        for (const [why, n] of p.ignored) ignored.set(why, (ignored.get(why) ?? 0) + n);
        for (const r of p.records) {
          if (r.data.kind !== "A" && r.data.kind !== "AAAA") continue;
          for (const port of ports.get(target)!) entries.push({ address: r.data.address, port });
        }
      }
    }
    if (missing.length > 0) {
      const shown = missing.slice(0, 3).join(", ") + (missing.length > 3 ? ` and ${missing.length - 3} more` : "");
      errors.push(`${counted(missing.length, "SRV target does", "SRV targets do")} not exist (NXDOMAIN): ${shown}`);
    }
    const ignoredTargets = ignoredText(ignored, this.addressType, this.opts.family);
    if (ignoredTargets) errors.push(`in the answers for its SRV targets: ${ignoredTargets}`);
    if (next < targets.length) {
      const records = targets.slice(next).reduce((n, t) => n + ports.get(t)!.length, 0);
      errors.push(
        `${counted(records, "SRV record", "SRV records")} not looked up: the name already gives ${formatCount(MAX_DNS_ADDRESSES_PER_NAME)} ` +
          "addresses, the limit per name",
      );
    }
    return { ok: true, entries: this.capped(entries, errors), errors, notice: entries.length === 0 ? "its SRV records give no addresses" : undefined };
  }

  /** Sorted, without duplicates, at most MAX_DNS_ADDRESSES_PER_NAME; the excess is an error line. */
  private capped(entries: Entry[], errors: string[]): Entry[] {
    const unique = new Map<string, Entry>();
    for (const e of entries) unique.set(`${e.address} ${e.port ?? ""}`, e);
    const sorted = [...unique.values()]
      .map((e) => ({ e, key: sortKey(e) }))
      .sort((a, b) => cmp(a.key, b.key))
      .map(({ e }) => e);
    if (sorted.length <= MAX_DNS_ADDRESSES_PER_NAME) return sorted;
    errors.push(
      `${formatCount(sorted.length)} addresses, over the limit of ${formatCount(MAX_DNS_ADDRESSES_PER_NAME)} per name: ` +
        `${formatCount(sorted.length - MAX_DNS_ADDRESSES_PER_NAME)} left out`,
    );
    return sorted.slice(0, MAX_DNS_ADDRESSES_PER_NAME);
  }

  /**
   * The records of `type` owned by `name` or by a name it is a CNAME of, within the answer; every
   * other record counted by why it was ignored.
   */
  private pick(message: Message, name: string, type: number): Picked {
    const owners = new Set([canonicalName(name)]);
    for (let hop = 0, grew = true; grew && hop < MAX_CNAME_HOPS; hop++) {
      grew = false;
      for (const r of message.answers) {
        if (r.data.kind !== "CNAME" || !owners.has(canonicalName(r.name))) continue;
        const target = canonicalName(r.data.target);
        if (!owners.has(target)) {
          owners.add(target);
          grew = true;
        }
      }
    }
    const records: Message["answers"][number][] = [];
    const ignored = new Map<string, number>();
    const ignore = (why: string) => ignored.set(why, (ignored.get(why) ?? 0) + 1);
    for (const r of message.answers) {
      if (!owners.has(canonicalName(r.name))) ignore(`${typeName(r.type)} ${RECORDS} of other names`);
      else if (r.type === TYPE_CNAME && r.data.kind === "CNAME") continue;
      else if (r.data.kind === "malformed") ignore(`malformed ${typeName(r.type)} ${RECORDS} (${r.data.problem})`);
      else if (r.type === type) records.push(r);
      else ignore(`${typeName(r.type)} ${RECORDS}`);
    }
    return { records, ignored };
  }

  private report(message: string, fields?: Record<string, string | number>): void {
    if (!this.context.signal.aborted) this.context.reportError(message, fields);
  }
}

/** Where "record" or "records" goes in the reasons of an ignored-records count. */
const RECORDS = "{records}";

/** "1 address", "2 addresses". */
function counted(n: number, one: string, many: string): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/**
 * "ignored 3 A records (a family not allowed: the targets are ipv6) in the answer to the AAAA
 * query", or undefined when nothing was ignored. Records of the other family are named as such:
 * they are the likely mistake.
 */
function ignoredText(ignored: ReadonlyMap<string, number>, asked: number, family: AddressFamily): string | undefined {
  if (ignored.size === 0) return undefined;
  const parts = [...ignored].map(([why, n]) => {
    const other = (asked === TYPE_A && why === `AAAA ${RECORDS}`) || (asked === TYPE_AAAA && why === `A ${RECORDS}`);
    return `${formatCount(n)} ${why.replace(RECORDS, n === 1 ? "record" : "records")}${other ? ` (a family not allowed: the targets are ${family})` : ""}`;
  });
  return `ignored ${parts.join(", ")} in the answer to the ${typeName(asked)} query`;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A key whose text order is numeric address order (IPv4 before IPv6), then port order. */
function sortKey(e: Entry): string {
  const parsed = parseAddress(e.address);
  const bytes = parsed ? Buffer.from(parsed.bytes).toString("hex") : e.address;
  return `${parsed?.family ?? 9}${bytes}:${String(e.port ?? 0).padStart(5, "0")}`;
}

/** fn over items with at most `limit` calls in flight, results in the items' order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
