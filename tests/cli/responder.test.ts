/**
 * `netprobify responder`: the reflector's packet against RFC 5357 4.2.1 byte by byte, its
 * counter per sender, its metrics, over loopback UDP sockets (no privilege needed above port 1023).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { parseEndpoint, startResponder, type RunningResponder } from "../../src/cli/responder.ts";
import { NTP_UNIX_OFFSET, SenderCounters, writeReflected } from "../../src/twamp/reflector.ts";

/** A Sender packet (4.1.2): sequence number, timestamp, error estimate, padding to `size`. */
function senderPacket(seq: number, size = 41): Uint8Array {
  const b = new Uint8Array(Math.max(size, 14));
  const v = new DataView(b.buffer);
  v.setUint32(0, seq);
  v.setUint32(4, NTP_UNIX_OFFSET + 1_700_000_000);
  v.setUint32(8, 0x8000_0000);
  v.setUint16(12, 0x1601);
  return b.subarray(0, size);
}

describe("the reflector's packet", () => {
  test("RFC 5357 4.2.1 layout: seq, T3, error estimate, MBZ, T2, the sender's 14 bytes, MBZ, TTL, padding; the sender's size", () => {
    const out = new Uint8Array(256);
    const n = writeReflected(senderPacket(0xa1b2c3d4, 100), 100, out, 7, { sec: 11, frac: 12 }, { sec: 21, frac: 22 }, 0x8001, 64);
    expect(n).toBe(100);
    const v = new DataView(out.buffer);
    expect([v.getUint32(0), v.getUint32(4), v.getUint32(8), v.getUint16(12), v.getUint16(14)]).toEqual([7, 21, 22, 0x8001, 0]);
    expect([v.getUint32(16), v.getUint32(20)]).toEqual([11, 12]);
    expect([v.getUint32(24), v.getUint32(28), v.getUint32(32), v.getUint16(36), v.getUint16(38), out[40]]).toEqual([0xa1b2c3d4, NTP_UNIX_OFFSET + 1_700_000_000, 0x8000_0000, 0x1601, 0, 64]);
    expect(out.subarray(41, 100).every((x) => x === 0)).toBe(true);
    // A bare 14-byte Sender packet gets the 41-byte reflector packet; shorter is no Sender packet.
    expect(writeReflected(senderPacket(1, 14), 14, out, 0, { sec: 1, frac: 0 }, { sec: 1, frac: 0 }, 0, 0)).toBe(41);
    expect(writeReflected(senderPacket(1, 13), 13, out, 0, { sec: 1, frac: 0 }, { sec: 1, frac: 0 }, 0, 0)).toBe(-1);
  });

  test("a counter per sender from 0; the sender unheard of longest forgotten past the bound", () => {
    const c = new SenderCounters(2);
    // c evicts b (a was heard since); b evicts c.
    expect([c.take("a"), c.take("a"), c.take("b"), c.take("a"), c.take("c"), c.take("a"), c.take("b")]).toEqual([0, 1, 0, 2, 0, 3, 0]);
  });

  test("endpoints: IPv4, bracketed IPv6, ports in range", () => {
    expect(parseEndpoint("198.18.0.1:862")).toEqual({ host: "198.18.0.1", port: 862 });
    expect(parseEndpoint("[::1]:4862")).toEqual({ host: "::1", port: 4862 });
    for (const bad of ["::1:862", "198.18.0.1", "198.18.0.1:0", "198.18.0.1:65536", "[::1]"]) expect(parseEndpoint(bad)).toBeNull();
  });
});

