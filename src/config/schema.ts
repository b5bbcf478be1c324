/**
 * The configuration schema: the single source of truth for what netprobify.yaml may contain.
 *
 * The TypeScript types, the checks `netprobify check` runs, the messages it prints and the
 * JSON Schema in schema_config.yaml are all derived from the valibot objects below, so a field
 * is added or changed here and nowhere else (then `bun run scripts/gen-schema.ts`).
 */
import * as v from "valibot";
import { destinationPortText, headerBytesText, PROBE_TYPE_LIST } from "../probes/registry.ts";
import { destinationSize, formatCount } from "../targets/destinations.ts";
import { iterationSize } from "./iteration.ts";
import {
  MAX_ADDRESSES_PER_DESTINATION,
  MAX_DESCRIPTION_LENGTH,
  MAX_DESTINATION_LENGTH,
  MAX_DNS_NAMES,
  MAX_DNS_SERVERS,
  MAX_DURATION_S,
  MAX_GROUPS,
  MAX_HISTOGRAM_BUCKETS,
  MAX_LIFETIME_S,
  MAX_NAME_LENGTH,
  MAX_NB_PACKETS,
  MAX_NB_PROC,
  MAX_PROBED_ADDRESSES_PER_ITERATION,
  MAX_PROBES_PER_ITERATION,
  MAX_PATH_LENGTH,
  MAX_PROBES_PER_SECOND,
  MAX_WORST_TARGETS,
  MAX_SHARD_COUNT,
  MAX_TARGETS,
} from "./limits.ts";

// --- names and enumerations ---

/**
 * Probe, group and target names: they become label values and keys, so the original kept them
 * tame; the length bound keeps every series of every scrape small.
 */
export const NAME_PATTERN = new RegExp(`^[a-z0-9_\\-\\.]{1,${MAX_NAME_LENGTH}}$`);

export const TARGET_TYPES = ["TCPsyn", "ICMPping", "UDPunreachable", "TWAMPlight"] as const;
export type TargetType = (typeof TARGET_TYPES)[number];

export const ADDRESS_FAMILIES = ["ipv4", "ipv6"] as const;
export type AddressFamily = (typeof ADDRESS_FAMILIES)[number];

export const LOGGING_LEVELS = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"] as const;
export const ALERT_LEVELS = ["paging", "paging_validation", "sandbox", "no_alert"] as const;
export const TARGET_STATES = ["in production", "validation"] as const;

// --- defaults: every optional field that has one names it here ---

/**
 * Default histogram buckets in seconds: 50 us doubling 18 times up to 13.1072 s, the first
 * bound past 10 s. Written out rather than computed so that the list in schema_config.yaml
 * and in reviews is the list the code uses (doubling 50e-6 is exact in binary anyway).
 */
export const DEFAULT_HISTOGRAM_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024,
  0.2048, 0.4096, 0.8192, 1.6384, 3.2768, 6.5536, 13.1072,
];

export const GLOBAL_DEFAULTS = {
  interval_packets: 0,
  verbose: 0,
  prometheus_address: "0.0.0.0",
  reload_conf_interval: 0,
  l3_raw_socket: false,
  timeout: 3600,
  percentile: [95, 50] as readonly number[],
  disable_dynamic_inventories: [] as readonly string[],
  histogram_buckets: DEFAULT_HISTOGRAM_BUCKETS,
  histogram_per_destination: false,
  max_probes_per_second: 100_000,
  per_target_series: true,
  worst_targets: 10,
} as const;

export const GROUP_DEFAULTS = {
  src_port_a: 65000,
  src_port_z: 65001,
  dscp: 0,
  permit_target_auto_register: true,
} as const;

export const TARGET_DEFAULTS = {
  dont_fragment: true,
  is_subnet: false,
  nb_packets: 1,
  alert_level: "no_alert",
  timeout: 1,
  auto_register_to_groups: true,
} as const;

// --- IP payload bounds ---

/** The L4 header is the smallest IP payload a probe of each type can carry. */
export const L4_HEADER_BYTES = Object.fromEntries(PROBE_TYPE_LIST.map((t) => [t.type, t.headerBytes])) as Readonly<
  Record<TargetType, number>
>;

/**
 * Largest IP payload per family. IPv4: the 16-bit total length (65535) less the 20-byte header.
 * IPv6: the 16-bit payload length counts the payload alone, so the whole 65535 is available.
 * (65507 and 65487, the figures often quoted, are the largest UDP *data*; ip_payload_size
 * includes the L4 header, so they would wrongly refuse the last 8 bytes.)
 */
export const MAX_IP_PAYLOAD_BYTES = {
  ipv4: 65535 - 20,
  ipv6: 65535,
} as const satisfies Record<AddressFamily, number>;

/** The smallest header among the types: a group's size applies to targets of any type. */
const MIN_GROUP_PAYLOAD_BYTES = Math.min(...Object.values(L4_HEADER_BYTES));

// --- hints read by describe.ts ---

/**
 * Texts that cannot be derived from the validation actions themselves: `expected` replaces the
 * derived "(what is expected)" phrase, `noun` names what a value failed to be ("a valid name"),
 * `deprecated` marks a field kept only for old files.
 */
export interface FieldHints {
  readonly expected?: string;
  readonly noun?: string;
  readonly deprecated?: boolean;
}

export const hints = <TInput>(h: FieldHints) => v.metadata<TInput, FieldHints & Record<string, unknown>>({ ...h });

/**
 * A custom check needs two texts (what is wrong, what is expected) while valibot carries one
 * message string, so they travel joined by an ASCII unit separator, which YAML text never
 * puts into a message by accident.
 */
const ISSUE_TEXT_SEPARATOR = "\u001f";

/** Joins the two halves of a custom check's message; see {@link splitIssueText}. */
export function issueText(problem: string, expected: string): string {
  return `${problem}${ISSUE_TEXT_SEPARATOR}${expected}`;
}

/** Splits a message made by {@link issueText}; undefined for valibot's own messages. */
export function splitIssueText(message: string): { problem: string; expected: string } | undefined {
  const at = message.indexOf(ISSUE_TEXT_SEPARATOR);
  if (at < 0) return undefined;
  return { problem: message.slice(0, at), expected: message.slice(at + ISSUE_TEXT_SEPARATOR.length) };
}

