/**
 * DNS messages as bytes (RFC 1035, with EDNS(0) from RFC 6891 and SRV from RFC 2782): a query
 * and answer encoder with name compression, and a decoder that never throws and never reads past
 * the message, whatever the bytes say. Pure: the dns inventory (dns.ts) and its tests use it.
 *
 * The decoder reads the header, the question and the answer section only: the authority and
 * additional sections are never used (an SRV answer's additional addresses are not trusted: the
 * inventory asks for them itself). Every name is bounded at 255 bytes on the wire, a compression
 * pointer must point strictly before the label it stands in, so no chain of pointers can loop,
 * and a count in the header is believed only as far as the bytes go. A record whose data does
 * not fit its type (an A record of 5 bytes) is kept as "malformed", for its caller to count; a
 * record that runs past the end of the message ends the decoding with a problem.
 */
import { formatAddress, parseAddress } from "../packet/address.ts";

export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
export const TYPE_SRV = 33;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** The name of a response code, for messages ("SERVFAIL"; "RCODE 9" past the common ones). */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE ${rcode}`;
}

const TYPE_NAMES: Record<number, string> = { [TYPE_A]: "A", [TYPE_CNAME]: "CNAME", [TYPE_AAAA]: "AAAA", [TYPE_SRV]: "SRV", [TYPE_OPT]: "OPT" };

/** The mnemonic of a record type ("AAAA"; "TYPE99" for the others, as RFC 3597 writes them). */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

/** The largest DNS message: what a TCP length prefix can announce. */
export const MAX_MESSAGE_BYTES = 65_535;
/** The largest name on the wire, length bytes and root included (RFC 1035 3.1). */
export const MAX_NAME_BYTES = 255;
const MAX_LABEL_BYTES = 63;
const HEADER_BYTES = 12;
/** A record's fixed part after its name: type, class, TTL and RDLENGTH. */
const RR_FIXED_BYTES = 10;
/** The smallest record on the wire: a root name (one byte) and the fixed part. */
const MIN_RR_BYTES = 1 + RR_FIXED_BYTES;

export interface Header {
  readonly id: number;
  /** A response, not a query. */
  readonly qr: boolean;
  readonly opcode: number;
  readonly aa: boolean;
  /** Truncated: the full answer did not fit (ask again over TCP). */
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly rcode: number;
  readonly qdcount: number;
  readonly ancount: number;
  readonly nscount: number;
  readonly arcount: number;
}

export interface Question {
  /** Presentation form without the final dot ("" for the root); see decodeName. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

export type RecordData =
  | { readonly kind: "A"; readonly address: string }
  | { readonly kind: "AAAA"; readonly address: string }
  | { readonly kind: "SRV"; readonly priority: number; readonly weight: number; readonly port: number; readonly target: string }
  | { readonly kind: "CNAME"; readonly target: string }
  /** Any other type, its data kept as bytes (the encoder writes it back as is). */
  | { readonly kind: "raw"; readonly bytes: Uint8Array }
  /** Data that does not fit the record's type: the reason. */
  | { readonly kind: "malformed"; readonly problem: string };

export interface ResourceRecord {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly ttl: number;
  readonly data: RecordData;
}

export interface Message {
  readonly header: Header;
  readonly questions: readonly Question[];
  readonly answers: readonly ResourceRecord[];
}

export type Decoded = { readonly ok: true; readonly message: Message } | { readonly ok: false; readonly problem: string };

/** A byte the presentation form writes as is: letters, digits, '-' and '_'. */
function plainByte(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x5f;
}

/** A position that read past the message, or a name that broke a rule: why decoding stopped. */
class Malformed {
  constructor(readonly problem: string) {}
}

/**
 * The name at `offset`: its presentation form (other bytes than letters, digits, '-' and '_'
 * written \DDD, so a name is always printable and a '.' inside a label stays apart from the
 * separator) and the offset after it in the message (after the first pointer, if any).
 */
function readName(bytes: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let at = offset;
  let next = -1;
  // Wire bytes of the name so far, lengths and the final zero included.
  let size = 0;
  // Each pointer must go strictly before the label it replaces: no loop, at most `offset` jumps.
  let limit = offset;
  for (;;) {
    if (at >= bytes.length) throw new Malformed(`a name at byte ${offset} runs past the end`);
    const length = bytes[at]!;
    if (length === 0) {
      size += 1;
      if (size > MAX_NAME_BYTES) throw new Malformed(`a name at byte ${offset} is longer than ${MAX_NAME_BYTES} bytes`);
      if (next < 0) next = at + 1;
      return { name: labels.join("."), next };
    }
    const kind = length & 0xc0;
    if (kind === 0xc0) {
      if (at + 1 >= bytes.length) throw new Malformed(`a compression pointer at byte ${at} runs past the end`);
      const target = ((length & 0x3f) << 8) | bytes[at + 1]!;
      if (target >= limit) throw new Malformed(`a compression pointer at byte ${at} points forward (to byte ${target})`);
      if (next < 0) next = at + 2;
      limit = target;
      at = target;
      continue;
    }
    if (kind !== 0) throw new Malformed(`a label at byte ${at} has the reserved length prefix 0x${length.toString(16)}`);
    size += 1 + length;
    if (size >= MAX_NAME_BYTES) throw new Malformed(`a name at byte ${offset} is longer than ${MAX_NAME_BYTES} bytes`);
    if (at + 1 + length > bytes.length) throw new Malformed(`a label at byte ${at} runs past the end`);
    let label = "";
    for (let i = at + 1; i <= at + length; i++) {
      const b = bytes[i]!;
      label += plainByte(b) ? String.fromCharCode(b) : `\\${b.toString().padStart(3, "0")}`;
    }
    labels.push(label);
    at += 1 + length;
  }
}

function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 8) | bytes[at + 1]!;
}

function u32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

function readHeader(bytes: Uint8Array): Header {
  const flags = u16(bytes, 2);
  return {
    id: u16(bytes, 0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    rcode: flags & 0xf,
    qdcount: u16(bytes, 4),
    ancount: u16(bytes, 6),
    nscount: u16(bytes, 8),
    arcount: u16(bytes, 10),
  };
}

/** The data of one record, `start` to `end` in the message (names in it may point anywhere before). */
function readData(bytes: Uint8Array, type: number, start: number, end: number): RecordData {
  const length = end - start;
  const malformed = (what: string): RecordData => ({ kind: "malformed", problem: `${typeName(type)} data ${what}` });
  const name = (at: number): { name: string; next: number } | RecordData => {
    try {
      // A name inside the data must end inside it too.
      const read = readName(bytes.subarray(0, end), at);
      return read;
    } catch (e) {
      if (e instanceof Malformed) return malformed(`holds a bad name: ${e.problem}`);
      throw e;
    }
  };
  switch (type) {
    case TYPE_A:
      return length === 4 ? { kind: "A", address: formatAddress(4, bytes, start) } : malformed(`of ${length} bytes, not 4`);
    case TYPE_AAAA:
      return length === 16 ? { kind: "AAAA", address: formatAddress(6, bytes, start) } : malformed(`of ${length} bytes, not 16`);
    case TYPE_CNAME: {
      const target = name(start);
      if ("kind" in target) return target;
      return target.next === end ? { kind: "CNAME", target: target.name } : malformed("does not end with its name");
    }
    case TYPE_SRV: {
      if (length < 7) return malformed(`of ${length} bytes, fewer than 7`);
      const target = name(start + 6);
      if ("kind" in target) return target;
      if (target.next !== end) return malformed("does not end with its target name");
      return { kind: "SRV", priority: u16(bytes, start), weight: u16(bytes, start + 2), port: u16(bytes, start + 4), target: target.name };
    }
    default:
      return { kind: "raw", bytes: bytes.slice(start, end) };
  }
}

/**
 * Decodes a message's header, questions and answers. Never throws: bytes that break a rule give
 * `{ok: false, problem}`. At most `maxAnswers` answers are decoded (the rest are left unread, and
 * the header's ancount tells how many there were).
 */
export function decodeMessage(bytes: Uint8Array, maxAnswers = MAX_MESSAGE_BYTES): Decoded {
  try {
    if (bytes.length < HEADER_BYTES) return { ok: false, problem: `${bytes.length} bytes, shorter than a DNS header` };
    if (bytes.length > MAX_MESSAGE_BYTES) return { ok: false, problem: `${bytes.length} bytes, longer than a DNS message can be` };
    const header = readHeader(bytes);
    let at = HEADER_BYTES;
    const questions: Question[] = [];
    for (let i = 0; i < header.qdcount; i++) {
      const { name, next } = readName(bytes, at);
      if (next + 4 > bytes.length) return { ok: false, problem: `question ${i + 1} runs past the end` };
      questions.push({ name, type: u16(bytes, next), class: u16(bytes, next + 2) });
      at = next + 4;
    }
    const answers: ResourceRecord[] = [];
    const wanted = Math.min(header.ancount, maxAnswers);
    for (let i = 0; i < wanted; i++) {
      if (at + MIN_RR_BYTES > bytes.length) {
        return { ok: false, problem: `answer ${i + 1} of ${header.ancount} runs past the end (${bytes.length} bytes)` };
      }
      const { name, next } = readName(bytes, at);
      if (next + RR_FIXED_BYTES > bytes.length) return { ok: false, problem: `answer ${i + 1} runs past the end` };
      const type = u16(bytes, next);
      const klass = u16(bytes, next + 2);
      const ttl = u32(bytes, next + 4);
      const start = next + RR_FIXED_BYTES;
      const end = start + u16(bytes, next + 8);
      if (end > bytes.length) return { ok: false, problem: `the data of answer ${i + 1} runs past the end` };
      answers.push({ name, type, class: klass, ttl, data: readData(bytes, type, start, end) });
      at = end;
    }
    return { ok: true, message: { header, questions, answers } };
  } catch (e) {
    if (e instanceof Malformed) return { ok: false, problem: e.problem };
    throw e;
  }
}

// --- encoding ---

/** Whether a name can be written: labels of 1 to 63 bytes, 255 bytes in all on the wire. */
export function nameFits(name: string): boolean {
  const labels = splitName(name);
  if (labels === undefined) return false;
  return labels.reduce((size, l) => size + 1 + l.length, 1) <= MAX_NAME_BYTES && labels.every((l) => l.length >= 1 && l.length <= MAX_LABEL_BYTES);
}

/** A name's labels as bytes: "" and "." are the root; \DDD and \X escapes are read back. */
function splitName(name: string): Uint8Array[] | undefined {
  const text = name.endsWith(".") && !name.endsWith("\\.") ? name.slice(0, -1) : name;
  if (text === "") return [];
  const labels: Uint8Array[] = [];
  let current: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return undefined;
    if (c === 0x2e) {
      labels.push(Uint8Array.from(current));
      current = [];
    } else if (c === 0x5c) {
      const digits = /^\d{3}/.exec(text.slice(i + 1, i + 4));
      if (digits) {
        const value = Number(digits[0]);
        if (value > 255) return undefined;
        current.push(value);
        i += 3;
      } else {
        if (i + 1 >= text.length) return undefined;
        current.push(text.charCodeAt(++i));
      }
    } else {
      current.push(c);
    }
  }
  labels.push(Uint8Array.from(current));
  return labels;
}

/** Two names are the same name: ASCII letters compare without case (RFC 4343). */
export function sameName(a: string, b: string): boolean {
  return canonicalName(a) === canonicalName(b);
}

/** The form names are compared in: lower case, no final dot. */
export function canonicalName(name: string): string {
  const text = name.endsWith(".") && !name.endsWith("\\.") ? name.slice(0, -1) : name;
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

export interface EncodeRecord {
  readonly name: string;
  readonly type: number;
  readonly class?: number;
  readonly ttl?: number;
  readonly data: RecordData;
}

export interface EncodeMessage {
  readonly id: number;
  readonly qr?: boolean;
  readonly opcode?: number;
  readonly aa?: boolean;
  readonly tc?: boolean;
  readonly rd?: boolean;
  readonly ra?: boolean;
  readonly rcode?: number;
  readonly questions?: readonly Question[];
  readonly answers?: readonly EncodeRecord[];
  readonly additionals?: readonly EncodeRecord[];
  /** Announce this UDP payload size with an EDNS(0) OPT record in the additional section. */
  readonly ednsUdpSize?: number;
}

/** Bytes written so far, growing as needed; names compressed against what is already written. */
class Writer {
  bytes = new Uint8Array(512);
  length = 0;
  /** Canonical suffix ("b.example") -> its offset, for compression pointers (offsets < 0x4000). */
  private readonly suffixes = new Map<string, number>();

  private room(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  u8(v: number): void {
    this.room(1);
    this.bytes[this.length++] = v & 0xff;
  }

  u16(v: number): void {
    this.u8(v >> 8);
    this.u8(v);
  }

  u32(v: number): void {
    this.u16((v >>> 16) & 0xffff);
    this.u16(v & 0xffff);
  }

  raw(b: Uint8Array): void {
    this.room(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }

  name(name: string, compress: boolean): void {
    const labels = splitName(name);
    if (labels === undefined || !nameFits(name)) throw new Error(`cannot encode the name ${JSON.stringify(name)}`);
    // The key of each suffix: its labels length-prefixed, ASCII letters lowered (names compare without case).
    const keys: string[] = new Array(labels.length);
    let key = "";
    for (let i = labels.length - 1; i >= 0; i--) {
      let text = String.fromCharCode(labels[i]!.length);
      for (const b of labels[i]!) text += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 32 : b);
      key = text + key;
      keys[i] = key;
    }
    for (let i = 0; i < labels.length; i++) {
      const seen = this.suffixes.get(keys[i]!);
      if (compress && seen !== undefined) {
        this.u16(0xc000 | seen);
        return;
      }
      if (this.length < 0x4000 && seen === undefined) this.suffixes.set(keys[i]!, this.length);
      this.u8(labels[i]!.length);
      this.raw(labels[i]!);
    }
    this.u8(0);
  }

  patchU16(at: number, v: number): void {
    this.bytes[at] = (v >> 8) & 0xff;
    this.bytes[at + 1] = v & 0xff;
  }
}

function writeRecord(w: Writer, r: EncodeRecord): void {
  w.name(r.name, true);
  w.u16(r.type);
  w.u16(r.class ?? CLASS_IN);
  w.u32(r.ttl ?? 0);
  const lengthAt = w.length;
  w.u16(0);
  const start = w.length;
  const d = r.data;
  switch (d.kind) {
    case "A":
    case "AAAA": {
      const parsed = parseAddress(d.address);
      if (!parsed || parsed.family !== (d.kind === "A" ? 4 : 6)) throw new Error(`not an ${d.kind} address: ${d.address}`);
      w.raw(parsed.bytes.subarray(0, d.kind === "A" ? 4 : 16));
      break;
    }
    case "CNAME":
      w.name(d.target, true);
      break;
    case "SRV":
      w.u16(d.priority);
      w.u16(d.weight);
      w.u16(d.port);
      // RFC 2782 says the target is not compressed; decoders accept both.
      w.name(d.target, false);
      break;
    case "raw":
      w.raw(d.bytes);
      break;
    case "malformed":
      throw new Error("a malformed record cannot be encoded");
  }
  w.patchU16(lengthAt, w.length - start);
}

/** Encodes a message; throws on a name or address that cannot be written (a caller's bug). */
export function encodeMessage(m: EncodeMessage): Uint8Array {
  const w = new Writer();
  const questions = m.questions ?? [];
  const answers = m.answers ?? [];
  const additionals = [...(m.additionals ?? [])];
  if (m.ednsUdpSize !== undefined) {
    additionals.push({ name: "", type: TYPE_OPT, class: m.ednsUdpSize, ttl: 0, data: { kind: "raw", bytes: new Uint8Array(0) } });
  }
  w.u16(m.id);
  const flags =
    (m.qr ? 0x8000 : 0) |
    ((m.opcode ?? 0) << 11) |
    (m.aa ? 0x0400 : 0) |
    (m.tc ? 0x0200 : 0) |
    (m.rd ? 0x0100 : 0) |
    (m.ra ? 0x0080 : 0) |
    ((m.rcode ?? 0) & 0xf);
  w.u16(flags);
  w.u16(questions.length);
  w.u16(answers.length);
  w.u16(0);
  w.u16(additionals.length);
  for (const q of questions) {
    w.name(q.name, true);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of answers) writeRecord(w, r);
  for (const r of additionals) writeRecord(w, r);
  return w.bytes.slice(0, w.length);
}

/** The UDP payload size announced in queries: the DNS flag day 2020 value, which avoids fragments. */
export const EDNS_UDP_SIZE = 1232;

/** A recursive query for one name and type, with EDNS(0) so that answers up to EDNS_UDP_SIZE come over UDP. */
export function encodeQuery(id: number, name: string, type: number): Uint8Array {
  return encodeMessage({ id, rd: true, questions: [{ name, type, class: CLASS_IN }], ednsUdpSize: EDNS_UDP_SIZE });
}
