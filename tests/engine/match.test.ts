/**
 * The matching rule (src/engine/match.ts) on hand-built frames: each case the frame fuzzer found
 * the first extraction of the rule getting wrong, and the valid answers beside them.
 */
import { describe, expect, test } from "bun:test";
import { parseAddress, type Family } from "../../src/packet/address.ts";
import {
  ICMP4_ECHO_REPLY,
  ICMP4_PORT_UNREACH,
  ICMP4_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PORT_UNREACH,
  ICMP6_UNREACH,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LINK_RAW,
  PacketSpec,
  TCP_ACK,
  TCP_SYN,
  writePacket,
} from "../../src/packet/build.ts";
import { DLT_RAW, PARSE_OK, ParsedFrame, parseFrame } from "../../src/packet/parse.ts";
import {
  hashAddress,
  MATCH_ANSWER,
  MATCH_DEPARTURE,
  MATCH_FAIL,
  MATCH_NAMES,
  ProbeMatcher,
  REPLY_NAMES,
  type MatchTarget,
} from "../../src/engine/match.ts";
import { PROBE_CODE } from "../../src/probes/registry.ts";

// The independent model below is written per type, for the three types it knows.
const KIND_TCP = PROBE_CODE.TCPsyn;
const KIND_ICMP = PROBE_CODE.ICMPping;
const KIND_UDP = PROBE_CODE.UDPunreachable;

const IDENT_BASE = 0x3000_0000;
const HOST4 = "198.18.1.2";
const HOST6 = "fd00:18:1::2";
const SRC4 = "198.18.1.1";
const SRC6 = "fd00:18:1::1";
const SRC_PORT = 40000;

function bytes(a: string): Uint8Array {
  return parseAddress(a)!.bytes;
}

function target(kind: number, family: Family, dst: string, dstPort: number, dataLength = 0): MatchTarget {
  const d = bytes(dst);
  return { kind, family, dst: d, dstHash: hashAddress(d, 0, family), dstPort, dataLength, targetId: 0x4242 + kind * 2 + family, count: 1 };
}

/**
 * One probe per target: 0 UDP v4 (first at HOST4, before the TCP one), 1 TCP v4 with 10 bytes of
 * data, 2 ICMP v6, 3 UDP v6, 4 TCP v6.
 */
const targets = [
  target(KIND_UDP, 4, HOST4, 33434),
  target(KIND_TCP, 4, HOST4, 8443, 10),
  target(KIND_ICMP, 6, HOST6, 0, 8),
  target(KIND_UDP, 6, HOST6, 33434, 4),
  target(KIND_TCP, 6, HOST6, 443),
];
const status = new Uint8Array(targets.length);
const m = new ProbeMatcher(IDENT_BASE);
m.begin(targets, targets.length, status);
targets.forEach((_, t) => m.assign(t, t, 0, SRC_PORT));
const ident = (t: number) => m.slotIdent[t]!;

const spec = new PacketSpec();
const buf = new Uint8Array(2048);
const probe = new Uint8Array(2048);
const parsed = new ParsedFrame();

function reset(family: Family, src: string, dst: string): PacketSpec {
  Object.assign(spec, { link: LINK_RAW, family, tos: 0, dontFragment: true, ipId: 1, flowLabel: 0, hopLimit: 64, payloadLength: 0, payloadTag: -1, quote: null, quoteLength: 0, seq: 0, ack: 0 });
  spec.src.fill(0).set(bytes(src));
  spec.dst.fill(0).set(bytes(dst));
  return spec;
}

/** Slot t's probe as the engine writes it, into `into`; returns its length. */
function writeProbe(t: number, into: Uint8Array): number {
  const st = targets[t]!;
  const p = reset(st.family, st.family === 4 ? SRC4 : SRC6, st.family === 4 ? HOST4 : HOST6);
  p.payloadLength = st.dataLength;
  if (st.kind === KIND_TCP) Object.assign(p, { protocol: IPPROTO_TCP, srcPort: SRC_PORT, dstPort: st.dstPort, seq: ident(t), tcpFlags: TCP_SYN });
  else if (st.kind === KIND_UDP) Object.assign(p, { protocol: IPPROTO_UDP, srcPort: SRC_PORT, dstPort: st.dstPort, ipId: st.family === 4 ? ident(t) : 1, payloadTag: st.family === 6 ? ident(t) : -1 });
  else Object.assign(p, { protocol: IPPROTO_ICMP, icmpType: ICMP6_ECHO_REQUEST, icmpCode: 0, icmpId: ident(t) >>> 16, icmpSeq: ident(t) & 0xffff });
  return writePacket(into, p);
}

/** An ICMP error from the destination quoting `len` bytes of `quote`. */
function writeError(family: Family, quote: Uint8Array, len: number, code: number): number {
  const p = reset(family, family === 4 ? HOST4 : HOST6, family === 4 ? SRC4 : SRC6);
  Object.assign(p, { protocol: IPPROTO_ICMP, icmpType: family === 4 ? ICMP4_UNREACH : ICMP6_UNREACH, icmpCode: code, quote, quoteLength: len });
  return writePacket(buf, p);
}

