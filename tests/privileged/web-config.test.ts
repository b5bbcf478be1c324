/**
 * --web.config.file in the daemon, run as users run it (`bun src/main.ts FILE --web.config.file
 * WEB`, loopback targets):
 *
 * 1. a real Prometheus (Debian's package, started here on a free port, scrape_interval 1s) scrapes
 *    it over TLS with a client certificate and Basic auth (htpasswd's $2y$ hash) and reports up 1;
 * 2. curl with the right client certificate, one from another CA and none, with and without
 *    credentials; the web config's headers on the answers; the targets API over TLS with its apikey;
 * 3. reloads (SIGHUP): a bad web config fails and keeps the running settings, a good one applies
 *    (a new header; then new TLS settings on the same port);
 * 4. a bad web config at start: exit 65 with FILE:LINE:COL (a missing certificate, a key that is
 *    not the certificate's, an unknown field, a malformed bcrypt hash);
 * 5. certificate files replaced under the running daemon (a key that does not match first);
 * 6. PROM_USER/PROM_PASSWORD still apply over TLS when the web config has no basic_auth_users.
 *
 * Certificates are made by openssl in a temporary directory, removed at the end. Needs root (the
 * daemon's raw packets).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, parseExposition, runNetprobify, startDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { htpasswdHash, makePki, presentedSerial, serialOf, type Pki } from "../support/pki.ts";
import { requireRoot } from "../support/testnet.ts";

function loopbackConfig(probeName: string): string {
  return `global:
  probe_name: ${probeName}
  interval: 2
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  g:
    src_port_a: 65210
    src_port_z: 65213
targets:
  lo_tcp:
    type: TCPsyn
    destination: 127.0.0.1
    dst_port: 33434
    nb_packets: 2
    timeout: 0.5
`;
}

let pki: Pki;
let hash: string;
beforeAll(() => {
  requireRoot();
  pki = makePki();
  hash = htpasswdHash("prom", "s3cr:et", pki.dir);
});
afterAll(() => pki?.remove());

const basic = (cred: string) => ({ authorization: `Basic ${Buffer.from(cred).toString("base64")}` });

/** The web config of most tests: client certificates of the test CA, one bcrypt user, two headers. */
const webConfig = (extra = "", clientAuth = "RequireAndVerifyClientCert") => `tls_server_config:
  cert_file: ${pki.path("server.crt")}
  key_file: ${pki.path("server.key")}
  client_auth_type: ${clientAuth}
  client_ca_file: ${pki.path("ca.crt")}
basic_auth_users:
  prom: ${hash}
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
${extra}`;

