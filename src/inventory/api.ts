/**
 * The `api` dynamic inventory: an HTTP API through which people add targets for a while (an
 * engineer who wants a host probed for the next two hours), as the original's
 * dynamic_inventories/api.py did, with its gaps closed:
 *
 * - api.yaml is validated like netprobify.yaml (valibot, unknown fields rejected, FILE:LINE:COL);
 * - every bad request is a 4xx whose JSON body names the field at fault, worded as config
 *   errors are; the original answered 500 to an unresolvable hostname and to a DELETE without
 *   every key, and ignored the lifetime a client asked for;
 * - the apikey is compared in constant time, and bodies are capped at {@link MAX_BODY_BYTES};
 * - targets survive a restart: a JSON state file, written atomically after every change;
 * - the OpenAPI document and the interactive page are served from the binary, nothing from a CDN.
 *
 * The routes, the store and the expiry run in {@link createApi}, which takes its clock, resolver,
 * state path and publish function as arguments so tests need neither a socket nor DNS;
 * {@link start} only binds it to Bun.serve.
 */
import crypto from "node:crypto";
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import * as v from "valibot";
import { toJsonSchema, type SchemaNode } from "../config/describe.ts";
import { formatIssue, formatProblem, formatWarnings, parseYamlText, validateValue, type ValueProblem } from "../config/load.ts";
import {
  ADDRESS_FAMILIES,
  HOSTNAME_PATTERN,
  InventoryTargetSchema,
  issueText,
  L4_HEADER_BYTES,
  lifetimeSeconds,
  MAX_INVENTORY_TARGETS,
  MAX_IP_PAYLOAD_BYTES,
  NAME_PATTERN,
  splitIssueText,
  TARGET_TYPES,
  type AddressFamily,
  type FieldHints,
  type TargetType,
} from "../config/schema.ts";
import type { LevelName, LogFields } from "../log.ts";
import { VERSION } from "../version.ts";
import { openApiDocument } from "./api-docs.ts";
import uiPage from "./api-ui.html" with { type: "text" };
import type { InventoryStart, Publish } from "./contract.ts";

// --- limits and defaults ---

/** Largest request body read: a target is a few hundred bytes; 16 KiB leaves room and bounds memory. */
export const MAX_BODY_BYTES = 16 * 1024;
/**
 * Bun.serve's own cap, far above ours: bodies up to it get our JSON 413 (from Content-Length or
 * the streamed count), larger ones Bun's bare 413 before they reach us.
 */
const SERVER_BODY_BACKSTOP_BYTES = 1024 * 1024;
/** A resolver that hangs must not hold a request forever. */
const LOOKUP_TIMEOUT_MS = 5_000;
/** The expiry timer is re-armed at least this often: setTimeout cannot wait 30 days (2^31 ms). */
const MAX_TIMER_MS = 3_600_000;
const STATE_VERSION = 1;

export const API_DEFAULTS = {
  max_targets: 10,
  target_lifetime: "1d",
  max_target_lifetime: "30d",
  /** The original's API targets sent 20 packets (api.py: `target.get("nb_packets", 20)`). */
  nb_packets: 20,
  state_file: "api-targets.json",
} as const;

/** The name api.yaml has beside the config. */
export const API_CONFIG_FILE = "api.yaml";

/** What a POST defaults to, as the original did. */
export const TARGET_REQUEST_DEFAULTS = {
  type: "ICMPping",
  dst_port: 80,
  ip_payload_size: 0,
  address_family: "ipv4",
} as const satisfies { type: TargetType; dst_port: number; ip_payload_size: number; address_family: AddressFamily };

// --- api.yaml ---

const hints = <TInput>(h: FieldHints) => v.metadata<TInput, FieldHints & Record<string, unknown>>({ ...h });

const NAME_EXPECTED = "a name of lowercase letters, digits, _, - and .";
const LIFETIME_EXPECTED = 'a number of seconds, or a duration such as "1d 3h 2m" (days, hours, minutes, seconds)';
/** Visible ASCII with inner spaces: what an HTTP header carries intact (values are trimmed). */
const TOKEN_PATTERN = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
/** Below this, a token is guessable by someone who can reach the port: warned about. */
const SHORT_TOKEN = 16;

const lifetimeField = (text: string) =>
  v.pipe(
    v.unknown(),
    v.check((x) => lifetimeSeconds(x) !== undefined),
    hints({ noun: "a lifetime", expected: LIFETIME_EXPECTED }),
    v.transform((x) => lifetimeSeconds(x) ?? 0),
    v.description(text),
  );

/**
 * api.yaml. The lifetimes come out as seconds, so validating the output again gives the same
 * config: the daemon validates the file and hands the result to {@link start}, which checks it.
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
      v.pipe(
        v.string(),
        v.nonEmpty(),
        hints({ expected: "a path, relative to the config file's directory or absolute" }),
        v.description(
          "Added by this project. JSON file keeping the API's targets across restarts, rewritten atomically " +
            "after every change. Default api-targets.json beside the config.",
        ),
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
  /** `missing`: the file does not exist, so the API is simply not enabled. */
  | { readonly ok: false; readonly lines: string[]; readonly missing: boolean };

