/**
 * Host networking facts straight from the kernel over rtnetlink: the route `ip route get` would
 * show, links, addresses and neighbours. Synchronous on purpose: the engine asks between batches
 * and needs the answer before it builds the next frame, and the kernel answers in microseconds.
 *
 * Parsing is a pure function over bytes (parseNetlink) so it can be tested against replies
 * captured from a real kernel (tests/fixtures/netlink/).
 */
import { formatAddress, parseAddress as parseIpText } from "../packet/address.ts";
import {
  AF_INET,
  AF_INET6,
  AF_NETLINK,
  closeFd,
  MSG_TRUNC,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  openSocket,
  pollReadable,
  recvFlags,
  sendTo,
  setSockOptInt,
  SOCK_RAW,
  SOL_NETLINK,
  strerror,
} from "../native/libc.ts";

// ---------------------------------------------------------------------------------------------
// Protocol constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/neighbour.h)

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const RTM_NEWLINK = 16;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_GETNEIGH = 30;

const NLM_F_REQUEST = 0x1;
const NLM_F_MULTI = 0x2;
const NLM_F_DUMP_INTR = 0x10;
const NLM_F_DUMP = 0x300;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

const NLMSG_HDRLEN = 16;
const RTMSG_LEN = 12;
const IFINFOMSG_LEN = 16;
const IFADDRMSG_LEN = 8;
const NDMSG_LEN = 12;

const RTA_DST = 1;
const RTA_SRC = 2;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;
const RTA_VIA = 18;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;

const NDA_DST = 1;
const NDA_LLADDR = 2;

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;

export const NUD_INCOMPLETE = 0x01;
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_DELAY = 0x08;
export const NUD_PROBE = 0x10;
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
/** States in which the kernel itself would send to the cached lladdr. */
const NUD_USABLE = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

const EINVAL = 22;
const EACCES = 13;
const ENODEV = 19;
const ENOENT = 2;
const ENETUNREACH = 101;
const EHOSTUNREACH = 113;

// ---------------------------------------------------------------------------------------------
// Public types

export type RouteType =
  | "unicast"
  | "local"
  | "broadcast"
  | "multicast"
  | "blackhole"
  | "unreachable"
  | "prohibit"
  | "throw"
  | "other";

export interface RouteInfo {
  family: 4 | 6;
  dst: string;
  type: RouteType;
  /** 0 when the route has no device (a v4 blackhole, unreachable or prohibit route). */
  ifindex: number;
  /** "" when ifindex is 0. */
  ifname: string;
  src: string | null;
  /** Next hop; of the other family for a v4 route via an IPv6 gateway (RTA_VIA). */
  gateway: string | null;
}

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  /** null for links without a hardware address (TUN, some tunnels). */
  mac: string | null;
  /** ifi_type: ARPHRD_ETHER 1, ARPHRD_LOOPBACK 772, ARPHRD_NONE 65534 (TUN), ... */
  arpHardwareType: number;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  loopback: boolean;
  /** ifi_flags as the kernel reports them (IFF_RUNNING, IFF_LOWER_UP, IFF_NOARP, ...). */
  flags: number;
}

export interface AddressInfo {
  ifindex: number;
  family: 4 | 6;
  address: string;
  prefixLength: number;
  /** RT_SCOPE_*: 0 universe, 253 link, 254 host. */
  scope: number;
}

export interface NeighbourState {
  mac: string | null;
  /** NUD_* bits. */
  state: number;
  usable: boolean;
}

export interface NeighbourInfo extends NeighbourState {
  ifindex: number;
  family: 4 | 6;
  address: string;
}

/** A route as the kernel describes it in RTM_NEWROUTE (a route-get answer or a dump entry). */
export interface RouteRecord {
  family: 4 | 6;
  /** rtm_type as a name; rtmType keeps the number. */
  type: RouteType;
  rtmType: number;
  table: number;
  dstLen: number;
  srcLen: number;
  dst: string | null;
  /** RTA_SRC: the source selector of the route (or the source given to a route get). */
  srcSelector: string | null;
  oif: number;
  prefsrc: string | null;
  gateway: string | null;
  priority: number | null;
  flags: number;
}

