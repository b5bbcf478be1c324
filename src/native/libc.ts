/**
 * The libc calls Bun does not expose: poll on pcap's selectable fd, raw IP sockets for
 * `l3_raw_socket`, netlink sockets for the routing and neighbour tables, memcpy to copy
 * captured frames out of libpcap's ring into a preallocated buffer without allocating; and for
 * privilege: prctl and capset to give capabilities up, execve to start afresh without them,
 * memfd_create and fcntl seals to load native code from memory rather than from a file; bind,
 * getsockname, recvmsg and clock_gettime for the TWAMP responder's timestamped UDP sockets.
 */
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  sendto: {
    args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32],
    returns: FFIType.i64,
  },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  eventfd: { args: [FFIType.u32, FFIType.i32], returns: FFIType.i32 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  memcpy: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.ptr },
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  capset: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  memfd_create: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  adjtimex: { args: [FFIType.ptr], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  recvmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64 },
  clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
});

const c = libc.symbols;

/**
 * Unloads this thread's libc wrappers (see closeLibpcap): for a Worker about to end, after its
 * last call into this module.
 */
export function closeLibc(): void {
  libc.close();
}

export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOCK_NONBLOCK = 0o4000;
export const IPPROTO_RAW = 255;
export const NETLINK_ROUTE = 0;
export const POLLIN = 1;
export const MSG_DONTWAIT = 0x40;

/** errno of the last failed libc call on this thread. */
export function errno(): number {
  const loc = c.__errno_location();
  return loc === null ? 0 : read.i32(loc, 0);
}

export function strerror(code: number): string {
  return String(c.strerror(code));
}

/** A libc call failed: names the call and carries errno. */
export class SystemError extends Error {
  constructor(
    readonly op: string,
    readonly code: number,
  ) {
    super(`${op}: ${strerror(code)} (errno ${code})`);
    this.name = "SystemError";
  }
}

// Two struct pollfd { int fd; short events; short revents; }: the awaited fd and an optional
// wake-up fd (poll ignores a negative fd). Backed by an explicit ArrayBuffer: reading `.buffer`
// of a small typed array makes JavaScriptCore move its storage, which would leave a pointer
// taken earlier aiming at a stale copy.
const pollMemory = new ArrayBuffer(16);
const pollfd = new Int32Array(pollMemory);
const pollShorts = new Int16Array(pollMemory);
const pollfdPtr = ptr(pollfd);

/**
 * Waits until fd is readable, wakeFd (when >= 0) is readable, or timeoutMs passes. Returns true
 * when fd is readable. Blocks the calling thread: call it from a Worker, never from the main thread.
 */
export function pollReadable(fd: number, timeoutMs: number, wakeFd = -1): boolean {
  pollfd[0] = fd;
  pollfd[1] = POLLIN;
  pollfd[2] = wakeFd;
  pollfd[3] = POLLIN;
  const r = c.poll(pollfdPtr, 2, Math.max(0, Math.min(timeoutMs, 0x7fffffff) | 0));
  if (r < 0) {
    const e = errno();
    if (e === 4) return false; // EINTR: the caller re-checks its deadline
    throw new SystemError("poll", e);
  }
  return r > 0 && (pollShorts[3]! & POLLIN) !== 0;
}

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

/** An eventfd (non-blocking, close-on-exec): one thread's poll() can be woken by another's write of 8 bytes. */
export function openEventFd(): number {
  const fd = c.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw new SystemError("eventfd", errno());
  return fd;
}