/**
 * Validates api.yaml text.
 * @param file The name printed in front of each issue.
 * @param options.groups The config's group names: groups outside them are warned about.
 * @returns The config and its warnings, or one FILE:LINE:COL line per issue.
 */
export function parseApiConfigText(
  text: string,
  file: string,
  options: { groups?: readonly string[] } = {},
): ApiConfigResult {
  const parsed = parseYamlText(text, file, ApiConfigSchema);
  if (!parsed.ok) return { ok: false, lines: parsed.issues.map(formatIssue), missing: false };
  const config = parsed.value;
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
 * the config to {@link start} as its options).
 * @returns As {@link parseApiConfigText}; `missing` with one line when the file does not exist.
 */
export async function loadApiConfig(path: string, options: { groups?: readonly string[] } = {}): Promise<ApiConfigResult> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = errorCode(error);
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : describe(error);
    return { ok: false, lines: [`${path}: cannot read the file: ${why}`], missing: code === "ENOENT" };
  }
  return parseApiConfigText(text, path, options);
}

// --- request bodies ---

/** Free text, but one line of it: it lands in the target's description and in logs. */
const OWNER_PATTERN = /^(?=.*\S)[^\p{Cc}]{1,128}$/u;
const OWNER_EXPECTED = "1 to 128 characters, not all spaces, no control characters";
const HOSTNAME_EXPECTED = "a hostname or an IP address: up to 253 letters, digits, ., _, - or :";
const PAYLOAD_EXPECTED =
  `0 for the bare L4 header, else an integer from the type's header (TCPsyn ${L4_HEADER_BYTES.TCPsyn}, ` +
  `ICMPping ${L4_HEADER_BYTES.ICMPping}, UDPunreachable ${L4_HEADER_BYTES.UDPunreachable}) to ` +
  `${MAX_IP_PAYLOAD_BYTES.ipv4} over IPv4 or ${MAX_IP_PAYLOAD_BYTES.ipv6} over IPv6`;

const targetFields = {
  owner: v.pipe(
    v.string(),
    v.regex(OWNER_PATTERN),
    hints({ noun: "a valid owner", expected: OWNER_EXPECTED }),
    v.description("Who asked for the target (a person or team): shown by GET, filtered on, and in the target's description."),
  ),
  hostname: v.pipe(
    v.string(),
    v.regex(HOSTNAME_PATTERN),
    hints({ noun: "a hostname or an IP address", expected: HOSTNAME_EXPECTED }),
    v.description(
      "What to probe; must resolve in address_family when added. The prober re-resolves it every " +
        "dns_update_interval. The target's metrics are named api_<hostname>.",
    ),
  ),
  type: v.pipe(v.picklist(TARGET_TYPES), v.description("Probe kind.")),
  dst_port: v.pipe(
    v.number(),
    v.integer(),
    v.minValue(1),
    v.maxValue(65535),
    v.description("Destination port of TCPsyn and UDPunreachable probes; ICMPping ignores it."),
  ),
  ip_payload_size: v.pipe(
    v.number(),
    v.integer(),
    v.minValue(0),
    v.maxValue(MAX_IP_PAYLOAD_BYTES.ipv6),
    hints({ expected: PAYLOAD_EXPECTED }),
    v.description("IP payload size in bytes, L4 header included; 0 sends the bare header."),
  ),
  address_family: v.pipe(v.picklist(ADDRESS_FAMILIES), v.description("Family the hostname is resolved and probed in.")),
};

/**
 * The payload size fits the type's header and the family's maximum (0 is the bare header). A
 * DELETE may leave type or family out: then the size must fit at least one of them.
 */
function payloadProblem(t: { type?: TargetType; ip_payload_size?: number; address_family?: AddressFamily }): string | undefined {
  const size = t.ip_payload_size;
  if (size === undefined || size === 0) return undefined;
  const min = t.type ? L4_HEADER_BYTES[t.type] : Math.min(...Object.values(L4_HEADER_BYTES));
  const max = t.address_family ? MAX_IP_PAYLOAD_BYTES[t.address_family] : MAX_IP_PAYLOAD_BYTES.ipv6;
  if (size >= min && size <= max) return undefined;
  const what = `${t.type ? ` for ${t.type}` : ""}${t.address_family ? ` over ${t.address_family}` : ""}`;
  return issueText(`${size} is out of range${what}`, `0 (the bare header) or an integer from ${min} to ${max}`);
}

/** An IP literal of the other family can never resolve in this one. */
function familyProblem(t: { hostname: string; address_family?: AddressFamily }): string | undefined {
  const version = isIP(t.hostname);
  const literal: AddressFamily | undefined = version === 4 ? "ipv4" : version === 6 ? "ipv6" : undefined;
  if (literal === undefined || t.address_family === undefined || literal === t.address_family) return undefined;
  return issueText(
    `${JSON.stringify(t.hostname)} is an ${literal === "ipv4" ? "IPv4" : "IPv6"} address, not ${t.address_family}`,
    `an address or a name of ${t.address_family}, or address_family: ${literal}`,
  );
}