export type NetlinkRecord =
  | { kind: "route"; route: RouteRecord }
  | { kind: "link"; link: LinkInfo }
  | { kind: "address"; address: AddressInfo }
  | { kind: "neighbour"; neighbour: NeighbourInfo }
  /** errno 0 is an acknowledgement. */
  | { kind: "error"; errno: number; message: string | null }
  | { kind: "done"; errno: number }
  /** A message of a type or address family these parsers do not describe. */
  | { kind: "other" };

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  record: NetlinkRecord;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A netlink request failed: names the request, carries errno and the kernel's extended ack. */
export class NetlinkError extends Error {
  constructor(
    readonly op: string,
    readonly code: number,
    readonly kernelMessage: string | null = null,
  ) {
    super(`${op}: ${code > 0 ? `${strerror(code)} (errno ${code})` : "failed"}${kernelMessage ? ` [kernel: ${kernelMessage}]` : ""}`);
    this.name = "NetlinkError";
  }
}

/** The kernel has no route to dst (ENETUNREACH), as `ip route get` would report. */
export class NoRoute extends Error {
  constructor(
    readonly dst: string,
    readonly src: string | null = null,
  ) {
    super(`no route to ${dst}${src ? ` from ${src}` : ""}`);
    this.name = "NoRoute";
  }
}

