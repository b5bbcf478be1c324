/**
 * The TLS listener (src/web/listener.ts) as the daemon opens it (serveMetrics, makeHandler),
 * against real clients: curl with the right client certificate, one from another CA and none,
 * under each client_auth_type netprobify offers; openssl s_client for the version bounds, the
 * curves and the cipher list; curl --http2; certificate files replaced under a running listener
 * (the next connection gets the new certificate; a half-written pair keeps the old one); and
 * clients failing their handshakes over and over while good scrapes go on.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, renameSync } from "node:fs";
import { connect } from "node:net";
import { makeHandler, serveMetrics, type MetricsSource } from "../../src/daemon/http.ts";
import { HttpListener, type ListenerLog } from "../../src/web/listener.ts";
import type { ClientAuth, ListenerSettings, TlsSettings } from "../../src/web/tls.ts";
import { makePki, presentedSerial, serialOf, type Pki } from "../support/pki.ts";

const EXPOSITION = "# HELP x x\n# TYPE x gauge\nx 1\n";
const source: MetricsSource = {
  expositionParts: async () => ({ head: "", body: new TextEncoder().encode(EXPOSITION) }),
  contentType: "text/plain; version=0.0.4; charset=utf-8",
};

let pki: Pki;
beforeAll(() => {
  pki = makePki();
});
afterAll(() => pki.remove());

const open: HttpListener[] = [];
afterEach(() => {
  for (const l of open.splice(0)) l.stop(true);
});

function tlsSettings(over: Partial<TlsSettings> = {}): TlsSettings {
  return {
    cert: { file: pki.path("server.crt") },
    key: { file: pki.path("server.key") },
    clientCa: null,
    clientAuth: "NoClientCert",
    minVersion: "TLS12",
    maxVersion: "TLS13",
    cipherSuites: [],
    curves: [],
    preferServerCipherSuites: true,
    ...over,
  };
}

function listen(settings: ListenerSettings, opts: { checkEveryMs?: number; log?: ListenerLog } = {}): HttpListener {
  const l = HttpListener.open({
    name: "metrics",
    settings,
    port: 0,
    bind: (transport, port) => serveMetrics({ hostname: "127.0.0.1", port, fetch: makeHandler(source, null), transport }),
    log: opts.log ?? (() => undefined),
    ...(opts.checkEveryMs !== undefined ? { checkEveryMs: opts.checkEveryMs } : {}),
  });
  open.push(l);
  return l;
}

/** curl's verdict: the HTTP status, or "refused (exit N)" when no answer came (handshake refused). */
async function curl(port: number, args: string[] = []): Promise<string> {
  const p = Bun.spawn(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "5", "--cacert", pki.path("ca.crt"), ...args, `https://127.0.0.1:${port}/metrics`], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(p.stdout).text();
  const code = await p.exited;
  return code === 0 ? out : `refused (exit ${code})`;
}
const withCert = (name: string) => ["--cert", pki.path(`${name}.crt`), "--key", pki.path(`${name}.key`)];

/** Whether openssl s_client completes a handshake with these options. */
async function handshake(port: number, args: string[]): Promise<boolean> {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.path("ca.crt"), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return /^New, TLSv1\.[23], Cipher is (?!\(NONE\))/m.test(out);
}

describe("client certificates", () => {
  type Verdicts = { right: string; other: string; none: string };
  const cases: [ClientAuth, Verdicts][] = [
    ["RequireAndVerifyClientCert", { right: "200 1.1", other: "refused", none: "refused" }],
    ["RequestClientCert", { right: "200 1.1", other: "200 1.1", none: "200 1.1" }],
    ["NoClientCert", { right: "200 1.1", other: "200 1.1", none: "200 1.1" }],
  ];
  for (const [clientAuth, expected] of cases) {
    test(`${clientAuth}: the right client certificate, one from another CA, none`, async () => {
      const clientCa = clientAuth === "NoClientCert" ? null : { file: pki.path("ca.crt") };
      const l = listen({ tls: tlsSettings({ clientAuth, clientCa }), http2: false });
      const seen = {
        right: await curl(l.port, withCert("client")),
        other: await curl(l.port, withCert("stranger")),
        none: await curl(l.port),
      };
      const verdict = (s: string) => (s.startsWith("refused") ? "refused" : s);
      expect({ right: verdict(seen.right), other: verdict(seen.other), none: verdict(seen.none) }).toEqual(expected);
    });
  }

  test("plain HTTP to the TLS port gets no answer", async () => {
    const l = listen({ tls: tlsSettings(), http2: false });
    const r = await fetch(`http://127.0.0.1:${l.port}/metrics`).then(
      (x) => `answered ${x.status}`,
      () => "failed",
    );
    expect(r).toBe("failed");
  });
});