/** POST /api/target. Built per config: the groups a body may name are api.yaml's. */
function targetRequestSchema(config: ApiConfig) {
  return v.pipe(
    v.strictObject({
      owner: targetFields.owner,
      hostname: targetFields.hostname,
      type: v.optional(targetFields.type, TARGET_REQUEST_DEFAULTS.type),
      dst_port: v.optional(targetFields.dst_port, TARGET_REQUEST_DEFAULTS.dst_port),
      ip_payload_size: v.optional(targetFields.ip_payload_size, TARGET_REQUEST_DEFAULTS.ip_payload_size),
      address_family: v.optional(targetFields.address_family, TARGET_REQUEST_DEFAULTS.address_family),
      lifetime: v.optional(
        v.pipe(
          v.unknown(),
          v.check((x) => lifetimeSeconds(x) !== undefined),
          hints({ noun: "a lifetime", expected: LIFETIME_EXPECTED }),
          v.description(
            `How long the target is probed. Default target_lifetime (${config.target_lifetime} s); ` +
              `longer than max_target_lifetime (${config.max_target_lifetime} s) is cut to it.`,
          ),
        ),
      ),
      groups: v.optional(
        v.pipe(
          v.array(v.picklist(config.groups)),
          v.nonEmpty(),
          hints({ expected: `a list of some of ${config.groups.join(", ")}` }),
          v.description("Added by this project. Groups the target sends in, among api.yaml's. Default: all of them."),
        ),
      ),
    }),
    v.forward(
      v.partialCheck(
        [["type"], ["ip_payload_size"], ["address_family"]],
        (t) => !payloadProblem(t),
        (i) => payloadProblem(i.input) ?? "",
      ),
      ["ip_payload_size"],
    ),
    v.forward(
      v.partialCheck([["hostname"], ["address_family"]], (t) => !familyProblem(t), (i) => familyProblem(i.input) ?? ""),
      ["hostname"],
    ),
    hints({
      expected:
        "a JSON object with owner, hostname and optionally type, dst_port, ip_payload_size, address_family, lifetime, groups",
    }),
    v.description("A target to add."),
  );
}

/** DELETE /api/target: owner and hostname, and any of the other keys to narrow the match. */
const TargetKeysSchema = v.pipe(
  v.strictObject({
    owner: targetFields.owner,
    hostname: targetFields.hostname,
    type: v.optional(targetFields.type),
    dst_port: v.optional(targetFields.dst_port),
    ip_payload_size: v.optional(targetFields.ip_payload_size),
    address_family: v.optional(targetFields.address_family),
  }),
  v.forward(
    v.partialCheck(
      [["type"], ["ip_payload_size"], ["address_family"]],
      (t) => !payloadProblem(t),
      (i) => payloadProblem(i.input) ?? "",
    ),
    ["ip_payload_size"],
  ),
  v.forward(
    v.partialCheck([["hostname"], ["address_family"]], (t) => !familyProblem(t), (i) => familyProblem(i.input) ?? ""),
    ["hostname"],
  ),
  hints({ expected: "a JSON object with owner, hostname and optionally type, dst_port, ip_payload_size, address_family" }),
  v.description(
    "Which targets to remove: those of this owner and hostname (case-insensitive) that match every other key given.",
  ),
);

type TargetKeys = v.InferOutput<typeof TargetKeysSchema>;

/** GET /api/targets query parameters; an empty value filters nothing, as in the original. */
const QUERY_FILTERS = ["hostname", "owner", "address_family"] as const;
type QueryFilter = (typeof QUERY_FILTERS)[number];

// --- targets ---

/** One target the API holds. */
interface ApiTarget {
  readonly owner: string;
  readonly hostname: string;
  readonly type: TargetType;
  readonly dst_port: number;
  /** 0: the bare L4 header (the target is published without ip_payload_size). */
  readonly ip_payload_size: number;
  readonly address_family: AddressFamily;
  /** Some of api.yaml's groups; undefined: all of them. */
  readonly groups?: readonly string[];
  /** ms since the epoch. */
  readonly created: number;
  /** Seconds, already capped by max_target_lifetime. */
  readonly lifetime: number;
}

/** A target as GET, POST and the state file show it. */
export interface ApiTargetView {
  readonly owner: string;
  readonly hostname: string;
  readonly type: TargetType;
  readonly dst_port: number;
  readonly ip_payload_size: number;
  readonly address_family: AddressFamily;
  readonly groups: readonly string[];
  /** ISO 8601, UTC. */
  readonly creation_date: string;
  /** Seconds. */
  readonly lifetime: number;
  /** ISO 8601, UTC: creation_date + lifetime. */
  readonly expiry_date: string;
}

const expiryMs = (t: ApiTarget) => t.created + t.lifetime * 1000;

/**
 * What makes two targets the same (the original's UNIQUE_KEYS). Hostnames compare without case,
 * as DNS does; an ICMPping target has no port, so dst_port does not tell two of them apart.
 */
