/**
 * Every kind of frame the prober sends or the test responder answers, generated with
 * writePacket / writeArpRequest / writeNeighbourSolicitation, written to pcap files and decoded
 * by tshark (Wireshark's dissectors, a second opinion independent of our parser) with checksum
 * validation switched on: no malformed packet, no bad checksum, and each field where it belongs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAddress, parseMac } from "../../src/packet/address.ts";
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
  IPPROTO_TCP,
  IPPROTO_UDP,
  LINK_ETHERNET,
  LINK_RAW,
  PacketSpec,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  writeArpRequest,
  writeNeighbourSolicitation,
  writePacket,
  type LinkKind,
} from "../../src/packet/build.ts";
import { writePcapFile, type PcapRecord } from "../support/pcap-file.ts";
import { concat, l4Checksum, loadFixture, onesSum, pseudoHeader } from "./vectors.ts";

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;
/** Wireshark's PI_ERROR: bad checksums and malformed packets are reported at this severity. */
const EXPERT_ERROR = 0x00800000;

const MAC_A = "02:00:5e:10:00:01";
const MAC_B = "02:00:5e:10:00:02";
const ADDR = {
  4: { a: "198.18.0.1", b: "198.18.7.2" },
  6: { a: "fd00:18::1", b: "fd00:18:0:7::2" },
} as const;

// ---------------------------------------------------------------------------------------------
// The frames.

interface Options {
  family: 4 | 6;
  link: LinkKind;
  /** From MAC_A / ADDR.a to MAC_B / ADDR.b unless reversed (an answer). */
  reverse?: boolean;
  dscp?: number;
  df?: boolean;
  ipId?: number;
  flowLabel?: number;
  hopLimit?: number;
  protocol: number;
  srcPort?: number;
  dstPort?: number;
  seq?: number;
  ack?: number;
  tcpFlags?: number;
  window?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  icmpSeq?: number;
  payloadLength?: number;
  payloadTag?: number;
  quote?: Uint8Array;
}

function spec(o: Options): PacketSpec {
  const s = new PacketSpec();
  s.link = o.link;
  parseMac(o.reverse ? MAC_B : MAC_A, s.srcMac);
  parseMac(o.reverse ? MAC_A : MAC_B, s.dstMac);
  s.family = o.family;
  s.src.set(parseAddress(o.reverse ? ADDR[o.family].b : ADDR[o.family].a)!.bytes);
  s.dst.set(parseAddress(o.reverse ? ADDR[o.family].a : ADDR[o.family].b)!.bytes);
  s.tos = (o.dscp ?? 0) << 2;
  s.dontFragment = o.df ?? true;
  s.ipId = o.ipId ?? 0;
  s.flowLabel = o.flowLabel ?? 0;
  s.hopLimit = o.hopLimit ?? 64;
  s.protocol = o.protocol;
  s.srcPort = o.srcPort ?? 0;
  s.dstPort = o.dstPort ?? 0;
  s.seq = o.seq ?? 0;
  s.ack = o.ack ?? 0;
  s.tcpFlags = o.tcpFlags ?? TCP_SYN;
  s.window = o.window ?? 64240;
  s.icmpType = o.icmpType ?? 0;
  s.icmpCode = o.icmpCode ?? 0;
  s.icmpId = o.icmpId ?? 0;
  s.icmpSeq = o.icmpSeq ?? 0;
  s.payloadLength = o.payloadLength ?? 0;
  s.payloadTag = o.payloadTag ?? -1;
  s.quote = o.quote ?? null;
  s.quoteLength = o.quote?.length ?? 0;
  return s;
}

function write(o: Options): Uint8Array {
  const buf = new Uint8Array(2048).fill(0xee);
  return buf.slice(0, writePacket(buf, spec(o)));
}

/** Expected tshark field values: numbers compare numerically (tshark prints some in hex). */
type Expected = Record<string, (string | number)[]>;

interface Case {
  name: string;
  bytes: Uint8Array;
  /** frame.protocols, exactly. */
  protocols: string;
  fields: Expected;
  /** *.checksum.status fields that must be present and Good (1) for every occurrence. */
  good: string[];
}

