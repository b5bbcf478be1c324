/**
 * A layer-3 test host: a TUN device (no link header, DLT_RAW) behind which every address of the
 * routed prefixes answers as a real stack would: TCP SYN gets SYN-ACK on the open port and RST-ACK
 * elsewhere, ICMP/ICMPv6 echo gets a reply, UDP gets an ICMP/ICMPv6 port unreachable quoting it.
 * Optional fixed delay and seeded loss; every decision is logged (JSON lines) so tests can compare
 * the prober's figures with what really happened.
 *
 * Run as its own process (it blocks in poll):
 *   bun tests/support/tun-responder.ts --ifname NAME [--open-port 8443] [--delay-ms 0]
 *       [--loss 0.0] [--seed 1] [--log FILE] [--drop-src-ports 65003,65007]
 * It prints "ready NAME" once the device exists; the caller assigns addresses and routes with ip(8).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { appendFileSync } from "node:fs";
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
  writePacket,
} from "../../src/packet/build.ts";
import { LINKTYPE_RAW, PARSE_OK, ParsedFrame, parseFrame } from "../../src/packet/parse.ts";
import { formatAddress } from "../../src/packet/address.ts";

const libc = dlopen("libc.so.6", {
  open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
}).symbols;

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const ifname = option("ifname", "");
if (!ifname || ifname.length > 15) throw new Error("--ifname NAME (at most 15 characters) is required");
const openPort = Number(option("open-port", "8443"));
const delayMs = Number(option("delay-ms", "0"));
const lossRatio = Number(option("loss", "0"));
const logFile = option("log", "");
const dropPorts = new Set(option("drop-src-ports", "").split(",").filter(Boolean).map(Number));
let seed = Number(option("seed", "1")) >>> 0 || 1;

/** xorshift32: a seeded, reproducible loss pattern. */
function random(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 4294967296;
}

const fd = libc.open(Buffer.from("/dev/net/tun\0"), O_RDWR | O_NONBLOCK);
if (fd < 0) throw new Error("cannot open /dev/net/tun");
const ifr = new Uint8Array(40); // struct ifreq: name[16], short flags
ifr.set(new TextEncoder().encode(ifname));
new DataView(ifr.buffer).setUint16(16, IFF_TUN | IFF_NO_PI, true);
if (libc.ioctl(fd, TUNSETIFF, ifr) < 0) throw new Error(`TUNSETIFF ${ifname} failed`);

const inBuf = new Uint8Array(65536);
const parsed = new ParsedFrame();
const spec = new PacketSpec();
const pending: { at: number; bytes: Uint8Array }[] = [];
const pollfd = new Int32Array([fd, 1]); // struct pollfd: fd, then events | revents << 16
const POLLERR = 0x08;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;

function log(event: Record<string, unknown>): void {
  if (logFile) appendFileSync(logFile, `${JSON.stringify(event)}\n`);
}

function schedule(bytes: Uint8Array, what: Record<string, unknown>): void {
  const srcPort = parsed.outer.srcPort;
  if (dropPorts.has(srcPort) || (lossRatio > 0 && random() < lossRatio)) {
    log({ ...what, action: "drop" });
    return;
  }
  log({ ...what, action: "answer", delayMs });
  pending.push({ at: performance.now() + delayMs, bytes });
}

/** Echo reply: the request with addresses swapped and the type changed, data echoed as is. */
function echoReply(len: number): Uint8Array {
  const o = parsed.outer;
  const out = inBuf.slice(0, len);
  const ipLen = o.family === 4 ? (out[0]! & 0x0f) * 4 : 40;
  if (o.family === 4) {
    out.set(inBuf.subarray(16, 20), 12);
    out.set(inBuf.subarray(12, 16), 16);
    put16(out, 10, 0);
    put16(out, 10, finish(sum16(out, 0, ipLen)));
  } else {
    out.set(inBuf.subarray(24, 40), 8);
    out.set(inBuf.subarray(8, 24), 24);
  }
  const l4 = ipLen;
  out[l4] = o.family === 4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY;
  put16(out, l4 + 2, 0);
  const body = len - l4;
  const pseudo = o.family === 6 ? pseudoHeaderSum(6, out.subarray(8, 24), out.subarray(24, 40), IPPROTO_ICMPV6, body) : 0;
  put16(out, l4 + 2, finish(sum16(out, l4, body, pseudo)));
  return out;
}

