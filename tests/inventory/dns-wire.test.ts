/**
 * The DNS codec (src/inventory/dns-wire.ts): hand-made messages byte by byte (compression
 * pointers, escapes, bounds), every truncation of a real-sized answer, and the seeded fuzzer
 * (tests/support/dns-fuzz.ts) over a few thousand mutated messages.
 */
import { describe, expect, test } from "bun:test";
import {
  decodeMessage,
  encodeMessage,
  encodeQuery,
  EDNS_UDP_SIZE,
  nameFits,
  RCODE_NXDOMAIN,
  sameName,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_OPT,
  TYPE_SRV,
  type Decoded,
  type Message,
} from "../../src/inventory/dns-wire.ts";
import { checkDecoded, fuzzDns } from "../support/dns-fuzz.ts";

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"));

function ok(d: Decoded): Message {
  if (!d.ok) throw new Error(d.problem);
  return d.message;
}

function problem(d: Decoded): string {
  if (d.ok) throw new Error(`decoded: ${JSON.stringify(d.message)}`);
  return d.problem;
}

/** Header: ID 0xbeef, QR RD RA, NOERROR, one question, `an` answers. */
const header = (an: number, flags = "8180") => `beef ${flags} 0001 ${an.toString(16).padStart(4, "0")} 0000 0000`;
/** Question at byte 12: mesh.test A IN (mesh at 12, test at 17). */
const QUESTION = "046d657368 0474657374 00 0001 0001";

describe("encoding", () => {
  test("a query: ID, RD, one question, and an EDNS(0) OPT record announcing 1232 bytes", () => {
    const bytes = encodeQuery(0x1234, "mesh.test", TYPE_A);
    expect(Buffer.from(bytes).toString("hex")).toBe(
      "1234 0100 0001 0000 0000 0001".replace(/ /g, "") +
        "046d6573680474657374000001 0001".replace(/ /g, "") +
        // OPT: root name, type 41, class = UDP size, TTL 0, no data.
        `00 0029 ${EDNS_UDP_SIZE.toString(16).padStart(4, "0")} 00000000 0000`.replace(/ /g, ""),
    );
  });

  test("names are compressed against earlier names, without case", () => {
    const bytes = encodeMessage({
      id: 1,
      questions: [{ name: "mesh.test", type: TYPE_A, class: 1 }],
      answers: [
        { name: "MESH.test", type: TYPE_A, data: { kind: "A", address: "198.18.0.1" } },
        { name: "b.mesh.test", type: TYPE_A, data: { kind: "A", address: "198.18.0.2" } },
      ],
    });
    // The first answer's name is a pointer to byte 12; the second is "b" then a pointer to 12.
    expect(Buffer.from(bytes.subarray(27, 29)).toString("hex")).toBe("c00c");
    expect(Buffer.from(bytes.subarray(43, 47)).toString("hex")).toBe("0162c00c");
    expect(ok(decodeMessage(bytes)).answers.map((a) => [a.name, a.data])).toEqual([
      ["mesh.test", { kind: "A", address: "198.18.0.1" }],
      ["b.mesh.test", { kind: "A", address: "198.18.0.2" }],
    ]);
  });

  test("nameFits: labels of 1 to 63 bytes, 255 bytes in all", () => {
    expect(nameFits("mesh.test")).toBe(true);
    expect(nameFits("mesh.test.")).toBe(true);
    expect(nameFits("")).toBe(true);
    expect(nameFits("a..b")).toBe(false);
    expect(nameFits(`${"x".repeat(63)}.test`)).toBe(true);
    expect(nameFits(`${"x".repeat(64)}.test`)).toBe(false);
    // 4 labels of 63 bytes: 4 x 64 + 1 = 257 bytes.
    expect(nameFits(Array(4).fill("x".repeat(63)).join("."))).toBe(false);
    expect(nameFits(Array(3).fill("x".repeat(63)).join(".") + "." + "y".repeat(61))).toBe(true);
    expect(nameFits("é.test")).toBe(false);
  });

  test("sameName ignores ASCII case and a final dot", () => {
    expect(sameName("Mesh.TEST.", "mesh.test")).toBe(true);
    expect(sameName("mesh.test", "mesh.tests")).toBe(false);
  });
});