function ipExpect(o: Options, payload: number, outerOnly = false): Expected {
  const src = o.reverse ? ADDR[o.family].b : ADDR[o.family].a;
  const dst = o.reverse ? ADDR[o.family].a : ADDR[o.family].b;
  const e: Expected =
    o.family === 4
      ? {
          "ip.version": [4],
          "ip.src": [src],
          "ip.dst": [dst],
          "ip.dsfield.dscp": [o.dscp ?? 0],
          "ip.dsfield.ecn": [0],
          "ip.flags.df": [(o.df ?? true) ? 1 : 0],
          "ip.flags.mf": [0],
          "ip.frag_offset": [0],
          "ip.id": [o.ipId ?? 0],
          "ip.ttl": [o.hopLimit ?? 64],
          "ip.len": [20 + payload],
          "ip.hdr_len": [20],
        }
      : {
          "ipv6.version": [6],
          "ipv6.src": [src],
          "ipv6.dst": [dst],
          "ipv6.tclass.dscp": [o.dscp ?? 0],
          "ipv6.tclass.ecn": [0],
          "ipv6.flow": [o.flowLabel ?? 0],
          "ipv6.hlim": [o.hopLimit ?? 64],
          "ipv6.plen": [payload],
        };
  if (o.link === LINK_ETHERNET) {
    e["eth.src"] = [o.reverse ? MAC_B : MAC_A];
    e["eth.dst"] = [o.reverse ? MAC_A : MAC_B];
    e["eth.type"] = [o.family === 4 ? 0x0800 : 0x86dd];
  }
  if (outerOnly) for (const k of Object.keys(e)) if (!k.startsWith("eth.")) e[k] = [e[k]![0]!, "*"];
  return e;
}

const linkPrefix = (o: Options) => (o.link === LINK_ETHERNET ? "eth:ethertype:" : "raw:") + (o.family === 4 ? "ip" : "ipv6");
const IPCHECK = (o: Options) => (o.family === 4 ? ["ip.checksum.status"] : []);

function tcpCase(name: string, o: Options): Case {
  const data = o.payloadLength ?? 0;
  return {
    name,
    bytes: write(o),
    protocols: `${linkPrefix(o)}:tcp${data > 0 ? ":data" : ""}`,
    fields: {
      ...ipExpect(o, 20 + data),
      "tcp.srcport": [o.srcPort!],
      "tcp.dstport": [o.dstPort!],
      "tcp.seq_raw": [o.seq ?? 0],
      "tcp.ack_raw": [o.ack ?? 0],
      "tcp.flags": [o.tcpFlags!],
      "tcp.window_size_value": [o.window ?? 64240],
      "tcp.hdr_len": [20],
      "tcp.len": [data],
      "tcp.urgent_pointer": [0],
      ...(data > 0 ? { "data.len": [data], "data.data": [payloadHex(o)] } : {}),
    },
    good: [...IPCHECK(o), "tcp.checksum.status"],
  };
}

/** The payload writePacket promises: zeros, with the tag big-endian in the first 4 bytes. */
function payloadHex(o: Options): string {
  const data = o.payloadLength ?? 0;
  const tag = o.payloadTag ?? -1;
  const payload = new Uint8Array(data);
  if (tag >= 0 && data >= 4) new DataView(payload.buffer).setUint32(0, tag);
  return Buffer.from(payload).toString("hex");
}

function udpCase(name: string, o: Options): Case {
  const data = o.payloadLength ?? 0;
  return {
    name,
    bytes: write(o),
    protocols: `${linkPrefix(o)}:udp${data > 0 ? ":data" : ""}`,
    fields: {
      ...ipExpect(o, 8 + data),
      "udp.srcport": [o.srcPort!],
      "udp.dstport": [o.dstPort!],
      "udp.length": [8 + data],
      ...(data > 0 ? { "data.len": [data], "data.data": [payloadHex(o)] } : {}),
    },
    good: [...IPCHECK(o), "udp.checksum.status"],
  };
}