function identity(t: Pick<ApiTarget, "hostname" | "address_family" | "type" | "dst_port" | "ip_payload_size">): string {
  const port = t.type === "ICMPping" ? "" : String(t.dst_port);
  return [t.hostname.toLowerCase(), t.address_family, t.type, port, t.ip_payload_size].join("\u0000");
}

function matchesKeys(t: ApiTarget, k: TargetKeys): boolean {
  return (
    t.owner === k.owner &&
    t.hostname.toLowerCase() === k.hostname.toLowerCase() &&
    (k.type === undefined || t.type === k.type) &&
    (k.dst_port === undefined || t.type === "ICMPping" || t.dst_port === k.dst_port) &&
    (k.ip_payload_size === undefined || t.ip_payload_size === k.ip_payload_size) &&
    (k.address_family === undefined || t.address_family === k.address_family)
  );
}

// --- state file ---

const StateTargetSchema = v.strictObject({
  owner: targetFields.owner,
  hostname: targetFields.hostname,
  type: targetFields.type,
  dst_port: targetFields.dst_port,
  ip_payload_size: targetFields.ip_payload_size,
  address_family: targetFields.address_family,
  groups: v.array(v.pipe(v.string(), v.regex(NAME_PATTERN))),
  /** Whether the POST chose the groups (else they follow api.yaml). */
  groups_chosen: v.optional(v.boolean(), false),
  creation_date: v.pipe(v.string(), v.isoTimestamp()),
  lifetime: v.pipe(v.number(), v.integer(), v.minValue(1)),
  expiry_date: v.optional(v.string()),
});

const StateFileSchema = v.strictObject({
  version: v.literal(STATE_VERSION),
  saved_at: v.optional(v.string()),
  targets: v.array(v.unknown()),
});

/**
 * Replaces `path` with `text` so that a crash at any moment leaves either the old file or the
 * new one, never a mix: write a temporary file in the same directory (same filesystem, so the
 * rename is atomic), fsync it, rename it over, then fsync the directory so the rename is durable.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${++tempCounter}.tmp`);
  try {
    const file = await open(temp, "w", 0o644);
    try {
      await file.writeFile(text, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}
let tempCounter = 0;

// --- the API ---

/** Whether `hostname` resolves in `family`; the first address, or undefined. */
export type Lookup = (hostname: string, family: AddressFamily) => Promise<string | undefined>;

/**
 * The system resolver, bounded by {@link LOOKUP_TIMEOUT_MS}. IP literals and localhost are
 * answered without asking it.
 */