/** A value as a message quotes it; a long text is cut, so that a huge value never makes a huge message. */
const show = (value: unknown): string => {
  if (typeof value !== "string") return String(value);
  return value.length <= 64 ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, 40))}... (${formatCount(value.length)} characters)`;
};

// --- maps keyed by user input ---

/**
 * v.record, except that every key is kept and the map has no prototype. valibot's record drops
 * the keys __proto__, prototype and constructor without a word (a guard against prototype
 * pollution), so targets or groups so named would vanish; and on an ordinary object,
 * `"constructor" in groups` is true for a config without that group. Keys are iterated as
 * Object.keys gives them, which is what the YAML and JSON parsers define as own properties.
 */
function userRecord<const TKey extends v.GenericSchema<string, string>, const TValue extends v.GenericSchema>(
  key: TKey,
  value: TValue,
): v.RecordSchema<TKey, TValue, undefined> {
  const base = v.record(key, value);
  type Run = (typeof base)["~run"];
  const run: Run = (dataset, config) => {
    const input = dataset.value;
    if (!input || typeof input !== "object") return base["~run"](dataset, config);
    const entries = input as Record<string, unknown>;
    const output: Record<string, unknown> = Object.create(null);
    let typed = true;
    const issues: v.BaseIssue<unknown>[] = [];
    // Runs once per target: nothing is allocated here beyond valibot's own datasets unless
    // there is an issue to report.
    const pathItem = (origin: "key" | "value", entryKey: string, entryValue: unknown): v.ObjectPathItem => ({
      type: "object",
      origin,
      input: entries,
      key: entryKey,
      value: entryValue,
    });
    for (const entryKey of Object.keys(entries)) {
      const entryValue = entries[entryKey];
      // The issues get the entry's path item put in front, in place, as valibot's record does:
      // a copy of each would double what 100,000 faulty targets hold.
      const keyDataset = key["~run"]({ value: entryKey }, config);
      if (keyDataset.issues) {
        for (const issue of keyDataset.issues) issues.push(withPathItem(issue, pathItem("key", entryKey, entryValue)));
      }
      const valueDataset = value["~run"]({ value: entryValue }, config);
      if (valueDataset.issues) {
        for (const issue of valueDataset.issues) issues.push(withPathItem(issue, pathItem("value", entryKey, entryValue)));
      }
      if (!keyDataset.typed || !valueDataset.typed) typed = false;
      if (keyDataset.typed) output[keyDataset.value] = valueDataset.value;
      if (config.abortEarly && issues.length > 0) {
        typed = false;
        break;
      }
    }
    const result = issues.length > 0 ? { typed, value: output, issues } : { typed, value: output };
    return result as unknown as ReturnType<Run>;
  };
  const { "~standard": _standard, ...rest } = base;
  return v._standardSchema<typeof base>({ ...rest, "~run": run });
}

/** The issue with `item` put first on its path (mutated: the issue is only ever reported once). */
function withPathItem<TIssue extends v.BaseIssue<unknown>>(issue: TIssue, item: v.ObjectPathItem): TIssue {
  const mutable = issue as { path?: v.IssuePathItem[] };
  if (mutable.path) mutable.path.unshift(item);
  else mutable.path = [item];
  return issue;
}

/**
 * v.optional(schema, value) whose default is one frozen value, shared rather than made afresh and
 * validated for every map that leaves the field out: explicit_groups' default, built and checked
 * for each of 100,000 targets (three objects, and three more to validate them into), was a third
 * of the time and of the memory of validating a large file. describe.ts sees the optional field
 * and its default as before.
 */
function optionalShared<const TSchema extends v.GenericSchema, const TDefault extends v.Default<TSchema, undefined> & object>(
  schema: TSchema,
  value: TDefault,
): v.OptionalSchema<TSchema, TDefault> {
  const base = v.optional(schema, value);
  type Run = (typeof base)["~run"];
  // The map validating this field has put the default in already; a direct run gets undefined.
  const run: Run = (dataset, config) => {
    if (dataset.value !== undefined && dataset.value !== value) return base["~run"](dataset, config);
    const shared = dataset as { typed: boolean; value: unknown };
    shared.typed = true;
    shared.value = value;
    return dataset as unknown as ReturnType<Run>;
  };
  const { "~standard": _standard, ...rest } = base;
  return v._standardSchema<typeof base>({ ...rest, "~run": run });
}

/** An own copy of a map with no prototype (after a structured clone, which gives it one back). */
export function withoutPrototype<T>(map: Readonly<Record<string, T>>): Record<string, T> {
  return Object.assign(Object.create(null) as Record<string, T>, map);
}

// --- address helpers (also used by the daemon) ---

const IPV4_ADDRESS = v.pipe(v.string(), v.ipv4());
const IPV6_ADDRESS = v.pipe(v.string(), v.ipv6());

function isCidr(text: string, family: AddressFamily): boolean {
  const slash = text.indexOf("/");
  if (slash < 0) return false;
  const address = text.slice(0, slash);
  const prefix = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix)) return false;
  const bits = family === "ipv4" ? 32 : 128;
  return Number(prefix) <= bits && v.is(family === "ipv4" ? IPV4_ADDRESS : IPV6_ADDRESS, address);
}

/** Whether `text` is an address or subnet of the given family ("198.18.0.1", "fd00::/8"). */
function isLiteralOfFamily(text: string, family: AddressFamily): boolean {
  const schema = family === "ipv4" ? IPV4_ADDRESS : IPV6_ADDRESS;
  return v.is(schema, text) || isCidr(text, family);
}

/**
 * The family a target is probed over: its address_family, else IPv6 for a destination with a
 * colon (no hostname, IPv4 address or IPv4 range has one), else IPv4, as the original did.
 */
export function targetAddressFamily(target: { address_family?: AddressFamily; destination: string }): AddressFamily {
  return target.address_family ?? (target.destination.includes(":") ? "ipv6" : "ipv4");
}

/**
 * The IP payload size a target's packets carry in a group: the target's own size wins over the
 * group's, and neither goes below the target type's L4 header (a group's size may be as low as
 * 8 bytes for its UDP and ICMP members, yet a TCPsyn member still needs its 20-byte header).
 */
export function ipPayloadSize(
  target: { type: TargetType; ip_payload_size?: number },
  group: { ip_payload_size?: number },
): number {
  const header = L4_HEADER_BYTES[target.type];
  return Math.max(header, target.ip_payload_size ?? group.ip_payload_size ?? header);
}

// --- field builders ---

export const NAME_EXPECTED = `a name of up to ${MAX_NAME_LENGTH} lowercase letters, digits, _, - and .`;

const nameField = (text: string) =>
  v.pipe(
    v.string(),
    v.regex(NAME_PATTERN),
    hints({ noun: "a valid name", expected: NAME_EXPECTED }),
    v.description(text),
  );

const portField = (text: string) =>
  v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535), v.description(text));

const integerField = (min: number, max: number, text: string) =>
  v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max), v.description(text));

/** Whole seconds: every duration is bounded by MAX_DURATION_S, so no timer can overflow. */
const secondsField = (min: number, text: string) => integerField(min, MAX_DURATION_S, text);

/** Fractional seconds above 0; the upper bound also refuses .inf (one message, not two). */
const positiveSecondsField = (text: string) =>
  v.pipe(v.number(), v.gtValue(0), v.maxValue(MAX_DURATION_S), v.description(text));

const booleanField = (text: string) => v.pipe(v.boolean(), v.description(text));

/** The longest prefix whose subnet still fits MAX_ADDRESSES_PER_DESTINATION, per family. */
const SHORTEST_PREFIX = { ipv4: 16, ipv6: 112 } as const satisfies Record<AddressFamily, number>;

const cidrField = (family: AddressFamily, example: string, text: string) => {
  const label = family === "ipv4" ? "IPv4" : "IPv6";
  const expected = `an ${label} subnet in CIDR notation, such as ${example}`;
  const limit =
    `at most ${formatCount(MAX_ADDRESSES_PER_DESTINATION)} addresses: an ${label} prefix of ` +
    `/${SHORTEST_PREFIX[family]} or longer`;
  return v.pipe(
    v.string(),
    v.check((value) => isCidr(value, family)),
    // The source addresses are expanded once per iteration: refused here rather than there.
    v.check(
      (value) => !isCidr(value, family) || destinationSize(value).ok,
      (issue) => {
        const size = destinationSize(issue.input);
        const problem = size.ok ? "" : size.problem;
        return size.ok || size.count === undefined
          ? issueText(`${show(issue.input)} ${problem}`, expected)
          : issueText(`${show(issue.input)} ${problem}`, limit);
      },
    ),
    hints({ noun: `an ${label} subnet`, expected }),
    v.description(`${text} At most ${formatCount(MAX_ADDRESSES_PER_DESTINATION)} addresses.`),
  );
};

// --- global ---

const HISTOGRAM_BUCKETS_EXPECTED =
  `a strictly increasing list of at most ${MAX_HISTOGRAM_BUCKETS} numbers of seconds above 0, or [] to turn histograms off`;

const histogramBuckets = v.pipe(
  v.array(v.pipe(v.number(), v.finite(), v.gtValue(0))),
  v.maxLength(MAX_HISTOGRAM_BUCKETS, (issue) =>
    issueText(`${formatCount(issue.input.length)} buckets are too many`, HISTOGRAM_BUCKETS_EXPECTED),
  ),
  v.check(
    (buckets) => buckets.every((bound, i) => i === 0 || bound > (buckets[i - 1] ?? -Infinity)),
    (issue) => {
      const list = issue.input;
      const i = list.findIndex((bound, k) => k > 0 && bound <= (list[k - 1] ?? -Infinity));
      return issueText(
        `${list[i]} is not above the bound before it, ${list[i - 1]}`,
        HISTOGRAM_BUCKETS_EXPECTED,
      );
    },
  ),
  hints({ expected: HISTOGRAM_BUCKETS_EXPECTED }),
  v.description(
    "Added by this project. Upper bounds in seconds of the buckets of the *_round_trip_duration_seconds " +
      "histograms, strictly increasing. The default doubles from 50 us to 13.1072 s: 0.00005, 0.0001, " +
      "0.0002, ..., 6.5536, 13.1072 (19 buckets, plus the implicit +Inf). An empty list turns the " +
      `histograms off. At most ${MAX_HISTOGRAM_BUCKETS} buckets.`,
  ),
);

const inShardRange = (n: number, min: number) => Number.isInteger(n) && n >= min && n <= MAX_SHARD_COUNT - 1 + min;

/** global.shard: which share of the targets this prober keeps (src/daemon/shard.ts). */
const shardSchema = v.pipe(
  v.strictObject({
    index: integerField(0, MAX_SHARD_COUNT - 1, "This prober's number among them, from 0 to count - 1."),
    count: integerField(1, MAX_SHARD_COUNT, "How many probers share the targets of this config."),
  }),
  v.forward(
    v.partialCheck(
      [["index"], ["count"]],
      // Only between two values valid on their own: a count of 0 is told once, as out of range.
      (shard) => !(inShardRange(shard.count, 1) && inShardRange(shard.index, 0)) || shard.index < shard.count,
      (issue) =>
        issueText(
          `${issue.input.index} is not below count ${issue.input.count}`,
          issue.input.count === 1 ? "0 when count is 1" : `an integer from 0 to ${issue.input.count - 1}: the probers are numbered from 0`,
        ),
    ),
    ["index"],
  ),
  hints({ expected: "a map with index and count" }),
  v.description(
    "Added by this project. Several probers share this config's targets, configured and dynamic: each keeps " +
      "the targets whose name it wins by rendezvous hashing, so together they probe each target once. The " +
      "API's own targets are always kept. --shard I/N or NETPROBIFY_SHARD_COUNT and NETPROBIFY_SHARD_INDEX " +
      "replace it (see README.md, Sharding).",
  ),
);

export const GlobalSchema = v.pipe(
  v.strictObject({
    probe_name: nameField("Name of this prober: the value of the probe_name label on every metric."),
    interval: secondsField(1, "Seconds between the starts of two probing iterations."),
    interval_packets: v.optional(
      v.pipe(
        v.number(),
        v.minValue(0),
        v.maxValue(MAX_DURATION_S),
        v.description("Seconds to wait between two packets of the same target. 0 sends them back to back."),
      ),
      GLOBAL_DEFAULTS.interval_packets,
    ),
    nb_proc: integerField(1, MAX_NB_PROC, "How many Workers probe in parallel."),
    verbose: v.optional(
      v.pipe(
        v.picklist([0, 1]),
        v.description(
          "1 logs, after each iteration, one line per target and group: packets sent, answered and lost " +
            "(the original had scapy print such a summary for every target it sent to). 0 logs none. " +
            "They are INFO lines: a logging_level above INFO leaves them out, and the file gets a warning.",
        ),
      ),
      GLOBAL_DEFAULTS.verbose,
    ),
    logging_level: v.pipe(v.picklist(LOGGING_LEVELS), v.description("Lowest level of the log messages written.")),
    prometheus_port: portField("TCP port of the /metrics listener."),
    prometheus_address: v.optional(
      v.pipe(
        v.string(),
        v.ip(),
        v.description("Address the /metrics listener binds to; 0.0.0.0 means every IPv4 address, :: every address."),
      ),
      GLOBAL_DEFAULTS.prometheus_address,
    ),
    dns_update_interval: secondsField(
      0,
      "Seconds between two resolutions of the targets' hostnames. 0 resolves them once, at start.",
    ),
    reload_conf_interval: v.optional(
      secondsField(0, "Seconds between two re-readings of this file. 0 re-reads it only on SIGHUP."),
      GLOBAL_DEFAULTS.reload_conf_interval,
    ),
    l3_raw_socket: v.optional(
      booleanField(
        "Send through a layer-3 raw socket, letting the kernel route and resolve neighbours, instead of " +
          "writing whole frames at layer 2.",
      ),
      GLOBAL_DEFAULTS.l3_raw_socket,
    ),
    timeout: v.optional(
      positiveSecondsField(
        "Seconds one batch of targets may take. A batch still running then is abandoned and counted in " +
          "app_process_timed_out_total.",
      ),
      GLOBAL_DEFAULTS.timeout,
    ),
    percentile: v.optional(
      v.pipe(
        v.array(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
        // A percentile given twice would be two series with the same labels.
        v.check(
          (list) => new Set(list).size === list.length,
          (issue) =>
            issueText(
              `${issue.input.find((p, i) => issue.input.indexOf(p) !== i)} is given twice`,
              "a list of distinct integers from 1 to 100",
            ),
        ),
        hints({ expected: "a list of distinct integers from 1 to 100" }),
        v.description("Percentiles exposed in the percentile label of the *_round_trip_seconds gauges."),
      ),
      () => [...GLOBAL_DEFAULTS.percentile],
    ),
    disable_dynamic_inventories: v.optional(
      v.pipe(
        v.array(v.pipe(v.string(), v.nonEmpty())),
        hints({ expected: "a list of inventory names" }),
        v.description("Names of the dynamic inventories not to start (for example api). Applied at start and on reload."),
      ),
      () => [...GLOBAL_DEFAULTS.disable_dynamic_inventories],
    ),
    histogram_buckets: v.optional(histogramBuckets, () => [...GLOBAL_DEFAULTS.histogram_buckets]),
    histogram_per_destination: v.optional(
      booleanField(
        "Added by this project. Adds the destination label to the round-trip histograms. Off by default " +
          "because it multiplies their series by the number of targets.",
      ),
      GLOBAL_DEFAULTS.histogram_per_destination,
    ),
    max_probes_per_second: v.optional(
      integerField(
        1,
        MAX_PROBES_PER_SECOND,
        "Added by this project. Ceiling on the packets sent per second by all Workers together, so that a " +
          "large configuration can neither flood a network nor trip the ICMP rate limits of routers and " +
          "hosts. Sending slows down to stay under it; the lag shows in netprobify_send_lag_seconds.",
      ),
      GLOBAL_DEFAULTS.max_probes_per_second,
    ),
    per_target_series: v.optional(
      booleanField(
        "Added by this project. true (the original's metrics): every target has its per-target series " +
          "(*_sent_total, *_loss_total, *_loss_ratio, *_round_trip_seconds, path and count series, " +
          "app_time_ooo_total, threshold). false bounds them for very large configurations: per group and " +
          "address family, <prefix>_group_sent_total, _group_loss_total, _group_loss_ratio, _group_targets, " +
          "_group_targets_with_loss (and _group_paths_down, _group_path_loss_ratio_max for the types that rotate " +
          "ports), the histograms, and the per-target series of the worst_targets worst targets only (with " +
          "app_host_resolution_status and app_host_resolution_change_total for those and for the targets failing to resolve).",
      ),
      GLOBAL_DEFAULTS.per_target_series,
    ),
    worst_targets: v.optional(
      integerField(
        0,
        MAX_WORST_TARGETS,
        "Added by this project. With per_target_series: false, the targets of each probe type, group and " +
          "address family that keep their per-target series: the highest loss ratio in the last iteration " +
          "first, then the highest round trip at the highest percentile, then by name. Ignored while " +
          "per_target_series is true.",
      ),
      GLOBAL_DEFAULTS.worst_targets,
    ),
    shard: v.optional(shardSchema),
  }),
  hints({ expected: "a map of the global settings" }),
  v.description("Settings of the prober as a whole."),
);

// --- groups ---

export const GroupSchema = v.pipe(
  v.strictObject({
    src_ipv4: v.optional(
      v.pipe(
        v.string(),
        v.ipv4(),
        v.description("Source address of the IPv4 packets. Default: the kernel's choice for the route."),
      ),
    ),
    src_ipv6: v.optional(
      v.pipe(
        v.string(),
        v.ipv6(),
        v.description("Source address of the IPv6 packets. Default: the kernel's choice for the route."),
      ),
    ),
    src_ip: v.optional(
      v.pipe(
        v.string(),
        v.ipv4(),
        hints({ deprecated: true }),
        v.description(
          "Deprecated alias of src_ipv4, accepted for old files. Giving both with different addresses is an error.",
        ),
      ),
    ),
    src_subnet_ipv4: v.optional(
      cidrField(
        "ipv4",
        "198.18.0.0/24",
        "IPv4 subnet whose host addresses the source address rotates over, to spread probes over more " +
          "ECMP paths. Host bits in the address are ignored.",
      ),
    ),
    src_subnet_ipv6: v.optional(
      cidrField(
        "ipv6",
        "fd00::/120",
        "IPv6 subnet whose host addresses the source address rotates over, to spread probes over more " +
          "ECMP paths. Host bits in the address are ignored.",
      ),
    ),
    src_port_a: v.optional(
      portField("First source port of the range the packets rotate over (TCPsyn and UDPunreachable)."),
      GROUP_DEFAULTS.src_port_a,
    ),
    src_port_z: v.optional(
      portField("Last source port of the range, included. Not below src_port_a."),
      GROUP_DEFAULTS.src_port_z,
    ),
    ip_payload_size: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(MIN_GROUP_PAYLOAD_BYTES),
        v.maxValue(MAX_IP_PAYLOAD_BYTES.ipv4),
        v.description(
          "IP payload size in bytes (L4 header plus data) of the packets of this group's targets, unless a " +
            "target sets its own. From 8 to 65515 (the IPv4 limit, as a group serves both families). A " +
            "target whose header is larger sends its bare header: 20 bytes for TCPsyn.",
        ),
      ),
    ),
    dscp: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.maxValue(63),
        v.description("DSCP of every packet of the group: the IPv4 TOS or IPv6 traffic class is dscp << 2."),
      ),
      GROUP_DEFAULTS.dscp,
    ),
    permit_target_auto_register: v.optional(
      booleanField("Whether targets with auto_register_to_groups join this group without naming it."),
      GROUP_DEFAULTS.permit_target_auto_register,
    ),
  }),
  v.forward(
    v.partialCheck(
      [["src_port_a"], ["src_port_z"]],
      (group) => group.src_port_a <= group.src_port_z,
      (issue) =>
        issueText(
          `${issue.input.src_port_z} is below src_port_a ${issue.input.src_port_a}`,
          "a port no lower than src_port_a; they default to " +
            `${GROUP_DEFAULTS.src_port_a} and ${GROUP_DEFAULTS.src_port_z}`,
        ),
    ),
    ["src_port_z"],
  ),
  v.forward(
    v.partialCheck(
      [["src_ip"], ["src_ipv4"]],
      (group) => group.src_ip === undefined || group.src_ipv4 === undefined || group.src_ip === group.src_ipv4,
      (issue) =>
        issueText(
          `${show(issue.input.src_ip)} differs from src_ipv4 ${show(issue.input.src_ipv4)}`,
          "src_ip is a deprecated alias of src_ipv4: keep src_ipv4 alone",
        ),
    ),
    ["src_ip"],
  ),
  // The alias disappears here so that nothing downstream ever has to look at src_ip.
  v.transform(({ src_ip, ...group }) => ({ ...group, src_ipv4: group.src_ipv4 ?? src_ip })),
  hints({ expected: "a map of group settings" }),
  v.description("A way of sending: source addresses, source ports, DSCP and payload size."),
);

// --- targets ---

const thresholdSchema = v.pipe(
  v.strictObject({
    latency: v.optional(
      v.pipe(
        v.number(),
        v.finite(),
        v.minValue(0),
        v.description('Round-trip time in seconds, exposed as threshold{type="latency"}.'),
      ),
    ),
    loss: v.optional(
      v.pipe(
        v.number(),
        v.finite(),
        v.minValue(0),
        v.maxValue(100),
        v.description("Loss in percent, exposed as threshold{type=\"loss\"}."),
      ),
    ),
  }),
  hints({ expected: "a map of latency and/or loss to numbers" }),
  v.description("Alerting thresholds exposed as the threshold gauge, for alert rules to compare against."),
);

const groupNameList = (text: string) =>
  v.optional(
    v.pipe(
      v.array(
        v.pipe(v.string(), v.regex(NAME_PATTERN), hints({ noun: "a valid group name", expected: NAME_EXPECTED })),
      ),
      v.readonly(),
      hints({ expected: "a list of group names" }),
      v.description(text),
    ),
    () => [],
  );

const explicitGroupsSchema = v.pipe(
  v.strictObject({
    register_to: groupNameList(
      "Groups the target joins whatever auto_register_to_groups and permit_target_auto_register say. " +
        "A group that does not exist is warned about and ignored.",
    ),
    exclude_from: groupNameList("Groups the target never joins; this wins over register_to."),
  }),
  v.readonly(),
  hints({ expected: "a map with register_to and/or exclude_from" }),
  v.description("Group memberships named one by one."),
);

const DESTINATION_EXPECTED = "an IP address, a hostname, a CIDR subnet or a range";
const DESTINATION_LIMIT =
  `at most ${formatCount(MAX_ADDRESSES_PER_DESTINATION)} addresses per destination: an IPv4 subnet of ` +
  `/${SHORTEST_PREFIX.ipv4} or longer, an IPv6 one of /${SHORTEST_PREFIX.ipv6} or longer, or a smaller range`;

/**
 * A destination the daemon can expand: a subnet or range must be well formed and within
 * MAX_ADDRESSES_PER_DESTINATION, worked out by the code that expands it (destinations.ts).
 */
const destinationField = (text: string) =>
  v.pipe(
    v.string(),
    v.nonEmpty(),
    v.maxLength(MAX_DESTINATION_LENGTH, (issue) =>
      issueText(
        `a text of ${formatCount(issue.input.length)} characters is too long`,
        `${DESTINATION_EXPECTED}, at most ${MAX_DESTINATION_LENGTH} characters`,
      ),
    ),
    v.check(
      (value) => value.length > MAX_DESTINATION_LENGTH || destinationSize(value).ok,
      (issue) => {
        const size = destinationSize(issue.input);
        const problem = `${show(issue.input)} ${size.ok ? "" : size.problem}`;
        return issueText(problem, !size.ok && size.count !== undefined ? DESTINATION_LIMIT : DESTINATION_EXPECTED);
      },
    ),
    hints({ expected: DESTINATION_EXPECTED }),
    v.description(text),
  );

/** What a target without explicit_groups gets: one frozen value for them all. */
const NO_EXPLICIT_GROUPS = Object.freeze({ register_to: Object.freeze([] as string[]), exclude_from: Object.freeze([] as string[]) });

/** The fields every type of target has; type, dst_port and ip_payload_size differ per type. */
const targetEntries = {
  description: v.optional(
    v.pipe(
      v.string(),
      v.maxLength(MAX_DESCRIPTION_LENGTH, (issue) =>
        issueText(
          `a text of ${formatCount(issue.input.length)} characters is too long`,
          `at most ${MAX_DESCRIPTION_LENGTH} characters`,
        ),
      ),
      v.description(`Free text for people, at most ${MAX_DESCRIPTION_LENGTH} characters. Default: the target's name.`),
    ),
  ),
  destination: destinationField(
    "What to probe: an IP address, a hostname, a CIDR subnet or a range such as 198.18.*.1-5 (the " +
      `last two with is_subnet: true), of at most ${formatCount(MAX_ADDRESSES_PER_DESTINATION)} addresses.`,
  ),
  address_family: v.optional(
    v.pipe(
      v.picklist(ADDRESS_FAMILIES),
      v.description(
        "Family to resolve and probe with. Default: that of a literal IP destination, else ipv4. Must " +
          "agree with a literal IP destination.",
      ),
    ),
  ),
  dont_fragment: v.optional(booleanField("Set the IPv4 Don't Fragment bit."), TARGET_DEFAULTS.dont_fragment),
  is_subnet: v.optional(
    booleanField(
      "The destination is a subnet or range: every address in it is probed and the results are " +
        "aggregated under the target's name. Required (true) for a subnet or range destination: the " +
        "original read one without it as a hostname, which never resolves, so the target was never " +
        "probed; here that is an error rather than a target silently dead, or silently probing what " +
        "the original never did. On a single address or a hostname, true changes nothing (the " +
        "original probed that one address too), and the file gets a warning.",
    ),
    TARGET_DEFAULTS.is_subnet,
  ),
  nb_packets: v.optional(
    integerField(1, MAX_NB_PACKETS, "Packets sent in each group the target belongs to, per iteration."),
    TARGET_DEFAULTS.nb_packets,
  ),
  threshold: v.optional(thresholdSchema),
  alert_level: v.optional(
    v.pipe(v.picklist(ALERT_LEVELS), v.description("alert_level label of the threshold gauge.")),
    TARGET_DEFAULTS.alert_level,
  ),
  state: v.optional(
    v.pipe(
      v.picklist(TARGET_STATES),
      v.description("state label of the target's metrics. Unset, the label reads \"None\", as in the original."),
    ),
  ),
  timeout: v.optional(
    positiveSecondsField("Seconds to wait for replies after the last packet is sent."),
    TARGET_DEFAULTS.timeout,
  ),
  dns_update_interval: v.optional(
    secondsField(0, "Overrides global.dns_update_interval for this target. 0 resolves once."),
  ),
  auto_register_to_groups: v.optional(
    booleanField("Join every group whose permit_target_auto_register is true."),
    TARGET_DEFAULTS.auto_register_to_groups,
  ),
  explicit_groups: optionalShared(explicitGroupsSchema, NO_EXPLICIT_GROUPS),
};

