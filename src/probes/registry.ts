/**
 * Every probe type, by its config name. Adding a type is a module in this directory, one line
 * here and its variant in the config schema: the `satisfies` below fails to compile while a type
 * of the config has no module or a module lacks a part.
 */
// Types only: the schema imports this registry (header sizes, port rules) to build its variants.
import type { TargetType } from "../config/schema.ts";
import { icmpPing } from "./icmp.ts";
import type { ProbeType } from "./probe-type.ts";
import { tcpSyn } from "./tcpsyn.ts";
import { twampLight } from "./twamp-light.ts";
import { udpUnreachable } from "./udp-unreachable.ts";

/** A module for each type of the config, its `type` naming its own key. */
export type ProbeRegistry = { readonly [T in TargetType]: ProbeType & { readonly type: T } };

export const PROBE_TYPES = {
  TCPsyn: tcpSyn,
  ICMPping: icmpPing,
  UDPunreachable: udpUnreachable,
  TWAMPlight: twampLight,
} as const satisfies ProbeRegistry;

/**
 * Every type once: a type's index here is its code inside the engine (a number per slot and per
 * target, compared per captured frame).
 */
export const PROBE_TYPE_LIST: readonly ProbeType[] = Object.values(PROBE_TYPES);

/** The code of a type inside the engine. */
export const PROBE_CODE = Object.fromEntries(PROBE_TYPE_LIST.map((t, i) => [t.type, i])) as Readonly<Record<TargetType, number>>;

export function probeType(type: TargetType): ProbeType {
  return PROBE_TYPES[type];
}

/** The type `probe --type TEXT` names (its short name, config name or an alias, any case), or null. */
export function probeTypeByName(text: string): ProbeType | null {
  const t = text.toLowerCase();
  return PROBE_TYPE_LIST.find((p) => p.name === t || p.type.toLowerCase() === t || p.aliases.includes(t)) ?? null;
}

/** Short names for help texts: "tcpsyn, icmp or udp". */
export function probeTypeNames(): string {
  const names = PROBE_TYPE_LIST.map((p) => p.name);
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`;
}

/** The destination port probes of `type` go to: the configured one, the type's default, or 0 for a type without ports. */
export function destinationPort(type: TargetType, configured: number | undefined): number {
  const rule = probeType(type).port;
  if (rule.use === "none") return 0;
  if (rule.use === "default") return configured ?? rule.value;
  // The schema requires it: a target without one never reaches the planner.
  if (configured === undefined) throw new Error(`a ${type} target needs dst_port`);
  return configured;
}

/** Whether probes of `type` have ports (a destination port, source ports rotated over). */
export function hasPorts(type: TargetType): boolean {
  return probeType(type).port.use !== "none";
}

/** "TCPsyn and UDPunreachable" */
function listText(names: string[]): string {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/** What dst_port means to each type, for schema and API descriptions. */
export function destinationPortText(): string {
  const required = PROBE_TYPE_LIST.flatMap((t) => (t.port.use === "required" ? [t.port.note ? `${t.type} (${t.port.note})` : t.type] : []));
  const defaulted = PROBE_TYPE_LIST.flatMap((t) => (t.port.use === "default" ? [`${t.type} (default ${t.port.value})`] : []));
  const none = PROBE_TYPE_LIST.filter((t) => t.port.use === "none").map((t) => t.type);
  const parts = [`required for ${listText(required)}`];
  if (defaulted.length > 0) parts.push(`optional for ${listText(defaulted)}`);
  if (none.length > 0) parts.push(`ignored by ${listText(none)}`);
  return `Destination port: ${parts.join("; ")}.`;
}

/** "TCPsyn 20, ICMPping 8, UDPunreachable 8" */
export function headerBytesText(): string {
  return PROBE_TYPE_LIST.map((t) => `${t.type} ${t.headerBytes}`).join(", ");
}