export const systemLookup: Lookup = async (hostname, family) => {
  const version = isIP(hostname);
  if (version !== 0) return (version === 4) === (family === "ipv4") ? hostname : undefined;
  if (hostname.toLowerCase() === "localhost") return family === "ipv4" ? "127.0.0.1" : "::1";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${LOOKUP_TIMEOUT_MS} ms`)), LOOKUP_TIMEOUT_MS);
  });
  try {
    const found = await Promise.race([dnsLookup(hostname, { family: family === "ipv4" ? 4 : 6 }), timeout]);
    return found.address;
  } finally {
    clearTimeout(timer);
  }
};

export interface ApiDeps {
  /** Hands the inventory's whole list to the prober. */
  readonly publish: Publish;
  /** Absolute path of the state file. */
  readonly statePath: string;
  /** A failure recovered from (state file unreadable or unwritable): counted by the prober. */
  readonly reportError: (message: string, fields?: LogFields) => void;
  readonly log?: (level: LevelName, message: string, fields?: LogFields) => void;
  /** Default {@link systemLookup}. */
  readonly lookup?: Lookup;
  /** ms since the epoch. Default Date.now. */
  readonly now?: () => number;
  /** The inventory's name, for the targets' description "from_<name>, owner <owner>". Default api. */
  readonly name?: string;
}

export interface Api {
  /** Answers one request; never throws, never answers 5xx to bad input. */
  fetch(request: Request): Promise<Response>;
  /** The targets held now, as GET shows them. */
  targets(): ApiTargetView[];
  /** The list last published. */
  published(): readonly unknown[];
  /** Drops expired targets (also done by a timer and before every request). */
  sweep(): void;
  /** Stops the timer and waits for the last state file write. */
  close(): Promise<void>;
}

const COMMON_HEADERS = { "x-content-type-options": "nosniff", "cache-control": "no-store" } as const;

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...COMMON_HEADERS, ...headers },
  });
}

/** An error answer: `error` says it all; `field` and `expected` are there for programs. */
function fail(
  status: number,
  error: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  // The original answered with an x-error header; keep it for clients that read it. Header values
  // are bytes: anything but printable ASCII (an echoed hostname, say) becomes "?".
  const header = error.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
  return json(status, { error, ...extra }, { "x-error": header, ...headers });
}

function invalid(problems: readonly ValueProblem[], status = 400): Response {
  const first = problems[0] ?? { path: "", message: "the body is not valid", expected: "" };
  const extra: Record<string, unknown> = {};
  // A missing field is reported at the map that lacks it (path ""), as in config files; the
  // field at fault is the one named by load.ts's "<name> is required".
  const field = first.path || /^(\w+) is required\b/.exec(first.message)?.[1];
  if (field) extra.field = field;
  if (first.expected) extra.expected = first.expected;
  extra.problems = problems.map((p) => ({ field: p.path, message: p.message, expected: p.expected }));
  return fail(status, formatProblem(first), extra);
}

type BodyResult = { ok: true; value: unknown } | { ok: false; response: Response };

/** Reads at most {@link MAX_BODY_BYTES} of the body, whatever the client declares or streams. */
async function readJsonBody(request: Request): Promise<BodyResult> {
  const tooLarge = () => ({
    ok: false as const,
    response: fail(413, `the body is larger than ${MAX_BODY_BYTES} bytes`, { limit: MAX_BODY_BYTES }),
  });
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared.trim()) > MAX_BODY_BYTES) return tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > MAX_BODY_BYTES) {
          // The client may be gone already; the answer is 413 either way.
          await reader.cancel().catch(() => undefined);
          return tooLarge();
        }
        chunks.push(value);
      }
    } catch (error) {
      return { ok: false, response: fail(400, `the body could not be read: ${describe(error)}`) };
    }
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks, size));
  } catch {
    return { ok: false, response: fail(400, "the body is not UTF-8 text", { expected: "a JSON object" }) };
  }
  if (text.trim() === "") return { ok: false, response: fail(400, "the body is empty", { expected: "a JSON object" }) };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, response: fail(400, `the body is not valid JSON: ${describe(error)}`, { expected: "a JSON object" }) };
  }
}

type Handler = (request: Request, url: URL) => Promise<Response> | Response;

/**
 * The API over a config and its dependencies: loads the state file, publishes once, and answers
 * requests through `fetch`.
 */
export async function createApi(config: ApiConfig, deps: ApiDeps): Promise<Api> {
  const now = deps.now ?? Date.now;
  const lookup = deps.lookup ?? systemLookup;
  const log = deps.log ?? (() => undefined);
  const name = deps.name ?? "api";
  const tokenDigest = digest(config.token);
  const postSchema = targetRequestSchema(config);

  let targets: ApiTarget[] = [];
  let lastPublished: readonly unknown[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let writing: Promise<void> = Promise.resolve();
  let closed = false;

  const groupsOf = (t: ApiTarget) => t.groups ?? config.groups;
  const view = (t: ApiTarget): ApiTargetView => ({
    owner: t.owner,
    hostname: t.hostname,
    type: t.type,
    dst_port: t.dst_port,
    ip_payload_size: t.ip_payload_size,
    address_family: t.address_family,
    groups: [...groupsOf(t)],
    creation_date: new Date(t.created).toISOString(),
    lifetime: t.lifetime,
    expiry_date: new Date(expiryMs(t)).toISOString(),
  });

  /** What the prober receives: the fields InventoryTargetSchema knows, nothing of the API's own. */
  const published = (t: ApiTarget): Record<string, unknown> => ({
    hostname: t.hostname,
    type: t.type,
    ...(t.type === "ICMPping" ? {} : { dst_port: t.dst_port }),
    ...(t.ip_payload_size === 0 ? {} : { ip_payload_size: t.ip_payload_size }),
    address_family: t.address_family,
    groups: [...groupsOf(t)],
    nb_packets: config.nb_packets,
    // The original's API targets were labelled state="in production": dashboards may match it.
    state: "in production",
    description: `from_${name}, owner ${t.owner}`,
    creation_date: new Date(t.created).toISOString(),
    lifetime: t.lifetime,
  });

  const publishAll = () => {
    lastPublished = targets.map(published);
    deps.publish(lastPublished);
  };

  /** Queues a write of the list as it is now; resolves to an error text when it failed. */
  const persist = (): Promise<string | undefined> => {
    const snapshot = JSON.stringify(
      {
        version: STATE_VERSION,
        saved_at: new Date(now()).toISOString(),
        targets: targets.map((t) => ({ ...view(t), groups_chosen: t.groups !== undefined })),
      },
      null,
      2,
    );
    const done = writing.then(() => writeFileAtomic(deps.statePath, `${snapshot}\n`));
    writing = done.catch(() => undefined);
    return done.then(
      () => undefined,
      (error: unknown) => {
        const message = `cannot write the state file: ${describe(error)}`;
        deps.reportError(message, { state_file: deps.statePath });
        return message;
      },
    );
  };

  const arm = () => {
    clearTimeout(timer);
    timer = undefined;
    if (closed || targets.length === 0) return;
    // A loop, not Math.min(...list): a spread of 100,000 arguments can overflow the stack.
    let next = Infinity;
    for (const t of targets) next = Math.min(next, expiryMs(t));
    const delay = Math.max(0, Math.min(next - now(), MAX_TIMER_MS));
    timer = setTimeout(sweep, delay);
    timer.unref?.();
  };

  /** The targets changed: tell the prober, save them, and set the timer for the next expiry. */
  const changed = (): Promise<string | undefined> => {
    publishAll();
    arm();
    return persist();
  };

  function sweep(): void {
    const at = now();
    const expired = targets.filter((t) => expiryMs(t) <= at);
    if (expired.length === 0) {
      arm();
      return;
    }
    targets = targets.filter((t) => expiryMs(t) > at);
    for (const t of expired) log("INFO", "API target expired", fields(t));
    void changed();
  }

  // --- start: the state file, then one publish ---

  const loaded = await loadState(deps.statePath, config, now(), deps.reportError, log);
  targets = loaded.targets;
  publishAll();
  arm();
  if (loaded.rewrite) await persist();

  // --- routes ---

  const authorized = (request: Request): Response | undefined => {
    const given = request.headers.get("apikey");
    if (given === null) return fail(401, "the apikey header is missing", { field: "apikey" });
    if (given === "") return fail(401, "the apikey header is empty", { field: "apikey" });
    // Digests of equal length make timingSafeEqual applicable whatever the given length, and
    // the time taken says nothing about how much of the token matched.
    if (!crypto.timingSafeEqual(digest(given), tokenDigest)) return fail(401, "wrong apikey", { field: "apikey" });
    return undefined;
  };

  const getTargets: Handler = (_request, url) => {
    const filters: Partial<Record<QueryFilter, string>> = {};
    for (const key of new Set(url.searchParams.keys())) {
      if (!(QUERY_FILTERS as readonly string[]).includes(key)) {
        return fail(400, `${key}: unknown query parameter`, { field: key, expected: `one of ${QUERY_FILTERS.join(", ")}` });
      }
      const values = url.searchParams.getAll(key);
      if (values.length > 1) return fail(400, `${key}: given ${values.length} times`, { field: key, expected: "one value" });
      filters[key as QueryFilter] = values[0] ?? "";
    }
    const family = filters.address_family;
    if (family && !(ADDRESS_FAMILIES as readonly string[]).includes(family)) {
      return fail(400, `address_family: ${JSON.stringify(family)} is not allowed (ipv4 or ipv6)`, {
        field: "address_family",
        expected: "ipv4 or ipv6",
      });
    }
    const host = filters.hostname?.toLowerCase();
    const list = targets.filter(
      (t) =>
        (!host || t.hostname.toLowerCase() === host) &&
        (!filters.owner || t.owner === filters.owner) &&
        (!family || t.address_family === family),
    );
    return json(200, list.map(view));
  };

  const postTarget: Handler = async (request) => {
    const body = await readJsonBody(request);
    if (!body.ok) return body.response;
    const checked = validateValue(postSchema, body.value);
    if (!checked.ok) return invalid(checked.problems);
    const asked = checked.value;
    const wanted = lifetimeSeconds(asked.lifetime) ?? config.target_lifetime;
    const lifetime = Math.min(wanted, config.max_target_lifetime);
    const candidate: ApiTarget = {
      owner: asked.owner,
      hostname: asked.hostname,
      type: asked.type,
      dst_port: asked.dst_port,
      ip_payload_size: asked.ip_payload_size,
      address_family: asked.address_family,
      ...(asked.groups ? { groups: [...new Set(asked.groups)] } : {}),
      created: now(),
      lifetime,
    };
    // A last check that the prober will take it: nothing the API accepts may be refused there.
    const fit = validateValue(InventoryTargetSchema, published(candidate));
    if (!fit.ok) return invalid(fit.problems);

    const refused = conflict(candidate);
    if (refused) return refused;
    let address: string | undefined;
    let why = "";
    try {
      address = await lookup(candidate.hostname, candidate.address_family);
    } catch (error) {
      why = `: ${describe(error)}`;
    }
    if (address === undefined) {
      const family = candidate.address_family;
      return fail(422, `hostname: ${JSON.stringify(candidate.hostname)} does not resolve to an ${family} address${why}`, {
        field: "hostname",
        expected: `a name with an ${family} address, or address_family set to the family it has`,
      });
    }
    // The lookup let other requests in: what was free may be taken now.
    sweep();
    const late = conflict(candidate);
    if (late) return late;

    const target: ApiTarget = { ...candidate, created: now() };
    targets = [...targets, target];
    log("INFO", "API target added", fields(target));
    const warnings: string[] = [];
    if (wanted > lifetime) warnings.push(`lifetime cut from ${wanted} s to max_target_lifetime, ${lifetime} s`);
    const unsaved = await changed();
    if (unsaved) warnings.push(`${unsaved}; the target is probed but will not survive a restart`);
    return json(201, { ...view(target), ...(warnings.length > 0 ? { warnings } : {}) });
  };

  const deleteTarget: Handler = async (request) => {
    const body = await readJsonBody(request);
    if (!body.ok) return body.response;
    const checked = validateValue(TargetKeysSchema, body.value);
    if (!checked.ok) return invalid(checked.problems);
    const keys = checked.value;
    const gone = targets.filter((t) => matchesKeys(t, keys));
    if (gone.length === 0) return fail(404, "no target matches", { expected: "the keys of a target GET /api/targets lists" });
    targets = targets.filter((t) => !matchesKeys(t, keys));
    for (const t of gone) log("INFO", "API target deleted", fields(t));
    const unsaved = await changed();
    return json(200, { deleted: gone.map(view), ...(unsaved ? { warnings: [unsaved] } : {}) });
  };

  let openApiText: string | undefined;
  const openApi: Handler = () => {
    openApiText ??= JSON.stringify(
      openApiDocument({
        version: VERSION,
        targetRequest: toJsonSchema(postSchema as SchemaNode),
        targetKeys: toJsonSchema(TargetKeysSchema as SchemaNode),
        lifetimeExpected: LIFETIME_EXPECTED,
        maxBodyBytes: MAX_BODY_BYTES,
      }),
      null,
      2,
    );
    return new Response(openApiText, { headers: { "content-type": "application/json; charset=utf-8", ...COMMON_HEADERS } });
  };

  const ui: Handler = () =>
    new Response(UI_PAGE, {
      headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": UI_CSP, ...COMMON_HEADERS },
    });

  // Relative, so that the page works behind a proxy that mounts the API under a prefix.
  const toUi: Handler = () => new Response(null, { status: 308, headers: { location: "ui/", ...COMMON_HEADERS } });

  const ROUTES: Record<string, { readonly auth: boolean; readonly methods: Readonly<Record<string, Handler>> }> = {
    "/api/targets": { auth: true, methods: { GET: getTargets } },
    "/api/target": { auth: true, methods: { POST: postTarget, DELETE: deleteTarget } },
    "/api/openapi.json": { auth: false, methods: { GET: openApi } },
    "/api/ui/": { auth: false, methods: { GET: ui } },
    "/api/ui": { auth: false, methods: { GET: toUi } },
  };

  function conflict(candidate: ApiTarget): Response | undefined {
    const key = identity(candidate);
    const existing = targets.find((t) => identity(t) === key);
    if (existing) {
      return fail(409, "the target already exists", {
        field: "hostname",
        expected: "a target differing in hostname, address_family, type, dst_port or ip_payload_size",
        target: view(existing),
      });
    }
    if (targets.length >= config.max_targets) {
      return fail(409, `the API already holds max_targets (${config.max_targets}) targets`, {
        expected: "DELETE a target, or wait for one to expire",
      });
    }
    return undefined;
  }

  async function route(request: Request): Promise<Response> {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return fail(400, "the request URL is not valid");
    }
    const entry = Object.hasOwn(ROUTES, url.pathname) ? ROUTES[url.pathname] : undefined;
    if (!entry) return fail(404, `no such path: ${url.pathname}`, { expected: `one of ${Object.keys(ROUTES).join(", ")}` });
    const handler = Object.hasOwn(entry.methods, request.method) ? entry.methods[request.method] : undefined;
    const allowed = Object.keys(entry.methods).join(", ");
    if (!handler) {
      return fail(405, `method ${request.method} is not allowed on ${url.pathname}`, { expected: allowed }, { allow: allowed });
    }
    if (entry.auth) {
      const refused = authorized(request);
      if (refused) return refused;
      sweep();
    }
    return handler(request, url);
  }

  return {
    async fetch(request) {
      try {
        return await route(request);
      } catch (error) {
        // A bug of ours, not the client's: say so, keep serving, and let the prober count it.
        deps.reportError(`API request failed: ${describe(error)}`, { method: request.method });
        return fail(500, "internal error");
      }
    },
    targets: () => targets.map(view),
    published: () => lastPublished,
    sweep,
    async close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      await writing;
    },
  };
}

/**
 * Reads the state file. Expired targets are dropped, lifetimes re-capped by the current
 * max_target_lifetime, chosen groups narrowed to the current api.yaml's. A file that cannot be
 * understood is reported, moved aside (kept for a person to look at) and the API starts empty.
 */
async function loadState(
  path: string,
  config: ApiConfig,
  at: number,
  reportError: (message: string, fields?: LogFields) => void,
  log: (level: LevelName, message: string, fields?: LogFields) => void,
): Promise<{ targets: ApiTarget[]; rewrite: boolean }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return { targets: [], rewrite: false };
    reportError(`cannot read the state file: ${describe(error)}; starting with no API targets`, { state_file: path });
    return { targets: [], rewrite: false };
  }

  const setAside = async (why: string) => {
    const aside = `${path}.corrupt-${new Date(at).toISOString().replace(/[:.]/g, "-")}`;
    let where = `moved to ${aside}`;
    try {
      await rename(path, aside);
    } catch (error) {
      where = `could not be moved aside: ${describe(error)}`;
    }
    reportError(`state file is corrupt (${why}); it was ${where}`, { state_file: path });
  };

  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    await setAside(`not JSON: ${describe(error)}`);
    return { targets: [], rewrite: true };
  }
  const file = validateValue(StateFileSchema, data);
  if (!file.ok) {
    await setAside(file.problems.slice(0, 3).map(formatProblem).join("; "));
    return { targets: [], rewrite: true };
  }

  const targets: ApiTarget[] = [];
  const seen = new Set<string>();
  const bad: string[] = [];
  let rewrite = false;
  file.value.targets.forEach((raw, i) => {
    const entry = validateValue(StateTargetSchema, raw);
    if (!entry.ok) {
      bad.push(`targets[${i}]: ${formatProblem(entry.problems[0] ?? { path: "", message: "invalid", expected: "" })}`);
      return;
    }
    const e = entry.value;
    // What a POST refuses across fields: the prober would refuse the whole list for one of these.
    const across = payloadProblem(e) ?? familyProblem(e);
    if (across) {
      const text = splitIssueText(across);
      bad.push(`targets[${i}]: ${text ? `${text.problem} (${text.expected})` : across}`);
      return;
    }
    const lifetime = Math.min(e.lifetime, config.max_target_lifetime);
    const groups = e.groups_chosen ? e.groups.filter((g) => config.groups.includes(g)) : undefined;
    const target: ApiTarget = {
      owner: e.owner,
      hostname: e.hostname,
      type: e.type,
      dst_port: e.dst_port,
      ip_payload_size: e.ip_payload_size,
      address_family: e.address_family,
      ...(groups && groups.length > 0 ? { groups } : {}),
      created: Date.parse(e.creation_date),
      lifetime,
    };
    if (groups && groups.length < e.groups.length) {
      rewrite = true;
      const left = groups.length > 0 ? groups.join(",") : `all of api.yaml's (${config.groups.join(",")})`;
      log("WARNING", "API target's groups are no longer all in api.yaml", { ...fields(target), groups: left });
    }
    if (lifetime !== e.lifetime) rewrite = true;
    if (expiryMs(target) <= at) {
      rewrite = true;
      return;
    }
    const key = identity(target);
    if (seen.has(key)) {
      rewrite = true;
      return;
    }
    seen.add(key);
    targets.push(target);
  });
  if (bad.length > 0) {
    await setAside(`${bad.length} invalid target(s): ${bad.slice(0, 3).join("; ")}`);
    rewrite = true;
  }
  if (targets.length > config.max_targets) {
    log("WARNING", "the state file holds more targets than max_targets: all kept, no more accepted until some go", {
      targets: targets.length,
      max_targets: config.max_targets,
    });
  }
  log("INFO", "API targets loaded from the state file", { targets: targets.length, state_file: path });
  return { targets, rewrite };
}

