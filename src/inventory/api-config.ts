/**
 * api.yaml, the targets API's own file beside the config: its schema and defaults, and reading
 * and validating it. Apart from api.ts so that specs.ts can validate the file (at start, at every
 * reload, in `check`) without loading the HTTP API.
 */
import * as v from "valibot";
import { MAX_LIFETIME_S, MAX_NB_PACKETS } from "../config/limits.ts";
import { readSettingsFile } from "../config/settings-file.ts";
import { formatIssue, formatWarnings, parseYamlText } from "../config/validate-yaml.ts";
import {
  hints,
  issueText,
  lifetimeBound,
  lifetimeSeconds,
  MAX_INVENTORY_TARGETS,
  NAME_EXPECTED,
  NAME_PATTERN,
  pathField,
} from "../config/schema.ts";
import { parseAddress } from "../packet/address.ts";

const API_DEFAULTS = {
  max_targets: 10,
  target_lifetime: "1d",
  max_target_lifetime: "30d",
  /** The original's API targets sent 20 packets (api.py: `target.get("nb_packets", 20)`). */
  nb_packets: 20,
  state_file: "api-targets.json",
} as const;

/** The name api.yaml has beside the config. */
export const API_CONFIG_FILE = "api.yaml";

export const LIFETIME_EXPECTED = 'a number of seconds, or a duration such as "1d 3h 2m" (days, hours, minutes, seconds)';
/** Visible ASCII with inner spaces: what an HTTP header carries intact (values are trimmed). */
const TOKEN_PATTERN = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
/** Below this, a token is guessable by someone who can reach the port: warned about. */
const SHORT_TOKEN = 16;

/** A lifetime as written (seconds, or a duration text), checked: how a POST body gives it. */
export const lifetimeInput = (text: string) =>
  v.pipe(
    v.unknown(),
    v.check((x) => lifetimeSeconds(x) !== undefined),
    hints({ noun: "a lifetime", expected: LIFETIME_EXPECTED }),
    v.description(text),
  );

/**
 * The same, of at most MAX_LIFETIME_S, turned into seconds: how api.yaml's lifetimes come out. (A
 * POST's lifetime is not bounded so: a longer one is cut to max_target_lifetime.)
 */
const lifetimeField = (text: string) =>
  v.pipe(
    lifetimeInput(`${text} At most ${MAX_LIFETIME_S / 86_400}d.`),
    lifetimeBound(LIFETIME_EXPECTED),
    v.transform((x) => lifetimeSeconds(x) ?? 0),
  );

/**
 * api.yaml. The lifetimes come out as seconds, so validating the output again gives the same
 * config: the daemon validates the file and hands the result to api.ts's `start`, which checks it.
 */
export const ApiConfigSchema = v.pipe(
  v.strictObject({
    token: v.pipe(
      v.string(),
      v.regex(TOKEN_PATTERN),
      hints({
        noun: "a valid token",
        expected: "text of visible ASCII characters, no space at either end, in quotes if YAML would read it as a number",
      }),
      v.description(`Secret every request carries in its apikey header. Use ${SHORT_TOKEN} or more random characters.`),
    ),
    listen_address: v.pipe(
      v.string(),
      v.ip(),
      v.description("Address the API listens on; 0.0.0.0 means every IPv4 address, :: every address."),
    ),
    listen_port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535), v.description("TCP port of the API.")),
    max_targets: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(1),
        v.maxValue(MAX_INVENTORY_TARGETS),
        v.description("Most targets the API holds at once; a POST beyond it gets 409."),
      ),
      API_DEFAULTS.max_targets,
    ),
    target_lifetime: v.optional(
      lifetimeField("Lifetime of a target whose POST gives none. Default 1d."),
      API_DEFAULTS.target_lifetime,
    ),
    max_target_lifetime: v.optional(
      lifetimeField("Longest lifetime a target may have; a longer one asked for is cut to it. Default 30d."),
      API_DEFAULTS.max_target_lifetime,
    ),
    nb_packets: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(1),
        v.maxValue(MAX_NB_PACKETS),
        v.description("Packets each API target sends per group and iteration. Default 20, as the original's API targets."),
      ),
      API_DEFAULTS.nb_packets,
    ),
    groups: v.pipe(
      v.array(v.pipe(v.string(), v.regex(NAME_PATTERN), hints({ noun: "a valid group name", expected: NAME_EXPECTED }))),
      v.nonEmpty(),
      hints({ expected: "a list of at least one group name" }),
      v.description(
        "Groups the API's targets send in (a POST may pick some of them with its own groups field). " +
          "Groups missing from the config are warned about.",
      ),
    ),
    state_file: v.optional(
      pathField(
        "Added by this project. JSON file keeping the API's targets across restarts, rewritten atomically " +
          "after every change. Default api-targets.json beside the config.",
      ),
      API_DEFAULTS.state_file,
    ),
  }),
  v.forward(
    v.partialCheck(
      [["target_lifetime"], ["max_target_lifetime"]],
      (c) => c.target_lifetime <= c.max_target_lifetime,
      (i) =>
        issueText(
          `${i.input.target_lifetime} s is longer than max_target_lifetime, ${i.input.max_target_lifetime} s`,
          "a lifetime no longer than max_target_lifetime",
        ),
    ),
    ["target_lifetime"],
  ),
  hints({ expected: "a map with token, listen_address, listen_port and groups" }),
  v.description("netprobify targets API (api.yaml beside the config)."),
);