const DST_PORT_TEXT = destinationPortText();
const PAYLOAD_TEXT =
  `IP payload size in bytes: the L4 header plus data. At least the header of the type (${headerBytesText()}); ` +
  "at most 65515 over IPv4 (a 65535-byte packet less its 20-byte header) " +
  "and 65535 over IPv6 (the payload length field). Default: the group's size, else the bare header.";

const payloadExpected = (type: TargetType) =>
  `an integer from ${L4_HEADER_BYTES[type]} to ${MAX_IP_PAYLOAD_BYTES.ipv4} over IPv4 ` +
  `or ${MAX_IP_PAYLOAD_BYTES.ipv6} over IPv6`;

const payloadField = (type: TargetType) =>
  v.optional(
    v.pipe(
      v.number(),
      v.integer(),
      v.minValue(L4_HEADER_BYTES[type]),
      v.maxValue(MAX_IP_PAYLOAD_BYTES.ipv6),
      hints({ expected: payloadExpected(type) }),
      v.description(PAYLOAD_TEXT),
    ),
  );

const typeField = <const T extends TargetType>(type: T) =>
  v.pipe(v.literal(type), v.description(`Probe kind: ${TARGET_TYPES.join(", ")}.`));

type PayloadFields = {
  type: TargetType;
  ip_payload_size?: number;
  address_family?: AddressFamily;
  destination: string;
};

