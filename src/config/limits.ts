/**
 * The bounds on what a configuration may ask for. Each one keeps a value that passes `check`
 * from hurting the daemon later: a timer that would overflow (setTimeout fires at once past
 * 2^31-1 ms, about 24.8 days), an iteration too large for memory, a label value that bloats
 * every scrape. README.md's Configuration section lists them; keep the two in step.
 */

/** netprobify.yaml and api.yaml: larger files are refused before they are read (exit 66). */
export const MAX_CONFIG_FILE_BYTES = 64 * 1024 * 1024;

/**
 * Every duration in seconds a user gives: interval, interval_packets, reload_conf_interval,
 * dns_update_interval and timeout (global and per target), and an http inventory's
 * refresh_interval and timeout. A day: longer is not a probing setting, and it keeps every
 * timer far below setTimeout's 2^31-1 ms.
 */
export const MAX_DURATION_S = 86_400;

/**
 * api.yaml's target_lifetime and max_target_lifetime, and the lifetime of a dynamic target. These
 * are not timers themselves (the API re-arms its expiry timer at least hourly), so a year is fine.
 */
export const MAX_LIFETIME_S = 365 * 86_400;

/** Probe, group, target and inventory names: label values on every series. */
export const MAX_NAME_LENGTH = 255;

/** A target's description (free text, kept in the config only). */
export const MAX_DESCRIPTION_LENGTH = 1024;

/** A file or directory path (PATH_MAX): paths are echoed in messages, which must stay short. */
export const MAX_PATH_LENGTH = 4096;

/** A destination: a hostname is at most 253 characters, and literals, subnets and ranges fewer. */
export const MAX_DESTINATION_LENGTH = 253;

/** Targets in netprobify.yaml (each dynamic inventory has its own limit of the same size). */
export const MAX_TARGETS = 100_000;

/** Groups in netprobify.yaml: every target may send once per group. */
export const MAX_GROUPS = 1_000;

/** Addresses one subnet or range destination, or one group's source subnet, expands to. */
export const MAX_ADDRESSES_PER_DESTINATION = 65_536;

/** Packets one target sends per group and iteration. */
export const MAX_NB_PACKETS = 1_000_000;

/** Packets of one iteration: every target's nb_packets x addresses x groups. */
export const MAX_PROBES_PER_ITERATION = 10_000_000;

/**
 * Addresses probed in one iteration, once per group each: one entry of the plan (and of a
 * Worker's batch) each, however few packets they send.
 */
export const MAX_PROBED_ADDRESSES_PER_ITERATION = 1_000_000;

/** Engine Workers (global.nb_proc): each holds a capture ring and a libpcap handle. */
export const MAX_NB_PROC = 64;

/** global.max_probes_per_second: far above what one machine can send. */
export const MAX_PROBES_PER_SECOND = 10_000_000;

/** global.worst_targets: targets shown per probe type, group and address family in the bounded mode. */
export const MAX_WORST_TARGETS = 10_000;

/** global.histogram_buckets: each bucket is one more series per histogram. */
export const MAX_HISTOGRAM_BUCKETS = 64;

/**
 * Probers sharing one target list (global.shard.count, --shard, NETPROBIFY_SHARD_COUNT): each
 * target name is hashed once per prober, so this bounds the work a new name costs (100,000 new
 * names at 256 probers: about 0.4 s of the main thread, once).
 */
export const MAX_SHARD_COUNT = 256;

/**
 * Names one dns inventory looks up (`inventories.dns.*.names`): each is a query, or an SRV query
 * and one query per SRV target, at every refresh.
 */
export const MAX_DNS_NAMES = 100;

/**
 * Addresses one name of a dns inventory may give: the A or AAAA records of its answer, or for SRV
 * the addresses of its SRV records' targets. One DNS message holds at most about 4,000 address
 * records (65,535 bytes), but SRV multiplies: an SRV answer of 3,000 records whose targets each
 * have 4,000 addresses is twelve million. Past the limit, the rest is left out, counted and logged;
 * SRV targets past it are not looked up at all.
 */
export const MAX_DNS_ADDRESSES_PER_NAME = 10_000;

/** DNS servers one dns inventory may list (`inventories.dns.*.servers`). */
export const MAX_DNS_SERVERS = 16;
