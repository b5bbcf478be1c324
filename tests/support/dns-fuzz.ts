/**
 * The DNS decoder fuzzer: random valid messages (names from a small pool so that compression
 * pointers abound, labels with dots, spaces, backslashes and bytes above 127, every record kind the
 * decoder knows and some it does not), each checked to come back as encoded, then mutated (bit
 * flips, truncation, inserted and deleted bytes, counts, compression pointers aimed anywhere,
 * including at themselves) and decoded again. A decoding must never throw, and what it returns
 * must hold: as many questions as the header says, no more answers than it says, addresses that
 * are addresses, names that can be written back, and a message that re-encodes to one that
 * decodes the same.
 *
 * tests/inventory/dns-wire.test.ts runs a few thousand cases; `bun scripts/fuzz-dns.ts SEED COUNT`
 * runs many more.
 */
import { isIPv4, isIPv6 } from "node:net";
import {
  canonicalName,
  decodeMessage,
  encodeMessage,
  nameFits,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_SRV,
  type EncodeRecord,
  type Message,
  type Question,
} from "../../src/inventory/dns-wire.ts";
import { mulberry32 } from "./prng.ts";

export interface FuzzStats {
  cases: number;
  /** Mutated messages the decoder refused (a problem line). */
  refused: number;
  /** Mutated messages it decoded. */
  decoded: number;
  /** Answers whose data it marked malformed. */
  malformedRecords: number;
  /** Property failures: each a line with the seed, the case and the bytes. */
  failures: string[];
}

const TYPE_TXT = 16;