/** The family cap cannot be a plain maxValue: the family may come from the destination. */
const payloadFitsFamily = (t: PayloadFields) =>
  t.ip_payload_size === undefined || t.ip_payload_size <= MAX_IP_PAYLOAD_BYTES[targetAddressFamily(t)];
const payloadTooLarge = (t: PayloadFields) =>
  issueText(`${t.ip_payload_size} is out of range`, payloadExpected(t.type));

const PAYLOAD_PATHS = [["type"], ["ip_payload_size"], ["address_family"], ["destination"]] as const;

type FamilyFields = { address_family?: AddressFamily; destination: string };

/**
 * "ipv4" on ::1 or "ipv6" on 198.18.*.1 can only be a mistake (the probes could not be built);
 * hostnames resolve per family and are never flagged.
 */
const familyFitsDestination = (t: FamilyFields) => {
  if (t.address_family === undefined) return true;
  const other: AddressFamily = t.address_family === "ipv4" ? "ipv6" : "ipv4";
  if (isLiteralOfFamily(t.destination, other)) return false;
  const size = destinationSize(t.destination);
  return !size.ok || size.family === null || size.family === (t.address_family === "ipv4" ? 4 : 6);
};
const familyMismatch = (t: FamilyFields) =>
  issueText(
    `${show(t.address_family)} does not match destination ${show(t.destination)}`,
    `${t.address_family === "ipv4" ? "ipv6" : "ipv4"}, the destination's family, or no address_family`,
  );