describe("decoding", () => {
  test("an answer with every kind of record and compression pointers into the question", () => {
    const bytes = hex(
      header(5) +
        QUESTION +
        // mesh.test A 198.18.0.1
        "c00c 0001 0001 0000003c 0004 c6120001" +
        // mesh.test AAAA fd00::1
        "c00c 001c 0001 0000003c 0010 fd000000000000000000000000000001" +
        // _p._tcp.mesh.test SRV 10 20 8443 node.mesh.test (target "node" + pointer to mesh)
        "025f70 045f746370 c00c 0021 0001 00000000 000d 000a 0014 20fb 046e6f6465 c00c" +
        // www.test CNAME mesh.test (owner "www" + pointer to test at 17)
        "03777777 c011 0005 0001 00000000 0002 c00c" +
        // mesh.test TXT "hi"
        "c00c 0010 0001 00000000 0003 026869",
    );
    const m = ok(decodeMessage(bytes));
    expect(m.header).toMatchObject({ id: 0xbeef, qr: true, rd: true, ra: true, tc: false, rcode: 0, ancount: 5 });
    expect(m.questions).toEqual([{ name: "mesh.test", type: TYPE_A, class: 1 }]);
    expect(m.answers.map((a) => a.data)).toEqual([
      { kind: "A", address: "198.18.0.1" },
      { kind: "AAAA", address: "fd00::1" },
      { kind: "SRV", priority: 10, weight: 20, port: 8443, target: "node.mesh.test" },
      { kind: "CNAME", target: "mesh.test" },
      { kind: "raw", bytes: Uint8Array.from([2, 0x68, 0x69]) },
    ]);
    expect(m.answers.map((a) => a.name)).toEqual(["mesh.test", "mesh.test", "_p._tcp.mesh.test", "www.test", "mesh.test"]);
    expect(m.answers[0]!.ttl).toBe(60);
  });

  test("a label's dots, spaces and other bytes are written \\DDD, and read back by the encoder", () => {
    const bytes = hex(`${header(0)} 03612e62 02 20ff 00 0001 0001`);
    const m = ok(decodeMessage(bytes));
    expect(m.questions[0]!.name).toBe("a\\046b.\\032\\255");
    const again = encodeMessage({ id: 0xbeef, questions: m.questions });
    expect(Buffer.from(again.subarray(12))).toEqual(Buffer.from(bytes.subarray(12)));
  });

  test("data that does not fit its type is marked malformed; the records around it are read", () => {
    const bytes = hex(
      header(3) +
        QUESTION +
        "c00c 0001 0001 00000000 0005 c612000101" + // an A record of 5 bytes
        "c00c 001c 0001 00000000 0004 c6120001" + // an AAAA record of 4 bytes
        "c00c 0001 0001 00000000 0004 c6120002",
    );
    const m = ok(decodeMessage(bytes));
    expect(m.answers.map((a) => a.data)).toEqual([
      { kind: "malformed", problem: "A data of 5 bytes, not 4" },
      { kind: "malformed", problem: "AAAA data of 4 bytes, not 16" },
      { kind: "A", address: "198.18.0.2" },
    ]);
  });

  test("an SRV or CNAME whose name runs past its data is malformed", () => {
    const srv = hex(`${header(1)}${QUESTION} c00c 0021 0001 00000000 0008 0000 0000 0050 046e6f6465`);
    // The data is 8 bytes: the target's label "node" starts inside and ends outside it.
    expect(ok(decodeMessage(srv)).answers[0]!.data.kind).toBe("malformed");
    const cname = hex(`${header(1)}${QUESTION} c00c 0005 0001 00000000 0003 c00c 00`);
    expect(ok(decodeMessage(cname)).answers[0]!.data).toEqual({ kind: "malformed", problem: "CNAME data does not end with its name" });
  });

  test("a compression pointer that points forward, or at itself, is refused: no loop", () => {
    expect(problem(decodeMessage(hex(`${header(0)} c00c 0001 0001`)))).toBe("a compression pointer at byte 12 points forward (to byte 12)");
    expect(problem(decodeMessage(hex(`${header(0)} c00e 0001 0001 00`)))).toBe("a compression pointer at byte 12 points forward (to byte 14)");
    // Two names pointing at each other: the second pointer would go back to the first name.
    const loop = `${header(1)} 0161 c00c 0001 0001 c00e 0001 0001 00000000 0000`;
    expect(problem(decodeMessage(hex(loop)))).toContain("points forward");
  });

  test("a chain of pointers, each further back, is followed", () => {
    // question: a.test; answer owner: "b" -> pointer to a.test; then "c" -> pointer to b...
    const bytes = hex(`${header(2)} 0161 0474657374 00 0001 0001  0162 c00c 0001 0001 00000000 0004 01020304  0163 c018 0001 0001 00000000 0004 01020305`);
    expect(ok(decodeMessage(bytes)).answers.map((a) => a.name)).toEqual(["b.a.test", "c.b.a.test"]);
  });

  test("a name longer than 255 bytes is refused, through pointers too", () => {
    const long = Array(4).fill(`3f${"78".repeat(63)}`).join("") + "00";
    expect(problem(decodeMessage(hex(`${header(0)} ${long} 0001 0001`)))).toBe("a name at byte 12 is longer than 255 bytes");
    // 3 x 64 bytes in the question (193 with its zero), then an owner adding 63 more before a pointer to it.
    const three = Array(3).fill(`3f${"78".repeat(63)}`).join("") + "00";
    const bytes = hex(`${header(1)} ${three} 0001 0001 3f${"79".repeat(63)} c00c 0001 0001 00000000 0004 01020304`);
    expect(problem(decodeMessage(bytes))).toContain("longer than 255 bytes");
  });

  test("a label length with the reserved bits 01 or 10 is refused", () => {
    expect(problem(decodeMessage(hex(`${header(0)} 41 0001 0001`)))).toBe("a label at byte 12 has the reserved length prefix 0x41");
    expect(problem(decodeMessage(hex(`${header(0)} 81 0001 0001`)))).toBe("a label at byte 12 has the reserved length prefix 0x81");
  });

  test("a header that claims 65,535 answers is believed only as far as the bytes go", () => {
    const bytes = hex(header(0xffff) + QUESTION + "c00c 0001 0001 00000000 0004 c6120001".repeat(2));
    expect(problem(decodeMessage(bytes))).toBe(`answer 3 of 65535 runs past the end (${bytes.length} bytes)`);
    // At most maxAnswers are read: the header and question alone (how a truncated answer is looked at).
    const head = ok(decodeMessage(bytes, 0));
    expect(head.answers).toEqual([]);
    expect(head.header.ancount).toBe(0xffff);
  });

  test("record data past the end, a short header, a message over 65,535 bytes", () => {
    expect(problem(decodeMessage(hex(`${header(1)}${QUESTION} c00c 0001 0001 00000000 0008 c6120001`)))).toBe(
      "the data of answer 1 runs past the end",
    );
    expect(problem(decodeMessage(hex("beef8180")))).toBe("4 bytes, shorter than a DNS header");
    expect(problem(decodeMessage(new Uint8Array(65_536)))).toBe("65536 bytes, longer than a DNS message can be");
    expect(problem(decodeMessage(hex(`${header(0)} 046d657368`)))).toBe("a name at byte 12 runs past the end");
  });

  test("a 4,000-record answer cut anywhere is refused, never throws", () => {
    const answers = Array.from({ length: 4000 }, (_, i) => ({
      name: "mesh.test",
      type: TYPE_A,
      data: { kind: "A" as const, address: `198.18.${i >> 8}.${i & 255}` },
    }));
    const bytes = encodeMessage({ id: 7, qr: true, rcode: RCODE_NXDOMAIN, questions: [{ name: "mesh.test", type: TYPE_A, class: 1 }], answers });
    expect(bytes.length).toBe(12 + 15 + 4000 * 16);
    const full = ok(decodeMessage(bytes));
    expect(full.answers).toHaveLength(4000);
    expect(full.answers[3999]!.data).toEqual({ kind: "A", address: "198.18.15.159" });
    // Every cut through the header, the question and the first records, then one every 61 bytes.
    const cuts = [...Array.from({ length: 300 }, (_, i) => i), ...Array.from({ length: Math.ceil(bytes.length / 61) }, (_, i) => i * 61)];
    const refused = cuts.filter((cut) => !decodeMessage(bytes.subarray(0, cut)).ok);
    expect(refused).toEqual(cuts);
  });

  test("the OPT record the encoder writes is a record of type 41 in the additional section (not read)", () => {
    const m = ok(decodeMessage(encodeQuery(1, "a.test", TYPE_SRV)));
    expect(m.header.arcount).toBe(1);
    expect(m.answers).toEqual([]);
    expect(TYPE_OPT).toBe(41);
    expect(TYPE_CNAME).toBe(5);
    expect(TYPE_AAAA).toBe(28);
  });
});

