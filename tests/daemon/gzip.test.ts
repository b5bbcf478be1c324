/**
 * The gzip encoding of the exposition (src/daemon/gzip.ts): one member that zlib, gzip(1) and curl
 * decode to head + body, the CRC-32 combination it relies on, the Accept-Encoding rule, and the
 * per-target body compressed once per render however many scrapes read it.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as zlib from "node:zlib";
import { acceptsGzip, crc32Combine, gzipParts } from "../../src/daemon/gzip.ts";
import { makeHandler, serveMetrics, type MetricsSource } from "../../src/daemon/http.ts";
import { mulberry32 } from "../support/prng.ts";

/** A command's stdout and exit code, run without blocking the event loop (the server is in this process). */
async function run(cmd: string[]): Promise<{ code: number; stdout: Buffer }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "inherit" });
  const stdout = Buffer.from(await new Response(p.stdout).arrayBuffer());
  return { code: await p.exited, stdout };
}

const concat = (parts: Uint8Array[]) => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));

/** Text shaped like the exposition: long runs of similar lines. */
function exposition(lines: number, seed: number): string {
  const r = mulberry32(seed);
  let s = "";
  for (let i = 0; i < lines; i++) s += `tcpsyn_sent_total{destination="t${i}",group="g",probe_name="p",state="None"} ${Math.floor(r() * 1e6)}\n`;
  return s;
}

describe("crc32Combine", () => {
  test("equals the CRC-32 of the concatenation for empty, short and long parts (zlib's crc32 as the reference)", () => {
    const r = mulberry32(7);
    const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
    for (const [a, b] of [[0, 0], [0, 5], [5, 0], [1, 1], [13, 1000], [4096, 65537], [100_000, 3]] as const) {
      const x = bytes(a);
      const y = bytes(b);
      expect({ a, b, crc: crc32Combine(zlib.crc32(x), zlib.crc32(y), y.length) }).toEqual({ a, b, crc: zlib.crc32(concat([x, y])) });
    }
  });
});

describe("gzipParts", () => {
  test("one gzip member: zlib and gzip(1) decode it to head + body, for empty and non-empty parts and non-ASCII text", async () => {
    const cases: [string, string][] = [
      ["", ""],
      ["# HELP h h\n# TYPE h gauge\nh 1\n", ""],
      ["", exposition(10, 1)],
      ["# HELP h h\n# TYPE h gauge\nh{state=\"prêt\"} 1\n", exposition(20_000, 2)],
    ];
    for (const [head, text] of cases) {
      const body = new TextEncoder().encode(text);
      const gz = concat(await gzipParts(head, body));
      expect(gz.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 8]));
      expect(zlib.gunzipSync(gz).toString("utf8")).toBe(head + text);
      // One member: its deflate data alone (between the 10-byte header and the 8-byte trailer)
      // holds all of it, and the trailer's length is the whole text's.
      expect(zlib.inflateRawSync(gz.subarray(10, gz.length - 8)).toString("utf8")).toBe(head + text);
      expect(gz.readUInt32LE(gz.length - 4)).toBe(Buffer.byteLength(head + text));
      const cli = Bun.spawnSync(["gzip", "-dc"], { stdin: gz });
      expect(cli.exitCode).toBe(0);
      expect(cli.stdout.toString("utf8")).toBe(head + text);
    }
  });

  test("the body is compressed once per rendered array, however many scrapes read it; a new array is compressed anew", async () => {
    const spy = spyOn(zlib, "deflateRaw");
    try {
      const body = new TextEncoder().encode(exposition(1000, 3));
      const decoded = await Promise.all([1, 2, 3].map(async (i) => zlib.gunzipSync(concat(await gzipParts(`h ${i}\n`, body))).toString()));
      expect(decoded.map((t) => t.slice(0, 4))).toEqual(["h 1\n", "h 2\n", "h 3\n"]);
      expect(spy).toHaveBeenCalledTimes(1);
      await gzipParts("h\n", body.slice());
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("acceptsGzip", () => {
  test("gzip or x-gzip with a non-zero weight, or * when gzip is not named; anything else plain", () => {
    const cases: [string | null, boolean][] = [
      [null, false],
      ["", false],
      ["gzip", true],
      ["GZIP", true],
      ["x-gzip", true],
      ["gzip, deflate, br", true],
      ["deflate, gzip;q=0.5", true],
      ["identity", false],
      ["br, deflate", false],
      ["gzip;q=0", false],
      ["gzip; q=0.000", false],
      ["gzip;q=0.001", true],
      ["*", true],
      ["*;q=0", false],
      ["gzip;q=0, *", false],
      ["gzip;q=nonsense", false],
    ];
    for (const [header, want] of cases) expect({ header, got: acceptsGzip(header) }).toEqual({ header, got: want });
  });
});

describe("/metrics with Accept-Encoding: gzip, over a socket", () => {
  test("curl --compressed and fetch decode the same bytes as the plain scrape; Content-Encoding and Vary are set; HEAD compresses nothing", async () => {
    const head = "# HELP h h\n# TYPE h gauge\nh 1\n";
    const body = new TextEncoder().encode(exposition(30_000, 4));
    const source: MetricsSource = { expositionParts: async () => ({ head, body }), contentType: "text/plain; version=0.0.4; charset=utf-8" };
    const server = serveMetrics({ hostname: "127.0.0.1", port: 0, fetch: makeHandler(source, null) });
    try {
      const url = `http://127.0.0.1:${server.port}/metrics`;
      const plain = await fetch(url, { headers: { "Accept-Encoding": "identity" } });
      expect(plain.headers.get("content-encoding")).toBeNull();
      expect(plain.headers.get("vary")).toBe("Accept-Encoding");
      const plainText = await plain.text();
      expect(plainText).toBe(head + new TextDecoder().decode(body));

      const raw = await run(["curl", "-sS", "-H", "Accept-Encoding: gzip", "-D", "-", "-o", "/dev/null", url]);
      expect(raw.stdout.toString()).toMatch(/^content-encoding: gzip\r$/im);
      const curl = await run(["curl", "-sS", "--compressed", url]);
      expect(curl.code).toBe(0);
      expect(curl.stdout.toString("utf8")).toBe(plainText);
      // Bun's fetch asks for gzip and decodes it.
      const fetched = await fetch(url);
      expect(fetched.headers.get("content-encoding")).toBe("gzip");
      expect(await fetched.text()).toBe(plainText);
      const compressedSize = (await run(["curl", "-sS", "-H", "Accept-Encoding: gzip", url])).stdout.length;
      expect(compressedSize).toBeLessThan(plainText.length / 4);

      const spy = spyOn(zlib, "deflateRawSync");
      try {
        const h = await fetch(url, { method: "HEAD", headers: { "Accept-Encoding": "gzip" } });
        expect([h.status, h.headers.get("content-encoding")]).toEqual([200, "gzip"]);
        expect(spy).toHaveBeenCalledTimes(0);
      } finally {
        spy.mockRestore();
      }
    } finally {
      await server.stop(true);
    }
  });
});