type SubnetFlagFields = { is_subnet: boolean; destination: string };

/**
 * A subnet or range destination without is_subnet: true was, in the original, a hostname that
 * never resolved. An invalid destination is left to the destination's own check. On the union of
 * target types this also runs for a target that failed as a whole (a list, say: partialCheck only
 * asks that its two paths be free of issues), so the destination may not even be a text.
 */
const subnetFlagFits = (t: SubnetFlagFields) => {
  if (typeof t.destination !== "string") return true;
  const size = destinationSize(t.destination);
  return !size.ok || (size.form !== "subnet" && size.form !== "range") || t.is_subnet;
};
const subnetWithoutFlag = (t: SubnetFlagFields) =>
  issueText(
    `destination ${show(t.destination)} is a ${destinationSize(t.destination).form}, but is_subnet is not true`,
    "true, to probe every address of it; without it the original read the destination as a hostname, which never resolves",
  );

export const TcpSynTargetSchema = v.pipe(
  v.strictObject({
    type: typeField("TCPsyn"),
    ...targetEntries,
    dst_port: portField(DST_PORT_TEXT),
    ip_payload_size: payloadField("TCPsyn"),
  }),
  v.forward(
    v.partialCheck(PAYLOAD_PATHS, payloadFitsFamily, (i) => payloadTooLarge(i.input)),
    ["ip_payload_size"],
  ),
  v.forward(
    v.partialCheck([["address_family"], ["destination"]], familyFitsDestination, (i) => familyMismatch(i.input)),
    ["address_family"],
  ),
);

export const IcmpPingTargetSchema = v.pipe(
  v.strictObject({
    type: typeField("ICMPping"),
    ...targetEntries,
    dst_port: v.optional(portField(DST_PORT_TEXT)),
    ip_payload_size: payloadField("ICMPping"),
  }),
  v.forward(
    v.partialCheck(PAYLOAD_PATHS, payloadFitsFamily, (i) => payloadTooLarge(i.input)),
    ["ip_payload_size"],
  ),
  v.forward(
    v.partialCheck([["address_family"], ["destination"]], familyFitsDestination, (i) => familyMismatch(i.input)),
    ["address_family"],
  ),
);

export const UdpUnreachableTargetSchema = v.pipe(
  v.strictObject({
    type: typeField("UDPunreachable"),
    ...targetEntries,
    dst_port: portField(DST_PORT_TEXT),
    ip_payload_size: payloadField("UDPunreachable"),
  }),
  v.forward(
    v.partialCheck(PAYLOAD_PATHS, payloadFitsFamily, (i) => payloadTooLarge(i.input)),
    ["ip_payload_size"],
  ),
  v.forward(
    v.partialCheck([["address_family"], ["destination"]], familyFitsDestination, (i) => familyMismatch(i.input)),
    ["address_family"],
  ),
);

export const TwampLightTargetSchema = v.pipe(
  v.strictObject({
    type: typeField("TWAMPlight"),
    ...targetEntries,
    dst_port: v.optional(portField(DST_PORT_TEXT)),
    ip_payload_size: payloadField("TWAMPlight"),
  }),
  v.forward(
    v.partialCheck(PAYLOAD_PATHS, payloadFitsFamily, (i) => payloadTooLarge(i.input)),
    ["ip_payload_size"],
  ),
  v.forward(
    v.partialCheck([["address_family"], ["destination"]], familyFitsDestination, (i) => familyMismatch(i.input)),
    ["address_family"],
  ),
);

/** A variant on `type` gives a discriminated union: `target.dst_port` is a number for TCPsyn. */
export const TargetSchema = v.pipe(
  v.variant("type", [TcpSynTargetSchema, IcmpPingTargetSchema, UdpUnreachableTargetSchema, TwampLightTargetSchema]),
  v.forward(
    v.partialCheck([["is_subnet"], ["destination"]], subnetFlagFits, (i) => subnetWithoutFlag(i.input)),
    ["is_subnet"],
  ),
  hints({ expected: "a map of target settings", noun: "target" }),
  v.description("A destination to probe, and how."),
);

// --- dynamic inventories ---

/** Hostnames and literal addresses an inventory may name its targets by. */
export const HOSTNAME_PATTERN = /^[A-Za-z0-9_.:-]{1,253}$/;

const DURATION_PATTERN = /^\s*(\d+\s*[dhms]\s*)+$/;
const DURATION_UNITS: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1 };

/**
 * Seconds in a lifetime: a number of seconds, or "1d 3h 2m" (days, hours, minutes, seconds) as
 * the original's API takes it. Undefined when the text is not a lifetime.
 */