/** Runs `count` cases from `seed`; returns what happened, failures included (never throws). */
export function fuzzDns(seed: number, count: number): FuzzStats {
  const random = mulberry32(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const stats: FuzzStats = { cases: 0, refused: 0, decoded: 0, malformedRecords: 0, failures: [] };

  const label = (): string => {
    if (random() < 0.15) {
      // A label of odd bytes, in the presentation form the decoder writes (\DDD).
      const length = 1 + int(12);
      let text = "";
      for (let i = 0; i < length; i++) {
        const b = int(256);
        const plain = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x5f;
        text += plain ? String.fromCharCode(b) : `\\${String(b).padStart(3, "0")}`;
      }
      return text;
    }
    if (random() < 0.05) return "x".repeat(63);
    return pick(["a", "b", "mesh", "svc", "cluster", "local", "_tcp", "_http", "probers", "test", "node-1", "n_2"]);
  };
  const pool: string[] = [];
  const name = (): string => {
    if (pool.length > 0 && random() < 0.6) return pick(pool);
    const labels = Array.from({ length: int(5) }, label);
    // Sometimes a long name near the 255-byte limit.
    if (random() < 0.05) while (nameFits([...labels, "y".repeat(40)].join("."))) labels.push("y".repeat(40));
    const n = labels.join(".");
    if (!nameFits(n)) return "fallback.test";
    pool.push(n);
    return n;
  };
  const v4 = () => `${int(256)}.${int(256)}.${int(256)}.${int(256)}`;
  const v6 = () => {
    const words = Array.from({ length: 8 }, () => (random() < 0.4 ? 0 : int(0x10000)));
    // Through the decoder's own formatter: canonical text, as it decodes.
    const bytes = new Uint8Array(16);
    words.forEach((w, i) => ((bytes[2 * i] = w >> 8), (bytes[2 * i + 1] = w & 0xff)));
    const d = decodeMessage(encodeMessage({ id: 0, answers: [{ name: "", type: TYPE_AAAA, data: { kind: "raw", bytes } }] }));
    const data = d.ok ? d.message.answers[0]?.data : undefined;
    return data?.kind === "AAAA" ? data.address : "::1";
  };
  const record = (): EncodeRecord => {
    const owner = name();
    const ttl = int(2 ** 31);
    switch (int(5)) {
      case 0:
        return { name: owner, type: TYPE_A, ttl, data: { kind: "A", address: v4() } };
      case 1:
        return { name: owner, type: TYPE_AAAA, ttl, data: { kind: "AAAA", address: v6() } };
      case 2:
        return { name: owner, type: TYPE_SRV, ttl, data: { kind: "SRV", priority: int(65536), weight: int(65536), port: int(65536), target: name() } };
      case 3:
        return { name: owner, type: TYPE_CNAME, ttl, data: { kind: "CNAME", target: name() } };
      default: {
        const bytes = new Uint8Array(int(40));
        for (let i = 0; i < bytes.length; i++) bytes[i] = int(256);
        return { name: owner, type: TYPE_TXT, ttl, data: { kind: "raw", bytes } };
      }
    }
  };

  const fail = (what: string, i: number, bytes: Uint8Array) => {
    if (stats.failures.length < 20) stats.failures.push(`seed ${seed} case ${i}: ${what}: ${Buffer.from(bytes).toString("hex")}`);
  };

  for (let i = 0; i < count; i++) {
    stats.cases++;
    pool.length = 0;
    const questions: Question[] = Array.from({ length: int(3) }, () => ({ name: name(), type: pick([TYPE_A, TYPE_AAAA, TYPE_SRV]), class: 1 }));
    const answers = Array.from({ length: int(random() < 0.02 ? 300 : 12) }, record);
    const header = { id: int(65536), qr: random() < 0.8, tc: random() < 0.1, rd: random() < 0.5, ra: random() < 0.5, rcode: int(6) };
    const bytes = encodeMessage({ ...header, questions, answers });

    // The valid message comes back as it was written.
    const clean = decodeMessage(bytes);
    if (!clean.ok) {
      fail(`a valid message is refused: ${clean.problem}`, i, bytes);
      continue;
    }
    const same =
      clean.message.header.id === header.id &&
      JSON.stringify(clean.message.questions.map(canonicalQuestion)) === JSON.stringify(questions.map(canonicalQuestion)) &&
      JSON.stringify(clean.message.answers.map(canonicalRecord)) === JSON.stringify(answers.map(canonicalRecord));
    if (!same) fail("a valid message decodes to something else", i, bytes);

    const mutated = mutate(bytes, random, int);
    let decoded: ReturnType<typeof decodeMessage>;
    try {
      decoded = decodeMessage(mutated);
    } catch (e) {
      fail(`decodeMessage threw ${e instanceof Error ? e.stack : String(e)}`, i, mutated);
      continue;
    }
    if (!decoded.ok) {
      stats.refused++;
      if (typeof decoded.problem !== "string" || decoded.problem === "") fail("a refusal without a problem line", i, mutated);
      continue;
    }
    stats.decoded++;
    const problem = checkDecoded(decoded.message, mutated.length);
    if (problem) {
      fail(problem, i, mutated);
      continue;
    }
    stats.malformedRecords += decoded.message.answers.filter((a) => a.data.kind === "malformed").length;
    // What was decoded is writable, and reads back the same.
    const wellFormed = decoded.message.answers.filter((a) => a.data.kind !== "malformed");
    let again: Uint8Array;
    try {
      again = encodeMessage({ id: decoded.message.header.id, questions: decoded.message.questions, answers: wellFormed });
    } catch (e) {
      fail(`a decoded message cannot be encoded again: ${e instanceof Error ? e.message : String(e)}`, i, mutated);
      continue;
    }
    const back = decodeMessage(again);
    if (
      !back.ok ||
      JSON.stringify(back.message.answers.map(canonicalRecord)) !== JSON.stringify(wellFormed.map(canonicalRecord)) ||
      JSON.stringify(back.message.questions.map(canonicalQuestion)) !== JSON.stringify(decoded.message.questions.map(canonicalQuestion))
    ) {
      fail("a decoded message encodes to one that decodes differently", i, mutated);
    }
  }
  return stats;
}

/**
 * A question as compared: compression makes a later name take the case of the first one written
 * (names compare without case), so names are compared in canonical form.
 */
function canonicalQuestion(q: Question): Question {
  return { ...q, name: canonicalName(q.name) };
}

/** A record as compared: canonical names, raw data as a list of numbers, the class filled in. */
function canonicalRecord(r: EncodeRecord): unknown {
  const d = r.data;
  const data =
    d.kind === "raw"
      ? { kind: "raw", bytes: [...d.bytes] }
      : d.kind === "SRV" || d.kind === "CNAME"
        ? { ...d, target: canonicalName(d.target) }
        : d;
  return { name: canonicalName(r.name), type: r.type, class: r.class ?? 1, ttl: r.ttl ?? 0, data };
}

/** What every decoded message must hold; a line saying what it breaks, or undefined. */
export function checkDecoded(m: Message, size: number): string | undefined {
  if (m.questions.length !== m.header.qdcount) return `${m.questions.length} questions, the header says ${m.header.qdcount}`;
  if (m.answers.length > m.header.ancount) return `${m.answers.length} answers, the header says ${m.header.ancount}`;
  if (m.answers.length > (size - 12) / 11) return `${m.answers.length} answers cannot fit ${size} bytes`;
  for (const q of m.questions) if (!nameFits(q.name) && q.name !== "") return `question name ${JSON.stringify(q.name)} cannot be written`;
  for (const a of m.answers) {
    if (!nameFits(a.name) && a.name !== "") return `owner name ${JSON.stringify(a.name)} cannot be written`;
    const d = a.data;
    if (d.kind === "A" && (a.type !== TYPE_A || !isIPv4(d.address))) return `A data ${JSON.stringify(d)}`;
    if (d.kind === "AAAA" && (a.type !== TYPE_AAAA || !isIPv6(d.address))) return `AAAA data ${JSON.stringify(d)}`;
    if (d.kind === "SRV" && (a.type !== TYPE_SRV || !(nameFits(d.target) || d.target === "") || d.port > 65535)) return `SRV data ${JSON.stringify(d)}`;
    if (d.kind === "CNAME" && (a.type !== TYPE_CNAME || !(nameFits(d.target) || d.target === ""))) return `CNAME data ${JSON.stringify(d)}`;
    if (d.kind === "raw" && [TYPE_A, TYPE_AAAA, TYPE_SRV, TYPE_CNAME].includes(a.type)) return `a known type left raw: ${a.type}`;
    if (d.kind === "raw" && d.bytes.length > size) return "raw data longer than the message";
  }
  return undefined;
}

function mutate(bytes: Uint8Array, random: () => number, int: (n: number) => number): Uint8Array {
  let b = new Uint8Array(bytes);
  const rounds = 1 + int(4);
  for (let r = 0; r < rounds; r++) {
    if (b.length === 0) return b;
    switch (int(9)) {
      case 0: // bit flip
        b[int(b.length)]! ^= 1 << int(8);
        break;
      case 1: // a random byte
        b[int(b.length)] = int(256);
        break;
      case 2: // truncated
        b = b.slice(0, int(b.length));
        break;
      case 3: {
        // bytes inserted
        const at = int(b.length + 1);
        const extra = Uint8Array.from({ length: 1 + int(8) }, () => int(256));
        b = Uint8Array.from([...b.subarray(0, at), ...extra, ...b.subarray(at)]);
        break;
      }
      case 4: {
        // bytes deleted
        const at = int(b.length);
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1 + int(8))]);
        break;
      }
      case 5: // a count in the header
        if (b.length >= 12) {
          const field = 4 + 2 * int(4);
          const value = random() < 0.5 ? 0xffff : int(40);
          b[field] = value >> 8;
          b[field + 1] = value & 0xff;
        }
        break;
      case 6: {
        // a compression pointer aimed anywhere: backward, forward, at itself, past the end
        const at = int(b.length - 1);
        const target = random() < 0.3 ? at : int(b.length + 64);
        b[at] = 0xc0 | ((target >> 8) & 0x3f);
        b[at + 1] = target & 0xff;
        break;
      }
      case 7: // a label length with the reserved bits
        b[int(b.length)] = random() < 0.5 ? 0x40 | int(64) : 0x80 | int(64);
        break;
      default: {
        // a record length (or any 16-bit field) set to something odd
        const at = int(b.length - 1);
        const value = pick16(random, int);
        b[at] = value >> 8;
        b[at + 1] = value & 0xff;
      }
    }
  }
  return b;
}

function pick16(random: () => number, int: (n: number) => number): number {
  const r = random();
  return r < 0.3 ? 0 : r < 0.5 ? 0xffff : r < 0.7 ? 4 + int(3) : int(0x10000);
}