/** No link has that index or name. */
export class NoSuchLink extends Error {
  constructor(readonly link: number | string) {
    super(`no network interface ${typeof link === "number" ? `with index ${link}` : `named "${link}"`}`);
    this.name = "NoSuchLink";
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses: the packet codec's parser and RFC 5952 formatter, trimmed to the attribute sizes
// netlink uses (4 bytes for IPv4, 16 for IPv6).

interface IpBytes {
  family: 4 | 6;
  bytes: Uint8Array;
}

function encodeIp(text: string): IpBytes | null {
  const a = parseIpText(text);
  return a ? { family: a.family, bytes: a.bytes.slice(0, a.family === 4 ? 4 : 16) } : null;
}

function formatIp(family: 4 | 6, view: DataView, off: number): string {
  return formatAddress(family, new Uint8Array(view.buffer, view.byteOffset, view.byteLength), off);
}

function formatMac(view: DataView, off: number, len: number): string | null {
  if (len <= 0) return null;
  const parts: string[] = [];
  for (let i = 0; i < len; i++) parts.push(view.getUint8(off + i).toString(16).padStart(2, "0"));
  return parts.join(":");
}

function familyOf(af: number): 4 | 6 | null {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : null;
}

/** An address attribute of the expected size, or null (an attribute of another size is not one). */
function ipAttr(family: 4 | 6, view: DataView, off: number, len: number): string | null {
  return len === (family === 4 ? 4 : 16) ? formatIp(family, view, off) : null;
}

function cString(view: DataView, off: number, len: number): string {
  let end = off;
  while (end < off + len && view.getUint8(end) !== 0) end++;
  return new TextDecoder().decode(new Uint8Array(view.buffer, view.byteOffset + off, end - off));
}

// ---------------------------------------------------------------------------------------------
// Parsing (pure)

const ROUTE_TYPES: readonly RouteType[] = [
  "other", // RTN_UNSPEC
  "unicast",
  "local",
  "broadcast",
  "other", // RTN_ANYCAST
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
];

function routeTypeName(rtmType: number): RouteType {
  return ROUTE_TYPES[rtmType] ?? "other";
}

const align4 = (n: number) => (n + 3) & ~3;

/** Calls fn(type, payloadOffset, payloadLength) for each rtattr in [off, end). */
function forEachAttr(view: DataView, off: number, end: number, fn: (type: number, at: number, len: number) => void): void {
  while (off + 4 <= end) {
    const len = view.getUint16(off, true);
    if (len < 4 || off + len > end) break; // malformed: stop rather than read past the message
    // NLA_F_NESTED / NLA_F_NET_BYTEORDER live in the top bits of the type.
    fn(view.getUint16(off + 2, true) & 0x3fff, off + 4, len - 4);
    off += align4(len);
  }
}

function parseRoute(view: DataView, off: number, end: number): NetlinkRecord {
  if (end - off < RTMSG_LEN) return { kind: "other" };
  const family = familyOf(view.getUint8(off));
  if (family === null) return { kind: "other" };
  const rtmType = view.getUint8(off + 7);
  const route: RouteRecord = {
    family,
    type: routeTypeName(rtmType),
    rtmType,
    table: view.getUint8(off + 4),
    dstLen: view.getUint8(off + 1),
    srcLen: view.getUint8(off + 2),
    dst: null,
    srcSelector: null,
    oif: 0,
    prefsrc: null,
    gateway: null,
    priority: null,
    flags: view.getUint32(off + 8, true),
  };
  forEachAttr(view, off + RTMSG_LEN, end, (type, at, len) => {
    switch (type) {
      case RTA_DST:
        route.dst = ipAttr(family, view, at, len);
        break;
      case RTA_SRC:
        route.srcSelector = ipAttr(family, view, at, len);
        break;
      case RTA_OIF:
        if (len >= 4) route.oif = view.getUint32(at, true);
        break;
      case RTA_GATEWAY:
        route.gateway = ipAttr(family, view, at, len);
        break;
      case RTA_PREFSRC:
        route.prefsrc = ipAttr(family, view, at, len);
        break;
      case RTA_PRIORITY:
        if (len >= 4) route.priority = view.getUint32(at, true);
        break;
      case RTA_TABLE:
        // rtm_table is a u8; tables above 255 only appear here.
        if (len >= 4) route.table = view.getUint32(at, true);
        break;
      case RTA_VIA: {
        // struct rtvia { __kernel_sa_family_t rtvia_family; __u8 rtvia_addr[]; }
        if (len < 2) break;
        const viaFamily = familyOf(view.getUint16(at, true));
        if (viaFamily !== null) route.gateway = ipAttr(viaFamily, view, at + 2, len - 2);
        break;
      }
    }
  });
  return { kind: "route", route };
}

function parseLink(view: DataView, off: number, end: number): NetlinkRecord {
  if (end - off < IFINFOMSG_LEN) return { kind: "other" };
  const flags = view.getUint32(off + 8, true);
  const link: LinkInfo = {
    ifindex: view.getInt32(off + 4, true),
    ifname: "",
    mac: null,
    arpHardwareType: view.getUint16(off + 2, true),
    mtu: 0,
    up: (flags & IFF_UP) !== 0,
    loopback: (flags & IFF_LOOPBACK) !== 0,
    flags,
  };
  forEachAttr(view, off + IFINFOMSG_LEN, end, (type, at, len) => {
    if (type === IFLA_IFNAME) link.ifname = cString(view, at, len);
    else if (type === IFLA_ADDRESS) link.mac = formatMac(view, at, len);
    else if (type === IFLA_MTU && len >= 4) link.mtu = view.getUint32(at, true);
  });
  return { kind: "link", link };
}

function parseAddress(view: DataView, off: number, end: number): NetlinkRecord {
  if (end - off < IFADDRMSG_LEN) return { kind: "other" };
  const family = familyOf(view.getUint8(off));
  if (family === null) return { kind: "other" };
  let address: string | null = null;
  let local: string | null = null;
  forEachAttr(view, off + IFADDRMSG_LEN, end, (type, at, len) => {
    if (type === IFA_ADDRESS) address = ipAttr(family, view, at, len);
    else if (type === IFA_LOCAL) local = ipAttr(family, view, at, len);
  });
  // On a point-to-point address IFA_ADDRESS is the peer; IFA_LOCAL is ours.
  const ours = local ?? address;
  if (ours === null) return { kind: "other" };
  return {
    kind: "address",
    address: {
      ifindex: view.getUint32(off + 4, true),
      family,
      address: ours,
      prefixLength: view.getUint8(off + 1),
      scope: view.getUint8(off + 3),
    },
  };
}

function parseNeighbour(view: DataView, off: number, end: number): NetlinkRecord {
  if (end - off < NDMSG_LEN) return { kind: "other" };
  const family = familyOf(view.getUint8(off));
  if (family === null) return { kind: "other" };
  const state = view.getUint16(off + 8, true);
  let address: string | null = null;
  let mac: string | null = null;
  forEachAttr(view, off + NDMSG_LEN, end, (type, at, len) => {
    if (type === NDA_DST) address = ipAttr(family, view, at, len);
    else if (type === NDA_LLADDR) mac = formatMac(view, at, len);
  });
  if (address === null) return { kind: "other" };
  return {
    kind: "neighbour",
    neighbour: {
      ifindex: view.getInt32(off + 4, true),
      family,
      address,
      mac,
      state,
      usable: (state & NUD_USABLE) !== 0 && mac !== null,
    },
  };
}

function parseError(view: DataView, off: number, end: number, flags: number): NetlinkRecord {
  if (end - off < 4) return { kind: "error", errno: 0, message: "truncated NLMSG_ERROR" };
  const errno = -view.getInt32(off, true) | 0; // | 0: no -0 for an ack
  let message: string | null = null;
  if (flags & NLM_F_ACK_TLVS && end - off >= 4 + NLMSG_HDRLEN) {
    // After errno comes the offending request: its header only when capped, else all of it.
    const echoed = flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(view.getUint32(off + 4, true));
    forEachAttr(view, off + 4 + echoed, end, (type, at, len) => {
      if (type === NLMSGERR_ATTR_MSG) message = cString(view, at, len);
    });
  }
  return { kind: "error", errno, message };
}

/**
 * Splits length bytes of view starting at start into netlink messages and describes each.
 * Stops at the first malformed header (a length that does not fit) rather than guessing.
 */
function parseView(view: DataView, start: number, length: number, out: NetlinkMessage[]): NetlinkMessage[] {
  let off = start;
  const end = start + length;
  while (off + NLMSG_HDRLEN <= end) {
    const len = view.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > end) break;
    const type = view.getUint16(off + 4, true);
    const flags = view.getUint16(off + 6, true);
    const body = off + NLMSG_HDRLEN;
    const bodyEnd = off + len;
    let record: NetlinkRecord;
    switch (type) {
      case NLMSG_ERROR:
        record = parseError(view, body, bodyEnd, flags);
        break;
      case NLMSG_DONE:
        record = { kind: "done", errno: bodyEnd - body >= 4 ? -view.getInt32(body, true) | 0 : 0 };
        break;
      case RTM_NEWROUTE:
        record = parseRoute(view, body, bodyEnd);
        break;
      case RTM_NEWLINK:
        record = parseLink(view, body, bodyEnd);
        break;
      case RTM_NEWADDR:
        record = parseAddress(view, body, bodyEnd);
        break;
      case RTM_NEWNEIGH:
        record = parseNeighbour(view, body, bodyEnd);
        break;
      default:
        record = { kind: "other" };
    }
    out.push({ type, flags, seq: view.getUint32(off + 8, true), pid: view.getUint32(off + 12, true), record });
    off += align4(len);
  }
  return out;
}

/** Parses a buffer of netlink messages (one recv's worth, or several concatenated). */
export function parseNetlink(bytes: Uint8Array): NetlinkMessage[] {
  return parseView(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, bytes.byteLength, []);
}

// ---------------------------------------------------------------------------------------------
// Requests

/** Writes one request (header, fixed part, attributes) into a preallocated buffer. */
class RequestWriter {
  readonly bytes = new Uint8Array(1024);
  readonly view = new DataView(this.bytes.buffer);
  length = 0;

