import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diffNs, PcapFormatError, readPcap, readPcapFile, timestampNs, writePcap, writePcapFile, type PcapRecord } from "./pcap-file.ts";

const dir = mkdtempSync(join(tmpdir(), "pcap-file-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rec(tsSec: number, tsNsec: number, bytes: number[], wireLen = bytes.length): PcapRecord {
  const data = Uint8Array.from(bytes);
  return { tsSec, tsNsec, caplen: data.byteLength, wireLen, data };
}

/** A minimal Ethernet + IPv4 + UDP frame, so tcpdump has something to decode. */
function udpFrame(srcLast: number): number[] {
  const ip = [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, srcLast, 198, 18, 0, 1];
  const udp = [0x30, 0x39, 0x82, 0x9a, 0, 8, 0, 0];
  return [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, ...ip, ...udp];
}

function tcpdump(args: string[]): string {
  const r = spawnSync("tcpdump", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tcpdump ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

describe("pcap-file", () => {
  const records = [
    rec(1_800_000_000, 999_999_999, udpFrame(5)),
    rec(1_800_000_001, 1, udpFrame(6), 1514),
    rec(1_800_000_001, 123_456_000, []),
  ];

  test("round trip, nanosecond and microsecond, both byte orders", () => {
    for (const precision of ["nano", "micro"] as const) {
      for (const littleEndian of [true, false]) {
        const input = precision === "micro" ? records.map((r) => ({ ...r, tsNsec: Math.floor(r.tsNsec / 1000) * 1000 })) : records;
        const bytes = writePcap({ linktype: 1, precision, littleEndian, snaplen: 65535 }, input);
        const file = readPcap(bytes);
        expect(file).toMatchObject({ linktype: 1, precision, littleEndian, snaplen: 65535, versionMajor: 2, versionMinor: 4 });
        expect(file.records).toEqual(input);
      }
    }
  });

  test("a microsecond file refuses timestamps it cannot hold rather than truncating them", () => {
    expect(() => writePcap({ linktype: 1, precision: "micro" }, [rec(1, 1500, [])])).toThrow(RangeError);
  });

  test("exact nanosecond differences where a float64 of epoch nanoseconds would round", () => {
    const a = { tsSec: 1_800_000_000, tsNsec: 999_999_999 };
    const b = { tsSec: 1_800_000_001, tsNsec: 1 };
    expect(diffNs(a, b)).toBe(2n);
    expect(diffNs(b, a)).toBe(-2n);
    expect(timestampNs(a)).toBe(1_800_000_000_999_999_999n);
    // The float64 way loses it: both epochs round to the same double.
    expect(a.tsSec * 1e9 + a.tsNsec).toBe(b.tsSec * 1e9 + b.tsNsec);
  });

  test("tcpdump reads what we write (nanosecond, big-endian included)", () => {
    for (const littleEndian of [true, false]) {
      const path = join(dir, `ours-${littleEndian ? "le" : "be"}.pcap`);
      writePcapFile(path, { linktype: 1, precision: "nano", littleEndian }, records.slice(0, 2));
      const out = tcpdump(["-r", path, "-nn", "-tt", "--time-stamp-precision=nano"]);
      const lines = out.trim().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toStartWith("1800000000.999999999 IP 198.18.0.5.12345 > 198.18.0.1.33434: UDP");
      expect(lines[1]).toStartWith("1800000001.000000001 IP 198.18.0.6.12345 > 198.18.0.1.33434");
    }
  });

  test("we read what tcpdump writes, in both precisions", () => {
    const ours = join(dir, "src.pcap");
    writePcapFile(ours, { linktype: 1, precision: "nano" }, records.slice(0, 2));
    const micro = join(dir, "tcpdump-micro.pcap");
    const nano = join(dir, "tcpdump-nano.pcap");
    tcpdump(["-r", ours, "-w", micro]);
    tcpdump(["-r", ours, "--time-stamp-precision=nano", "-w", nano]);
    const m = readPcapFile(micro);
    expect(m.precision).toBe("micro");
    expect(m.linktype).toBe(1);
    expect(m.records.map((r) => [r.tsSec, r.tsNsec, r.wireLen])).toEqual([
      [1_800_000_000, 999_999_000, 42],
      [1_800_000_001, 0, 1514],
    ]);
    const n = readPcapFile(nano);
    expect(n.precision).toBe("nano");
    expect(n.records).toEqual(records.slice(0, 2));
    // Byte for byte what we wrote, header fields included.
    expect(new Uint8Array(readFileSync(nano))).toEqual(new Uint8Array(readFileSync(ours)));
  });

  test("malformed input fails with the reason", () => {
    expect(() => readPcap(new Uint8Array(10))).toThrow(PcapFormatError);
    const pcapng = new Uint8Array(32);
    new DataView(pcapng.buffer).setUint32(0, 0x0a0d0d0a, false);
    expect(() => readPcap(pcapng)).toThrow(/pcapng/);
    const good = writePcap({ linktype: 1 }, records.slice(0, 1));
    expect(() => readPcap(good.subarray(0, good.byteLength - 3))).toThrow(/claims 42 bytes/);
    expect(() => readPcap(good.subarray(0, 24 + 8))).toThrow(/header truncated/);
    const path = join(dir, "empty.pcap");
    writeFileSync(path, writePcap({ linktype: 101 }, []));
    expect(readPcapFile(path)).toMatchObject({ linktype: 101, records: [] });
  });
});
