/**
 * A UDP socket read with recvmsg(2) for the kernel's receive timestamp (SO_TIMESTAMPNS: when the
 * datagram reached the socket layer, CLOCK_REALTIME) and the received TTL or hop limit
 * (IP_RECVTTL, IPV6_RECVHOPLIMIT), and answered with sendto(2): what `netprobify responder`
 * needs, which Bun's own UDP socket does not give. No privilege (a port above 1023) and no
 * allocation per datagram: the datagram, its sender's address, the control messages and the
 * struct msghdr live in one buffer made at open.
 */
import { ptr, type Pointer } from "bun:ffi";
import { parseAddress } from "../packet/address.ts";
import { AF_INET, AF_INET6, bindSocket, closeFd, localPort, openSocket, pollFds, realtimeNow, recvMsg, sendTo, setSockOptInt, SOCK_NONBLOCK, POLLIN } from "./libc.ts";

const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
/** SO_TIMESTAMPNS (and its control message, SCM_TIMESTAMPNS): a struct timespec per datagram. */
const SO_TIMESTAMPNS = 35;
const IPPROTO_IP = 0;
const IP_TTL = 2;
const IP_RECVTTL = 12;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const IPV6_RECVHOPLIMIT = 51;
const IPV6_HOPLIMIT = 52;

const DATA = 65_536;
// Offsets in the socket's buffer (8-aligned): data, sender's sockaddr, iovec, control, msghdr, a timespec.
const NAME = DATA;
const NAME_LEN = 28;
const IOV = NAME + 32;
const CONTROL = IOV + 16;
const CONTROL_LEN = 128;
const MSGHDR = CONTROL + CONTROL_LEN;
const TIMESPEC = MSGHDR + 56;
const SIZE = TIMESPEC + 16;

export class TimestampedUdpSocket {
  /** The last datagram is data[0 .. length). */
  readonly data: Uint8Array;
  length = 0;
  /** Its kernel receive time (CLOCK_REALTIME); sec -1 when the kernel gave none. */
  receivedSec = -1;
  receivedNsec = 0;
  /** The TTL or hop limit it arrived with; 0 when unknown. */
  ttl = 0;
  readonly port: number;

  readonly #fd: number;
  // Backed by an explicit ArrayBuffer taken once: pointers into it stay valid (see libc.ts's poll memory).
  readonly #memory = new ArrayBuffer(SIZE);
  readonly #bytes = new Uint8Array(this.#memory);
  readonly #u32 = new Uint32Array(this.#memory);
  readonly #i32 = new Int32Array(this.#memory);
  readonly #name = new Uint8Array(this.#memory, NAME, NAME_LEN);
  readonly #msghdr: Pointer;
  readonly #timespec: Pointer;