function echoCase(name: string, o: Options): Case {
  const data = o.payloadLength ?? 0;
  const v4 = o.family === 4;
  return {
    name,
    bytes: write(o),
    protocols: `${linkPrefix(o)}:${v4 ? "icmp" : "icmpv6"}${data > 0 ? ":data" : ""}`,
    fields: {
      ...ipExpect(o, 8 + data),
      ...(v4
        ? { "icmp.type": [o.icmpType!], "icmp.code": [0], "icmp.ident": [o.icmpId!], "icmp.seq": [o.icmpSeq!] }
        : {
            "icmpv6.type": [o.icmpType!],
            "icmpv6.code": [0],
            "icmpv6.echo.identifier": [o.icmpId!],
            "icmpv6.echo.sequence_number": [o.icmpSeq!],
          }),
      ...(data > 0 ? { "data.len": [data], "data.data": [payloadHex(o)] } : {}),
    },
    good: [...IPCHECK(o), v4 ? "icmp.checksum.status" : "icmpv6.checksum.status"],
  };
}

/** The probe `quoted` (a LINK_RAW frame) as the responder quotes it: RFC 792's header + 8 bytes, or RFC 4443's all that fits in 1280. */
function errorCase(name: string, o: Options, quoted: Options, quoteLength: number): Case {
  const probe = write(quoted);
  const quote = probe.subarray(0, quoteLength);
  const v4 = o.family === 4;
  const inner = quoted.protocol === IPPROTO_TCP ? "tcp" : "udp";
  const whole = quoteLength === probe.length;
  const innerData = whole && (quoted.payloadLength ?? 0) > 0;
  const fields: Expected = {
    ...ipExpect({ ...o, protocol: o.protocol }, 8 + quoteLength, true),
    // The unused / reserved word is zero, even when the reused spec still holds an echo id and seq.
    ...(v4
      ? { "icmp.type": [o.icmpType!], "icmp.code": [o.icmpCode!], "icmp.unused": ["00000000"] }
      : { "icmpv6.type": [o.icmpType!], "icmpv6.code": [o.icmpCode!], "icmpv6.reserved": ["00000000"] }),
    [`${inner}.srcport`]: [quoted.srcPort!],
    [`${inner}.dstport`]: [quoted.dstPort!],
  };
  // The quoted packet's own header, as tshark decodes it inside the error.
  const q = ipExpect(quoted, probe.length - (v4 ? 20 : 40));
  for (const [k, v] of Object.entries(q)) if (!k.startsWith("eth.")) fields[k] = [fields[k]![0]!, v[0]!];
  // tshark gives an 8-byte TCP quote (RFC 792's minimum) no raw sequence number field, only tcp.seq.
  const quotedL4 = quoteLength - (v4 ? 20 : 40);
  if (inner === "tcp" && quotedL4 >= 8) fields[quotedL4 >= 20 ? "tcp.seq_raw" : "tcp.seq"] = [quoted.seq!];
  else if (whole) fields["udp.length"] = [8 + (quoted.payloadLength ?? 0)];
  const good = [...IPCHECK(o), ...IPCHECK(o), v4 ? "icmp.checksum.status" : "icmpv6.checksum.status"];
  // A quote that holds the whole datagram lets tshark verify the datagram's checksum too.
  if (whole) good.push(`${inner}.checksum.status`);
  return {
    name,
    bytes: write({ ...o, quote }),
    protocols: `${linkPrefix(o)}:${v4 ? "icmp:ip" : "icmpv6:ipv6"}:${inner}${innerData ? ":data" : ""}`,
    fields,
    good,
  };
}