// --- the inventory ---

/**
 * The inventory's entry point: `options` is api.yaml's content as {@link loadApiConfig} returns
 * it (checked again here). Resolves once the server listens; stops it when `context.signal` aborts.
 */
export const start: InventoryStart = async (name, options, publish, context) => {
  const checked = validateValue(ApiConfigSchema, options);
  if (!checked.ok) throw new Error(`invalid api options: ${checked.problems.map(formatProblem).join("; ")}`);
  const config = checked.value;
  const statePath = resolve(context.baseDir, config.state_file);
  const api = await createApi(config, { name, publish, statePath, reportError: context.reportError, log: context.log });
  if (context.signal.aborted) {
    await api.close();
    return;
  }
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: config.listen_address,
      port: config.listen_port,
      development: false,
      maxRequestBodySize: SERVER_BODY_BACKSTOP_BYTES,
      fetch: (request) => api.fetch(request),
    });
  } catch (error) {
    await api.close();
    throw new Error(`cannot listen on ${config.listen_address} port ${config.listen_port}: ${describe(error)}`);
  }
  context.log("INFO", "targets API listening", {
    address: config.listen_address,
    port: server.port,
    targets: api.targets().length,
    state_file: statePath,
  });
  context.signal.addEventListener(
    "abort",
    () => {
      void server.stop(true);
      void api.close();
    },
    { once: true },
  );
};

// --- the page ---

/**
 * bun-types declares `*.html` imports as an HTMLBundle (the form without an import attribute);
 * `with { type: "text" }` makes it the file's text, embedded in the compiled binary.
 */
const UI_PAGE: string = uiPage as unknown as string;

/**
 * The page's inline script and style are allowed by their hashes and nothing else may load:
 * the browser itself guarantees the page fetches nothing but this origin.
 */
const UI_CSP = (() => {
  const hashes = (tag: string) =>
    [...UI_PAGE.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))]
      .map((m) => `'sha256-${crypto.createHash("sha256").update(m[1] ?? "").digest("base64")}'`)
      .join(" ");
  return [
    "default-src 'none'",
    `script-src ${hashes("script")}`,
    `style-src ${hashes("style")}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
})();

// --- internal ---

function digest(text: string): Buffer {
  return crypto.createHash("sha256").update(text, "utf8").digest();
}

function fields(t: ApiTarget): LogFields {
  return {
    owner: t.owner,
    hostname: t.hostname,
    type: t.type,
    dst_port: t.dst_port,
    address_family: t.address_family,
    lifetime: t.lifetime,
  };
}

function errorCode(error: unknown): unknown {
  return typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