export type ApiConfig = v.InferOutput<typeof ApiConfigSchema>;

export type ApiConfigResult =
  | { readonly ok: true; readonly config: ApiConfig; readonly warnings: string[] }
  /**
   * `unreadable`: the file could not be read (the one line says why), as opposed to read and
   * found invalid; `missing`: it does not exist, so the API is simply not enabled.
   */
  | { readonly ok: false; readonly lines: string[]; readonly unreadable: boolean; readonly missing: boolean };

/** Where the metrics listener binds: the API must not ask for the same port on an overlapping address. */
export interface MetricsListener {
  readonly address: string;
  readonly port: number;
}

/**
 * Whether two listen addresses can collide on one port: the same address, or a wildcard that
 * covers the other (0.0.0.0 every IPv4 address; :: every address, as Linux binds it dual-stack).
 */
export function addressesOverlap(a: string, b: string): boolean {
  const pa = parseAddress(a);
  const pb = parseAddress(b);
  if (!pa || !pb) return a === b;
  const unspecified = (p: NonNullable<typeof pa>) => p.bytes.every((x) => x === 0);
  if ((pa.family === 6 && unspecified(pa)) || (pb.family === 6 && unspecified(pb))) return true;
  if (pa.family !== pb.family) return false;
  if (unspecified(pa) || unspecified(pb)) return true;
  return pa.bytes.every((x, i) => x === pb.bytes[i]);
}

/**
 * Validates api.yaml text.
 * @param file The name printed in front of each issue.
 * @param options.groups The config's group names: groups outside them are warned about.
 * @returns The config and its warnings, or one FILE:LINE:COL line per issue.
 */
export function parseApiConfigText(
  text: string,
  file: string,
  options: { groups?: readonly string[]; metrics?: MetricsListener } = {},
): ApiConfigResult {
  const parsed = parseYamlText(text, file, ApiConfigSchema);
  if (!parsed.ok) return { ok: false, lines: parsed.issues.map(formatIssue), unreadable: false, missing: false };
  const config = parsed.value;
  const metrics = options.metrics;
  if (metrics && metrics.port === config.listen_port && addressesOverlap(metrics.address, config.listen_address)) {
    const issue = {
      file,
      ...parsed.locator.position(["listen_port"], "value"),
      path: "listen_port",
      message:
        `${config.listen_port} on ${config.listen_address} collides with the metrics listener, ` +
        `global.prometheus_port ${metrics.port} on ${metrics.address}`,
      expected: "a port other than the metrics port, or addresses that do not overlap",
    };
    return { ok: false, lines: [formatIssue(issue)], unreadable: false, missing: false };
  }
  const warnings = [...parsed.warnings];
  if (config.token.length < SHORT_TOKEN) {
    warnings.push({
      ...parsed.locator.position(["token"], "value"),
      path: "token",
      message: `only ${config.token.length} characters: use ${SHORT_TOKEN} or more random ones`,
    });
  }
  if (options.groups) {
    const known = new Set(options.groups);
    config.groups.forEach((group, i) => {
      if (known.has(group)) return;
      warnings.push({
        ...parsed.locator.position(["groups", i], "value"),
        path: `groups[${i}]`,
        message: `group "${group}" does not exist in the config; the API's targets do not send in it`,
      });
    });
  }
  return { ok: true, config, warnings: formatWarnings(file, warnings) };
}

/**
 * Reads and validates api.yaml (the daemon calls it at start and at every reload, and passes
 * the config to api.ts's `start` as its options).
 * @returns As {@link parseApiConfigText}; `missing` with one line when the file does not exist.
 */
export async function loadApiConfig(
  path: string,
  options: { groups?: readonly string[]; metrics?: MetricsListener } = {},
): Promise<ApiConfigResult> {
  const read = await readSettingsFile(path);
  if ("failure" in read) {
    const lines = [`${path}: cannot read the file: ${read.failure}`];
    return { ok: false, lines, unreadable: true, missing: read.code === "ENOENT" };
  }
  return parseApiConfigText(read.text, path, options);
}