function probeCases(family: 4 | 6, link: LinkKind): Case[] {
  const v4 = family === 4;
  const base = { family, link } as const;
  let n = 0;
  // Distinct ports per frame, so tshark's TCP analysis sees no conversation reused.
  const sport = () => 65000 + n++;
  const flow = (x: number) => (v4 ? 0 : x);
  const cases: Case[] = [];
  const syn: Options = { ...base, protocol: IPPROTO_TCP, srcPort: sport(), dstPort: 33435, seq: 0x89abcdef, tcpFlags: TCP_SYN, ipId: 0x1234, flowLabel: flow(0x12345) };
  cases.push(tcpCase("TCP SYN, DSCP 0, DF, seq with the top bit set", syn));
  cases.push(tcpCase("TCP SYN with 13 bytes of data, DSCP 46, no DF", { ...syn, srcPort: sport(), payloadLength: 13, dscp: 46, df: false, flowLabel: flow(0xfffff) }));
  cases.push(tcpCase("TCP SYN with 1 byte of data, DSCP 63", { ...syn, srcPort: sport(), payloadLength: 1, dscp: 63, ipId: 0xffff, flowLabel: flow(1) }));
  cases.push(tcpCase("TCP SYN with 1000 bytes of data, DSCP 10", { ...syn, srcPort: sport(), seq: 0, payloadLength: 1000, dscp: 10, flowLabel: flow(0xabcde) }));
  cases.push(tcpCase("TCP RST after a SYN with 13 bytes of data", { ...syn, srcPort: sport(), seq: (0x89abcdef + 1 + 13) >>> 0, tcpFlags: TCP_RST, dscp: 46 }));
  const answerPort = sport();
  cases.push(
    tcpCase("TCP SYN-ACK from the responder", {
      ...base, reverse: true, protocol: IPPROTO_TCP, srcPort: 33436, dstPort: answerPort, seq: 0x5eed0000, ack: 0x89abcdf0,
      tcpFlags: TCP_SYN | TCP_ACK, window: 64240, dscp: 0, df: true, flowLabel: flow(0x54321),
    }),
  );
  cases.push(
    tcpCase("TCP RST-ACK from the responder, window 0", {
      ...base, reverse: true, protocol: IPPROTO_TCP, srcPort: 33435, dstPort: sport(), seq: 0, ack: 0xffffffff,
      tcpFlags: TCP_RST | TCP_ACK, window: 0, dscp: 48, df: false, ipId: 0,
    }),
  );
  const udp: Options = { ...base, protocol: IPPROTO_UDP, srcPort: sport(), dstPort: 33434, payloadLength: 4, payloadTag: 0x2a, ipId: 0x2a, flowLabel: flow(0x39737) };
  cases.push(udpCase("UDP, 4-byte payload tag", udp));
  cases.push(udpCase("UDP, payload tag in 1001 bytes, DSCP 46, no DF", { ...udp, srcPort: sport(), payloadLength: 1001, payloadTag: 0xdeadbeef, dscp: 46, df: false, flowLabel: flow(0xfffff) }));
  cases.push(udpCase("UDP, 1471 bytes, DSCP 10", { ...udp, srcPort: sport(), payloadLength: 1471, payloadTag: 0x80000001, dscp: 10, flowLabel: flow(1) }));
  cases.push(udpCase("UDP, no payload, DSCP 63", { ...udp, srcPort: sport(), payloadLength: 0, payloadTag: -1, dscp: 63 }));
  cases.push(udpCase("UDP, 3-byte payload (too short for a tag)", { ...udp, srcPort: sport(), payloadLength: 3, payloadTag: -1, dscp: 48 }));
  const zero = udpCase("UDP whose checksum computes to 0, sent as 0xffff", zeroChecksumUdp({ ...udp, srcPort: sport() }));
  zero.fields["udp.checksum"] = [0xffff];
  cases.push(zero);
  const echo: Options = { ...base, protocol: IPPROTO_ICMP, icmpType: v4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST, icmpId: 0x1234, icmpSeq: 1, ipId: 7, flowLabel: flow(0x11111) };
  cases.push(echoCase("ICMP echo request, no data", echo));
  cases.push(echoCase("ICMP echo request, 37 bytes with a tag, DSCP 46, no DF", { ...echo, icmpId: 0xfedc, icmpSeq: 0xffff, payloadLength: 37, payloadTag: 0xcafef00d, dscp: 46, df: false }));
  cases.push(echoCase("ICMP echo reply, 56 bytes", { ...echo, reverse: true, icmpType: v4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY, payloadLength: 56, dscp: 10 }));
  // Errors from the responder: the probe seen as it arrived (from a to b), quoted back from b to a.
  const raw = { ...udp, link: LINK_RAW } as Options;
  const ihl8 = v4 ? 28 : 48;
  const err: Options = {
    ...base, reverse: true, protocol: IPPROTO_ICMP, icmpType: v4 ? ICMP4_UNREACH : ICMP6_UNREACH,
    icmpCode: v4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH, dscp: 48, df: false, ipId: 0xb86e, flowLabel: flow(0x60b90),
    icmpId: 0x1234, icmpSeq: 0x5678,
  };
  cases.push(errorCase("port unreachable quoting the whole UDP probe", err, { ...raw, srcPort: sport() }, v4 ? 32 : 52));
  cases.push(
    errorCase(
      v4 ? "port unreachable quoting the IP header and 8 bytes of a 1001-byte UDP probe" : "port unreachable quoting a whole 1001-byte UDP probe",
      { ...err, dscp: 0 },
      { ...raw, srcPort: sport(), payloadLength: 1001, payloadTag: 0xdeadbeef, dscp: 46, df: false },
      v4 ? ihl8 : 48 + 1001,
    ),
  );
  cases.push(
    errorCase(
      "administratively prohibited, quoting a TCP SYN",
      { ...err, icmpCode: v4 ? 13 : 1 },
      { ...syn, link: LINK_RAW, srcPort: sport(), seq: 0x01020304 },
      v4 ? ihl8 : 60,
    ),
  );
  // An odd quote length whose last byte is not zero: the checksum's padding byte is exercised.
  cases.push(
    errorCase("unreachable quoting an odd 27 bytes of a TCP SYN (IP header and 7 bytes)", { ...err, icmpCode: v4 ? 1 : 3 }, { ...syn, link: LINK_RAW, srcPort: sport(), seq: 0x01020304 }, v4 ? 27 : 47),
  );
  return cases;
}

