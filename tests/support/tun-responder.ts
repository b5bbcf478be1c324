/**
 * A layer-3 test host and network simulator: a TUN device (no link header, DLT_RAW) behind which
 * every address of the routed prefixes answers as a real stack would: TCP SYN gets SYN-ACK on the
 * open port and RST-ACK elsewhere, ICMP/ICMPv6 echo gets a reply, UDP gets an ICMP/ICMPv6 port
 * unreachable quoting it. What the path does to each probe is programmable per host and per flow,
 * and every decision is logged (JSON lines) so tests can compare the prober's figures with what
 * really happened.
 *
 * Run as its own process (it blocks in poll):
 *   bun tests/support/tun-responder.ts --ifname NAME [--open-port 8443] [--log FILE] [--seed 1]
 *       [BEHAVIOUR OPTIONS] [--host MATCH:KEY=VALUE,...]... [--config FILE.json] [--control-port 9]
 * It prints "ready NAME" once the device exists; the caller assigns addresses and routes with ip(8).
 *
 * Behaviour options (the default for every probe; all fractions are 0..1, seeded, reproducible):
 *   --delay-ms D           fixed delay of every answer (ms)
 *   --jitter-ms J          plus a uniform random delay in [-J, +J] ms (never below 0)
 *   --loss F               drop this fraction of probes
 *   --drop-src-ports LIST  drop every probe from these source ports (one ECMP path down), e.g.
 *                          65003,65007 or 65000-65003
 *   --icmp-rate N          at most N ICMP replies (echo replies and errors) per second: a token
 *   --icmp-burst B         bucket of B tokens (default 1) refilled at N/s; the rest is dropped
 *   At most one of the following effects per answered probe, drawn with one seeded number:
 *   --duplicate F          answer twice; the copy follows after --duplicate-gap-ms G (default 0)
 *   --reorder F            hold the answer back by an extra --reorder-ms R (default 5), so that
 *                          later answers overtake it
 *   --wrong-quote F        answer with an ICMP port unreachable quoting a packet that is not the
 *                          probe: --wrong-quote-field ident (default: TCP seq, UDP IPv4 ID or IPv6
 *                          payload tag, echo sequence changed) or port (source port changed; echo
 *                          requests have no ports: same as ident)
 *   --mangle F             answer with a wrong identity field, checksums valid: TCP ack, echo
 *                          sequence, or the ident quoted by a port unreachable
 *   --truncate F           cut the answer short: to --truncate-bytes N, or by default before the
 *                          TCP flags, before the echo id/seq, or before the ports an ICMP error quotes
 *                          (the IP length field keeps the full length, as in a capture cut by a snaplen)
 *   --corrupt F            answer with a wrong L4 checksum (and IPv4 header checksum)
 *   Their sum must not exceed 1. Decisions come in this order: source-port drop, loss, effect,
 *   ICMP rate limit (a duplicate takes one token).
 *
 * Per host / per flow (repeatable; the first matching rule applies, its keys over the defaults):
 *   --host 198.18.5.3:delay=20,loss=0.1
 *   --host fd00:19:5::/64:proto=udp,src-ports=65003+65007,drop=1      (drop = loss)
 *   MATCH is an address or a prefix; keys: delay, jitter, loss|drop, drop-src-ports, duplicate,
 *   duplicate-gap, reorder, reorder-ms, wrong-quote, wrong-quote-field, mangle, truncate,
 *   truncate-bytes, corrupt, icmp-rate, icmp-burst, seed, and the flow keys proto (tcp|udp|icmp),
 *   src-ports (ports and ranges joined by +), dst-port. Lists inside a value are joined by +.
 * Or a JSON file, --config FILE: {"seed": 1, "default": {BEHAVIOUR}, "rules": [RULE...]} with the
 * camelCase names of Behaviour and Rule below (delayMs, jitterMs, loss, dropSrcPorts, ...); its
 * default's keys win over the command line's, its rules come after the --host ones.
 *
 * Runtime control (for launchers that cannot pass options, such as testnet.ts addTunHost): a UDP
 * datagram to any address behind the device, port --control-port (default 9, 0 disables), whose
 * payload is "NPSIM1 " + JSON {"op": "configure", "config": SimConfig} (replaces the whole
 * behaviour and restarts every random stream) or {"op": "sync"} (flushes the log). The answer, a
 * datagram back to the sender, is {"ok": true, "op": ..., "decisions": N}: everything received
 * before the request has been decided and written to the log. Requests longer than a datagram
 * come in acknowledged parts ({"op": "part", "id", "part", "of", "text"}). See control() below.
 *
 * Random streams: each rule has its own (loss, jitter, effect), seeded from the rule's seed (or
 * the global one) and its index, so the loss pattern of a rule depends only on its seed and the
 * order of the probes it matches, whatever else is configured.
 *
 * TWAMP-light reflector: UDP to a reflector port (--twamp-port, default 862; 0: none; or the
 * config's "twampPorts") is answered as an RFC 5357 4.2.1 stateful session-reflector would: its
 * own sequence counter per sender 5-tuple (from 0), the sender's sequence number, timestamp,
 * error estimate and TTL copied, T2 the wall clock when the probe was read, T3 the wall clock
 * just before the reflection is written to the device (so the answer's delay is the reflector's
 * hold), padded to the probe's size. Loss comes in two directions: `loss` drops the probe before
 * the reflector (forward: its counter does not advance, reason "loss"), `reverse-loss` drops the
 * reflection after the counter advanced (reason "reverse-loss"). Both are logged with the
 * sender's sequence number as the ident and, once counted, the reflector's (reflectorSeq).
 *
 * Log: one JSON line per probe received (TunDecision): src, dst, proto, srcPort, dstPort, ident
 * (TCP: the SYN's sequence number; ICMP: id << 16 | seq; UDP: IPv4 ID or IPv6 payload tag), rule
 * (-1: the default), action (answer, drop, duplicate, reorder, wrong-quote, mangle, truncate,
 * corrupt) and its details: delayMs (the delay applied to the first reply), reason (drop:
 * src-port, loss, icmp-rate), gapMs, extraMs, field, bytes. Lines are written in batches.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { createSocket } from "node:dgram";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { EXIT_FAILURE, EXIT_OK } from "../../src/cli/exit.ts";
import { finish, pseudoHeaderSum, sum16 } from "../../src/packet/checksum.ts";
import {
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_PORT_UNREACH,
  ICMP4_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PORT_UNREACH,
  ICMP6_UNREACH,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LINK_RAW,
  PacketSpec,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  put16,
  put32,
  writePacket,
} from "../../src/packet/build.ts";
import { LINKTYPE_RAW, PARSE_OK, ParsedFrame, parseFrame } from "../../src/packet/parse.ts";
import { formatAddress, parseAddress, type Family } from "../../src/packet/address.ts";
import { NTP_UNIX_OFFSET, REFLECTOR_HEADER as TWAMP_REFLECTOR_HEADER } from "../../src/probes/twamp-light.ts";

// ---------------------------------------------------------------------------------------------
// Configuration

export type WrongQuoteField = "ident" | "port";

/** What the path does to the probes of one rule. */
export interface Behaviour {
  delayMs: number;
  jitterMs: number;
  loss: number;
  dropSrcPorts: number[];
  duplicate: number;
  duplicateGapMs: number;
  reorder: number;
  reorderMs: number;
  wrongQuote: number;
  wrongQuoteField: WrongQuoteField;
  mangle: number;
  truncate: number;
  /** Bytes kept by a truncation; 0: the default cut of each kind of answer. */
  truncateBytes: number;
  corrupt: number;
  /** TWAMP-light reflector ports only: fraction of reflections dropped on the way back. */
  reverseLoss: number;
  /** ICMP replies per second; 0: unlimited. */
  icmpRate: number;
  icmpBurst: number;
}