describe("the responder on loopback", () => {
  let r: RunningResponder;
  afterAll(() => r?.stop());

  test("reflects each sender with its own counter, T2 <= T3 from the wall clock, and counts in /metrics", async () => {
    r = await startResponder({ listen: [{ host: "127.0.0.1", port: 0 }], metrics: { host: "127.0.0.1", port: 0 } });
    const port = r.listening[0]!.port;
    const got: { from: number; bytes: Uint8Array }[] = [];
    const clients = await Promise.all(
      [0, 1].map(() =>
        Bun.udpSocket({
          hostname: "127.0.0.1",
          socket: {
            data(s, buf) {
              got.push({ from: s.port, bytes: new Uint8Array(buf) });
            },
          },
        }),
      ),
    );
    const before = Date.now() / 1000 + NTP_UNIX_OFFSET;
    for (let i = 0; i < 3; i++) for (const [k, c] of clients.entries()) c.send(senderPacket(1000 * k + i, 60), port, "127.0.0.1");
    clients[0]!.send(new Uint8Array(5), port, "127.0.0.1");
    for (let t = 0; t < 200 && got.length < 6; t++) await Bun.sleep(5);
    const after = Date.now() / 1000 + NTP_UNIX_OFFSET;
    expect(got).toHaveLength(6);
    for (const [k, c] of clients.entries()) {
      const mine = got.filter((g) => g.from === c.port).map((g) => new DataView(g.bytes.buffer));
      // Its own counter from 0, the sender's numbers copied back, the sender's size.
      expect(mine.map((v) => v.getUint32(0))).toEqual([0, 1, 2]);
      expect(mine.map((v) => v.getUint32(24))).toEqual([0, 1, 2].map((i) => 1000 * k + i));
      for (const v of mine) {
        expect(v.byteLength).toBe(60);
        const t2 = v.getUint32(16) + v.getUint32(20) / 2 ** 32;
        const t3 = v.getUint32(4) + v.getUint32(8) / 2 ** 32;
        expect(t2).toBeGreaterThanOrEqual(before - 0.001);
        expect(t3).toBeGreaterThanOrEqual(t2);
        expect(t3).toBeLessThanOrEqual(after + 0.001);
      }
    }
    const text = await (await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`)).text();
    expect(text).toContain("twamp_responder_received_total 7\n");
    expect(text).toContain("twamp_responder_reflected_total 6\n");
    expect(text).toContain("twamp_responder_malformed_total 1\n");
    expect(text).toContain("twamp_responder_senders 2\n");
    for (const c of clients) c.close();
  });

  test("T2 is the kernel's receive time (SO_TIMESTAMPNS), not the read's: datagrams left waiting 60 ms show it in T3 - T2; Sender TTL is the received TTL; both families on [::]", async () => {
    const d = await startResponder({ listen: [{ host: "::", port: 0 }], metrics: null });
    try {
      const port = d.listening[0]!.port;
      const got: Uint8Array[] = [];
      const socket = { data: (_s: unknown, buf: Buffer) => void got.push(new Uint8Array(buf)) };
      const v4 = await Bun.udpSocket({ hostname: "127.0.0.1", socket });
      const v6 = await Bun.udpSocket({ hostname: "::1", socket });
      const sentAt = Date.now() / 1000 + NTP_UNIX_OFFSET;
      v4.send(senderPacket(1), port, "127.0.0.1");
      v6.send(senderPacket(2), port, "::1");
      // The main thread (the responder's too) held: the datagrams wait in the socket's queue.
      Bun.sleepSync(60);
      for (let t = 0; t < 200 && got.length < 2; t++) await Bun.sleep(5);
      expect(got).toHaveLength(2);
      for (const g of got) {
        const v = new DataView(g.buffer);
        const t2 = v.getUint32(16) + v.getUint32(20) / 2 ** 32;
        const t3 = v.getUint32(4) + v.getUint32(8) / 2 ** 32;
        expect({ t2AtArrival: t2 - sentAt < 0.03, heldWhileWaiting: t3 - t2 > 0.05 }).toEqual({ t2AtArrival: true, heldWhileWaiting: true });
        // Loopback's default TTL and hop limit; a per-sender counter each (the IPv4 one mapped on [::]).
        expect([g[40], v.getUint32(0)]).toEqual([64, 0]);
      }
      expect(d.counters.untimestamped).toBe(0);
      v4.close();
      v6.close();
    } finally {
      d.stop();
    }
  });

  test("a port already taken: startResponder rejects and leaves nothing open", async () => {
    const taken = await Bun.udpSocket({ hostname: "127.0.0.1" });
    try {
      await expect(startResponder({ listen: [{ host: "127.0.0.1", port: 0 }, { host: "127.0.0.1", port: taken.port }], metrics: null })).rejects.toThrow();
    } finally {
      taken.close();
    }
  });
});