/** A UDP probe whose payload tag is chosen so that the RFC 1071 checksum comes out 0. */
function zeroChecksumUdp(o: Options): Options {
  const tagless = write({ ...o, payloadTag: 0 });
  const ip = o.link === LINK_ETHERNET ? 14 : 0;
  const l4 = ip + (o.family === 4 ? 20 : 40);
  const segment = tagless.slice(l4);
  segment[6] = segment[7] = 0;
  const s = onesSum(
    concat(
      pseudoHeader(o.family, tagless.subarray(ip + (o.family === 4 ? 12 : 8)), tagless.subarray(ip + (o.family === 4 ? 16 : 24)), IPPROTO_UDP, segment.length),
      segment,
    ),
  );
  // Adding 0xffff - s to the sum makes it 0xffff, whose complement is 0.
  return { ...o, payloadTag: 0xffff - s };
}

function resolutionCases(): Case[] {
  const mac = new Uint8Array(6);
  parseMac(MAC_A, mac);
  const arp = new Uint8Array(64);
  const arpLen = writeArpRequest(arp, mac, parseAddress(ADDR[4].a)!.bytes, parseAddress("198.18.0.254")!.bytes);
  const ns = new Uint8Array(128);
  const target = parseAddress("fd00:18::ab:cdef")!.bytes;
  const nsLen = writeNeighbourSolicitation(ns, mac, parseAddress(ADDR[6].a)!.bytes, target);
  return [
    {
      name: "ARP request (writeArpRequest)",
      bytes: arp.slice(0, arpLen),
      protocols: "eth:ethertype:arp",
      fields: {
        "eth.dst": ["ff:ff:ff:ff:ff:ff"],
        "eth.src": [MAC_A],
        "arp.hw.type": [1],
        "arp.proto.type": [0x0800],
        "arp.opcode": [1],
        "arp.src.hw_mac": [MAC_A],
        "arp.src.proto_ipv4": [ADDR[4].a],
        "arp.dst.hw_mac": ["00:00:00:00:00:00"],
        "arp.dst.proto_ipv4": ["198.18.0.254"],
      },
      good: [],
    },
    {
      name: "neighbour solicitation (writeNeighbourSolicitation)",
      bytes: ns.slice(0, nsLen),
      protocols: "eth:ethertype:ipv6:icmpv6",
      fields: {
        "eth.dst": ["33:33:ff:ab:cd:ef"],
        "eth.src": [MAC_A],
        "ipv6.src": [ADDR[6].a],
        "ipv6.dst": ["ff02::1:ffab:cdef"],
        "ipv6.hlim": [255],
        "ipv6.plen": [32],
        "icmpv6.type": [135],
        "icmpv6.code": [0],
        "icmpv6.nd.ns.target_address": ["fd00:18::ab:cdef"],
        "icmpv6.opt.type": [1],
        "icmpv6.opt.linkaddr": [MAC_A],
      },
      good: ["icmpv6.checksum.status"],
    },
  ];
}