export const BASE_BEHAVIOUR: Readonly<Behaviour> = Object.freeze({
  delayMs: 0,
  jitterMs: 0,
  loss: 0,
  dropSrcPorts: [],
  duplicate: 0,
  duplicateGapMs: 0,
  reorder: 0,
  reorderMs: 5,
  wrongQuote: 0,
  wrongQuoteField: "ident",
  mangle: 0,
  truncate: 0,
  truncateBytes: 0,
  corrupt: 0,
  reverseLoss: 0,
  icmpRate: 0,
  icmpBurst: 1,
});

/** A per-host / per-flow rule: what it matches, and the behaviour it sets over the default. */
export interface Rule extends Partial<Behaviour> {
  /** Destination address or prefix ("198.18.5.3", "fd00:19:5::/64"); absent: any. */
  dst?: string;
  proto?: "tcp" | "udp" | "icmp";
  /** Source ports: a list, or text such as "65000-65003+65007"; absent: any. */
  srcPorts?: number[] | string;
  dstPort?: number;
  /** Seed of this rule's random streams (default: the config's). */
  seed?: number;
}

export interface SimConfig {
  seed?: number;
  default?: Partial<Behaviour>;
  rules?: Rule[];
  /** UDP ports answered by the TWAMP-light reflector (default: the command line's, 862). */
  twampPorts?: number[];
}

export type Action = "answer" | "drop" | "duplicate" | "reorder" | "wrong-quote" | "mangle" | "truncate" | "corrupt";
export type DropReason = "src-port" | "loss" | "icmp-rate" | "reverse-loss";

/** One line of the log. */
export interface TunDecision {
  src: string;
  dst: string;
  /** IP protocol number of the probe (6, 17, 1 or 58). */
  proto: number;
  srcPort: number;
  dstPort: number;
  /** TCP: the SYN's sequence number; ICMP: id << 16 | seq; UDP: IPv4 ID or IPv6 payload tag (to a reflector port: the sender's sequence number). */
  ident: number;
  /** TWAMP-light: the reflector's sequence number of this probe (absent: dropped before it). */
  reflectorSeq?: number;
  /** Index of the rule that applied; -1: the default behaviour. */
  rule: number;
  action: Action;
  reason?: DropReason;
  /** Delay of the (first) reply, ms, as scheduled by the responder's clock. */
  delayMs?: number;
  /** duplicate: delay of the copy after the first reply, ms. */
  gapMs?: number;
  /** reorder: the extra hold included in delayMs, ms. */
  extraMs?: number;
  /** wrong-quote: ident | port; mangle: ack | seq | quote-ident. */
  field?: string;
  /** truncate: bytes sent, and the full length. */
  bytes?: number;
  of?: number;
}

function fraction(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0 || v > 1) throw new Error(`${name}: ${v} is not a fraction in 0..1`);
  return v;
}