export function lifetimeSeconds(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== "string" || !DURATION_PATTERN.test(value)) return undefined;
  let total = 0;
  for (const m of value.matchAll(/(\d+)\s*([dhms])/g)) total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return total > 0 && Number.isSafeInteger(total) ? total : undefined;
}

/**
 * Seconds since the epoch of a creation date: epoch seconds, a date (midnight UTC), or an ISO 8601
 * date and time with its zone (Z or an offset). A time without a zone would mean something else
 * on every machine, and a day that does not exist (February 30) is refused, not rolled over.
 */
export function creationSeconds(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2}))?$/.exec(value);
  if (!m) return undefined;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return undefined;
  if (m[4] !== undefined && (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59)) return undefined;
  const ms = Date.parse(m[4] === undefined ? `${m[1]}-${m[2]}-${m[3]}T00:00:00Z` : value.replace(" ", "T"));
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

const LIFETIME_EXPECTED = 'a number of seconds, or a duration such as "1d 3h 2m"';
const CREATION_EXPECTED = "seconds since 1970, or an ISO 8601 date such as 2026-11-25T10:00:00Z (with its zone)";

/**
 * The second check of a lifetime field: a lifetime (else the first check reports it) of at most
 * MAX_LIFETIME_S, with the figure in the message.
 */
export const lifetimeBound = (expected: string) =>
  v.check(
    (x: unknown) => (lifetimeSeconds(x) ?? 0) <= MAX_LIFETIME_S,
    (issue) =>
      issueText(
        `${show(issue.input)} is ${formatCount(lifetimeSeconds(issue.input) ?? 0)} s, longer than ${MAX_LIFETIME_S / 86_400} days`,
        `${expected}, of at most ${MAX_LIFETIME_S / 86_400}d`,
      ),
  );

/** What an inventory adds to a configured target's fields. */
const inventoryEntries = {
  hostname: v.pipe(
    v.string(),
    v.regex(HOSTNAME_PATTERN),
    hints({ noun: "a hostname or an IP address", expected: "a hostname or an IP address" }),
    v.description("Names the target: it is called <inventory>_<hostname>. Also the destination when none is given."),
  ),
  destination: v.optional(destinationField("What to probe. Default: the hostname.")),
  groups: v.optional(
    v.pipe(
      v.array(v.pipe(v.string(), v.regex(NAME_PATTERN), hints({ noun: "a valid group name", expected: NAME_EXPECTED }))),
      hints({ expected: "a list of group names" }),
      v.description(
        "Groups the target sends in (unknown ones are warned about and ignored). Unset: the " +
          "auto_register_to_groups and explicit_groups rules of a configured target apply.",
      ),
    ),
  ),
  creation_date: v.optional(
    v.pipe(
      v.unknown(),
      v.check((x) => creationSeconds(x) !== undefined),
      hints({ noun: "a date", expected: CREATION_EXPECTED }),
      v.description("When the target was created; with lifetime, when it expires."),
    ),
  ),
  lifetime: v.optional(
    v.pipe(
      v.unknown(),
      v.check((x) => lifetimeSeconds(x) !== undefined),
      lifetimeBound(LIFETIME_EXPECTED),
      hints({ noun: "a lifetime", expected: LIFETIME_EXPECTED }),
      v.description(
        "How long the target lives after creation_date (after it was first published when there is " +
          "no creation_date). Unset: until the inventory stops publishing it.",
      ),
    ),
  ),
};

type InventoryFamilyFields = { address_family?: AddressFamily; destination?: string; hostname: string };
const withDestination = <T extends InventoryFamilyFields>(t: T): T & { destination: string } => ({
  ...t,
  destination: t.destination ?? t.hostname,
});
const INVENTORY_PAYLOAD_PATHS = [["type"], ["ip_payload_size"], ["address_family"], ["destination"], ["hostname"]] as const;
const INVENTORY_FAMILY_PATHS = [["address_family"], ["destination"], ["hostname"]] as const;
const INVENTORY_SUBNET_PATHS = [["is_subnet"], ["destination"], ["hostname"]] as const;

/**
 * One target published by a dynamic inventory: a configured target's fields plus hostname,
 * groups, creation_date and lifetime (the spec's "Dynamic inventories"). The cross-field checks
 * sit on the variant, once for the three types.
 */
export const InventoryTargetSchema = v.pipe(
  v.variant("type", [
    v.strictObject({
      type: typeField("TCPsyn"),
      ...targetEntries,
      ...inventoryEntries,
      dst_port: portField(DST_PORT_TEXT),
      ip_payload_size: payloadField("TCPsyn"),
    }),
    v.strictObject({
      type: typeField("ICMPping"),
      ...targetEntries,
      ...inventoryEntries,
      dst_port: v.optional(portField(DST_PORT_TEXT)),
      ip_payload_size: payloadField("ICMPping"),
    }),
    v.strictObject({
      type: typeField("UDPunreachable"),
      ...targetEntries,
      ...inventoryEntries,
      dst_port: portField(DST_PORT_TEXT),
      ip_payload_size: payloadField("UDPunreachable"),
    }),
    v.strictObject({
      type: typeField("TWAMPlight"),
      ...targetEntries,
      ...inventoryEntries,
      dst_port: v.optional(portField(DST_PORT_TEXT)),
      ip_payload_size: payloadField("TWAMPlight"),
    }),
  ]),
  v.forward(
    v.partialCheck(
      INVENTORY_PAYLOAD_PATHS,
      (t) => payloadFitsFamily(withDestination(t)),
      (i) => payloadTooLarge(withDestination(i.input)),
    ),
    ["ip_payload_size"],
  ),
  v.forward(
    v.partialCheck(
      INVENTORY_FAMILY_PATHS,
      (t) => familyFitsDestination(withDestination(t)),
      (i) => familyMismatch(withDestination(i.input)),
    ),
    ["address_family"],
  ),
  v.forward(
    v.partialCheck(
      INVENTORY_SUBNET_PATHS,
      (t) => subnetFlagFits(withDestination(t)),
      (i) => subnetWithoutFlag(withDestination(i.input)),
    ),
    ["is_subnet"],
  ),
  hints({ expected: "a map of target settings with a hostname", noun: "target" }),
  v.description("A target published by a dynamic inventory."),
);
export type InventoryTarget = v.InferOutput<typeof InventoryTargetSchema>;

/** Most targets one inventory may publish: a bound on what a broken source can make us hold. */
export const MAX_INVENTORY_TARGETS = 100_000;

export const InventoryListSchema = v.pipe(
  v.array(InventoryTargetSchema),
  v.maxLength(MAX_INVENTORY_TARGETS),
  hints({ expected: `a list of at most ${MAX_INVENTORY_TARGETS} targets` }),
  v.description("The whole list of targets of one dynamic inventory."),
);

export const PATH_EXPECTED = `a path of at most ${MAX_PATH_LENGTH} characters, relative to the config file's directory or absolute`;

/** A path: bounded, because messages name it (a missing module directory, a missing token file). */
export const pathField = (text: string) =>
  v.pipe(v.string(), v.nonEmpty(), v.maxLength(MAX_PATH_LENGTH), hints({ expected: PATH_EXPECTED }), v.description(text));

const FileInventorySchema = v.pipe(
  v.strictObject({
    directory: pathField(
      "Directory of .yaml, .yml and .json files, each a list of targets; watched, changes apply at the next iteration.",
    ),
  }),
  hints({ expected: "a map with directory" }),
  v.description("A directory of target files, in the spirit of Prometheus file_sd."),
);

const HttpInventorySchema = v.pipe(
  v.strictObject({
    url: v.pipe(
      v.string(),
      v.check((u) => /^https?:\/\/[^\s/]+/.test(u) && URL.canParse(u)),
      hints({ noun: "an http or https URL", expected: "an http:// or https:// URL" }),
      v.description("URL answering a JSON list of targets, as Prometheus http_sd does."),
    ),
    refresh_interval: v.optional(secondsField(1, "Seconds between two polls."), 60),
    timeout: v.optional(positiveSecondsField("Seconds one poll may take."), 10),
    bearer_token: v.optional(v.pipe(v.string(), v.nonEmpty(), v.description("Sent as Authorization: Bearer <token>."))),
    bearer_token_file: v.optional(
      pathField("File holding the bearer token (read at every poll), instead of bearer_token."),
    ),
  }),
  v.forward(
    v.partialCheck(
      [["bearer_token"], ["bearer_token_file"]],
      (h) => h.bearer_token === undefined || h.bearer_token_file === undefined,
      () => issueText("bearer_token_file given with bearer_token", "one of bearer_token and bearer_token_file"),
    ),
    ["bearer_token_file"],
  ),
  hints({ expected: "a map with url and optionally refresh_interval, timeout, bearer_token or bearer_token_file" }),
  v.description("A URL polled for a JSON list of targets, in the spirit of Prometheus http_sd."),
);