export function openSocket(domain: number, type: number, protocol: number): number {
  const fd = c.socket(domain, type | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new SystemError(`socket(${domain}, ${type}, ${protocol})`, errno());
  return fd;
}

export function setSockOptInt(fd: number, level: number, name: number, value: number): void {
  const v = new Int32Array([value]);
  if (c.setsockopt(fd, level, name, v, 4) < 0) throw new SystemError(`setsockopt(${level}, ${name})`, errno());
}

/** Sends buf[0..len) to addr; returns bytes sent, or -errno. */
export function sendTo(fd: number, buf: Uint8Array, len: number, addr: Uint8Array | null): number {
  const r = Number(c.sendto(fd, buf, len, 0, addr, addr === null ? 0 : addr.byteLength));
  return r < 0 ? -errno() : r;
}

export function closeFd(fd: number): void {
  c.close(fd);
}

/** Copies len bytes from native memory at src into dst (no allocation). */
export function copyFromNative(dst: Uint8Array, src: Pointer, len: number): void {
  c.memcpy(dst, src, len);
}

export const SOL_NETLINK = 270;
/** Errors come back with the request's header only, not the whole request echoed. */
export const NETLINK_CAP_ACK = 10;
/** Errors carry the kernel's explanation (NLMSGERR_ATTR_MSG) next to errno. */
export const NETLINK_EXT_ACK = 11;
/** recv returns the datagram's real length even when it did not fit: truncation is detectable. */
export const MSG_TRUNC = 0x20;

/**
 * Receives one datagram into buf without blocking, with extra recv flags (e.g. MSG_TRUNC).
 * Returns its length (which exceeds buf.byteLength when truncated under MSG_TRUNC), 0 when nothing
 * is waiting, or -errno.
 */
export function recvFlags(fd: number, buf: Uint8Array, flags: number): number {
  const r = Number(c.recv(fd, buf, buf.byteLength, flags | MSG_DONTWAIT));
  if (r >= 0) return r;
  const e = errno();
  return e === 11 ? 0 : -e; // EAGAIN
}

export const PR_CAPBSET_DROP = 24;
export const PR_SET_NO_NEW_PRIVS = 38;
export const PR_CAP_AMBIENT = 47;
export const PR_CAP_AMBIENT_CLEAR_ALL = 4;

/** prctl(option, arg2, 0, 0, 0); throws SystemError naming the option. */
export function prctl(option: number, arg2: number): void {
  if (c.prctl(option, arg2, 0, 0, 0) < 0) throw new SystemError(`prctl(${option}, ${arg2})`, errno());
}

const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

/**
 * Sets the calling thread's effective, permitted and inheritable sets to nothing (capset with
 * zeroed data: two 32-bit halves of each set under version 3).
 */
export function clearCapabilities(): void {
  const header = new Uint32Array([LINUX_CAPABILITY_VERSION_3, 0]); // { version, pid: 0 = this thread }
  const data = new Uint32Array(6); // [2] x { effective, permitted, inheritable }
  if (c.capset(header, data) < 0) throw new SystemError("capset", errno());
}

function cstrings(values: readonly string[]): { keep: Uint8Array[]; array: BigUint64Array } {
  const keep = values.map((v) => new TextEncoder().encode(`${v}\0`));
  const array = new BigUint64Array(keep.length + 1); // NULL-terminated char *[]
  keep.forEach((b, i) => (array[i] = BigInt(ptr(b))));
  return { keep, array };
}

/** Replaces this process's image (all its threads) with `path`; returns only by throwing. */
export function execve(path: string, argv: readonly string[], env: readonly string[]): never {
  const file = new TextEncoder().encode(`${path}\0`);
  const a = cstrings(argv);
  const e = cstrings(env);
  c.execve(file, a.array, e.array);
  const code = errno();
  void [a.keep, e.keep]; // the strings must live until the call
  throw new SystemError(`execve(${path})`, code);
}

export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
/** Linux 6.3+: the memory file may be mapped executable even under vm.memfd_noexec=1. */
export const MFD_EXEC = 0x10;
export const EINVAL = 22;

/** An anonymous file in memory, named `name` in /proc/PID/fd; throws SystemError. */
export function memfdCreate(name: string, flags: number): number {
  const fd = c.memfd_create(new TextEncoder().encode(`${name}\0`), flags);
  if (fd < 0) throw new SystemError(`memfd_create(${name})`, errno());
  return fd;
}

const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;

export function addSeals(fd: number, seals: number): void {
  if (c.fcntl(fd, F_ADD_SEALS, seals) < 0) throw new SystemError("fcntl(F_ADD_SEALS)", errno());
}

/** The seals of a memory file; -1 when fd is not one (or not open). */
export function sealsOf(fd: number): number {
  return c.fcntl(fd, F_GET_SEALS, 0);
}

/** adjtimex(2)'s state when the kernel's clock is not synchronised (by NTP, PTP or chrony). */
const TIME_ERROR = 5;
/** struct timex is 208 bytes on 64-bit Linux; `modes` (the first field) 0 only reads. */
const timex = new Uint8Array(256);

/** Whether the kernel says its clock is synchronised to an external source (adjtimex(2)), null when it cannot say. */
export function clockSynchronised(): boolean | null {
  timex.fill(0);
  const state = c.adjtimex(ptr(timex));
  if (state < 0) return null;
  return state !== TIME_ERROR;
}

/** bind(2) to a struct sockaddr; throws SystemError naming `what`. */
export function bindSocket(fd: number, sockaddr: Uint8Array, what: string): void {
  if (c.bind(fd, sockaddr, sockaddr.byteLength) < 0) throw new SystemError(`bind(${what})`, errno());
}

/** The local port a bound socket got (getsockname(2)): the kernel's choice for port 0. */
export function localPort(fd: number): number {
  const sa = new Uint8Array(28);
  const len = new Uint32Array([28]);
  if (c.getsockname(fd, sa, len) < 0) throw new SystemError("getsockname", errno());
  return (sa[2]! << 8) | sa[3]!;
}

/**
 * recvmsg(2) without blocking into the struct msghdr at `msghdr` (its buffers set up by the
 * caller): the datagram's length, or -errno (-11, EAGAIN, when nothing is waiting).
 */
export function recvMsg(fd: number, msghdr: Pointer): number {
  const r = Number(c.recvmsg(fd, msghdr, MSG_DONTWAIT));
  return r >= 0 ? r : -errno();
}

/** poll(2) over `count` struct pollfd at `fds`: how many are ready, 0 on timeout or EINTR. */
export function pollFds(fds: Pointer, count: number, timeoutMs: number): number {
  const r = c.poll(fds, count, Math.max(0, Math.min(timeoutMs, 0x7fffffff) | 0));
  if (r >= 0) return r;
  const e = errno();
  if (e === 4) return 0;
  throw new SystemError("poll", e);
}

const CLOCK_REALTIME = 0;

/** clock_gettime(CLOCK_REALTIME) into the struct timespec at `timespec` (two 64-bit words): the kernel's receive timestamps' clock. */
export function realtimeNow(timespec: Pointer): void {
  c.clock_gettime(CLOCK_REALTIME, timespec);
}