function nonNegative(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name}: ${v} is not a number >= 0`);
  return v;
}

/** "65000-65003+65007" or "65000,65001" (either separator) into a list of ports. */
export function parsePorts(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(/[+,]/).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`bad port list "${text}"`);
    const a = Number(m[1]);
    const z = m[2] === undefined ? a : Number(m[2]);
    if (a > 65535 || z > 65535 || z < a) throw new Error(`bad port range "${part}"`);
    for (let p = a; p <= z; p++) out.push(p);
  }
  return out;
}

/** Behaviour keys of the text forms (--host, and the command line without the leading --). */
const TEXT_KEYS: Record<string, keyof Behaviour> = {
  delay: "delayMs",
  "delay-ms": "delayMs",
  jitter: "jitterMs",
  "jitter-ms": "jitterMs",
  loss: "loss",
  drop: "loss",
  "drop-src-ports": "dropSrcPorts",
  duplicate: "duplicate",
  "duplicate-gap": "duplicateGapMs",
  "duplicate-gap-ms": "duplicateGapMs",
  reorder: "reorder",
  "reorder-ms": "reorderMs",
  "wrong-quote": "wrongQuote",
  "wrong-quote-field": "wrongQuoteField",
  mangle: "mangle",
  truncate: "truncate",
  "truncate-bytes": "truncateBytes",
  corrupt: "corrupt",
  "reverse-loss": "reverseLoss",
  "icmp-rate": "icmpRate",
  "icmp-burst": "icmpBurst",
};

function setTextKey(into: Partial<Behaviour>, key: string, value: string): boolean {
  const k = TEXT_KEYS[key];
  if (!k) return false;
  if (k === "dropSrcPorts") into.dropSrcPorts = parsePorts(value);
  else if (k === "wrongQuoteField") into.wrongQuoteField = value as WrongQuoteField;
  else {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) throw new Error(`${key}=${value}: not a number`);
    (into as Record<string, number>)[k] = n;
  }
  return true;
}

/** Parses `MATCH:key=value,...` (MATCH: an address or prefix, IPv6 included). */
export function parseHostOption(text: string): Rule {
  // Keys never hold a colon and are followed by "=", so the first ":key=" ends the match part.
  const m = /^(.*?):([a-z][a-z-]*=.*)$/.exec(text);
  if (!m) throw new Error(`--host ${text}: expected MATCH:key=value,...`);
  const rule: Rule = { dst: m[1]! };
  for (const pair of m[2]!.split(",")) {
    const eq = pair.indexOf("=");
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (eq < 0) throw new Error(`--host ${text}: "${pair}" is not key=value`);
    if (key === "proto") rule.proto = value as Rule["proto"];
    else if (key === "src-ports") rule.srcPorts = value;
    else if (key === "dst-port") rule.dstPort = Number(value);
    else if (key === "seed") rule.seed = Number(value);
    else if (!setTextKey(rule, key, value)) throw new Error(`--host ${text}: unknown key "${key}"`);
  }
  return rule;
}

/** Every field checked, defaults filled in: throws on anything out of range. */
export function resolveBehaviour(where: string, ...layers: (Partial<Behaviour> | undefined)[]): Behaviour {
  const b: Behaviour = { ...BASE_BEHAVIOUR, dropSrcPorts: [] };
  for (const layer of layers) {
    if (!layer) continue;
    for (const key of Object.keys(BASE_BEHAVIOUR) as (keyof Behaviour)[]) {
      if (layer[key] !== undefined) (b as unknown as Record<string, unknown>)[key] = layer[key];
    }
  }
  const w = (n: string) => `${where}: ${n}`;
  for (const k of ["loss", "duplicate", "reorder", "wrongQuote", "mangle", "truncate", "corrupt", "reverseLoss"] as const) fraction(w(k), b[k]);
  for (const k of ["delayMs", "jitterMs", "duplicateGapMs", "reorderMs", "truncateBytes", "icmpRate"] as const) nonNegative(w(k), b[k]);
  if (!(b.icmpBurst >= 1)) throw new Error(`${w("icmpBurst")}: ${b.icmpBurst} is below 1`);
  if (b.wrongQuoteField !== "ident" && b.wrongQuoteField !== "port") throw new Error(`${w("wrongQuoteField")}: "${b.wrongQuoteField}" is not ident or port`);
  const effects = b.duplicate + b.reorder + b.wrongQuote + b.mangle + b.truncate + b.corrupt;
  if (effects > 1 + 1e-9) throw new Error(`${where}: the effect fractions add up to ${effects}, more than 1`);
  if (!Array.isArray(b.dropSrcPorts)) throw new Error(`${w("dropSrcPorts")}: not a list`);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Random streams

/** MurmurHash3's finaliser: spreads a small seed (1, 2, ...) over all 32 bits. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * mulberry32: a seeded stream of uniform numbers in [0, 1). The seed is hashed first, so that
 * small seeds do not begin with a run of tiny numbers (xorshift32 seeded with 1 did: its first
 * draw was 0.00006, a certain drop at any loss ratio).
 */
export class Rng {
  #state: number;
  constructor(seed: number, stream = 0) {
    this.#state = fmix32(fmix32(seed >>> 0) ^ Math.imul(stream + 1, 0x9e3779b9));
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

// ---------------------------------------------------------------------------------------------
// Decisions (pure: no packets, no clock but the one given)

/** What the simulator needs to know of a probe. */
export interface ProbeInfo {
  family: Family;
  /** 16 bytes (IPv4 in the first 4). */
  dst: Uint8Array;
  proto: number;
  srcPort: number;
  dstPort: number;
}

export const TWAMP_PORT = 862;

export interface Decision {
  rule: number;
  action: Action;
  reason?: DropReason;
  /** Delay of the first reply, ms. */
  delayMs: number;
  gapMs?: number;
  extraMs?: number;
  field?: WrongQuoteField;
  /** truncate: bytes to keep (0: the default cut). */
  truncateBytes?: number;
}

interface CompiledRule {
  index: number;
  family: Family | 0;
  net: Uint8Array | null;
  prefixLength: number;
  proto: number[] | null;
  srcPorts: Set<number> | null;
  dstPort: number | null;
  b: Behaviour;
  dropPorts: Set<number>;
  lossRng: Rng;
  jitterRng: Rng;
  effectRng: Rng;
  /** Reverse loss of reflections: its own stream, so the forward pattern is that of plain loss. */
  reverseRng: Rng;
  /** The effects with a fraction above 0, in their order of precedence. */
  effects: [Action, number][];
  tokens: number;
  lastRefillMs: number;
}

const PROTOS: Record<string, number[]> = { tcp: [IPPROTO_TCP], udp: [IPPROTO_UDP], icmp: [IPPROTO_ICMP, IPPROTO_ICMPV6] };

function compileRule(index: number, seed: number, b: Behaviour, r: Rule | null): CompiledRule {
  let family: Family | 0 = 0;
  let net: Uint8Array | null = null;
  let prefixLength = 0;
  if (r?.dst !== undefined) {
    const [addr, len] = r.dst.split("/") as [string, string | undefined];
    const a = parseAddress(addr);
    if (!a) throw new Error(`rule ${index}: "${r.dst}" is not an address or prefix`);
    family = a.family;
    net = a.bytes;
    prefixLength = len === undefined ? (a.family === 4 ? 32 : 128) : Number(len);
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > (a.family === 4 ? 32 : 128)) {
      throw new Error(`rule ${index}: bad prefix length in "${r.dst}"`);
    }
  }
  if (r?.proto !== undefined && !PROTOS[r.proto]) throw new Error(`rule ${index}: proto "${r.proto}" is not tcp, udp or icmp`);
  const s = r?.seed ?? seed;
  return {
    index,
    family,
    net,
    prefixLength,
    proto: r?.proto !== undefined ? PROTOS[r.proto]! : null,
    srcPorts: r?.srcPorts !== undefined ? new Set(typeof r.srcPorts === "string" ? parsePorts(r.srcPorts) : r.srcPorts) : null,
    dstPort: r?.dstPort ?? null,
    b,
    dropPorts: new Set(b.dropSrcPorts),
    // Streams of one seed differ by rule and by purpose.
    lossRng: new Rng(s, (index + 1) * 3),
    jitterRng: new Rng(s, (index + 1) * 3 + 1),
    effectRng: new Rng(s, (index + 1) * 3 + 2),
    reverseRng: new Rng(s, 0x1_0000 + index + 1),
    effects: (
      [
        ["duplicate", b.duplicate],
        ["reorder", b.reorder],
        ["wrong-quote", b.wrongQuote],
        ["mangle", b.mangle],
        ["truncate", b.truncate],
        ["corrupt", b.corrupt],
      ] as [Action, number][]
    ).filter(([, f]) => f > 0),
    tokens: b.icmpBurst,
    lastRefillMs: NaN,
  };
}

function matches(r: CompiledRule, p: ProbeInfo): boolean {
  if (r.net) {
    if (r.family !== p.family) return false;
    let bits = r.prefixLength;
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if ((r.net[i]! & mask) !== (p.dst[i]! & mask)) return false;
    }
  }
  if (r.proto && !r.proto.includes(p.proto)) return false;
  if (r.srcPorts && !r.srcPorts.has(p.srcPort)) return false;
  if (r.dstPort !== null && r.dstPort !== p.dstPort) return false;
  return true;
}

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/** The decisions of one configuration; a new configuration starts with fresh random streams. */
export class Simulator {
  readonly #rules: CompiledRule[];
  readonly #default: CompiledRule;
  readonly #twampPorts: Set<number>;

  constructor(readonly config: SimConfig, twampPorts: readonly number[] = [TWAMP_PORT]) {
    this.#twampPorts = new Set((config.twampPorts ?? twampPorts).filter((p) => p > 0));
    const seed = config.seed ?? 1;
    const base = resolveBehaviour("default", config.default);
    this.#default = compileRule(-1, seed, base, null);
    this.#rules = (config.rules ?? []).map((r, i) => compileRule(i, seed, resolveBehaviour(`rule ${i}`, config.default, r), r));
  }

  /** The rule a probe falls under (its index; -1: the default). */
  ruleOf(p: ProbeInfo): number {
    return this.#rules.find((r) => matches(r, p))?.index ?? -1;
  }

  /** Whether p goes to the TWAMP-light reflector (UDP to one of its ports). */
  reflects(p: ProbeInfo): boolean {
    return p.proto === IPPROTO_UDP && this.#twampPorts.has(p.dstPort);
  }

  /** What to do with probe p received at nowMs (the clock matters to the ICMP rate limit only). */
  decide(p: ProbeInfo, nowMs: number): Decision {
    const r = this.#rules.find((x) => matches(x, p)) ?? this.#default;
    const b = r.b;
    if (r.dropPorts.has(p.srcPort)) return { rule: r.index, action: "drop", reason: "src-port", delayMs: 0 };
    if (b.loss > 0 && r.lossRng.next() < b.loss) return { rule: r.index, action: "drop", reason: "loss", delayMs: 0 };
    const reflected = this.reflects(p);
    // Drawn for reflector probes only: the streams of other probes are those they always were.
    if (reflected && b.reverseLoss > 0 && r.reverseRng.next() < b.reverseLoss) return { rule: r.index, action: "drop", reason: "reverse-loss", delayMs: 0 };
    let delay = b.delayMs;
    if (b.jitterMs > 0) delay = Math.max(0, delay + (2 * r.jitterRng.next() - 1) * b.jitterMs);
    let action: Action = "answer";
    const d: Decision = { rule: r.index, action, delayMs: 0 };
    if (r.effects.length > 0) {
      // One draw picks at most one effect: [0, f1) the first, [f1, f1 + f2) the second...
      let u = r.effectRng.next();
      for (const [name, f] of r.effects) {
        if (u < f) {
          action = name;
          break;
        }
        u -= f;
      }
    }
    if (action === "duplicate") d.gapMs = b.duplicateGapMs;
    if (action === "reorder") {
      d.extraMs = b.reorderMs;
      delay += b.reorderMs;
    }
    if (action === "wrong-quote") d.field = b.wrongQuoteField;
    if (action === "truncate") d.truncateBytes = b.truncateBytes;
    // ICMP replies: echo replies, port unreachables, and every wrong quote (an ICMP error).
    const icmp = (p.proto !== IPPROTO_TCP && !reflected) || action === "wrong-quote";
    if (icmp && b.icmpRate > 0) {
      if (Number.isNaN(r.lastRefillMs)) r.lastRefillMs = nowMs;
      r.tokens = Math.min(b.icmpBurst, r.tokens + ((nowMs - r.lastRefillMs) * b.icmpRate) / 1000);
      r.lastRefillMs = nowMs;
      if (r.tokens < 1) return { rule: r.index, action: "drop", reason: "icmp-rate", delayMs: 0 };
      r.tokens -= 1;
    }
    d.action = action;
    d.delayMs = round3(delay);
    return d;
  }
}

/** The behaviour given on the command line: the original options, the new ones, --host, --config. */
export function configFromArgs(argv: string[]): SimConfig {
  const def: Partial<Behaviour> = {};
  const rules: Rule[] = [];
  let seed = 1;
  let twampPorts: number[] | undefined;
  let file: SimConfig | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) continue;
    const key = a.slice(2);
    const value = argv[i + 1];
    if (value === undefined) continue;
    if (key === "seed") seed = Number(value);
    else if (key === "twamp-port") twampPorts = parsePorts(value).filter((p) => p > 0);
    else if (key === "host") rules.push(parseHostOption(value));
    else if (key === "config") file = JSON.parse(readFileSync(value, "utf8")) as SimConfig;
    else if (setTextKey(def, key, value)) {
      /* a behaviour option */
    } else continue;
    i++;
  }
  if (file) {
    // The file's default and rules come after the command line's (its keys win, its rules follow).
    return { seed: file.seed ?? seed, default: { ...def, ...file.default }, rules: [...rules, ...(file.rules ?? [])], twampPorts: file.twampPorts ?? twampPorts };
  }
  return { seed, default: def, rules, ...(twampPorts ? { twampPorts } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Reading the log (used by tests)

/** The decisions logged so far (complete lines only: the last one may still be in writing). */
export function readDecisions(file: string): TunDecision[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .slice(0, -1)
    .map((l) => JSON.parse(l) as TunDecision);
}

/** Identifies a probe in the log: destination (RFC 5952 text), protocol, source port, ident. */
export function decisionKey(dst: string, proto: number, srcPort: number, ident: number): string {
  return `${dst}|${proto}|${srcPort}|${ident >>> 0}`;
}

// ---------------------------------------------------------------------------------------------
// Control client (used by tests)

export const CONTROL_MAGIC = "NPSIM1 ";

/**
 * How a wrong quote or a mangled answer changes an identity field: one bit flipped, far from the
 * probes of a test (it takes 2^23 or 2^15 probes to reach), and inside the 2^28 window of sequence
 * numbers a prober engine keeps (IDENT_WINDOW_BITS), so the answer still looks like one of its own.
 */
export const IDENT_FLIP32 = 0x0080_0000;
export const IDENT_FLIP16 = 0x8000;
export const DEFAULT_CONTROL_PORT = 9;
/** Characters of request text per datagram (escaped, at most twice that: within a 1500-byte MTU). */
const CONTROL_PART = 600;

/** A piece of a request too long for one datagram. */
interface ControlPart {
  op: "part";
  id: string;
  part: number;
  of: number;
  text: string;
}

export interface ControlReply {
  ok: boolean;
  op: string;
  /** Probes decided (and logged) since the responder started. */
  decisions: number;
  error?: string;
}

/**
 * Sends a control request to the responder behind `address` (any address it answers for) and
 * waits for its answer. Retries a few times: the request is idempotent.
 */
export async function control(
  address: string,
  request: { op: "configure"; config: SimConfig } | { op: "sync" },
  opts: { port?: number; timeoutMs?: number } = {},
): Promise<ControlReply> {
  const port = opts.port ?? DEFAULT_CONTROL_PORT;
  const sock = createSocket(address.includes(":") ? "udp6" : "udp4");
  const text = JSON.stringify(request);
  // One datagram must fit the device's MTU (the responder does not reassemble IP fragments):
  // longer requests go in parts, each acknowledged before the next.
  const payloads: string[] = [];
  if (text.length <= CONTROL_PART) payloads.push(text);
  else {
    const id = `${process.pid}-${Date.now()}-${Math.random()}`;
    const of = Math.ceil(text.length / CONTROL_PART);
    for (let part = 0; part < of; part++) payloads.push(JSON.stringify({ op: "part", id, part, of, text: text.slice(part * CONTROL_PART, (part + 1) * CONTROL_PART) } satisfies ControlPart));
  }
  let waiting: ((r: ControlReply) => void) | null = null;
  sock.on("message", (m) => waiting?.(JSON.parse(m.toString("utf8")) as ControlReply));
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(0, () => resolve());
    });
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    let last: ControlReply | null = null;
    for (const p of payloads) {
      for (;;) {
        const reply = new Promise<ControlReply>((resolve) => (waiting = resolve));
        sock.send(Buffer.from(CONTROL_MAGIC + p), port, address);
        last = await Promise.race([reply, Bun.sleep(500).then(() => null)]);
        if (last) break;
        if (Date.now() > deadline) throw new Error(`tun-responder behind ${address} did not answer ${request.op} on port ${port}`);
      }
      if (!last.ok) throw new Error(`tun-responder refused ${request.op}: ${last.error}`);
    }
    return last!;
  } finally {
    sock.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The device side

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function main(): void {
  const libc = dlopen("libc.so.6", {
    open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    ppoll: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  }).symbols;

  const TUNSETIFF = 0x400454ca;
  const IFF_TUN = 0x0001;
  const IFF_NO_PI = 0x1000;
  const O_RDWR = 2;
  const O_NONBLOCK = 0o4000;

  const ifname = option("ifname", "");
  if (!ifname || ifname.length > 15) throw new Error("--ifname NAME (at most 15 characters) is required");
  const openPort = Number(option("open-port", "8443"));
  const controlPort = Number(option("control-port", String(DEFAULT_CONTROL_PORT)));
  const logPath = option("log", "");
  const startConfig = configFromArgs(process.argv.slice(2));
  // The command line's reflector ports stay the default of every later configuration.
  const cliTwampPorts = startConfig.twampPorts ?? [TWAMP_PORT];
  let sim = new Simulator(startConfig, cliTwampPorts);
  /** TWAMP-light: the reflector's next sequence number per sender 5-tuple (restarted by configure). */
  let reflectorCounters = new Map<string, number>();

  const fd = libc.open(Buffer.from("/dev/net/tun\0"), O_RDWR | O_NONBLOCK);
  if (fd < 0) throw new Error("cannot open /dev/net/tun");
  const ifr = new Uint8Array(40); // struct ifreq: name[16], short flags
  ifr.set(new TextEncoder().encode(ifname));
  new DataView(ifr.buffer).setUint16(16, IFF_TUN | IFF_NO_PI, true);
  if (libc.ioctl(fd, TUNSETIFF, ifr) < 0) throw new Error(`TUNSETIFF ${ifname} failed`);

  // -- the log, written in batches
  const logFd = logPath ? openSync(logPath, "a") : -1;
  let logLines: string[] = [];
  let lastFlush = performance.now();
  let decisions = 0;
  const flush = () => {
    if (logLines.length > 0 && logFd >= 0) writeSync(logFd, logLines.join(""));
    logLines = [];
    lastFlush = performance.now();
  };
  const log = (e: TunDecision) => {
    decisions++;
    if (logFd >= 0) logLines.push(`${JSON.stringify(e)}\n`);
    if (logLines.length >= 512) flush();
  };

  // -- replies due, a binary heap ordered by due time, then by order of scheduling
  /** stampT3: a whole TWAMP reflection, whose send timestamp is written just before it leaves. */
  type Due = { at: number; seq: number; bytes: Uint8Array; stampT3: boolean };
  const heap: Due[] = [];
  let seqNo = 0;
  const before = (a: Due, b: Due) => a.at < b.at || (a.at === b.at && a.seq < b.seq);
  const push = (at: number, bytes: Uint8Array, stampT3 = false) => {
    const item = { at, seq: seqNo++, bytes, stampT3 };
    let i = heap.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
  };
  const pop = (): Due => {
    const top = heap[0]!;
    const last = heap.pop()!;
    const n = heap.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        let m = -1;
        let best = last;
        if (l < n && before(heap[l]!, best)) {
          m = l;
          best = heap[l]!;
        }
        if (l + 1 < n && before(heap[l + 1]!, best)) {
          m = l + 1;
          best = heap[l + 1]!;
        }
        if (m < 0) break;
        heap[i] = best;
        i = m;
      }
      heap[i] = last;
    }
    return top;
  };

  const inBuf = new Uint8Array(65536);
  const parsed = new ParsedFrame();
  const spec = new PacketSpec();
  const scratch = new Uint8Array(2048);
  const pollfd = new Int32Array([fd, 1]); // struct pollfd: fd, then events | revents << 16
  // struct timespec for ppoll: the wait for the next reply to the nanosecond, not rounded up to a
  // millisecond as poll() would (a 1 ms delay would become 1-2 ms).
  const timeout = new BigInt64Array(2);
  const POLLERR = 0x08;
  const POLLHUP = 0x10;
  const POLLNVAL = 0x20;

  const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
  const u32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  const ipLength = (b: Uint8Array) => (b[0]! >> 4 === 4 ? (b[0]! & 0x0f) * 4 : 40);

  /** Recomputes the L4 checksum of a TCP or ICMP/ICMPv6 packet held whole in b. */
  function l4Checksum(b: Uint8Array, len: number): void {
    const v4 = b[0]! >> 4 === 4;
    const ip = ipLength(b);
    const proto = v4 ? b[9]! : b[6]!;
    const at = proto === IPPROTO_TCP ? ip + 16 : ip + 2;
    put16(b, at, 0);
    const body = len - ip;
    let sum = 0;
    if (proto === IPPROTO_TCP || proto === IPPROTO_ICMPV6) {
      sum = v4 ? pseudoHeaderSum(4, b.subarray(12, 16), b.subarray(16, 20), proto, body) : pseudoHeaderSum(6, b.subarray(8, 24), b.subarray(24, 40), proto, body);
    }
    put16(b, at, finish(sum16(b, ip, body, sum)));
  }

  function ipv4HeaderChecksum(b: Uint8Array, off: number): void {
    const ihl = (b[off]! & 0x0f) * 4;
    put16(b, off + 10, 0);
    put16(b, off + 10, finish(sum16(b, off, ihl)));
  }

  function replySpec(): void {
    const o = parsed.outer;
    spec.link = LINK_RAW;
    spec.family = o.family;
    spec.src.set(o.dst);
    spec.dst.set(o.src);
    spec.tos = 0;
    spec.flowLabel = 0;
    spec.hopLimit = 64;
    spec.payloadLength = 0;
    spec.payloadTag = -1;
    spec.quote = null;
  }

  /** An ICMP / ICMPv6 port unreachable quoting quote[0..len). */
  function portUnreachable(quote: Uint8Array, len: number): Uint8Array {
    const o = parsed.outer;
    replySpec();
    // RFC 792: the IP header and 8 bytes; RFC 4443: as much as fits in the minimum MTU.
    spec.protocol = IPPROTO_ICMP;
    spec.icmpType = o.family === 4 ? ICMP4_UNREACH : ICMP6_UNREACH;
    spec.icmpCode = o.family === 4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH;
    spec.quote = quote;
    spec.quoteLength = o.family === 4 ? Math.min(len, ipLength(quote) + 8) : Math.min(len, 1280 - 48);
    return scratch.slice(0, writePacket(scratch, spec));
  }

  /** Echo reply: the request with addresses swapped and the type changed, data echoed as is. */
  function echoReply(len: number): Uint8Array {
    const o = parsed.outer;
    const out = inBuf.slice(0, len);
    const ipLen = ipLength(out);
    if (o.family === 4) {
      out.set(inBuf.subarray(16, 20), 12);
      out.set(inBuf.subarray(12, 16), 16);
      ipv4HeaderChecksum(out, 0);
    } else {
      out.set(inBuf.subarray(24, 40), 8);
      out.set(inBuf.subarray(8, 24), 24);
    }
    out[ipLen] = o.family === 4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY;
    l4Checksum(out, len);
    return out;
  }

  function tcpReply(len: number): Uint8Array {
    const o = parsed.outer;
    replySpec();
    const data = len - o.payloadOffset;
    spec.protocol = IPPROTO_TCP;
    spec.srcPort = o.dstPort;
    spec.dstPort = o.srcPort;
    spec.seq = o.dstPort === openPort ? 0x5eed0000 : 0;
    spec.ack = (o.seq + 1 + Math.max(0, data)) >>> 0;
    spec.tcpFlags = o.dstPort === openPort ? TCP_SYN | TCP_ACK : TCP_RST | TCP_ACK;
    spec.window = o.dstPort === openPort ? 64240 : 0;
    return scratch.slice(0, writePacket(scratch, spec));
  }

  /** A copy of the probe with its identity (field "ident") or its source port changed. */
  function wrongProbe(len: number, field: WrongQuoteField): Uint8Array {
    const o = parsed.outer;
    const q = inBuf.slice(0, len);
    const l4 = o.l4Offset;
    const echo = o.protocol === IPPROTO_ICMP || o.protocol === IPPROTO_ICMPV6;
    if (field === "port" && !echo) {
      put16(q, l4, o.srcPort ^ 0x4000);
    } else if (o.protocol === IPPROTO_TCP) {
      put32(q, l4 + 4, (o.seq ^ IDENT_FLIP32) >>> 0);
    } else if (o.protocol === IPPROTO_UDP) {
      if (o.family === 4) put16(q, 4, o.ipId ^ IDENT_FLIP16);
      else if (len >= l4 + 12) put32(q, l4 + 8, (o.payloadTag ^ IDENT_FLIP32) >>> 0);
    } else {
      put16(q, l4 + 6, o.icmpSeq ^ IDENT_FLIP16);
    }
    if (o.family === 4) ipv4HeaderChecksum(q, 0);
    return q;
  }

  const clockBuf = new BigInt64Array(2);
  const CLOCK_REALTIME = 0;
  /** Writes the wall clock now as an NTP timestamp (RFC 5905: seconds since 1900, 2^-32 fractions) at b[at..at+8). */
  function putNtpNow(b: Uint8Array, at: number): void {
    libc.clock_gettime(CLOCK_REALTIME, ptr(clockBuf));
    put32(b, at, (Number(clockBuf[0]!) + NTP_UNIX_OFFSET) >>> 0);
    put32(b, at + 4, Math.floor((Number(clockBuf[1]!) * 0x1_0000_0000) / 1e9) >>> 0);
  }

  function udpChecksum(b: Uint8Array, n: number): void {
    const ip = ipLength(b);
    put16(b, ip + 6, 0);
    const pseudo = b[0]! >> 4 === 4 ? pseudoHeaderSum(4, b.subarray(12, 16), b.subarray(16, 20), IPPROTO_UDP, n - ip) : pseudoHeaderSum(6, b.subarray(8, 24), b.subarray(24, 40), IPPROTO_UDP, n - ip);
    put16(b, ip + 6, finish(sum16(b, ip, n - ip, pseudo)) || 0xffff);
  }

  /** RFC 5357 4.2.1: T3 (the reflection's timestamp) just before the write, the checksum redone. */
  function stampSendTime(b: Uint8Array): void {
    putNtpNow(b, ipLength(b) + 8 + 4);
    udpChecksum(b, b.length);
  }

  /**
   * The session-reflector's packet (RFC 5357 4.2.1, unauthenticated) for the probe in inBuf:
   * its sequence number, T3 (filled at send time), error estimate, T2 (received), the sender's
   * sequence number, timestamp, error estimate and TTL, zero padding to the probe's size.
   */
  function twampReflection(t2: Uint8Array, reflectorSeq: number): Uint8Array {
    const o = parsed.outer;
    const senderLen = o.end - o.payloadOffset;
    const len = Math.max(senderLen, TWAMP_REFLECTOR_HEADER);
    replySpec();
    spec.protocol = IPPROTO_UDP;
    spec.srcPort = o.dstPort;
    spec.dstPort = o.srcPort;
    spec.payloadLength = len;
    const n = writePacket(scratch, spec);
    const at = ipLength(scratch) + 8;
    scratch.fill(0, at, at + len);
    put32(scratch, at, reflectorSeq >>> 0);
    // Error estimate: S = 1 (the test host's clock is the system's), scale 0, multiplier 1.
    put16(scratch, at + 12, 0x8001);
    scratch.set(t2, at + 16);
    // T3 as built; a reflection sent whole is stamped again as it leaves (stampSendTime).
    putNtpNow(scratch, at + 4);
    // The sender's sequence number, timestamp and error estimate (14 bytes), then its TTL.
    scratch.set(inBuf.subarray(o.payloadOffset, o.payloadOffset + Math.min(14, senderLen)), at + 24);
    scratch[at + 40] = o.ttl;
    udpChecksum(scratch, n);
    return scratch.slice(0, n);
  }

  function truncated(reply: Uint8Array, bytes: number): Uint8Array {
    if (bytes > 0) return reply.slice(0, Math.min(bytes, reply.length));
    const ip = ipLength(reply);
    const proto = reply[0]! >> 4 === 4 ? reply[9]! : reply[6]!;
    // Before the TCP flags; before the echo id/seq; before the ports of the packet an error quotes.
    if (proto === IPPROTO_TCP) return reply.slice(0, ip + 12);
    const type = reply[ip]!;
    if (type === ICMP4_ECHO_REPLY || type === ICMP6_ECHO_REPLY) return reply.slice(0, ip + 4);
    return reply.slice(0, ip + 8 + ipLength(reply.subarray(ip + 8)));
  }

  const partsOf = new Map<string, (string | undefined)[]>();

  function controlRequest(): void {
    const o = parsed.outer;
    let text = new TextDecoder().decode(inBuf.subarray(o.payloadOffset + CONTROL_MAGIC.length, o.end));
    let answer: ControlReply;
    try {
      type Request = { op?: string; config?: SimConfig };
      let req = JSON.parse(text) as Request;
      if (req.op === "part") {
        // A request too long for one datagram, in pieces: kept until the last one is in.
        const piece = req as ControlPart;
        const parts = partsOf.get(piece.id) ?? new Array<string | undefined>(piece.of).fill(undefined);
        partsOf.set(piece.id, parts);
        parts[piece.part] = piece.text;
        if (parts.some((x) => x === undefined)) return sendControlAnswer({ ok: true, op: "part", decisions });
        partsOf.delete(piece.id);
        text = parts.join("");
        req = JSON.parse(text) as Request;
      }
      if (req.op === "configure") {
        sim = new Simulator(req.config ?? {}, cliTwampPorts);
        reflectorCounters = new Map();
      }
      else if (req.op !== "sync") throw new Error(`unknown op ${JSON.stringify(req.op)}`);
      flush();
      answer = { ok: true, op: req.op, decisions };
    } catch (e) {
      answer = { ok: false, op: "?", decisions, error: e instanceof Error ? e.message : String(e) };
    }
    sendControlAnswer(answer);
  }

  function sendControlAnswer(answer: ControlReply): void {
    const o = parsed.outer;
    const payload = new TextEncoder().encode(JSON.stringify(answer));
    replySpec();
    spec.protocol = IPPROTO_UDP;
    spec.srcPort = o.dstPort;
    spec.dstPort = o.srcPort;
    spec.payloadLength = payload.length;
    const n = writePacket(scratch, spec);
    scratch.set(payload, ipLength(scratch) + 8);
    udpChecksum(scratch, n);
    libc.write(fd, scratch, n);
  }

  const isControl = (): boolean => {
    const o = parsed.outer;
    if (controlPort === 0 || o.protocol !== IPPROTO_UDP || o.dstPort !== controlPort) return false;
    const at = o.payloadOffset;
    if (o.end - at < CONTROL_MAGIC.length) return false;
    for (let i = 0; i < CONTROL_MAGIC.length; i++) if (inBuf[at + i] !== CONTROL_MAGIC.charCodeAt(i)) return false;
    return true;
  };

  const t2 = new Uint8Array(8);

  function receive(len: number, now: number): void {
    if (parseFrame(inBuf, len, LINKTYPE_RAW, parsed) !== PARSE_OK) return;
    putNtpNow(t2, 0);
    const o = parsed.outer;
    let ident: number;
    if (o.protocol === IPPROTO_TCP && o.tcpFlags === TCP_SYN) ident = o.seq;
    else if ((o.protocol === IPPROTO_ICMP && o.icmpType === ICMP4_ECHO_REQUEST) || (o.protocol === IPPROTO_ICMPV6 && o.icmpType === ICMP6_ECHO_REQUEST)) {
      ident = ((o.icmpId << 16) | o.icmpSeq) >>> 0;
    } else if (o.protocol === IPPROTO_UDP) {
      if (isControl()) return controlRequest();
      ident = o.family === 4 ? o.ipId : o.payloadTag;
    } else return;
    const info: ProbeInfo = { family: o.family, dst: o.dst, proto: o.protocol, srcPort: o.srcPort, dstPort: o.dstPort };
    const reflector = sim.reflects(info);
    // A TWAMP-Test probe is known by its sender's sequence number, the payload's first 4 bytes.
    if (reflector) ident = o.payloadTag >>> 0;
    const d = sim.decide(info, now);
    const e: TunDecision = {
      src: formatAddress(o.family, o.src),
      dst: formatAddress(o.family, o.dst),
      proto: o.protocol,
      srcPort: o.srcPort,
      dstPort: o.dstPort,
      ident,
      rule: d.rule,
      action: d.action,
    };
    let reflectorSeq = -1;
    // The reflector counts what reaches it: a forward drop (src-port, loss) leaves its counter
    // as it was, a reverse drop comes after the count.
    if (reflector && !(d.action === "drop" && d.reason !== "reverse-loss")) {
      const key = `${e.src}|${o.srcPort}|${e.dst}|${o.dstPort}`;
      reflectorSeq = reflectorCounters.get(key) ?? 0;
      reflectorCounters.set(key, (reflectorSeq + 1) >>> 0);
      e.reflectorSeq = reflectorSeq;
    }
    if (d.action === "drop") {
      e.reason = d.reason;
      log(e);
      return;
    }
    e.delayMs = d.delayMs;
    const normal = () => (reflector ? twampReflection(t2, reflectorSeq) : o.protocol === IPPROTO_TCP ? tcpReply(len) : o.protocol === IPPROTO_UDP ? portUnreachable(inBuf, len) : echoReply(len));
    let reply: Uint8Array;
    switch (d.action) {
      case "wrong-quote":
        e.field = d.field;
        reply = portUnreachable(wrongProbe(len, d.field!), len);
        break;
      case "mangle":
        if (o.protocol === IPPROTO_UDP) {
          e.field = "quote-ident";
          reply = portUnreachable(wrongProbe(len, "ident"), len);
        } else {
          reply = normal();
          const ip = ipLength(reply);
          if (o.protocol === IPPROTO_TCP) {
            e.field = "ack";
            put32(reply, ip + 8, (u32(reply, ip + 8) ^ IDENT_FLIP32) >>> 0);
          } else {
            e.field = "seq";
            put16(reply, ip + 6, u16(reply, ip + 6) ^ IDENT_FLIP16);
          }
          l4Checksum(reply, reply.length);
        }
        break;
      case "truncate": {
        const full = normal();
        reply = truncated(full, d.truncateBytes ?? 0);
        e.bytes = reply.length;
        e.of = full.length;
        break;
      }
      case "corrupt": {
        reply = normal();
        const ip = ipLength(reply);
        const at = o.protocol === IPPROTO_TCP ? ip + 16 : ip + 2;
        put16(reply, at, u16(reply, at) ^ 0x5a5a);
        if (o.family === 4) put16(reply, 10, u16(reply, 10) ^ 0x5a5a);
        break;
      }
      default:
        reply = normal();
    }
    // A reflection sent whole gets its T3 as it leaves; one cut or corrupted keeps the T3 it was built with.
    const stampT3 = reflector && (d.action === "answer" || d.action === "duplicate" || d.action === "reorder");
    if (d.action === "duplicate") e.gapMs = d.gapMs;
    if (d.action === "reorder") e.extraMs = d.extraMs;
    log(e);
    push(now + d.delayMs, reply, stampT3);
    if (d.action === "duplicate") push(now + d.delayMs + (d.gapMs ?? 0), reply, stampT3);
  }

  process.stdout.write(`ready ${ifname}\n`);
  let running = true;
  process.on("SIGTERM", () => (running = false));
  process.on("SIGINT", () => (running = false));
  process.on("exit", () => {
    flush();
    if (logFd >= 0) closeSync(logFd);
  });

  const loop = async () => {
    while (running) {
      const now = performance.now();
      while (heap.length > 0 && heap[0]!.at <= now) {
        const p = pop();
        if (p.stampT3) stampSendTime(p.bytes);
        libc.write(fd, p.bytes, p.bytes.length);
      }
      const wait = heap.length > 0 ? Math.max(0, heap[0]!.at - now) : 100;
      // Before blocking for a while, or every 20 ms under load: the log trails by little.
      if (logLines.length > 0 && (wait >= 5 || now - lastFlush >= 20)) {
        flush();
        continue; // the flush took time: recompute the wait
      }
      pollfd[1] = 1;
      const ns = Math.round(wait * 1e6);
      timeout[0] = BigInt(Math.floor(ns / 1e9));
      timeout[1] = BigInt(ns % 1e9);
      const r = libc.ppoll(ptr(pollfd), 1, ptr(timeout), null);
      if (r > 0) {
        // The device was deleted under us (ip link del): the fd only reports errors from now on, and
        // reading it would spin forever.
        const revents = pollfd[1]! >>> 16;
        if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
          process.stderr.write(`tun-responder: ${ifname} is gone (poll revents 0x${revents.toString(16)})\n`);
          process.exit(EXIT_FAILURE);
        }
        for (;;) {
          const n = Number(libc.read(fd, inBuf, inBuf.length));
          if (n <= 0) break;
          // Each packet's own clock: a delay never starts before its probe was read.
          receive(n, performance.now());
        }
      }
      // Signals are delivered between turns of the event loop.
      if (r === 0 && heap.length === 0) await Bun.sleep(0);
    }
    flush();
  };
  void loop().then(() => process.exit(EXIT_OK));
}

if (import.meta.main) main();
