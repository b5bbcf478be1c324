/**
 * What one probe type is, in one place: its names, metric families, header size, port rule,
 * how its packet is filled and identified, what it asks the capture filter for, and which
 * frames answer it. The engine, the matcher, the planner, the metrics, the schema and the CLI
 * read these fields and call these functions; none of them tests a type by name.
 *
 * The functions below run once per probe sent or once per frame captured: they allocate
 * nothing and return numbers (or write into the caller's objects).
 */
import type { TargetType } from "../config/schema.ts";
import type { Family } from "../packet/address.ts";
import type { PacketSpec } from "../packet/build.ts";
import type { IpFields } from "../packet/parse.ts";

/** What a probe type needs of a target while it fills, identifies and matches packets. */
export interface ProbeTargetFields {
  readonly family: Family;
  readonly dstPort: number;
  /** Data bytes after the L4 header. */
  readonly dataLength: number;
  /** 16 bits per target, distinct between the targets of an engine (the ICMP echo identifier). */
  readonly targetId: number;
}

/**
 * The engine's identifier space, shared by every type that draws from it: engines get disjoint
 * 2^28 windows (EngineOptions.identBase), so a type drawing from here never collides with
 * another engine's probes.
 */
export interface IdentCounter {
  next: number;
}

/**
 * Where a probe sits among its target's probes of a batch. A flow is one source address and
 * port (one 5-tuple): probe k of a target is in flow k mod flows, the flow's `round`-th probe.
 * Written by the engine into one reused object: read it, never keep it.
 */
export interface FlowPosition {
  /** The flow, 0 .. flows - 1 within the target. */
  flow: number;
  /** Probes of the same flow before this one in the batch. */
  round: number;
  /** 32 random bits drawn by the engine for each batch (a random start per flow and batch). */
  salt: number;
}

/**
 * Values a direct answer carries beyond its arrival (a reflector's own timestamps and sequence
 * number), recorded per slot into arrays the engine owns.
 */
export interface AnswerValues {
  /** Values per answered slot. */
  readonly count: number;
  /**
   * Writes the answer `o`'s values at out[at .. at + count) (NaN for one it lacks) and returns
   * how long the far end held the probe, in ns (0 when it does not say): the engine takes that
   * off the RTT, so a type's RTT is the network's alone.
   */
  record(o: IpFields, out: Float64Array, at: number): number;
}

/**
 * A batch's results as a type's series summary reads them (BatchResult has these and more):
 * slots of one target are in send order.
 */
export interface SlotResults {
  /** SLOT_LOST, SLOT_ANSWERED or SLOT_UNSENT (src/probes/replies.ts). */
  readonly status: Uint8Array;
  readonly ident: Uint32Array;
  readonly srcPort: Uint16Array;
  readonly srcIndex: Uint16Array;
  /** `valueWidth` per slot: the far end's hold (ns), then the type's answerValues. */
  readonly values: Float64Array;
  readonly valueWidth: number;
}

/** A metric family of a type's own, named `<prefix>_<name>`, with the labels of the type's other families. */
export type TypeMetric =
  /** Added up over iterations; its value per series comes from the type's fold(). */
  | { readonly kind: "counter"; readonly name: string; readonly help: string }
  /**
   * A gauge per configured percentile of a per-slot value over the series' answered probes:
   * `value` indexes the slot's values (0: the far end's hold, 1 on: the type's answerValues),
   * times `scale` (1e-9: ns to seconds). Absent when no slot has one.
   */
  | { readonly kind: "percentiles"; readonly name: string; readonly help: string; readonly value: number; readonly scale: number };

/** The metric families a type adds to those every type has, and how a series' values are made. */
export interface SeriesMetrics {
  readonly families: readonly TypeMetric[];
  /**
   * Folds one target's slots [from, to) into `acc`, one number per family (counters; what sits at
   * a percentile family's index is ignored). `acc` starts NaN: a family left NaN is absent for
   * the series (not zero), as a value no probe of it could tell.
   */
  fold(r: SlotResults, from: number, to: number, acc: Float64Array): void;
}

/** What the capture filter fragment of a type is built from: this batch's targets of the type. */
export interface FilterContext {
  /** Source ports of the type's targets in this batch, lowest and highest. */
  readonly portLo: number;
  readonly portHi: number;
  /** The bits of an identifier that name the engine's window, and this engine's window. */
  readonly windowMask: string;
  readonly window: string;
  readonly v4: boolean;
  readonly v6: boolean;
}

/** Written by answerIdent(): what kind of answer the frame is. */
export interface AnswerFields {
  reply: number;
}