  begin(type: number, flags: number, fixedLength: number): this {
    this.bytes.fill(0, 0, NLMSG_HDRLEN + fixedLength);
    this.view.setUint16(4, type, true);
    this.view.setUint16(6, flags | NLM_F_REQUEST, true);
    this.length = NLMSG_HDRLEN + fixedLength;
    return this;
  }

  u8(offsetInFixed: number, v: number): this {
    this.view.setUint8(NLMSG_HDRLEN + offsetInFixed, v);
    return this;
  }

  i32(offsetInFixed: number, v: number): this {
    this.view.setInt32(NLMSG_HDRLEN + offsetInFixed, v, true);
    return this;
  }

  attr(type: number, payload: Uint8Array): this {
    const len = 4 + payload.byteLength;
    this.view.setUint16(this.length, len, true);
    this.view.setUint16(this.length + 2, type, true);
    this.bytes.set(payload, this.length + 4);
    this.bytes.fill(0, this.length + len, this.length + align4(len));
    this.length += align4(len);
    return this;
  }

  attrU32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.attr(type, b);
  }

  finish(seq: number): Uint8Array {
    this.view.setUint32(0, this.length, true);
    this.view.setUint32(8, seq, true);
    return this.bytes;
  }
}

/** Dumps the kernel interrupted (NLM_F_DUMP_INTR: the table changed meanwhile) are retried. */
const DUMP_ATTEMPTS = 5;
const DEFAULT_TIMEOUT_MS = 2000;

/**
 * One NETLINK_ROUTE socket per thread, opened on first use. Requests are strictly one at a time,
 * so replies are told apart by sequence number only: anything else (a late reply to a request
 * that timed out) is skipped.
 */
