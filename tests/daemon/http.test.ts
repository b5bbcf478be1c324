/**
 * The HTTP handler without a socket: /metrics with and without Basic auth, the landing page, the
 * daemon's /-/healthy, /-/ready and POST /-/reload (against a stand-in for the daemon), 404s, and
 * the credential check (constant time: both sides hashed, compared with timingSafeEqual); then
 * the listener as the daemon starts it (serveMetrics), over a raw socket: requests a fetch()
 * cannot make (HTTP/1.0 without Host, invalid Host), 405s, and a failure of ours.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as crypto from "node:crypto";
import {
  authorized,
  credentialsFromEnv,
  makeHandler,
  serveMetrics,
  type Credentials,
  type DaemonControl,
  type MetricsSource,
  type ReloadOutcome,
} from "../../src/daemon/http.ts";
import { setLogSink } from "../../src/log.ts";
import { VERSION } from "../../src/version.ts";
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

/** A stand-in for the daemon: settable verdicts, and the reloads asked of it. */
function control(o: { unhealthy?: string | null; notReady?: string | null; reload?: ReloadOutcome; api?: { address: string; port: number } | null } = {}) {
  const state = { unhealthy: o.unhealthy ?? null, notReady: o.notReady ?? null, reloads: 0, api: o.api ?? null };
  const c: DaemonControl = {
    unhealthy: () => state.unhealthy,
    notReady: () => state.notReady,
    reload: async () => {
      state.reloads++;
      return o.reload ?? { ok: true, lines: ["configuration reloaded"] };
    },
    apiListener: () => state.api,
  };
  return { c, state };
}

const request = (method: string, path: string, headers: Record<string, string> = {}) =>
  new Request(`http://127.0.0.1:9${path}`, { method, headers });

describe("the landing page", () => {
  test("HTML with the name, the version and relative links to metrics and the health endpoints; the reload named", async () => {
    const r = await makeHandler(source, CREDS, control().c)(get("/"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await r.text();
    expect(html).toStartWith("<!DOCTYPE html>");
    expect(html).toContain("<title>netprobify</title>");
    expect(html).toContain(`version ${VERSION}`);
    for (const href of ["metrics", "-/healthy", "-/ready"]) expect(html).toContain(`<a href="${href}">`);
    expect(html).toContain("POST /-/reload");
    expect(html).not.toContain("api/ui");
  });

  test("the API documentation's link when the API is enabled: its address, or for a wildcard the host the page was asked under", async () => {
    const page = async (api: { address: string; port: number }, host?: string) => {
      const req = new Request(`http://${host ?? "127.0.0.1:9"}/`, { headers: host ? { host } : {} });
      return (await makeHandler(source, null, control({ api }).c)(req)).text();
    };
    expect(await page({ address: "198.18.0.5", port: 8080 })).toContain('<a href="//198.18.0.5:8080/api/ui/">');
    expect(await page({ address: "fd00::5", port: 8080 })).toContain('<a href="//[fd00::5]:8080/api/ui/">');
    expect(await page({ address: "0.0.0.0", port: 8080 }, "prober.example:9100")).toContain('<a href="//prober.example:8080/api/ui/">');
    expect(await page({ address: "::", port: 8443 }, "[fd00::7]:9100")).toContain('<a href="//[fd00::7]:8443/api/ui/">');
    // HTTP/1.0 without Host: no name to link to, the port is told.
    const bare = await page({ address: "0.0.0.0", port: 8080 });
    expect(bare).toContain("<code>/api/ui/</code> on port 8080");
    expect(bare).not.toContain("href=\"//");
  });

  test("a listener without a daemon (no control) links only the metrics", async () => {
    const html = await (await makeHandler(source, null)(get("/"))).text();
    expect(html).toContain('<a href="metrics">');
    expect(html).not.toContain("-/healthy");
  });
});

describe("/-/healthy and /-/ready", () => {
  test("200 while the daemon says so, 503 with its reason otherwise; open without credentials; GET and HEAD only", async () => {
    const { c, state } = control({ notReady: "the first iteration's results are not published yet" });
    const h = makeHandler(source, CREDS, c);
    let r = await h(get("/-/healthy"));
    expect([r.status, await r.text()]).toEqual([200, "healthy\n"]);
    r = await h(get("/-/ready"));
    expect([r.status, await r.text()]).toEqual([503, "not ready: the first iteration's results are not published yet\n"]);
    state.unhealthy = "no iteration has ended for 31.0 s";
    state.notReady = null;
    r = await h(get("/-/healthy"));
    expect([r.status, await r.text()]).toEqual([503, "unhealthy: no iteration has ended for 31.0 s\n"]);
    r = await h(get("/-/ready"));
    expect([r.status, await r.text()]).toEqual([200, "ready\n"]);
    expect((await h(request("HEAD", "/-/ready"))).status).toBe(200);
    for (const path of ["/-/healthy", "/-/ready"]) {
      const x = await h(request("POST", path));
      expect({ path, status: x.status, allow: x.headers.get("allow") }).toEqual({ path, status: 405, allow: "GET, HEAD" });
    }
  });

  test("without a daemon behind the listener the /-/ paths are 404", async () => {
    const h = makeHandler(source, null);
    for (const [method, path] of [["GET", "/-/healthy"], ["GET", "/-/ready"], ["POST", "/-/reload"]] as const) {
      expect({ path, status: (await h(request(method, path))).status }).toEqual({ path, status: 404 });
    }
  });
});

describe("POST /-/reload", () => {
  test("runs the daemon's reload: 200 with what happened, 500 with the problems one per line", async () => {
    const ok = control();
    let r = await makeHandler(source, null, ok.c)(request("POST", "/-/reload"));
    expect([r.status, await r.text(), ok.state.reloads]).toEqual([200, "configuration reloaded\n", 1]);
    const lines = ["/etc/netprobify.yaml:3:12: global.interval: expected a number, got \"ten\"", "/etc/netprobify.yaml:9:5: targets.x: unknown field"];
    const bad = control({ reload: { ok: false, lines } });
    r = await makeHandler(source, null, bad.c)(request("POST", "/-/reload"));
    expect([r.status, r.headers.get("content-type"), await r.text()]).toEqual([500, "text/plain; charset=utf-8", `${lines.join("\n")}\n`]);
  });

  test("other methods get 405 with Allow: POST, and reload nothing", async () => {
    const { c, state } = control();
    const h = makeHandler(source, null, c);
    for (const method of ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const r = await h(request(method, "/-/reload"));
      expect({ method, status: r.status, allow: r.headers.get("allow") }).toEqual({ method, status: 405, allow: "POST" });
    }
    expect(state.reloads).toBe(0);
  });

  test("behind the same authentication as /metrics: 401 and no reload without the credentials", async () => {
    const { c, state } = control();
    const h = makeHandler(source, CREDS, c);
    for (const auth of [undefined, basic("prom:wrong")]) {
      const r = await h(request("POST", "/-/reload", auth ? { authorization: auth } : {}));
      expect([r.status, r.headers.get("www-authenticate")]).toEqual([401, 'Basic realm="netprobify"']);
    }
    expect(state.reloads).toBe(0);
    const r = await h(request("POST", "/-/reload", { authorization: basic("prom:s3cr:et") }));
    expect([r.status, state.reloads]).toEqual([200, 1]);
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
