/**
 * The HTTP handler without a socket: /metrics with and without Basic auth, the index, 404s, and
 * the credential check (constant time: both sides hashed, compared with timingSafeEqual); then
 * the listener as the daemon starts it (serveMetrics), over a raw socket: requests a fetch()
 * cannot make (HTTP/1.0 without Host, invalid Host), 405s, and a failure of ours.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as crypto from "node:crypto";
import { authorized, credentialsFromEnv, makeHandler, serveMetrics, type Credentials, type MetricsSource } from "../../src/daemon/http.ts";
import { setLogSink } from "../../src/log.ts";
import { bytes, exchange, header } from "../support/raw-http.ts";

const EXPOSITION = "# HELP x x\n# TYPE x gauge\nx 1\n";
const source: MetricsSource = {
  expositionParts: async () => ({ head: "", body: new TextEncoder().encode(EXPOSITION) }),
  contentType: "text/plain; version=0.0.4; charset=utf-8",
};

const CREDS = { user: "prom", password: "s3cr:et" };
const basic = (cred: string) => `Basic ${Buffer.from(cred).toString("base64")}`;
const get = (path: string, authorization?: string) =>
  new Request(`http://127.0.0.1:9${path}`, { headers: authorization === undefined ? {} : { authorization } });

describe("credentialsFromEnv", () => {
  test("both PROM_USER and PROM_PASSWORD set and non-empty: credentials; otherwise none", () => {
    expect(credentialsFromEnv({ PROM_USER: "u", PROM_PASSWORD: "p" })).toEqual({ user: "u", password: "p" });
    expect(credentialsFromEnv({ PROM_USER: "u" })).toBeNull();
    expect(credentialsFromEnv({ PROM_PASSWORD: "p" })).toBeNull();
    expect(credentialsFromEnv({ PROM_USER: "", PROM_PASSWORD: "p" })).toBeNull();
    expect(credentialsFromEnv({})).toBeNull();
  });
});

describe("makeHandler without credentials", () => {
  const h = makeHandler(source, null);

  test("/metrics: 200, the exposition and its content type", async () => {
    const r = await h(get("/metrics"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe(source.contentType);
    expect(await r.text()).toBe(EXPOSITION);
  });

  test("/ answers 200; anything else 404", async () => {
    expect((await h(get("/"))).status).toBe(200);
    for (const p of ["/metricsx", "/metrics/", "/api", "/favicon.ico"]) expect({ p, status: (await h(get(p))).status }).toEqual({ p, status: 404 });
  });
});

describe("makeHandler with credentials", () => {
  const h = makeHandler(source, CREDS);

  test("401 with a Basic challenge and no metrics: no header, wrong user, wrong password, prefix or extension of the password, garbage, another scheme", async () => {
    const cases: [string, string | undefined][] = [
      ["none", undefined],
      ["empty", ""],
      ["wrong user", basic("admin:s3cr:et")],
      ["wrong password", basic("prom:s3cr:eT")],
      ["password prefix", basic("prom:s3cr")],
      ["password extended", basic("prom:s3cr:et!")],
      ["no colon", basic("proms3cr:et")],
      ["user only", basic("prom")],
      ["not base64", "Basic prom:s3cr:et"],
      ["Bearer", `Bearer ${Buffer.from("prom:s3cr:et").toString("base64")}`],
      ["very long", basic(`prom:${"x".repeat(100_000)}`)],
    ];
    for (const [what, header] of cases) {
      const r = await h(get("/metrics", header));
      const body = await r.text();
      expect({ what, status: r.status, challenge: r.headers.get("www-authenticate"), body: body.includes("x 1") }).toEqual({
        what,
        status: 401,
        challenge: 'Basic realm="netprobify"',
        body: false,
      });
    }
  });

  test("200 with the right credentials (a colon in the password is fine)", async () => {
    const r = await h(get("/metrics", basic("prom:s3cr:et")));
    expect(r.status).toBe(200);
    expect(await r.text()).toContain("x 1");
  });

  test('the auth scheme is case-insensitive (RFC 7235 section 2.1): "basic" works as "Basic"', async () => {
    const r = await h(get("/metrics", `basic ${Buffer.from("prom:s3cr:et").toString("base64")}`));
    expect(r.status).toBe(200);
  });

  test("404 for unknown paths whatever the credentials", async () => {
    expect((await h(get("/nope"))).status).toBe(404);
    expect((await h(get("/nope", basic("prom:s3cr:et")))).status).toBe(404);
  });
});

describe("authorized: constant-time comparison", () => {
  test("every check, right or wrong, short or long, compares two equal-length digests with timingSafeEqual", () => {
    const spy = spyOn(crypto, "timingSafeEqual");
    try {
      const headers = [null, "", basic("prom:s3cr:et"), basic("p"), basic(`prom:${"y".repeat(10_000)}`), "Basic !!!", "Digest x"];
      const results = headers.map((hd) => authorized(hd, CREDS));
      expect(results).toEqual([false, false, true, false, false, false, false]);
      expect(spy).toHaveBeenCalledTimes(headers.length);
      for (const [a, b] of spy.mock.calls as unknown as [Uint8Array, Uint8Array][]) {
        expect(a.byteLength).toBe(b.byteLength);
      }
    } finally {
      spy.mockRestore();
    }
  });
});

describe("makeHandler with a source of parts (head read per scrape, body bytes rendered once)", () => {
  // Larger than one write step (1 MiB), with a tail that is not a whole step.
  const body = new Uint8Array(3 * (1 << 20) + 12345).map((_, i) => 97 + (i % 26));
  const parts: MetricsSource = {
    expositionParts: async () => ({ head: "# HELP h h\n# TYPE h gauge\nh 1\n", body }),
    contentType: "text/plain; version=0.0.4; charset=utf-8",
  };

  test("the handler's response is the head then every byte of the body", async () => {
    const r = await makeHandler(parts, null)(get("/metrics"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe(parts.contentType);
    const got = new Uint8Array(await r.arrayBuffer());
    const head = Buffer.from("# HELP h h\n# TYPE h gauge\nh 1\n");
    expect(got.byteLength).toBe(head.byteLength + body.byteLength);
    expect(Buffer.from(got.subarray(0, head.byteLength)).equals(head)).toBe(true);
    expect(Buffer.from(got.subarray(head.byteLength)).equals(Buffer.from(body))).toBe(true);
  });

  test("over a socket, several scrapes at once each get the whole body", async () => {
    const h = makeHandler(parts, null);
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: h });
    try {
      const sizes = await Promise.all(
        Array.from({ length: 3 }, async () => (await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).arrayBuffer()).byteLength),
      );
      expect(sizes).toEqual([0, 1, 2].map(() => Buffer.byteLength("# HELP h h\n# TYPE h gauge\nh 1\n") + body.byteLength));
    } finally {
      server.stop(true);
    }
  });
});

describe("serveMetrics: the listener as the daemon starts it, over a raw socket", () => {
  const raw = async (port: number, text: string) => {
    const x = await exchange(port, { pieces: [bytes(text)], idleMs: 5_000 });
    expect(x.end).toBe("answered");
    const r = x.responses[0]!;
    return { status: r.status, body: Buffer.from(r.body).toString("latin1"), allow: header(r, "allow"), head: r.head };
  };
  const withServer = async (metrics: MetricsSource, credentials: Credentials | null, run: (port: number) => Promise<void>) => {
    const lines: string[] = [];
    setLogSink((line) => lines.push(line));
    const server = serveMetrics({ hostname: "127.0.0.1", port: 0, fetch: makeHandler(metrics, credentials) });
    try {
      await run(server.port!);
    } finally {
      await server.stop(true);
      setLogSink((line) => process.stderr.write(`${line}\n`));
    }
    return lines;
  };

  test("GET /metrics HTTP/1.0 without Host is a scrape like any other (it was a 500 with Bun's error page)", async () => {
    const lines = await withServer(source, null, async (port) => {
      expect(await raw(port, "GET /metrics HTTP/1.0\r\n\r\n")).toMatchObject({ status: 200, body: EXPOSITION });
      expect(await raw(port, "GET /metrics HTTP/1.1\r\nHost: \r\n\r\n")).toMatchObject({ status: 200, body: EXPOSITION });
      expect(await raw(port, "GET /nope HTTP/1.0\r\n\r\n")).toMatchObject({ status: 404 });
    });
    expect(lines).toEqual([]);
    await withServer(source, CREDS, async (port) => {
      expect(await raw(port, "GET /metrics HTTP/1.0\r\n\r\n")).toMatchObject({ status: 401 });
      expect(await raw(port, `GET /metrics HTTP/1.0\r\nAuthorization: ${basic("prom:s3cr:et")}\r\n\r\n`)).toMatchObject({ status: 200, body: EXPOSITION });
    });
  });

  test("an invalid Host, or two, is a 400 (RFC 9112 section 3.2); nothing is logged", async () => {
    const lines = await withServer(source, null, async (port) => {
      for (const host of ["[::1", "x:99999", "%", "%zz", "a b", "a@b", "x/y", "::1", "[zz]"]) {
        expect({ host, ...(await raw(port, `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`)) }).toMatchObject({ host, status: 400 });
      }
      expect(await raw(port, "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")).toMatchObject({ status: 400 });
      for (const host of ["127.0.0.1", "127.0.0.1:9090", "[::1]:9090", "prober.example", "PROBER.example."]) {
        expect({ host, ...(await raw(port, `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`)) }).toMatchObject({ host, status: 200 });
      }
    });
    expect(lines).toEqual([]);
  });

  test("methods other than GET and HEAD get 405 with Allow: GET, HEAD; HEAD gets the headers alone", async () => {
    await withServer(source, CREDS, async (port) => {
      for (const path of ["/metrics", "/"]) {
        for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
          const r = await raw(port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
          expect({ method, path, status: r.status, allow: r.allow }).toEqual({ method, path, status: 405, allow: "GET, HEAD" });
        }
      }
      const x = await exchange(port, {
        pieces: [bytes(`HEAD /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic("prom:s3cr:et")}\r\n\r\n`)],
        noBody: [true],
        idleMs: 5_000,
      });
      expect(x.responses.map((r) => [r.status, header(r, "content-type")])).toEqual([[200, source.contentType]]);
      expect(x.trailing.length).toBe(0);
    });
  });

  test("a failure of ours: a bare 500 'internal error', one log line without a stack, and the next scrape is served", async () => {
    let fail = true;
    const flaky: MetricsSource = {
      expositionParts: async () => {
        if (fail) throw new Error(`render broke in ${process.cwd()}/src/daemon/metrics.ts`);
        return source.expositionParts();
      },
      contentType: source.contentType,
    };
    const lines = await withServer(flaky, null, async (port) => {
      for (const request of ["GET /metrics HTTP/1.0\r\n\r\n", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"]) {
        const r = await raw(port, request);
        expect({ status: r.status, body: r.body }).toEqual({ status: 500, body: "internal error\n" });
        expect(r.head).not.toContain(process.cwd());
      }
      fail = false;
      expect(await raw(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).toMatchObject({ status: 200, body: EXPOSITION });
    });
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).toMatch(/^ts=\S+ level=ERROR module=http msg="metrics request failed" method=GET error="render broke in \S+"$/);
    }
  });
});