describe("the fuzzer", () => {
  test("3,000 mutated messages from seed 1: no exception, every decoding holds", () => {
    const stats = fuzzDns(1, 3000);
    expect(stats.failures).toEqual([]);
    expect(stats.cases).toBe(3000);
    // Both paths are exercised: refusals and decodings, with malformed records among them.
    expect(stats.refused).toBeGreaterThan(500);
    expect(stats.decoded).toBeGreaterThan(500);
    expect(stats.malformedRecords).toBeGreaterThan(10);
  });

  test("its checks catch a decoding that breaks them", () => {
    const m = ok(decodeMessage(hex(header(1) + QUESTION + "c00c 0001 0001 00000000 0004 c6120001")));
    expect(checkDecoded(m, 43)).toBeUndefined();
    expect(checkDecoded({ ...m, questions: [] }, 43)).toBe("0 questions, the header says 1");
    expect(checkDecoded({ ...m, answers: [{ ...m.answers[0]!, data: { kind: "A", address: "fd00::1" } }] }, 43)).toContain("A data");
    expect(checkDecoded({ ...m, answers: [{ ...m.answers[0]!, name: "a..b" }] }, 43)).toContain("cannot be written");
    expect(checkDecoded({ ...m, answers: [m.answers[0]!, m.answers[0]!] }, 43)).toBe("2 answers, the header says 1");
  });
});