const ETHERNET_CASES = [...probeCases(4, LINK_ETHERNET), ...probeCases(6, LINK_ETHERNET), ...resolutionCases()];
const RAW_CASES = [...probeCases(4, LINK_RAW), ...probeCases(6, LINK_RAW)];

// ---------------------------------------------------------------------------------------------
// tshark.

type Row = Map<string, string[]>;

const CHECKSUM_STATUS = ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status", "icmpv6.checksum.status"];
const BASE_FIELDS = [
  "frame.number",
  "frame.len",
  "frame.protocols",
  "_ws.malformed",
  "_ws.expert.message",
  "_ws.expert.severity",
  ...CHECKSUM_STATUS,
];

function runTshark(file: string, fields: string[]): Row[] {
  const args = [
    "-n",
    "-r",
    file,
    "-o", "ip.check_checksum:TRUE",
    "-o", "tcp.check_checksum:TRUE",
    "-o", "udp.check_checksum:TRUE",
    "-T", "fields",
    "-E", "occurrence=a",
    "-E", "aggregator=|",
    ...fields.flatMap((f) => ["-e", f]),
  ];
  const r = spawnSync("tshark", args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`tshark could not be run (Debian package "tshark"): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`tshark ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((line) => {
      const cols = line.split("\t");
      return new Map(fields.map((f, i) => [f, cols[i] ? cols[i]!.split("|") : []]));
    });
}

function records(frames: Uint8Array[]): PcapRecord[] {
  return frames.map((data, i) => ({ tsSec: 1_800_000_000, tsNsec: i * 1000, caplen: data.length, wireLen: data.length, data }));
}

function fieldsOf(cases: Case[]): string[] {
  const set = new Set(BASE_FIELDS);
  for (const c of cases) for (const k of Object.keys(c.fields)) set.add(k);
  return [...set];
}

const dir = mkdtempSync(join(tmpdir(), "netprobify-tshark-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const decoded = new Map<string, Row[]>();

beforeAll(() => {
  const files = [
    { key: "ethernet", linktype: LINKTYPE_ETHERNET, cases: ETHERNET_CASES },
    { key: "raw", linktype: LINKTYPE_RAW, cases: RAW_CASES },
  ];
  for (const f of files) {
    const path = join(dir, `${f.key}.pcap`);
    writePcapFile(path, { linktype: f.linktype }, records(f.cases.map((c) => c.bytes)));
    decoded.set(f.key, runTshark(path, fieldsOf(f.cases)));
  }
});

function matches(actual: string, expected: string | number): boolean {
  if (expected === "*") return true;
  if (typeof expected === "number") return actual !== "" && Number(actual) === expected;
  return actual === expected;
}

/** Malformed packets, error-level expert messages (bad checksums among them), Bad checksum statuses. */
function problems(r: Row): string[] {
  const out: string[] = [];
  if (r.get("_ws.malformed")!.length > 0) out.push("malformed packet");
  const messages = r.get("_ws.expert.message")!;
  const severities = r.get("_ws.expert.severity")!.map(Number);
  messages.forEach((m, i) => {
    if (severities[i]! >= EXPERT_ERROR || /bad checksum|malformed/i.test(m)) out.push(m);
  });
  // 0 is Bad, 1 Good, 2 Unverified (a quote too short to check).
  for (const f of CHECKSUM_STATUS) if (r.get(f)!.includes("0")) out.push(`${f} Bad`);
  return out;
}

function check(row: Row | undefined, c: Case, frameNumber: number): void {
  expect(row).toBeDefined();
  const r = row!;
  expect(Number(r.get("frame.number")![0])).toBe(frameNumber);
  expect(Number(r.get("frame.len")![0])).toBe(c.bytes.length);
  expect(r.get("frame.protocols")).toEqual([c.protocols]);
  expect(problems(r)).toEqual([]);
  for (const f of c.good) {
    const n = c.good.filter((g) => g === f).length;
    expect({ f, statuses: r.get(f)!.slice(0, n) }).toEqual({ f, statuses: Array(n).fill("1") });
  }
  const got: Record<string, string[]> = {};
  const want: Record<string, string[]> = {};
  for (const [k, values] of Object.entries(c.fields)) {
    const actual = r.get(k)!;
    got[k] = actual;
    want[k] = values.length === actual.length && values.every((v, i) => matches(actual[i]!, v)) ? actual : values.map(String);
  }
  expect(got).toEqual(want);
}

describe("tshark decodes generated frames with checksum validation on", () => {
  test("tshark is installed (Debian package tshark); this test fails rather than skips without it", () => {
    const r = spawnSync("tshark", ["--version"], { encoding: "utf8" });
    expect(r.error?.message ?? "").toBe("");
    expect(r.stdout).toContain("TShark");
  });

  test("the check is not vacuous: the kernel's partial checksum, corrupted checksums and a cut frame are problems", () => {
    const udp = loadFixture("lo-udp4.pcap").frames[0]!;
    const good = ETHERNET_CASES.find((c) => c.name === "UDP, 4-byte payload tag")!.bytes;
    const corrupt = good.slice();
    const at = l4Checksum(corrupt, 14).at;
    corrupt[at + 1]! ^= 1;
    const icmp = ETHERNET_CASES.find((c) => c.name.startsWith("ICMP echo request, 37"))!.bytes.slice();
    icmp[14 + 20 + 2]! ^= 0x80;
    const path = join(dir, "control.pcap");
    const cut = ETHERNET_CASES.find((c) => c.name.startsWith("UDP, payload tag in 1001"))!.bytes.slice(0, 100);
    writePcapFile(path, { linktype: LINKTYPE_ETHERNET }, records([udp, corrupt, icmp, good, cut]));
    const rows = runTshark(path, BASE_FIELDS);
    expect(rows.map((r) => r.get("udp.checksum.status")![0] ?? r.get("icmp.checksum.status")![0])).toEqual(["0", "0", "0", "1", "2"]);
    for (const r of rows.slice(0, 3)) expect(r.get("_ws.expert.message")!.some((m) => m.startsWith("Bad checksum"))).toBe(true);
    expect(rows.map((r) => problems(r).length > 0)).toEqual([true, true, true, false, true]);
    expect(rows[4]!.get("_ws.malformed")!.length).toBe(1);
  });

  test("every frame was decoded", () => {
    expect(decoded.get("ethernet")!.length).toBe(ETHERNET_CASES.length);
    expect(decoded.get("raw")!.length).toBe(RAW_CASES.length);
  });

  const named = (cases: Case[]) => cases.map((c, i) => [`${i + 1}: ${c.name}`, c, i] as const);
  const family = (c: Case) => (c.protocols.includes("ipv6") ? "IPv6" : c.protocols.includes(":ip") ? "IPv4" : "");
  describe("Ethernet (LINKTYPE_ETHERNET)", () => {
    test.each(named(ETHERNET_CASES).map(([n, c, i]) => [`${n} ${family(c)}`, c, i] as const))("%s", (_, c, i) => {
      check(decoded.get("ethernet")![i], c, i + 1);
    });
  });
  describe("no link header (LINKTYPE_RAW, LINK_RAW frames)", () => {
    test.each(named(RAW_CASES).map(([n, c, i]) => [`${n} ${family(c)}`, c, i] as const))("%s", (_, c, i) => {
      check(decoded.get("raw")![i], c, i + 1);
    });
  });
});