// --- the dns inventory ---

export const DNS_RECORD_TYPES = ["A", "AAAA", "SRV"] as const;
export type DnsRecordType = (typeof DNS_RECORD_TYPES)[number];

/** A name as the dns inventory looks it up: letters, digits, - and _ in labels of 1 to 63, 253 in all. */
export function isDnsName(name: string): boolean {
  const text = name.endsWith(".") ? name.slice(0, -1) : name;
  return text.length >= 1 && text.length <= 253 && text.split(".").every((l) => /^[A-Za-z0-9_-]{1,63}$/.test(l));
}

export interface DnsServerAddress {
  readonly address: string;
  readonly port: number;
  readonly family: AddressFamily;
}

/** "198.18.0.53:53" or "[fd00::53]:53" as an address and a port; undefined when it is neither. */
export function parseDnsServer(text: string): DnsServerAddress | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const [address, portText] = [m[1]!, m[2]!];
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  const bracketed = text.startsWith("[");
  if (!bracketed && v.is(IPV4_ADDRESS, address)) return { address, port, family: "ipv4" };
  if (bracketed && v.is(IPV6_ADDRESS, address)) return { address, port, family: "ipv6" };
  return undefined;
}

/** The record type a dns inventory asks for: its record_type, else AAAA for ipv6 targets, else A. */
export function dnsRecordType(options: { record_type?: DnsRecordType; address_family?: AddressFamily }): DnsRecordType {
  return options.record_type ?? (options.address_family === "ipv6" ? "AAAA" : "A");
}

/** The family of a dns inventory's targets: that of its A or AAAA records; for SRV, address_family (default ipv4). */
export function dnsTargetFamily(options: { record_type?: DnsRecordType; address_family?: AddressFamily }): AddressFamily {
  const type = dnsRecordType(options);
  return type === "A" ? "ipv4" : type === "AAAA" ? "ipv6" : (options.address_family ?? "ipv4");
}

const DNS_NAME_EXPECTED = "a DNS name such as probers.netprobify.svc.cluster.local (labels of letters, digits, - and _)";
const DNS_SERVER_EXPECTED = "ADDRESS:PORT, such as 198.18.0.53:53 or [fd00::53]:53";

/** A configured target's fields that mean something for an address found in DNS. */
const {
  destination: _destination,
  is_subnet: _isSubnet,
  dns_update_interval: _dnsUpdateInterval,
  ...dnsTargetEntries
} = targetEntries;

const dnsEntries = {
  names: v.pipe(
    v.array(
      v.pipe(
        v.string(),
        v.check(isDnsName),
        hints({ noun: "a DNS name", expected: DNS_NAME_EXPECTED }),
      ),
    ),
    v.minLength(1, () => issueText("the list is empty", `a list of 1 to ${MAX_DNS_NAMES} DNS names`)),
    v.maxLength(MAX_DNS_NAMES, (issue) =>
      issueText(`${formatCount(issue.input.length)} names are too many`, `a list of 1 to ${MAX_DNS_NAMES} DNS names`),
    ),
    hints({ expected: `a list of 1 to ${MAX_DNS_NAMES} DNS names` }),
    v.description(
      "Names looked up at every refresh, as given (absolute: no search list). Every address behind them becomes a target.",
    ),
  ),
  record_type: v.optional(
    v.pipe(
      v.picklist(DNS_RECORD_TYPES),
      v.description(
        "A, AAAA or SRV. SRV records give each target's dst_port, and their targets are looked up with A " +
          "(address_family ipv4, the default) or AAAA (ipv6). Default: AAAA when address_family is ipv6, else A.",
      ),
    ),
  ),
  port: v.optional(portField("dst_port of every target, for A and AAAA records (SRV records carry their own).")),
  refresh_interval: v.optional(secondsField(1, "Seconds between two lookups of every name."), 30),
  servers: v.optional(
    v.pipe(
      v.array(v.pipe(v.string(), v.check((s) => parseDnsServer(s) !== undefined), hints({ noun: "a server address", expected: DNS_SERVER_EXPECTED }))),
      v.minLength(1, () => issueText("the list is empty", `a list of 1 to ${MAX_DNS_SERVERS} servers, or no servers field`)),
      v.maxLength(MAX_DNS_SERVERS, (issue) =>
        issueText(`${formatCount(issue.input.length)} servers are too many`, `a list of 1 to ${MAX_DNS_SERVERS} servers`),
      ),
      hints({ expected: `a list of ${DNS_SERVER_EXPECTED}` }),
      v.description("DNS servers asked, in order, each until one answers. Default: the nameservers of /etc/resolv.conf."),
    ),
  ),
  exclude_self: v.optional(
    booleanField("Skip the prober's own addresses (those of its interfaces): a mesh prober does not probe itself."),
    true,
  ),
  groups: inventoryEntries.groups,
};

type DnsCheckFields = {
  type: TargetType;
  record_type?: DnsRecordType;
  address_family?: AddressFamily;
  port?: number;
  ip_payload_size?: number;
};

const dnsFamilyFits = (d: DnsCheckFields) => {
  const type = dnsRecordType(d);
  return d.address_family === undefined || type === "SRV" || d.address_family === (type === "A" ? "ipv4" : "ipv6");
};
const dnsPortFits = (d: DnsCheckFields) => {
  const type = dnsRecordType(d);
  return type === "SRV" ? d.port === undefined : d.port !== undefined || !portRequired(d.type);
};
const portRequired = (type: TargetType) => PROBE_TYPE_LIST.some((p) => p.type === type && p.port.use === "required");

const DNS_FAMILY_PATHS = [["record_type"], ["address_family"]] as const;
const DNS_PORT_PATHS = [["type"], ["record_type"], ["address_family"], ["port"]] as const;
const DNS_PAYLOAD_PATHS = [["type"], ["record_type"], ["address_family"], ["ip_payload_size"]] as const;

const dnsVariant = <const T extends TargetType>(type: T) =>
  v.strictObject({
    type: typeField(type),
    ...dnsEntries,
    ...dnsTargetEntries,
    ip_payload_size: payloadField(type),
  });

const DnsInventorySchema = v.pipe(
  v.variant("type", [dnsVariant("TCPsyn"), dnsVariant("ICMPping"), dnsVariant("UDPunreachable"), dnsVariant("TWAMPlight")]),
  v.forward(
    v.partialCheck(DNS_FAMILY_PATHS, dnsFamilyFits, (i) =>
      issueText(
        `${show(i.input.address_family)} does not match record_type ${show(dnsRecordType(i.input))}`,
        `${dnsRecordType(i.input) === "A" ? "ipv4" : "ipv6"}, the family of ${dnsRecordType(i.input)} records, or no address_family`,
      ),
    ),
    ["address_family"],
  ),
  v.forward(
    v.partialCheck(DNS_PORT_PATHS, dnsPortFits, (i) =>
      dnsRecordType(i.input) === "SRV"
        ? issueText("port is given with record_type SRV", "no port: each SRV record gives its target's port")
        : issueText(
            `required for a ${i.input.type} target with ${dnsRecordType(i.input)} records`,
            "an integer from 1 to 65535, the targets' dst_port",
          ),
    ),
    ["port"],
  ),
  v.forward(
    v.partialCheck(
      DNS_PAYLOAD_PATHS,
      (d) => payloadFitsFamily({ ...d, address_family: dnsTargetFamily(d), destination: "" }),
      (i) => payloadTooLarge({ ...i.input, destination: "" }),
    ),
    ["ip_payload_size"],
  ),
  hints({ expected: "a map with type, names and optionally record_type, port, refresh_interval, servers, exclude_self, groups and target fields" }),
  v.description(
    "Names looked up in DNS, every address behind them a target, in the spirit of Prometheus dns_sd. With a " +
      "Kubernetes headless Service, the full mesh of probers.",
  ),
);

