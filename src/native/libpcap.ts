/**
 * The only place libpcap is loaded. The compiled binary carries its own libc-only build of
 * libpcap (scripts/build-libpcap.sh); when that cannot be loaded the system's libpcap is tried.
 * NETPROBIFY_LIBPCAP=/path/libpcap.so overrides both.
 *
 * The embedded copy is loaded from memory (a sealed memfd), never from a file: given a path inside
 * the binary, Bun's dlopen extracts it to /tmp/.bun-<uid>-<hash>.so and loads whatever file is
 * already there, so anyone who can write /tmp first would run code in the prober, with its
 * capabilities. An override is loaded by a privileged prober only from a trusted file
 * (src/trusted-code.ts).
 */
import { CString, dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { readdirSync, readFileSync, readlinkSync, writeSync } from "node:fs";
import embeddedLibpcap from "../../build/libpcap/libpcap.so" with { type: "file" };
import { checkCodeFile } from "../trusted-code.ts";
import { holdsPrivilege } from "../privilege.ts";
import {
  addSeals,
  closeFd,
  copyFromNative,
  EINVAL,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  memfdCreate,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_EXEC,
  sealsOf,
  SystemError,
} from "./libc.ts";

const symbols = {
  pcap_create: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  pcap_set_snaplen: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  pcap_set_immediate_mode: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  pcap_set_buffer_size: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  pcap_set_tstamp_precision: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  pcap_get_tstamp_precision: { args: [FFIType.ptr], returns: FFIType.i32 },
  pcap_set_timeout: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  pcap_activate: { args: [FFIType.ptr], returns: FFIType.i32 },
  pcap_compile: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  pcap_setfilter: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  pcap_freecode: { args: [FFIType.ptr], returns: FFIType.void },
  pcap_setnonblock: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  pcap_get_selectable_fd: { args: [FFIType.ptr], returns: FFIType.i32 },
  pcap_next_ex: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  pcap_inject: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  pcap_stats: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  pcap_datalink: { args: [FFIType.ptr], returns: FFIType.i32 },
  pcap_geterr: { args: [FFIType.ptr], returns: FFIType.cstring },
  pcap_statustostr: { args: [FFIType.i32], returns: FFIType.cstring },
  pcap_close: { args: [FFIType.ptr], returns: FFIType.void },
  pcap_lib_version: { args: [], returns: FFIType.cstring },
} as const;

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

/** libpcap could not be loaded from any candidate: the CLI turns this into exit 69. */
export class LibpcapUnavailable extends Error {
  constructor(readonly tried: string[]) {
    super(
      `libpcap cannot be loaded (tried ${tried.join(", ")}); install the Debian package libpcap0.8 ` +
        `or point NETPROBIFY_LIBPCAP at a libpcap.so`,
    );
    this.name = "LibpcapUnavailable";
  }
}

/** A libpcap call failed: names the operation, the device and libpcap's own message. */
export class PcapError extends Error {
  constructor(
    readonly op: string,
    readonly device: string,
    detail: string,
  ) {
    super(`${op} on ${device}: ${detail}`);
    this.name = "PcapError";
  }
}

let library: ReturnType<typeof dlopen<typeof symbols>> | undefined;
let lib: Lib | undefined;
let loadedFrom = "";
let loadedEmbedded = false;

const MEMFD_NAME = "netprobify-libpcap";
const SEALED = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

/**
 * The embedded libpcap as a sealed memory file, as a path dlopen takes (/proc/self/fd/N). Each
 * Worker loads libpcap for itself: the first to get here writes the copy, the others find it
 * sealed (complete) among the process's descriptors and load the same path, which the dynamic
 * loader then shares instead of mapping one more copy per Worker and per restart.
 */
function embeddedInMemory(): string {
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `/memfd:${MEMFD_NAME} (deleted)` && (sealsOf(Number(fd)) & SEALED) === SEALED) {
        return `/proc/self/fd/${fd}`;
      }
    } catch {
      // Closed meanwhile (readdir's own descriptor, for one).
    }
  }
  const bytes = readFileSync(embeddedLibpcap);
  let fd: number;
  try {
    fd = memfdCreate(MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  } catch (e) {
    // Kernels before 6.3 know no MFD_EXEC; there every memfd may be mapped executable.
    if (!(e instanceof SystemError && e.code === EINVAL)) throw e;
    fd = memfdCreate(MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  }
  try {
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
    addSeals(fd, SEALED);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return `/proc/self/fd/${fd}`;
}

interface Candidate {
  /** How it is named in messages. */
  readonly name: string;
  readonly embedded: boolean;
  /** The path to give dlopen; throws when the candidate cannot be used. */
  path(): string;
}

function candidates(): Candidate[] {
  const override = process.env.NETPROBIFY_LIBPCAP;
  if (override) {
    const path = () => {
      if (holdsPrivilege()) checkCodeFile(override);
      return override;
    };
    return [{ name: override, embedded: false, path }];
  }
  const system = (name: string): Candidate => ({ name, embedded: false, path: () => name });
  return [{ name: "the embedded libpcap", embedded: true, path: embeddedInMemory }, system("libpcap.so.1"), system("libpcap.so.0.8")];
}

/** Loads libpcap once per thread; throws LibpcapUnavailable when no candidate loads. */
export function libpcap(): Lib {
  if (lib) return lib;
  const tried: string[] = [];
  for (const candidate of candidates()) {
    try {
      const path = candidate.path();
      library = dlopen(path, symbols);
      lib = library.symbols;
      loadedFrom = candidate.embedded ? embeddedLibpcap : path;
      loadedEmbedded = candidate.embedded;
      return lib;
    } catch (e) {
      tried.push(`${candidate.name} (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`);
    }
  }
  throw new LibpcapUnavailable(tried);
}

/**
 * Unloads this thread's libpcap: its symbol wrappers are native memory that a Worker ending with
 * the library still open leaves behind (about 4 KB a Worker). Call it after the thread's last
 * libpcap call (every handle closed): a wrapper called after this jumps into freed memory.
 */
export function closeLibpcap(): void {
  library?.close();
  library = undefined;
  lib = undefined;
}

/** "libpcap version 1.10.3 (with TPACKET_V3)", where it was loaded from, and whether it is the embedded copy. */
export function libpcapVersion(): { version: string; path: string; embedded: boolean } {
  const text = String(libpcap().pcap_lib_version());
  const m = /libpcap version (\S+)/.exec(text);
  return { version: m ? m[1]! : text, path: loadedFrom, embedded: loadedEmbedded };
}

export const DLT_NULL = 0;
export const DLT_EN10MB = 1;
export const DLT_RAW = 12;
export const DLT_LINUX_SLL = 113;
export const DLT_LINUX_SLL2 = 276;
const PCAP_TSTAMP_PRECISION_NANO = 1;
const PCAP_NETMASK_UNKNOWN = 0xffffffff;

function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

export interface OpenOptions {
  /** Bytes of each frame to keep (headers and the quoted packet of an ICMP error fit in 256). */
  snaplen: number;
  /** Kernel ring size; a large ring absorbs bursts while the consumer is busy. */
  bufferBytes: number;
  /** Deliver each frame at once rather than when a ring block fills. */
  immediate: boolean;
}

/**
 * One libpcap handle. Frames read with next() land in `frame` (a buffer owned by the handle,
 * overwritten by the next call) with their kernel timestamp in tsSec/tsNsec: nothing is allocated
 * per frame.
 */
export class PcapHandle {
  #p: Pointer | null;
  readonly datalink: number;
  readonly frame: Uint8Array;
  caplen = 0;
  wireLen = 0;
  tsSec = 0;
  tsNsec = 0;
  readonly #outs = new BigUint64Array(2);
  readonly #outsPtr: Pointer;
  readonly #statsBuf = new Uint32Array(4);

  private constructor(
    p: Pointer,
    readonly device: string,
    snaplen: number,
  ) {
    this.#p = p;
    this.datalink = libpcap().pcap_datalink(p);
    this.frame = new Uint8Array(Math.max(snaplen, 64));
    this.#outsPtr = ptr(this.#outs);
  }

  /** Opens a live handle with nanosecond kernel timestamps, non-blocking. */
  static openLive(device: string, opts: OpenOptions): PcapHandle {
    const L = libpcap();
    const err = new Uint8Array(512);
    const p = L.pcap_create(cstr(device), err) as Pointer | null;
    if (p === null) throw new PcapError("pcap_create", device, new CString(ptr(err)).toString());
    L.pcap_set_snaplen(p, opts.snaplen);
    L.pcap_set_immediate_mode(p, opts.immediate ? 1 : 0);
    L.pcap_set_buffer_size(p, opts.bufferBytes);
    L.pcap_set_timeout(p, 100);
    L.pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
    const rc = L.pcap_activate(p);
    if (rc < 0) {
      const detail = `${L.pcap_statustostr(rc)}: ${L.pcap_geterr(p)}`;
      L.pcap_close(p);
      throw new PcapError("pcap_activate", device, detail);
    }
    const h = new PcapHandle(p, device, opts.snaplen);
    if (L.pcap_get_tstamp_precision(p) !== PCAP_TSTAMP_PRECISION_NANO) {
      h.close();
      throw new PcapError("pcap_set_tstamp_precision", device, "nanosecond timestamps unavailable");
    }
    if (L.pcap_setnonblock(p, 1, err) < 0) {
      h.close();
      throw new PcapError("pcap_setnonblock", device, new CString(ptr(err)).toString());
    }
    return h;
  }

  #handle(): Pointer {
    if (this.#p === null) throw new PcapError("use", this.device, "handle is closed");
    return this.#p;
  }

  /** Compiles and installs a BPF filter in the kernel. */
  setFilter(expression: string): void {
    const L = libpcap();
    const p = this.#handle();
    const prog = new BigUint64Array(2); // struct bpf_program { u_int bf_len; struct bpf_insn *bf_insns; }
    if (L.pcap_compile(p, prog, cstr(expression), 1, PCAP_NETMASK_UNKNOWN) < 0) {
      throw new PcapError("pcap_compile", this.device, `${L.pcap_geterr(p)} in filter "${expression}"`);
    }
    const rc = L.pcap_setfilter(p, prog);
    L.pcap_freecode(prog);
    if (rc < 0) throw new PcapError("pcap_setfilter", this.device, String(L.pcap_geterr(p)));
  }

  /** File descriptor to poll() for readability. */
  get selectableFd(): number {
    return libpcap().pcap_get_selectable_fd(this.#handle());
  }

  /**
   * Reads the next waiting frame into `frame`. Returns 1 when a frame was read, 0 when none is
   * waiting, and throws on a capture error (interface gone, socket error).
   */
  next(): number {
    const p = this.#p;
    if (p === null) return 0;
    const rc = libpcap().pcap_next_ex(p, this.#outsPtr, ((this.#outsPtr as number) + 8) as Pointer);
    if (rc !== 1) {
      if (rc === 0) return 0;
      throw new PcapError("pcap_next_ex", this.device, String(libpcap().pcap_geterr(p)));
    }
    const hdr = read.ptr(this.#outsPtr, 0) as Pointer;
    const data = read.ptr(this.#outsPtr, 8) as Pointer;
    // struct pcap_pkthdr on LP64 Linux: timeval { i64 tv_sec @0; i64 tv_usec @8 (ns here) }, u32 caplen @16, u32 len @20
    this.tsSec = read.u32(hdr, 0) + read.i32(hdr, 4) * 4294967296;
    this.tsNsec = read.u32(hdr, 8);
    const caplen = Math.min(read.u32(hdr, 16), this.frame.byteLength);
    this.caplen = caplen;
    this.wireLen = read.u32(hdr, 20);
    copyFromNative(this.frame, data, caplen);
    return 1;
  }

  /** Sends one whole link-layer frame; returns bytes sent or -1 (message in lastError()). */
  inject(buf: Uint8Array, len: number): number {
    const p = this.#p;
    if (p === null) return -1;
    return libpcap().pcap_inject(p, buf, len);
  }

  lastError(): string {
    return this.#p === null ? "handle is closed" : String(libpcap().pcap_geterr(this.#p));
  }

  /** Kernel counters: frames that passed the filter, and frames dropped for lack of ring space. */
  stats(): { received: number; dropped: number; ifDropped: number } {
    const p = this.#handle();
    if (libpcap().pcap_stats(p, this.#statsBuf) < 0) {
      throw new PcapError("pcap_stats", this.device, String(libpcap().pcap_geterr(p)));
    }
    return { received: this.#statsBuf[0]!, dropped: this.#statsBuf[1]!, ifDropped: this.#statsBuf[2]! };
  }

  get closed(): boolean {
    return this.#p === null;
  }

  close(): void {
    if (this.#p !== null) {
      libpcap().pcap_close(this.#p);
      this.#p = null;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