function classify(len: number): string {
  expect(parseFrame(buf, len, DLT_RAW, parsed)).toBe(PARSE_OK);
  const v = m.classify(parsed);
  if (v === MATCH_ANSWER) return `answer ${m.slot} ${REPLY_NAMES[m.reply]}`;
  if (v === MATCH_DEPARTURE) return `departure ${m.slot}`;
  if (v === MATCH_FAIL) return `match-fail ${m.target}`;
  return MATCH_NAMES[v]!;
}

/** Sets the protocol / next header of the IP packet in buf (the frame is raw IP). */
function setProtocol(family: Family, protocol: number): void {
  buf[family === 4 ? 9 : 6] = protocol;
}

describe("ICMP must be the family's own: ICMPv4 in IPv6 (or the reverse) answers nothing", () => {
  test("an IPv6 echo reply carried as ICMPv4 (next header 1, type 0) is not an answer; as ICMPv6 it is", () => {
    const p = reset(6, HOST6, SRC6);
    Object.assign(p, { protocol: IPPROTO_ICMP, icmpType: ICMP6_ECHO_REPLY, icmpCode: 0, icmpId: ident(2) >>> 16, icmpSeq: ident(2) & 0xffff, payloadLength: 8 });
    const len = writePacket(buf, p);
    expect(classify(len)).toBe("answer 2 echo-reply");
    setProtocol(6, 1);
    buf[40] = ICMP4_ECHO_REPLY;
    expect(classify(len)).toBe("none");
  });

  test("an IPv6 packet with next header 1, type 3, quoting a UDP v6 probe is not its error", () => {
    const n = writeProbe(3, probe);
    const len = writeError(6, probe, n, ICMP6_PORT_UNREACH);
    expect(classify(len)).toBe("answer 3 port-unreachable");
    setProtocol(6, 1);
    buf[40] = ICMP4_UNREACH;
    buf[41] = ICMP4_PORT_UNREACH;
    expect(classify(len)).toBe("none");
  });

  test("an IPv6 echo request carried as ICMPv4 (next header 1, type 8) is not the probe seen leaving", () => {
    const n = writeProbe(2, buf);
    expect(classify(n)).toBe("departure 2");
    setProtocol(6, 1);
    buf[40] = 8;
    expect(classify(n)).toBe("none");
  });
});

describe("an ICMP error answers a probe of its own family", () => {
  test("an ICMPv4 port unreachable quoting an IPv6 UDP probe is not its answer", () => {
    const n = writeProbe(3, probe);
    const len = writeError(4, probe, n, ICMP4_PORT_UNREACH);
    expect(classify(len)).toBe("none");
  });
});

describe("a TCP SYN with data: only an acknowledgement may add the data to the sequence number", () => {
  test("SYN-ACKs acknowledging seq + 1 and seq + data + 1 both answer it", () => {
    for (const acked of [ident(1), (ident(1) + 10) >>> 0]) {
      const p = reset(4, HOST4, SRC4);
      Object.assign(p, { protocol: IPPROTO_TCP, srcPort: 8443, dstPort: SRC_PORT, seq: 7, ack: (acked + 1) >>> 0, tcpFlags: TCP_SYN | TCP_ACK });
      expect(classify(writePacket(buf, p))).toBe("answer 1 syn-ack");
    }
  });

  test("a SYN whose sequence number is seq + data is not the probe leaving", () => {
    const n = writeProbe(1, buf);
    expect(classify(n)).toBe("departure 1");
    new DataView(buf.buffer).setUint32(24, (ident(1) + 10) >>> 0);
    expect(classify(n)).toBe("none");
  });

  test("an ICMP error quoting seq + data is not the probe's error", () => {
    const n = writeProbe(1, probe);
    expect(classify(writeError(4, probe, 28, 1))).toBe("answer 1 unreachable");
    new DataView(probe.buffer).setUint32(24, (ident(1) + 10) >>> 0);
    expect(classify(writeError(4, probe, Math.min(n, 28), 1))).toBe("none");
  });
});

describe("a TCP answer acknowledging none of the batch's SYNs is counted against the TCP target at its address", () => {
  test("even when a UDP target to the same address comes first", () => {
    const p = reset(4, HOST4, SRC4);
    Object.assign(p, { protocol: IPPROTO_TCP, srcPort: 8443, dstPort: SRC_PORT, seq: 7, ack: (IDENT_BASE + 0x0fff_0000 + 1) >>> 0, tcpFlags: TCP_SYN | TCP_ACK });
    expect(classify(writePacket(buf, p))).toBe("match-fail 1");
    // In another engine's window: theirs, not counted here.
    p.ack = (IDENT_BASE + 0x1000_0000 + 1) >>> 0;
    expect(classify(writePacket(buf, p))).toBe("none");
  });

});