describe("protocol settings", () => {
  test("min_version TLS13 refuses TLS 1.2; max_version TLS12 refuses TLS 1.3; TLS 1.0 and 1.1 never", async () => {
    const only13 = listen({ tls: tlsSettings({ minVersion: "TLS13" }), http2: false });
    const only12 = listen({ tls: tlsSettings({ maxVersion: "TLS12" }), http2: false });
    const both = listen({ tls: tlsSettings({ minVersion: "TLS10" }), http2: false });
    expect({
      only13: [await handshake(only13.port, ["-tls1_2"]), await handshake(only13.port, ["-tls1_3"])],
      only12: [await handshake(only12.port, ["-tls1_2"]), await handshake(only12.port, ["-tls1_3"])],
      both: [await handshake(both.port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]), await handshake(both.port, ["-tls1_2"]), await handshake(both.port, ["-tls1_3"])],
    }).toEqual({ only13: [false, true], only12: [true, false], both: [false, true, true] });
  });

  test("cipher_suites (TLS 1.2) and curve_preferences limit what a client may pick", async () => {
    const l = listen({
      tls: tlsSettings({ maxVersion: "TLS12", cipherSuites: ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"], curves: ["P-384"] }),
      http2: false,
    });
    expect({
      // P-256 in every client's list: in TLS 1.2 it also names the curves the (P-256) certificate may use.
      listed: await handshake(l.port, ["-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-curves", "P-384:P-256"]),
      otherCipher: await handshake(l.port, ["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-curves", "P-384:P-256"]),
      otherCurve: await handshake(l.port, ["-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-curves", "X25519:P-256"]),
    }).toEqual({ listed: true, otherCipher: false, otherCurve: false });
  });

  test("prefer_server_cipher_suites: the server's order wins, or the client's", async () => {
    const pick = async (prefer: boolean) => {
      const l = listen({
        tls: tlsSettings({
          maxVersion: "TLS12",
          cipherSuites: ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
          preferServerCipherSuites: prefer,
        }),
        http2: false,
      });
      const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${l.port}`, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"], {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const out = await new Response(p.stdout).text();
      await p.exited;
      return /Cipher is (\S+)/.exec(out)?.[1];
    };
    expect({ server: await pick(true), client: await pick(false) }).toEqual({ server: "ECDHE-ECDSA-AES256-GCM-SHA384", client: "ECDHE-ECDSA-AES128-GCM-SHA256" });
  });

  test("http2: offered over TLS when asked for, HTTP/1.1 otherwise", async () => {
    const h2 = listen({ tls: tlsSettings(), http2: true });
    const h1 = listen({ tls: tlsSettings(), http2: false });
    expect([await curl(h2.port, ["--http2"]), await curl(h1.port, ["--http2"])]).toEqual(["200 2", "200 1.1"]);
  });
});

describe("certificate files replaced under a running listener", () => {
  /** Replaces DIR/to with DIR/from atomically, as a deploy tool (or cert-manager's symlink swap) does. */
  const replace = (from: string, to: string) => {
    copyFileSync(pki.path(from), pki.path(`${to}.tmp`));
    renameSync(pki.path(`${to}.tmp`), pki.path(to));
  };
  async function waitForSerial(port: number, serial: string): Promise<string | null> {
    const deadline = Date.now() + 5_000;
    let seen: string | null = null;
    while (Date.now() < deadline) {
      seen = await presentedSerial("127.0.0.1", port);
      if (seen === serial) return seen;
      await Bun.sleep(50);
    }
    return seen;
  }

  test("the next connection gets the new certificate; a pair half written keeps the old one, told once", async () => {
    for (const [from, to] of [["server.crt", "live.crt"], ["server.key", "live.key"]]) replace(from!, to!);
    const lines: string[] = [];
    const l = listen(
      { tls: tlsSettings({ cert: { file: pki.path("live.crt") }, key: { file: pki.path("live.key") } }), http2: false },
      { checkEveryMs: 50, log: (level, message) => lines.push(`${level} ${message}`) },
    );
    const first = serialOf(pki.read("server.crt"));
    const second = serialOf(pki.read("server2.crt"));
    expect(await presentedSerial("127.0.0.1", l.port)).toBe(first);

    // The certificate is replaced, its key not yet: the pair does not match, the old one stays.
    replace("server2.crt", "live.crt");
    await Bun.sleep(300);
    expect(await presentedSerial("127.0.0.1", l.port)).toBe(first);
    expect(await curl(l.port)).toBe("200 1.1");
    expect(lines.filter((x) => x.startsWith("ERROR"))).toEqual([
      expect.stringMatching(/^ERROR certificate files changed but cannot be used: .*live\.key: the key does not match the certificate .*; the certificate in use stays$/),
    ]);

    // The key follows: the new pair is served from the next connection on, same port.
    replace("server2.key", "live.key");
    expect(await waitForSerial(l.port, second)).toBe(second);
    expect(await curl(l.port)).toBe("200 1.1");
    expect(lines.filter((x) => x.startsWith("INFO"))).toEqual(["INFO certificate files changed: serving the new certificate"]);

    // Touched but the same content: nothing to do.
    replace("server2.crt", "live.crt");
    await Bun.sleep(200);
    expect(lines.filter((x) => x.startsWith("INFO"))).toHaveLength(1);
  });

  test("the client CA file is followed too: a client of the new CA gets in, one of the old no longer", async () => {
    replace("ca.crt", "clients.crt");
    const l = listen(
      { tls: tlsSettings({ clientAuth: "RequireAndVerifyClientCert", clientCa: { file: pki.path("clients.crt") } }), http2: false },
      { checkEveryMs: 50 },
    );
    expect([await curl(l.port, withCert("client")), (await curl(l.port, withCert("stranger"))).startsWith("refused")]).toEqual(["200 1.1", true]);
    replace("otherca.crt", "clients.crt");
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await curl(l.port, withCert("stranger"))) !== "200 1.1") await Bun.sleep(50);
    expect([(await curl(l.port, withCert("client"))).startsWith("refused"), await curl(l.port, withCert("stranger"))]).toEqual([true, "200 1.1"]);
  });
});

test("clients failing their handshakes over and over never disturb the good scrapes", async () => {
  const l = listen({ tls: tlsSettings({ clientAuth: "RequireAndVerifyClientCert", clientCa: { file: pki.path("ca.crt") } }), http2: false });
  const good = { ca: pki.read("ca.crt"), cert: pki.read("client.crt"), key: pki.read("client.key") };
  const stranger = { ca: pki.read("ca.crt"), cert: pki.read("stranger.crt"), key: pki.read("stranger.key") };
  let running = true;
  let badAttempts = 0;
  let badAnswered = 0;
  const url = `https://127.0.0.1:${l.port}/metrics`;
  const badClients = [
    // A certificate from another CA, none at all, and bytes that are not TLS.
    async () => fetch(url, { tls: stranger }),
    async () => fetch(url, { tls: { ca: good.ca } }),
    async () =>
      new Promise<void>((resolve) => {
        const s = connect(l.port, "127.0.0.1", () => s.end("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        s.on("error", () => resolve());
        s.on("close", () => resolve());
      }),
  ].map(async (attempt) => {
    while (running) {
      badAttempts++;
      try {
        const r = await attempt();
        if (r instanceof Response) badAnswered++;
      } catch {
        // refused, as it should be
      }
    }
  });
  const statuses: number[] = [];
  for (let i = 0; i < 30; i++) {
    // A new connection (and handshake) each time, beside the failing ones.
    const r = await fetch(url, { tls: good, keepalive: false });
    statuses.push(r.status);
    expect(await r.text()).toBe(EXPOSITION);
  }
  running = false;
  await Promise.all(badClients);
  expect(statuses).toEqual(Array(30).fill(200));
  expect(badAnswered).toBe(0);
  expect(badAttempts).toBeGreaterThan(30);
});