const inventoryNameKey = v.pipe(
  v.string(),
  v.regex(NAME_PATTERN),
  v.check((name) => name !== "api"),
  hints({ noun: "a valid inventory name", expected: `${NAME_EXPECTED}, not api (the API's own name)` }),
);

export const InventoriesSchema = v.pipe(
  v.strictObject({
    modules_directory: v.optional(
      pathField(
        "Directory of custom inventory modules (.ts or .js), each started in its own child process. " +
          "Default: dynamic_inventories beside the config file.",
      ),
      "dynamic_inventories",
    ),
    modules: v.optional(
      v.pipe(
        userRecord(
          inventoryNameKey,
          v.pipe(
            userRecord(v.string(), v.unknown()),
            hints({ expected: "a map of options" }),
            v.description("Options of one module, as it documents them."),
          ),
        ),
        hints({ expected: "a map of module names to their options" }),
        v.description("Options handed to each custom module's start(), by module name (its file name without extension)."),
      ),
      () => ({}),
    ),
    file: v.optional(
      v.pipe(
        userRecord(inventoryNameKey, FileInventorySchema),
        hints({ expected: "a map of inventory names to file inventories" }),
        v.description("File inventories by name."),
      ),
      () => ({}),
    ),
    http: v.optional(
      v.pipe(
        userRecord(inventoryNameKey, HttpInventorySchema),
        hints({ expected: "a map of inventory names to http inventories" }),
        v.description("HTTP inventories by name."),
      ),
      () => ({}),
    ),
    dns: v.optional(
      v.pipe(
        userRecord(inventoryNameKey, DnsInventorySchema),
        hints({ expected: "a map of inventory names to dns inventories" }),
        v.description("DNS inventories by name."),
      ),
      () => ({}),
    ),
  }),
  v.forward(
    v.check(
      (i) => Object.keys(i.file).every((name) => !Object.hasOwn(i.http, name)),
      (i) => {
        const name = Object.keys(i.input.file).find((n) => Object.hasOwn(i.input.http, n)) ?? "";
        return issueText(`${show(name)} names both a file and an http inventory`, "a name used once across inventories");
      },
    ),
    ["http"],
  ),
  v.forward(
    v.check(
      (i) => Object.keys(i.dns).every((name) => !Object.hasOwn(i.file, name) && !Object.hasOwn(i.http, name)),
      (i) => {
        const name = Object.keys(i.input.dns).find((n) => Object.hasOwn(i.input.file, n) || Object.hasOwn(i.input.http, n)) ?? "";
        const other = Object.hasOwn(i.input.file, name) ? "a file" : "an http";
        return issueText(`${show(name)} names both ${other} and a dns inventory`, "a name used once across inventories");
      },
    ),
    ["dns"],
  ),
  hints({ expected: "a map with modules_directory, modules, file, http and/or dns" }),
  v.description(
    "Added by this project: dynamic inventories besides the API (which api.yaml beside the config " +
      "enables). Each publishes targets named <inventory>_<hostname>. Read at start and on reload.",
  ),
);

export type InventoriesConfig = v.InferOutput<typeof InventoriesSchema>;
export type HttpInventoryConfig = v.InferOutput<typeof HttpInventorySchema>;
export type FileInventoryConfig = v.InferOutput<typeof FileInventorySchema>;
export type DnsInventoryConfig = v.InferOutput<typeof DnsInventorySchema>;

// --- the whole file ---

const nameKey = v.pipe(v.string(), v.regex(NAME_PATTERN), hints({ noun: "a valid name", expected: NAME_EXPECTED }));

const ITERATION_EXPECTED = (limit: number, what: string) =>
  `at most ${formatCount(limit)} ${what} per iteration: fewer targets, groups, addresses per subnet or nb_packets`;

/**
 * v.forward(action, [key]) for the checks on the whole file, minus its cost there: v.forward
 * copies the issues found before it and looks every issue up in that copy, so after 100,000
 * targets with a problem each it made five billion comparisons (seconds per check). An action
 * only appends issues, so the new ones are those past the count before it ran.
 */
function forwardToKey<TInput extends Record<string, unknown>, TIssue extends v.BaseIssue<unknown>>(
  action: v.BaseValidation<TInput, TInput, TIssue>,
  key: keyof TInput & string,
): v.BaseValidation<TInput, TInput, TIssue> {
  return {
    ...action,
    "~run"(dataset, config) {
      const before = dataset.issues?.length ?? 0;
      const out = action["~run"](dataset, config);
      const issues = out.issues ?? [];
      for (let i = before; i < issues.length; i++) {
        // Mutable here as in v.forward, which pushes onto the path of the issues it forwards.
        const issue = issues[i] as { path?: v.IssuePathItem[] };
        const input = out.value as TInput;
        const item: v.UnknownPathItem = { type: "unknown", origin: "value", input, key, value: input[key] };
        if (issue.path) issue.path.push(item);
        else issue.path = [item];
      }
      return out;
    },
  };
}

export const ConfigSchema = v.pipe(
  v.strictObject({
    global: GlobalSchema,
    groups: v.pipe(
      userRecord(nameKey, GroupSchema),
      v.maxEntries(MAX_GROUPS, (issue) =>
        issueText(`${formatCount(Object.keys(issue.input).length)} groups are too many`, `at most ${formatCount(MAX_GROUPS)} groups`),
      ),
      hints({ expected: "a map of group names to group settings" }),
      v.description(
        `Groups by name, at most ${formatCount(MAX_GROUPS)}. Each target sends its packets once per group it belongs to.`,
      ),
    ),
    targets: v.nullish(
      v.pipe(
        userRecord(nameKey, TargetSchema),
        v.maxEntries(MAX_TARGETS, (issue) =>
          issueText(`${formatCount(Object.keys(issue.input).length)} targets are too many`, `at most ${formatCount(MAX_TARGETS)} targets`),
        ),
        hints({ expected: "a map of target names to target settings" }),
        v.description(
          `Targets by name, at most ${formatCount(MAX_TARGETS)}; the name is the destination label of their metrics. ` +
            `Together they may send at most ${formatCount(MAX_PROBES_PER_ITERATION)} probes per iteration (nb_packets x ` +
            `addresses x groups), to at most ${formatCount(MAX_PROBED_ADDRESSES_PER_ITERATION)} addresses counted once per group.`,
        ),
      ),
      () => Object.create(null) as Record<string, never>,
    ),
    inventories: v.optional(InventoriesSchema),
  }),
  // What an iteration holds is known before anything is resolved: a config the plan could not
  // hold in memory is refused here, with the figures, rather than failing in every iteration.
  forwardToKey(
    v.check(
      (c) => iterationSize(c).probes <= MAX_PROBES_PER_ITERATION,
      (issue) => {
        const size = iterationSize(issue.input);
        const most = size.largest ? `; the most: ${show(size.largest.name)}, ${formatCount(size.largest.probes)}` : "";
        return issueText(
          `the targets send ${formatCount(size.probes)} probes per iteration${most}`,
          ITERATION_EXPECTED(MAX_PROBES_PER_ITERATION, "probes"),
        );
      },
    ),
    "targets",
  ),
  forwardToKey(
    v.check(
      (c) => iterationSize(c).addresses <= MAX_PROBED_ADDRESSES_PER_ITERATION,
      (issue) =>
        issueText(
          `the targets probe ${formatCount(iterationSize(issue.input).addresses)} addresses per iteration, once per group each`,
          ITERATION_EXPECTED(MAX_PROBED_ADDRESSES_PER_ITERATION, "addresses"),
        ),
    ),
    "targets",
  ),
  hints({ expected: "a map with global, groups and targets" }),
  v.description("netprobify configuration (netprobify.yaml)."),
);

export type Config = v.InferOutput<typeof ConfigSchema>;
export type GlobalConfig = v.InferOutput<typeof GlobalSchema>;
export type GroupConfig = v.InferOutput<typeof GroupSchema>;
export type TargetConfig = v.InferOutput<typeof TargetSchema>;
export type ThresholdConfig = v.InferOutput<typeof thresholdSchema>;