function answer(len: number): void {
  if (parseFrame(inBuf, len, LINKTYPE_RAW, parsed) !== PARSE_OK) return;
  const o = parsed.outer;
  const what = { src: formatAddress(o.family, o.src), dst: formatAddress(o.family, o.dst), proto: o.protocol, srcPort: o.srcPort, ident: 0 };
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
  const out = new Uint8Array(1500);
  if (o.protocol === IPPROTO_TCP && o.tcpFlags === TCP_SYN) {
    const data = len - o.payloadOffset;
    spec.protocol = IPPROTO_TCP;
    spec.srcPort = o.dstPort;
    spec.dstPort = o.srcPort;
    spec.seq = o.dstPort === openPort ? 0x5eed0000 : 0;
    spec.ack = (o.seq + 1 + Math.max(0, data)) >>> 0;
    spec.tcpFlags = o.dstPort === openPort ? TCP_SYN | TCP_ACK : TCP_RST | TCP_ACK;
    spec.window = o.dstPort === openPort ? 64240 : 0;
    schedule(out.slice(0, writePacket(out, spec)), { ...what, ident: o.seq });
  } else if (
    (o.protocol === IPPROTO_ICMP && o.icmpType === ICMP4_ECHO_REQUEST) ||
    (o.protocol === IPPROTO_ICMPV6 && o.icmpType === ICMP6_ECHO_REQUEST)
  ) {
    schedule(echoReply(len), { ...what, ident: ((o.icmpId << 16) | o.icmpSeq) >>> 0 });
  } else if (o.protocol === IPPROTO_UDP) {
    // RFC 792: the IP header and 8 bytes; RFC 4443: as much as fits in the minimum MTU.
    const quoteLength = o.family === 4 ? Math.min(len, (inBuf[0]! & 0x0f) * 4 + 8) : Math.min(len, 1280 - 48);
    spec.protocol = IPPROTO_ICMP;
    spec.icmpType = o.family === 4 ? ICMP4_UNREACH : ICMP6_UNREACH;
    spec.icmpCode = o.family === 4 ? ICMP4_PORT_UNREACH : ICMP6_PORT_UNREACH;
    spec.quote = inBuf;
    spec.quoteLength = quoteLength;
    schedule(out.slice(0, writePacket(out, spec)), { ...what, ident: o.family === 4 ? o.ipId : o.payloadTag });
  }
}

process.stdout.write(`ready ${ifname}\n`);
let running = true;
process.on("SIGTERM", () => (running = false));
process.on("SIGINT", () => (running = false));
while (running) {
  const now = performance.now();
  while (pending.length > 0 && pending[0]!.at <= now) {
    const p = pending.shift()!;
    libc.write(fd, p.bytes, p.bytes.length);
  }
  const wait = pending.length > 0 ? Math.max(0, Math.ceil(pending[0]!.at - now)) : 100;
  pollfd[1] = 1;
  const r = libc.poll(ptr(pollfd), 1, wait);
  if (r > 0) {
    // The device was deleted under us (ip link del): the fd only reports errors from now on, and
    // reading it would spin forever.
    const revents = pollfd[1]! >>> 16;
    if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
      process.stderr.write(`tun-responder: ${ifname} is gone (poll revents 0x${revents.toString(16)})\n`);
      process.exit(1);
    }
    for (;;) {
      const n = Number(libc.read(fd, inBuf, inBuf.length));
      if (n <= 0) break;
      answer(n);
    }
  }
  // Signals are delivered between turns of the event loop.
  if (r === 0 && pending.length === 0) await Bun.sleep(0);
}