class RtnlSocket {
  #fd = -1;
  #seq = (Date.now() & 0xffff) << 8;
  readonly #writer = new RequestWriter();
  /** Large enough for any dump datagram (the kernel caps them at 32 KiB). */
  readonly #rx = new Uint8Array(65536);
  readonly #rxView = new DataView(this.#rx.buffer);
  readonly #kernel = new Uint8Array(12); // struct sockaddr_nl { family; pad; pid = 0; groups = 0 }

  constructor() {
    new DataView(this.#kernel.buffer).setUint16(0, AF_NETLINK, true);
  }

  #open(): number {
    if (this.#fd >= 0) return this.#fd;
    const fd = openSocket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    // Both are conveniences (shorter errors, with the kernel's reason): old kernels lack them.
    for (const opt of [NETLINK_CAP_ACK, NETLINK_EXT_ACK]) {
      try {
        setSockOptInt(fd, SOL_NETLINK, opt, 1);
      } catch {
        /* optional */
      }
    }
    this.#fd = fd;
    return fd;
  }

  close(): void {
    if (this.#fd >= 0) closeFd(this.#fd);
    this.#fd = -1;
  }

  get writer(): RequestWriter {
    return this.#writer;
  }

  /**
   * Sends the request in the writer and collects the records of its reply. A dump ends with
   * NLMSG_DONE; a single-answer request ends with its one (non-multipart) message. An error reply
   * throws NetlinkError.
   */
  request(op: string, dump: boolean, timeoutMs = DEFAULT_TIMEOUT_MS): NetlinkRecord[] {
    for (let attempt = 1; ; attempt++) {
      const { records, interrupted } = this.#once(op, dump, timeoutMs);
      if (!interrupted) return records;
      if (attempt >= DUMP_ATTEMPTS) throw new NetlinkError(`${op}: dump interrupted ${attempt} times by concurrent changes`, 0);
    }
  }

  #once(op: string, dump: boolean, timeoutMs: number): { records: NetlinkRecord[]; interrupted: boolean } {
    const fd = this.#open();
    this.#seq = (this.#seq + 1) >>> 0;
    const seq = this.#seq;
    const req = this.#writer.finish(seq);
    const sent = sendTo(fd, req, this.#writer.length, this.#kernel);
    if (sent < 0) throw new NetlinkError(`${op}: sendto`, -sent);
    const records: NetlinkRecord[] = [];
    let interrupted = false;
    const deadline = Date.now() + timeoutMs;
    const messages: NetlinkMessage[] = [];
    for (;;) {
      const n = recvFlags(fd, this.#rx, MSG_TRUNC);
      if (n < 0) throw new NetlinkError(`${op}: recv`, -n);
      if (n === 0) {
        const left = deadline - Date.now();
        if (left <= 0) throw new NetlinkError(`${op}: no answer from the kernel within ${timeoutMs} ms`, 0);
        pollReadable(fd, left);
        continue;
      }
      if (n > this.#rx.byteLength) throw new NetlinkError(`${op}: reply of ${n} bytes truncated to ${this.#rx.byteLength}`, 0);
      messages.length = 0;
      parseView(this.#rxView, 0, n, messages);
      for (const m of messages) {
        if (m.seq !== seq) continue;
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        const r = m.record;
        if (r.kind === "error") {
          if (r.errno === 0) return { records, interrupted };
          throw new NetlinkError(op, r.errno, r.message);
        }
        if (r.kind === "done") {
          if (r.errno !== 0) throw new NetlinkError(op, r.errno);
          return { records, interrupted };
        }
        if (m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_OVERRUN) throw new NetlinkError(`${op}: netlink overrun`, 0);
        records.push(r);
        if (!dump && !(m.flags & NLM_F_MULTI)) return { records, interrupted };
      }
    }
  }
}

let rtnl: RtnlSocket | undefined;

function socket(): RtnlSocket {
  rtnl ??= new RtnlSocket();
  return rtnl;
}

/** Closes this thread's netlink socket (reopened on next use). */
export function closeNetlink(): void {
  rtnl?.close();
  rtnl = undefined;
}

function requireIp(text: string, what: string): IpBytes {
  const ip = encodeIp(text);
  if (!ip) throw new TypeError(`${what} "${text}" is not an IPv4 or IPv6 address`);
  return ip;
}

function routeGetOp(dst: string, opts?: { src?: string; oif?: number }): string {
  return `RTM_GETROUTE ${dst}${opts?.src ? ` from ${opts.src}` : ""}${opts?.oif ? ` oif ${opts.oif}` : ""}`;
}

/** The errno the kernel answers a route get with when the matching route is of this type. */
const ERRNO_OF_TYPE: ReadonlyMap<number, RouteType> = new Map([
  [EINVAL, "blackhole"],
  [EHOSTUNREACH, "unreachable"],
  [EACCES, "prohibit"],
]);

/**
 * The route to dst, as `ip route get DST [from SRC] [oif IDX]` shows it.
 *
 * The kernel answers a lookup that ends on a blackhole, unreachable or prohibit route with an
 * error (EINVAL, EHOSTUNREACH, EACCES) rather than the route; those come back as a RouteInfo of
 * that type (ifindex 0 unless the route names a device). EINVAL has other causes (a source that
 * is not local), so a blackhole is only reported when the routing table holds one covering dst.
 * Throws NoRoute when the kernel has no route (ENETUNREACH).
 */
export function getRoute(
  dst: string,
  opts?: {
    src?: string;
    oif?: number;
    /**
     * Interface names already known, by index (filled as names are looked up): a caller resolving
     * thousands of routes over a handful of interfaces pays one RTM_GETLINK per interface, not
     * one per route.
     */
    linkNames?: Map<number, string>;
  },
): RouteInfo {
  const nameOf = (ifindex: number): string => {
    const names = opts?.linkNames;
    let name = names?.get(ifindex);
    if (name === undefined) {
      name = linkName(ifindex);
      names?.set(ifindex, name);
    }
    return name;
  };
  const d = requireIp(dst, "destination");
  const s = opts?.src ? requireIp(opts.src, "source") : null;
  if (s && s.family !== d.family) throw new TypeError(`source ${opts!.src} and destination ${dst} are of different families`);
  const af = d.family === 4 ? AF_INET : AF_INET6;
  const bits = d.family === 4 ? 32 : 128;
  const sock = socket();
  // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }
  const w = sock.writer.begin(RTM_GETROUTE, 0, RTMSG_LEN).u8(0, af).u8(1, bits).attr(RTA_DST, d.bytes);
  if (s) w.u8(2, bits).attr(RTA_SRC, s.bytes);
  if (opts?.oif) w.attrU32(RTA_OIF, opts.oif);
  const op = routeGetOp(dst, opts);
  let records: NetlinkRecord[];
  try {
    records = sock.request(op, false);
  } catch (e) {
    if (!(e instanceof NetlinkError)) throw e;
    if (e.code === ENETUNREACH) throw new NoRoute(dst, opts?.src ?? null);
    const type = ERRNO_OF_TYPE.get(e.code);
    if (type === undefined) throw e;
    const covering = coveringRoute(d, type);
    if (covering === null && type === "blackhole") {
      throw new NetlinkError(`${op} (no blackhole route covers it${s ? "; is the source a local address?" : ""})`, e.code, e.kernelMessage);
    }
    const ifindex = covering?.oif ?? 0;
    return { family: d.family, dst: formatIp(d.family, new DataView(d.bytes.buffer), 0), type, ifindex, ifname: ifindex ? nameOf(ifindex) : "", src: null, gateway: null };
  }
  const rec = records.find((r): r is Extract<NetlinkRecord, { kind: "route" }> => r.kind === "route");
  if (!rec) throw new NetlinkError(`${op}: the kernel answered without a route`, 0);
  const r = rec.route;
  return {
    family: r.family,
    dst: r.dst ?? formatIp(d.family, new DataView(d.bytes.buffer), 0),
    type: r.type,
    ifindex: r.oif,
    ifname: r.oif ? nameOf(r.oif) : "",
    src: r.prefsrc,
    gateway: r.gateway,
  };
}

function prefixCovers(prefix: Uint8Array, len: number, addr: Uint8Array): boolean {
  const full = len >> 3;
  for (let i = 0; i < full; i++) if (prefix[i] !== addr[i]) return false;
  const rest = len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((prefix[full]! ^ addr[full]!) & mask) === 0;
}

/** The most specific route of the given type covering addr, from a dump of every table. */
function coveringRoute(addr: IpBytes, type: RouteType): RouteRecord | null {
  let best: RouteRecord | null = null;
  for (const r of dumpRoutes(addr.family)) {
    if (r.type !== type) continue;
    const prefix = r.dst === null ? new Uint8Array(addr.bytes.byteLength) : encodeIp(r.dst)?.bytes;
    if (!prefix || !prefixCovers(prefix, r.dstLen, addr.bytes)) continue;
    if (best === null || r.dstLen > best.dstLen) best = r;
  }
  return best;
}

/** Every route of the family in every table (`ip route show table all`). */
export function dumpRoutes(family: 4 | 6): RouteRecord[] {
  const sock = socket();
  sock.writer.begin(RTM_GETROUTE, NLM_F_DUMP, RTMSG_LEN).u8(0, family === 4 ? AF_INET : AF_INET6);
  const out: RouteRecord[] = [];
  for (const r of sock.request(`RTM_GETROUTE dump (IPv${family})`, true)) if (r.kind === "route") out.push(r.route);
  return out;
}

function linkName(ifindex: number): string {
  return getLink(ifindex).ifname;
}

/** Every link (`ip link show`). */
export function listLinks(): LinkInfo[] {
  const sock = socket();
  sock.writer.begin(RTM_GETLINK, NLM_F_DUMP, IFINFOMSG_LEN);
  const out: LinkInfo[] = [];
  for (const r of sock.request("RTM_GETLINK dump", true)) if (r.kind === "link") out.push(r.link);
  return out;
}

/** One link by index or name; throws NoSuchLink when there is none. */
export function getLink(link: number | string): LinkInfo {
  const sock = socket();
  const w = sock.writer.begin(RTM_GETLINK, 0, IFINFOMSG_LEN);
  if (typeof link === "number") w.i32(4, link);
  else w.attr(IFLA_IFNAME, new TextEncoder().encode(`${link}\0`));
  let records: NetlinkRecord[];
  try {
    records = sock.request(`RTM_GETLINK ${link}`, false);
  } catch (e) {
    if (e instanceof NetlinkError && (e.code === ENODEV || e.code === ENOENT)) throw new NoSuchLink(link);
    throw e;
  }
  for (const r of records) if (r.kind === "link") return r.link;
  throw new NoSuchLink(link);
}

/** Every address of every link (`ip addr show`). */
export function listAddresses(): AddressInfo[] {
  const sock = socket();
  sock.writer.begin(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG_LEN);
  const out: AddressInfo[] = [];
  for (const r of sock.request("RTM_GETADDR dump", true)) if (r.kind === "address") out.push(r.address);
  return out;
}

/**
 * The kernel's neighbour entry (ARP or NDP) for addr on ifindex, or null when there is none.
 * An entry in INCOMPLETE or FAILED state is returned with usable false.
 */
export function getNeighbour(ifindex: number, addr: string): NeighbourState | null {
  const a = requireIp(addr, "neighbour");
  const sock = socket();
  // struct ndmsg { u8 family; u8 pad1; u16 pad2; i32 ifindex; u16 state; u8 flags; u8 type }
  sock.writer.begin(RTM_GETNEIGH, 0, NDMSG_LEN).u8(0, a.family === 4 ? AF_INET : AF_INET6).i32(4, ifindex).attr(NDA_DST, a.bytes);
  let records: NetlinkRecord[];
  try {
    records = sock.request(`RTM_GETNEIGH ${addr} ifindex ${ifindex}`, false);
  } catch (e) {
    if (e instanceof NetlinkError && e.code === ENOENT) return null;
    if (e instanceof NetlinkError && e.code === ENODEV) throw new NoSuchLink(ifindex);
    throw e;
  }
  for (const r of records) {
    if (r.kind === "neighbour") return { mac: r.neighbour.mac, state: r.neighbour.state, usable: r.neighbour.usable };
  }
  return null;
}

/** Every neighbour entry, of one family or both (`ip neigh show`). */
export function listNeighbours(family?: 4 | 6): NeighbourInfo[] {
  const sock = socket();
  sock.writer.begin(RTM_GETNEIGH, NLM_F_DUMP, NDMSG_LEN).u8(0, family === 4 ? AF_INET : family === 6 ? AF_INET6 : 0);
  const out: NeighbourInfo[] = [];
  for (const r of sock.request("RTM_GETNEIGH dump", true)) if (r.kind === "neighbour") out.push(r.neighbour);
  return out;
}
