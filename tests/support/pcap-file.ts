/**
 * The classic pcap file format (not pcapng), read and written: tcpdump's `-w` output is what the
 * end-to-end tests compare the prober against, and the writer makes files for parser tests.
 *
 * Timestamps stay as (seconds, nanoseconds) integers: nanoseconds since the epoch (~1.8e18) do
 * not fit exactly in a float64, and the tests measure differences of a few microseconds.
 */
import { readFileSync, writeFileSync } from "node:fs";

export const PCAP_MAGIC_MICRO = 0xa1b2c3d4;
export const PCAP_MAGIC_NANO = 0xa1b23c4d;
const GLOBAL_HEADER_LEN = 24;
const RECORD_HEADER_LEN = 16;

export type TimestampPrecision = "micro" | "nano";

export interface PcapTimestamp {
  tsSec: number;
  /** Nanoseconds within the second (a microsecond file's value times 1000). */
  tsNsec: number;
}

export interface PcapRecord extends PcapTimestamp {
  /** Bytes stored (data.byteLength). */
  caplen: number;
  /** Bytes the packet had on the wire. */
  wireLen: number;
  data: Uint8Array;
}

export interface PcapFile {
  /** LINKTYPE_* (1 Ethernet, 101 raw IP, 113 Linux cooked, ...), without the FCS bits. */
  linktype: number;
  snaplen: number;
  precision: TimestampPrecision;
  littleEndian: boolean;
  versionMajor: number;
  versionMinor: number;
  records: PcapRecord[];
}

export class PcapFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PcapFormatError";
  }
}

/** Parses a whole pcap file held in memory (either byte order, either precision). */
export function readPcap(bytes: Uint8Array, source = "pcap data"): PcapFile {
  if (bytes.byteLength < GLOBAL_HEADER_LEN) {
    throw new PcapFormatError(`${source}: ${bytes.byteLength} bytes is shorter than a pcap header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let littleEndian: boolean;
  let precision: TimestampPrecision;
  const le = view.getUint32(0, true);
  const be = view.getUint32(0, false);
  if (le === PCAP_MAGIC_MICRO || le === PCAP_MAGIC_NANO) {
    littleEndian = true;
    precision = le === PCAP_MAGIC_NANO ? "nano" : "micro";
  } else if (be === PCAP_MAGIC_MICRO || be === PCAP_MAGIC_NANO) {
    littleEndian = false;
    precision = be === PCAP_MAGIC_NANO ? "nano" : "micro";
  } else {
    const hint = be === 0x0a0d0d0a ? " (this is pcapng: write with tcpdump -w, not tshark/dumpcap defaults)" : "";
    throw new PcapFormatError(`${source}: magic 0x${be.toString(16).padStart(8, "0")} is not pcap${hint}`);
  }
  const file: PcapFile = {
    linktype: view.getUint32(20, littleEndian) & 0x0fffffff, // the top 4 bits may carry FCS length
    snaplen: view.getUint32(16, littleEndian),
    precision,
    littleEndian,
    versionMajor: view.getUint16(4, littleEndian),
    versionMinor: view.getUint16(6, littleEndian),
    records: [],
  };
  const fracScale = precision === "nano" ? 1 : 1000;
  let off = GLOBAL_HEADER_LEN;
  while (off < bytes.byteLength) {
    if (off + RECORD_HEADER_LEN > bytes.byteLength) {
      throw new PcapFormatError(`${source}: record ${file.records.length} header truncated at offset ${off}`);
    }
    const caplen = view.getUint32(off + 8, littleEndian);
    if (off + RECORD_HEADER_LEN + caplen > bytes.byteLength) {
      throw new PcapFormatError(`${source}: record ${file.records.length} claims ${caplen} bytes, file ends first (offset ${off})`);
    }
    const frac = view.getUint32(off + 4, littleEndian);
    file.records.push({
      tsSec: view.getUint32(off, littleEndian),
      tsNsec: frac * fracScale,
      caplen,
      wireLen: view.getUint32(off + 12, littleEndian),
      data: bytes.slice(off + RECORD_HEADER_LEN, off + RECORD_HEADER_LEN + caplen),
    });
    off += RECORD_HEADER_LEN + caplen;
  }
  return file;
}

export function readPcapFile(path: string): PcapFile {
  return readPcap(new Uint8Array(readFileSync(path)), path);
}

export interface WriteOptions {
  linktype: number;
  /** Default 262144, tcpdump's. */
  snaplen?: number;
  /** Default "nano". */
  precision?: TimestampPrecision;
  /** Default true (what tcpdump writes on x86 and arm). */
  littleEndian?: boolean;
}

/**
 * Serialises records as a pcap file. In a microsecond file a timestamp that is not a whole
 * microsecond throws rather than being truncated silently.
 */
export function writePcap(opts: WriteOptions, records: readonly PcapRecord[]): Uint8Array {
  const precision = opts.precision ?? "nano";
  const le = opts.littleEndian ?? true;
  let total = GLOBAL_HEADER_LEN;
  for (const r of records) total += RECORD_HEADER_LEN + r.data.byteLength;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, precision === "nano" ? PCAP_MAGIC_NANO : PCAP_MAGIC_MICRO, le);
  view.setUint16(4, 2, le);
  view.setUint16(6, 4, le);
  view.setInt32(8, 0, le); // thiszone: always 0 in practice
  view.setUint32(12, 0, le); // sigfigs
  view.setUint32(16, opts.snaplen ?? 262144, le);
  view.setUint32(20, opts.linktype, le);
  let off = GLOBAL_HEADER_LEN;
  records.forEach((r, i) => {
    if (!Number.isInteger(r.tsNsec) || r.tsNsec < 0 || r.tsNsec >= 1e9) throw new RangeError(`record ${i}: tsNsec ${r.tsNsec} is not in [0, 1e9)`);
    if (precision === "micro" && r.tsNsec % 1000 !== 0) {
      throw new RangeError(`record ${i}: ${r.tsNsec} ns cannot be stored in a microsecond file without loss`);
    }
    if (r.caplen !== r.data.byteLength) throw new RangeError(`record ${i}: caplen ${r.caplen} but ${r.data.byteLength} data bytes`);
    view.setUint32(off, r.tsSec, le);
    view.setUint32(off + 4, precision === "nano" ? r.tsNsec : r.tsNsec / 1000, le);
    view.setUint32(off + 8, r.data.byteLength, le);
    view.setUint32(off + 12, r.wireLen, le);
    out.set(r.data, off + RECORD_HEADER_LEN);
    off += RECORD_HEADER_LEN + r.data.byteLength;
  });
  return out;
}

export function writePcapFile(path: string, opts: WriteOptions, records: readonly PcapRecord[]): void {
  writeFileSync(path, writePcap(opts, records));
}

/** Nanoseconds since the epoch, exactly. */
export function timestampNs(t: PcapTimestamp): bigint {
  return BigInt(t.tsSec) * 1_000_000_000n + BigInt(t.tsNsec);
}

/** later - earlier in nanoseconds, exactly (negative when "later" is earlier). */
export function diffNs(earlier: PcapTimestamp, later: PcapTimestamp): bigint {
  return BigInt(later.tsSec - earlier.tsSec) * 1_000_000_000n + BigInt(later.tsNsec - earlier.tsNsec);
}