/** Starts the daemon with WEB as its web config, and waits for /metrics to answer over TLS. */
async function startWithWebConfig(web: string, opts: { env?: Record<string, string>; files?: Record<string, string> } = {}): Promise<DaemonProcess> {
  const d = await startDaemon({
    config: loopbackConfig("nb-web"),
    files: { "web.yml": web, ...opts.files },
    args: (config) => [config, "--web.config.file", "web.yml"],
    waitReady: false,
    ...(opts.env ? { env: opts.env } : {}),
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (!d.alive) throw new Error(`daemon exited before listening:\n${d.stderr}`);
    try {
      await httpsGet(d.port, "/", { cert: "client" });
      return d;
    } catch {
      if (Date.now() > deadline) throw new Error(`no TLS answer on ${d.port}:\n${d.stderr}`);
      await Bun.sleep(50);
    }
  }
}

/** GET over TLS trusting the test CA, with a client certificate (by name) or none. */
function httpsGet(port: number, path: string, opts: { cert?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  const tls = { ca: pki.read("ca.crt"), ...(opts.cert ? { cert: pki.read(`${opts.cert}.crt`), key: pki.read(`${opts.cert}.key`) } : {}) };
  return fetch(`https://127.0.0.1:${port}${path}`, { tls, headers: opts.headers ?? {}, keepalive: false, signal: AbortSignal.timeout(5000) });
}

/** curl's verdict: "STATUS" or "refused" (no HTTP answer: the handshake failed). */
async function curl(port: number, args: string[]): Promise<string> {
  const p = Bun.spawn(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", pki.path("ca.crt"), ...args, `https://127.0.0.1:${port}/metrics`], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(p.stdout).text();
  return (await p.exited) === 0 ? out : "refused";
}
const cert = (name: string) => ["--cert", pki.path(`${name}.crt`), "--key", pki.path(`${name}.key`)];

describe("a daemon behind TLS, client certificates and Basic auth", () => {
  let d: DaemonProcess;
  beforeAll(async () => {
    d = await startWithWebConfig(webConfig());
  }, 30_000);
  afterAll(async () => {
    await d?.stop();
  });

  test("a real Prometheus scrapes it (TLS, client certificate, Basic auth) and reports up 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netprobify-prometheus-"));
    const port = await freePort();
    writeFileSync(
      join(dir, "prometheus.yml"),
      `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: netprobify
    scheme: https
    tls_config:
      ca_file: ${pki.path("ca.crt")}
      cert_file: ${pki.path("client.crt")}
      key_file: ${pki.path("client.key")}
    basic_auth:
      username: prom
      password: "s3cr:et"
    static_configs:
      - targets: ["127.0.0.1:${d.port}"]
`,
    );
    const prometheus = Bun.spawn(
      [
        "prometheus",
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    try {
      const deadline = Date.now() + 20_000;
      let target: { health?: string; lastError?: string; scrapeUrl?: string } | undefined;
      let up: string | undefined;
      while (Date.now() < deadline && !(up === "1" && target?.health === "up")) {
        await Bun.sleep(250);
        try {
          const q = (await (await fetch(`http://127.0.0.1:${port}/api/v1/query?query=up`)).json()) as {
            data: { result: { metric: Record<string, string>; value: [number, string] }[] };
          };
          up = q.data.result.find((r) => r.metric.job === "netprobify")?.value[1];
          const t = (await (await fetch(`http://127.0.0.1:${port}/api/v1/targets`)).json()) as {
            data: { activeTargets: { health: string; lastError: string; scrapeUrl: string }[] };
          };
          target = t.data.activeTargets[0];
        } catch {
          // Prometheus still starting.
        }
      }
      expect({ up, health: target?.health, lastError: target?.lastError, url: target?.scrapeUrl }).toEqual({
        up: "1",
        health: "up",
        lastError: "",
        url: `https://127.0.0.1:${d.port}/metrics`,
      });
    } finally {
      prometheus.kill("SIGKILL");
      await prometheus.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test("curl: the right client certificate (200 with credentials, 401 without), another CA's and none refused", async () => {
    expect({
      right: await curl(d.port, [...cert("client"), "-u", "prom:s3cr:et"]),
      rightWrongPassword: await curl(d.port, [...cert("client"), "-u", "prom:wrong"]),
      rightNoCredentials: await curl(d.port, cert("client")),
      otherCa: await curl(d.port, [...cert("stranger"), "-u", "prom:s3cr:et"]),
      none: await curl(d.port, ["-u", "prom:s3cr:et"]),
    }).toEqual({ right: "200", rightWrongPassword: "401", rightNoCredentials: "401", otherCa: "refused", none: "refused" });
  });

  test("the answers carry the web config's headers; a 401 carries the challenge; every path needs the credentials", async () => {
    const ok = await httpsGet(d.port, "/metrics", { cert: "client", headers: basic("prom:s3cr:et") });
    expect([ok.status, ok.headers.get("x-content-type-options")]).toEqual([200, "nosniff"]);
    expect(parseExposition(await ok.text()).value("app_reload_conf_failed_status", { probe_name: "nb-web" })).toBe(0);
    for (const path of ["/metrics", "/"]) {
      const no = await httpsGet(d.port, path, { cert: "client" });
      expect([path, no.status, no.headers.get("www-authenticate"), no.headers.get("x-content-type-options")]).toEqual([path, 401, 'Basic realm="netprobify"', "nosniff"]);
    }
    expect(d.logLines.some((l) => l.includes('msg="serving metrics"') && l.includes("tls=true") && l.includes("auth=basic_auth_users"))).toBe(true);
  });

  test("reload: a bad web config fails and keeps the running settings; a good one applies, new TLS settings on the same port", async () => {
    const reload = async (text: string, outcome: "configuration reloaded" | "configuration reload failed") => {
      const before = d.logLines.filter((l) => l.includes(`msg="${outcome}`)).length;
      d.writeConfig(text, join(d.dir, "web.yml"));
      d.signal("SIGHUP");
      const deadline = Date.now() + 15_000;
      while (d.logLines.filter((l) => l.includes(`msg="${outcome}`)).length === before) {
        if (!d.alive || Date.now() > deadline) throw new Error(`no "${outcome}" after the reload:\n${d.stderr}`);
        await Bun.sleep(20);
      }
    };
    await reload(webConfig().replace("  headers:\n", "  headerz:\n"), "configuration reload failed");
    // The line with the position follows the failure line.
    const position = "web.yml:9:3: http_server_config.headerz: unknown field, did you mean headers?";
    const deadline = Date.now() + 5_000;
    while (!d.logLines.some((l) => l.includes(position)) && Date.now() < deadline) await Bun.sleep(20);
    expect(d.logLines.filter((l) => l.includes(position))).toHaveLength(1);
    expect(await curl(d.port, [...cert("client"), "-u", "prom:s3cr:et"])).toBe("200");
    expect(await curl(d.port, ["-u", "prom:s3cr:et"])).toBe("refused");

    await reload(webConfig("    X-Frame-Options: sameorigin\n"), "configuration reloaded");
    const r = await httpsGet(d.port, "/metrics", { cert: "client", headers: basic("prom:s3cr:et") });
    expect([r.status, r.headers.get("x-frame-options")]).toEqual([200, "sameorigin"]);
    expect(parseExposition(await r.text()).value("app_reload_conf_failed_status", { probe_name: "nb-web" })).toBe(0);

    // Client certificates no longer asked for: the listener is bound again on its port.
    await reload(webConfig("", "NoClientCert").replace(`  client_ca_file: ${pki.path("ca.crt")}\n`, ""), "configuration reloaded");
    expect({ none: await curl(d.port, ["-u", "prom:s3cr:et"]), noCredentials: await curl(d.port, []) }).toEqual({ none: "200", noCredentials: "401" });
  }, 60_000);
});

test("the targets API listens over TLS with the web config's settings; its apikey stays its authentication", async () => {
  const apiPort = await freePort();
  const d = await startWithWebConfig(webConfig(), {
    files: { "api.yaml": `token: 0123456789abcdef0123\nlisten_address: 127.0.0.1\nlisten_port: ${apiPort}\ngroups: [g]\n` },
  });
  try {
    const deadline = Date.now() + 15_000;
    let answer: Response | undefined;
    while (!answer && Date.now() < deadline) {
      answer = await httpsGet(apiPort, "/api/targets", { cert: "client", headers: { apikey: "0123456789abcdef0123" } }).catch(() => undefined);
      if (!answer) await Bun.sleep(100);
    }
    expect(answer?.status).toBe(200);
    expect((await httpsGet(apiPort, "/api/targets", { cert: "client" })).status).toBe(401);
    // No client certificate: the handshake is refused, as on the metrics listener.
    expect(await httpsGet(apiPort, "/api/targets", { headers: { apikey: "0123456789abcdef0123" } }).then(() => "answered", () => "refused")).toBe("refused");
    expect(d.logLines.some((l) => l.includes('msg="targets API listening"') && l.includes("tls=true"))).toBe(true);
  } finally {
    await d.stop();
  }
}, 40_000);

test("certificate files replaced under the running daemon: the next connection gets the new one; a key that does not match is counted and the old pair stays", async () => {
  const d = await startWithWebConfig("tls_server_config:\n  cert_file: live.crt\n  key_file: live.key\n", {
    files: { "live.crt": pki.read("server.crt"), "live.key": pki.read("server.key") },
  });
  const replace = (from: string, to: string) => {
    writeFileSync(join(d.dir, `${to}.tmp`), pki.read(from));
    renameSync(join(d.dir, `${to}.tmp`), join(d.dir, to));
  };
  const errors = async () => parseExposition(await (await httpsGet(d.port, "/metrics")).text()).value("netprobify_tls_certificate_errors_total");
  try {
    const [first, second] = [serialOf(pki.read("server.crt")), serialOf(pki.read("server2.crt"))];
    expect([await presentedSerial("127.0.0.1", d.port), await errors()]).toEqual([first, 0]);
    replace("client.key", "live.key");
    const deadline = Date.now() + 10_000;
    while ((await errors()) === 0 && Date.now() < deadline) await Bun.sleep(100);
    expect([await presentedSerial("127.0.0.1", d.port), await errors()]).toEqual([first, 1]);
    expect(d.logLines.filter((l) => l.includes("certificate files changed but cannot be used"))).toHaveLength(1);
    replace("server2.crt", "live.crt");
    replace("server2.key", "live.key");
    while ((await presentedSerial("127.0.0.1", d.port)) !== second && Date.now() < deadline) await Bun.sleep(100);
    expect([await presentedSerial("127.0.0.1", d.port), (await httpsGet(d.port, "/metrics")).status]).toEqual([second, 200]);
  } finally {
    await d.stop();
  }
}, 40_000);

test("PROM_USER and PROM_PASSWORD still apply over TLS when the web config has no basic_auth_users", async () => {
  const web = `tls_server_config:\n  cert_file: ${pki.path("server.crt")}\n  key_file: ${pki.path("server.key")}\n`;
  const d = await startWithWebConfig(web, { env: { PROM_USER: "env", PROM_PASSWORD: "pw" } });
  try {
    expect([(await httpsGet(d.port, "/metrics")).status, (await httpsGet(d.port, "/metrics", { headers: basic("env:pw") })).status]).toEqual([401, 200]);
    expect(d.logLines.some((l) => l.includes('msg="serving metrics"') && l.includes("tls=true") && l.includes("auth=PROM_USER"))).toBe(true);
  } finally {
    await d.stop();
  }
}, 40_000);

describe("a bad web config at start: exit 65 and the problem at FILE:LINE:COL", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "netprobify-web-start-"));
    writeFileSync(join(dir, "netprobify.yaml"), loopbackConfig("nb-bad").replace("__PORT__", "19999"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string, string, string][] = [
    ["a missing certificate", "tls_server_config:\n  cert_file: MISSING\n  key_file: KEY\n", "web.yml:2:14: tls_server_config.cert_file: cannot read "],
    ["a key that does not match", "tls_server_config:\n  cert_file: CERT\n  key_file: OTHERKEY\n", "web.yml:3:13: tls_server_config.key_file: "],
    ["an unknown field", "tls_server_config:\n  cert_file: CERT\n  key_fil: KEY\n", "web.yml:3:3: tls_server_config.key_fil: unknown field, did you mean key_file?"],
    ["a malformed bcrypt hash", "basic_auth_users:\n  prom: $2y$10$abc\n", "web.yml:2:9: basic_auth_users.prom: not a bcrypt hash"],
  ];
  for (const [name, text, expected] of cases) {
    test(name, async () => {
      const body = text
        .replace("CERT", pki.path("server.crt"))
        .replace("OTHERKEY", pki.path("client.key"))
        .replace("KEY", pki.path("server.key"))
        .replace("MISSING", pki.path("missing.crt"));
      writeFileSync(join(dir, "web.yml"), body);
      const r = await runNetprobify(["netprobify.yaml", "--web.config.file", "web.yml"], { cwd: dir });
      expect(r.code).toBe(65);
      expect(r.stderr).toContain(`${join(dir, expected)}`);
      expect(r.stderr).toContain('msg="cannot start: the configuration is invalid"');
    });
  }
});
