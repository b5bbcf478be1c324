/**
 * The targets API's targets: the fields a request body gives (POST and DELETE schemas, and the
 * checks across fields), the target as the API holds it and as it shows it, and when two targets
 * are the same. Apart from api.ts because the state file (api-state.ts) checks its entries with
 * the same fields and checks, and keys them the same way.
 */
import { isIP } from "node:net";
import * as v from "valibot";
import {
  ADDRESS_FAMILIES,
  hints,
  HOSTNAME_PATTERN,
  issueText,
  L4_HEADER_BYTES,
  MAX_IP_PAYLOAD_BYTES,
  TARGET_TYPES,
  type AddressFamily,
  type TargetType,
} from "../config/schema.ts";
import type { LogFields } from "../log.ts";
import { destinationPortText, hasPorts, headerBytesText } from "../probes/registry.ts";
import { destinationForm } from "../targets/destinations.ts";
import { lifetimeInput, type ApiConfig } from "./api-config.ts";

/** What a POST defaults to, as the original did. */
const TARGET_REQUEST_DEFAULTS = {
  type: "ICMPping",
  dst_port: 80,
  ip_payload_size: 0,
  address_family: "ipv4",
} as const satisfies { type: TargetType; dst_port: number; ip_payload_size: number; address_family: AddressFamily };

// --- request bodies ---

/** Free text, but one line of it: it lands in the target's description and in logs. */
const OWNER_PATTERN = /^(?=.*\S)[^\p{Cc}]{1,128}$/u;
const OWNER_EXPECTED = "1 to 128 characters, not all spaces, no control characters";
const HOSTNAME_EXPECTED = "a hostname or an IP address: up to 253 letters, digits, ., _, - or :";
const PAYLOAD_EXPECTED =
  `0 for the bare L4 header, else an integer from the type's header (${headerBytesText()}) to ` +
  `${MAX_IP_PAYLOAD_BYTES.ipv4} over IPv4 or ${MAX_IP_PAYLOAD_BYTES.ipv6} over IPv6`;

export const targetFields = {
  owner: v.pipe(
    v.string(),
    v.regex(OWNER_PATTERN),
    hints({ noun: "a valid owner", expected: OWNER_EXPECTED }),
    v.description("Who asked for the target (a person or team): shown by GET, filtered on, and in the target's description."),
  ),
  hostname: v.pipe(
    v.string(),
    v.regex(HOSTNAME_PATTERN),
    // 198.18.0.1-5 fits the pattern but is an address range, which the prober probes only with
    // is_subnet, a field the API does not have.
    v.check((hostname) => destinationForm(hostname) !== "range"),
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
    v.description(destinationPortText()),
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
export function payloadProblem(t: { type?: TargetType; ip_payload_size?: number; address_family?: AddressFamily }): string | undefined {
  const size = t.ip_payload_size;
  if (size === undefined || size === 0) return undefined;
  const min = t.type ? L4_HEADER_BYTES[t.type] : Math.min(...Object.values(L4_HEADER_BYTES));
  const max = t.address_family ? MAX_IP_PAYLOAD_BYTES[t.address_family] : MAX_IP_PAYLOAD_BYTES.ipv6;
  if (size >= min && size <= max) return undefined;
  const what = `${t.type ? ` for ${t.type}` : ""}${t.address_family ? ` over ${t.address_family}` : ""}`;
  return issueText(`${size} is out of range${what}`, `0 (the bare header) or an integer from ${min} to ${max}`);
}

/** An IP literal of the other family can never resolve in this one. */
export function familyProblem(t: { hostname: string; address_family?: AddressFamily }): string | undefined {
  const version = isIP(t.hostname);
  const literal: AddressFamily | undefined = version === 4 ? "ipv4" : version === 6 ? "ipv6" : undefined;
  if (literal === undefined || t.address_family === undefined || literal === t.address_family) return undefined;
  return issueText(
    `${JSON.stringify(t.hostname)} is an ${literal === "ipv4" ? "IPv4" : "IPv6"} address, not ${t.address_family}`,
    `an address or a name of ${t.address_family}, or address_family: ${literal}`,
  );
}

/** POST /api/target. Built per config: the groups a body may name are api.yaml's. */
export function targetRequestSchema(config: ApiConfig) {
  return v.pipe(
    v.strictObject({
      owner: targetFields.owner,
      hostname: targetFields.hostname,
      type: v.optional(targetFields.type, TARGET_REQUEST_DEFAULTS.type),
      dst_port: v.optional(targetFields.dst_port, TARGET_REQUEST_DEFAULTS.dst_port),
      ip_payload_size: v.optional(targetFields.ip_payload_size, TARGET_REQUEST_DEFAULTS.ip_payload_size),
      address_family: v.optional(targetFields.address_family, TARGET_REQUEST_DEFAULTS.address_family),
      lifetime: v.optional(
        lifetimeInput(
          `How long the target is probed. Default target_lifetime (${config.target_lifetime} s); ` +
            `longer than max_target_lifetime (${config.max_target_lifetime} s) is cut to it.`,
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
export const TargetKeysSchema = v.pipe(
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

// --- targets ---

/** One target the API holds. */
export interface ApiTarget {
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

export const expiryMs = (t: ApiTarget) => t.created + t.lifetime * 1000;

/**
 * What makes two targets the same (the original's UNIQUE_KEYS). Hostnames compare without case,
 * as DNS does; a target of a type without ports (ICMPping) has none, so dst_port does not tell two of them apart.
 */
export function identity(t: Pick<ApiTarget, "hostname" | "address_family" | "type" | "dst_port" | "ip_payload_size">): string {
  const port = hasPorts(t.type) ? String(t.dst_port) : "";
  return [t.hostname.toLowerCase(), t.address_family, t.type, port, t.ip_payload_size].join("\u0000");
}

export function matchesKeys(t: ApiTarget, k: TargetKeys): boolean {
  return (
    t.owner === k.owner &&
    t.hostname.toLowerCase() === k.hostname.toLowerCase() &&
    (k.type === undefined || t.type === k.type) &&
    (k.dst_port === undefined || !hasPorts(t.type) || t.dst_port === k.dst_port) &&
    (k.ip_payload_size === undefined || t.ip_payload_size === k.ip_payload_size) &&
    (k.address_family === undefined || t.address_family === k.address_family)
  );
}

export function logFields(t: ApiTarget): LogFields {
  return {
    owner: t.owner,
    hostname: t.hostname,
    type: t.type,
    dst_port: t.dst_port,
    address_family: t.address_family,
    lifetime: t.lifetime,
  };
}