  /** Opens and binds; `host` a literal address ("::" takes both families). Throws SystemError. */
  constructor(host: string, port: number) {
    const a = parseAddress(host === "localhost" ? "127.0.0.1" : host);
    if (!a) throw new Error(`not an address: ${host}`);
    const v6 = a.family === 6;
    this.#fd = openSocket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    try {
      if (v6) setSockOptInt(this.#fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
      setSockOptInt(this.#fd, SOL_SOCKET, SO_TIMESTAMPNS, 1);
      // IPv4 datagrams on a dual-stack socket carry IP_TTL, IPv6 ones IPV6_HOPLIMIT.
      setSockOptInt(this.#fd, IPPROTO_IP, IP_RECVTTL, 1);
      if (v6) setSockOptInt(this.#fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1);
      const sa = new Uint8Array(v6 ? 28 : 16);
      const view = new DataView(sa.buffer);
      view.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
      view.setUint16(2, port);
      if (v6) sa.set(a.bytes.subarray(0, 16), 8);
      else sa.set(a.bytes.subarray(0, 4), 4);
      bindSocket(this.#fd, sa, `${host}:${port}`);
      this.port = localPort(this.#fd);
    } catch (e) {
      closeFd(this.#fd);
      throw e;
    }
    this.data = new Uint8Array(this.#memory, 0, DATA);
    const base = ptr(this.#bytes);
    const w = new DataView(this.#memory);
    w.setBigUint64(IOV, BigInt(base), true);
    w.setBigUint64(IOV + 8, BigInt(DATA), true);
    w.setBigUint64(MSGHDR, BigInt(base + NAME), true);
    w.setBigUint64(MSGHDR + 16, BigInt(base + IOV), true);
    w.setBigUint64(MSGHDR + 24, 1n, true);
    w.setBigUint64(MSGHDR + 32, BigInt(base + CONTROL), true);
    this.#msghdr = (base + MSGHDR) as Pointer;
    this.#timespec = (base + TIMESPEC) as Pointer;
  }

  get fd(): number {
    return this.#fd;
  }

  /** Reads one waiting datagram: its length, or -errno (-11, EAGAIN: none waiting). */
  receive(): number {
    const u = this.#u32;
    // recvmsg wrote the lengths back: set them again (msg_namelen, msg_controllen, msg_flags).
    u[(MSGHDR + 8) / 4] = NAME_LEN;
    u[(MSGHDR + 40) / 4] = CONTROL_LEN;
    u[(MSGHDR + 44) / 4] = 0;
    u[(MSGHDR + 48) / 4] = 0;
    const n = recvMsg(this.#fd, this.#msghdr);
    if (n < 0) return n;
    this.length = n;
    this.receivedSec = -1;
    this.ttl = 0;
    const end = CONTROL + Math.min(u[(MSGHDR + 40) / 4]!, CONTROL_LEN);
    // struct cmsghdr { size_t len; int level; int type; } then the data, 8-aligned.
    for (let at = CONTROL; at + 16 <= end; ) {
      const len = u[at / 4]!;
      if (len < 16) break;
      const level = this.#i32[(at + 8) / 4]!;
      const type = this.#i32[(at + 12) / 4]!;
      if (level === SOL_SOCKET && type === SO_TIMESTAMPNS) {
        // struct timespec: 64-bit seconds (the high word is 0 until 2106) and nanoseconds.
        this.receivedSec = u[(at + 16) / 4]! + u[(at + 20) / 4]! * 0x1_0000_0000;
        this.receivedNsec = u[(at + 24) / 4]!;
      } else if ((level === IPPROTO_IP && type === IP_TTL) || (level === IPPROTO_IPV6 && type === IPV6_HOPLIMIT)) {
        this.ttl = this.#i32[(at + 16) / 4]! & 0xff;
      }
      at += (len + 7) & ~7;
    }
    return n;
  }

  /**
   * The sender of the last datagram as a Map key: a number for IPv4 (and IPv4-mapped IPv6)
   * senders, no allocation; a string for IPv6 ones.
   */
  senderKey(): number | string {
    const b = this.#name;
    const port = (b[2]! << 8) | b[3]!;
    const family = b[0]! | (b[1]! << 8);
    if (family === AF_INET) return (((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!) >>> 0) * 65_536 + port;
    let mapped = b[18] === 0xff && b[19] === 0xff;
    for (let i = 8; i < 18 && mapped; i++) mapped = b[i] === 0;
    if (mapped) return (((b[20]! << 24) | (b[21]! << 16) | (b[22]! << 8) | b[23]!) >>> 0) * 65_536 + port;
    let s = "";
    for (let i = 8; i < 24; i++) s += b[i]!.toString(16).padStart(2, "0");
    return `${s}.${port}`;
  }

  /** Reads CLOCK_REALTIME (the receive timestamps' clock): into `out` as [sec, nsec]. */
  now(out: { sec: number; nsec: number }): void {
    realtimeNow(this.#timespec);
    const u = this.#u32;
    out.sec = u[TIMESPEC / 4]! + u[TIMESPEC / 4 + 1]! * 0x1_0000_0000;
    out.nsec = u[TIMESPEC / 4 + 2]!;
  }

  /** Sends buf[0 .. len) to the last datagram's sender: bytes sent, or -errno. */
  reply(buf: Uint8Array, len: number): number {
    return sendTo(this.#fd, buf, len, this.#name);
  }

  close(): void {
    closeFd(this.#fd);
  }
}

/** poll(2) over a fixed set of sockets: which of them are readable, without allocating. */
export class SocketPoll {
  readonly #memory: ArrayBuffer;
  readonly #fds: Int32Array;
  readonly #events: Int16Array;
  readonly #ptr: Pointer;
  readonly count: number;

  constructor(fds: readonly number[]) {
    this.count = fds.length;
    this.#memory = new ArrayBuffer(Math.max(8, fds.length * 8));
    this.#fds = new Int32Array(this.#memory);
    this.#events = new Int16Array(this.#memory);
    fds.forEach((fd, i) => {
      this.#fds[i * 2] = fd;
      this.#events[i * 4 + 2] = POLLIN;
    });
    this.#ptr = ptr(this.#fds);
  }

  /** Waits until one is readable or `timeoutMs` passes; how many are readable. */
  wait(timeoutMs: number): number {
    for (let i = 0; i < this.count; i++) this.#events[i * 4 + 3] = 0;
    return pollFds(this.#ptr, this.count, timeoutMs);
  }

  /** Whether socket i was readable (or in error) at the last wait. */
  ready(i: number): boolean {
    return this.#events[i * 4 + 3]! !== 0;
  }
}