/** How a type uses the destination port. */
export type PortRule =
  /** Required in the config (the probe is aimed at a port); `cliDefault` fills `probe --port` when given. */
  | { readonly use: "required"; readonly cliDefault?: number; readonly note?: string }
  /** Optional, with a default. */
  | { readonly use: "default"; readonly value: number }
  /** The probe has no ports: accepted in the config, never used. */
  | { readonly use: "none" };

export interface ProbeType {
  /** The name in the config file (`type: TCPsyn`). */
  readonly type: TargetType;
  /** Short name: the `probe --type` value and the suffix of API target names. */
  readonly name: string;
  /** Other spellings `probe --type` accepts (lower case). */
  readonly aliases: readonly string[];
  /** For people: "TCP SYN". */
  readonly title: string;
  readonly metrics: {
    /** Prefix of the type's families: `tcpsyn` gives tcpsyn_sent_total. */
    readonly prefix: string;
    /** How the help texts name the probing: "tcp syn stealth probing". */
    readonly what: string;
    /**
     * `<prefix>_match_ack_fail_count`: answers from a target, in this engine's identifier
     * window, that acknowledge none of its probes (see strayAnswers).
     */
    readonly matchAckFail: boolean;
    /**
     * The per-target counts (match_ack_fail, port_mismatch: labels probe_name, destination and
     * address_family only) under the original's names, `<prefix>_*_count` gauges, for drop-in
     * compatibility: true for its three types only. Any other type gets `<prefix>_*_total`
     * counters, names `promtool check metrics` accepts.
     */
    readonly legacyCountNames: boolean;
  };
  /** The L4 header: the smallest ip_payload_size of the type. */
  readonly headerBytes: number;
  readonly port: PortRule;
  /**
   * The type's source ports rotate over the group's range, so each source port is a path
   * (ECMP): path metrics exist and an answer's ports must be the probe's.
   */
  readonly rotatesPorts: boolean;
  /** Data bytes the type needs after its header whatever the size asked (an identifier it carries). */
  minDataBytes(family: Family): number;

  /** The identifier probe k of target t (at `flow` among its probes) carries, the one its answer will carry back. */
  assignIdent(t: ProbeTargetFields, k: number, counter: IdentCounter, flow: FlowPosition): number;
  /**
   * A second identifier an answer may carry back for the same probe, or `ident` itself: a TCP
   * SYN with data is acknowledged at seq + 1 by some stacks and seq + data + 1 by others.
   */
  altIdent(ident: number, t: ProbeTargetFields): number;
  /** The type writes the send time into its probes (PacketSpec.sendSec, sendNsec): the engine reads the wall clock per probe for it. */
  readonly stampsSendTime: boolean;
  /** Fills the type's fields of probe `ident` (the engine has set addresses, TOS, DF, sizes). */
  fill(p: PacketSpec, t: ProbeTargetFields, ident: number, srcPort: number): void;
  /**
   * A packet that closes what a probe opened on the far host (TCP: a RST, so no half-open
   * connection stays), sent after an answer for which `closesAfter(reply)` holds and for every
   * probe left unanswered at the end of the batch (it may have been answered on a path we never
   * saw). Null: the type leaves nothing open.
   */
  readonly close: {
    fill(p: PacketSpec, t: ProbeTargetFields, ident: number, srcPort: number): void;
    closesAfter(reply: number): boolean;
  } | null;

  /**
   * The capture filter fragment (libpcap syntax) for the type's probes leaving and its direct
   * answers coming back, or "" when the engine's generic part captures them already. ICMP
   * errors quoting a probe are the engine's to capture (answeredByError).
   */
  captureFilter(c: FilterContext): string;

  /** If `o` is shaped like a probe of this type (whoever sent it), its identifier, else -1. */
  departureIdent(o: IpFields): number;
  /** If `o` is a direct answer to a probe of this type, its identifier (and `out.reply`), else -1. */
  answerIdent(o: IpFields, out: AnswerFields): number;
  /** Whether a direct answer comes from the probe's destination port to its source port. */
  readonly answerPortsMatch: boolean;
  /**
   * Whether a destination unreachable error quoting one of this type's probes answers it (the
   * probe reached a host that refused it). An error quoting an echo request does not: the
   * request met no answering host.
   */
  readonly answeredByError: boolean;
  /** The identifier of this type's probe quoted by an ICMP error (ports and 4 more bytes at least), or -1. */
  quotedIdent(q: IpFields): number;
  /** Direct answers that match none of the probes are counted (matchAckFail) when their identifier is in the engine's window. */
  readonly strayAnswers: boolean;
  /** What a direct answer carries beyond its arrival, recorded per slot; null: nothing. */
  readonly answerValues: AnswerValues | null;
  /** Metric families of the type's own beyond sent, loss, RTT and paths; null: none. */
  readonly seriesMetrics: SeriesMetrics | null;
}
