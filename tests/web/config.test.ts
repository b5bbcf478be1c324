/**
 * The web config (src/web/config.ts): what it accepts, and for each bad input the FILE:LINE:COL
 * line with the field and the message: unknown fields, the toolkit's fields netprobify refuses
 * (by name, with the reason), a missing certificate, a key that is not the certificate's, a
 * malformed bcrypt hash, the header rule. Certificates made by openssl in a temp directory.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../src/cli/index.ts";
import { checkFiles, loadAll } from "../../src/daemon/configuration.ts";
import { goDurationMs, isBcryptHash, loadWebConfig, parseWebConfigText, type WebConfigResult } from "../../src/web/config.ts";
import { htpasswdHash, makePki, type Pki } from "../support/pki.ts";

let pki: Pki;
let hash: string;
beforeAll(() => {
  pki = makePki();
  hash = htpasswdHash("prom", "s3cret", pki.dir);
});
afterAll(() => pki.remove());

/** Parses `text` as the file web.yml in the PKI directory (relative paths resolve there). */
const parse = (text: string, now?: number): WebConfigResult => parseWebConfigText(text, pki.path("web.yml"), now === undefined ? {} : { now });
/** The lines of a failed parse, with the directory shortened to DIR. */
function problems(text: string): string[] {
  const r = parse(text);
  if (r.ok) throw new Error(`expected problems, got a valid config: ${JSON.stringify(r.settings)}`);
  return r.lines.map((l) => l.replaceAll(pki.dir, "DIR"));
}
const TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

describe("accepted", () => {
  test("an empty file (only comments) sets nothing up, as exporter-toolkit reads it", () => {
    const r = parse("# no settings yet\n\n---\n");
    expect(r.ok && r.settings).toEqual({ listener: { tls: null, http2: false }, access: { users: null, headers: [], rateLimit: null } });
  });

  test("the issue's example: TLS with client certificates, bcrypt users, headers; paths resolved beside the file", () => {
    const r = parse(
      `${TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n` +
        `basic_auth_users:\n  prom: ${hash}\n` +
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection:\n",
    );
    if (!r.ok) throw new Error(r.lines.join("\n"));
    expect(r.warnings).toEqual([]);
    expect(r.settings.listener).toEqual({
      tls: {
        cert: { file: pki.path("server.crt") },
        key: { file: pki.path("server.key") },
        clientCa: { file: pki.path("ca.crt") },
        clientAuth: "RequireAndVerifyClientCert",
        minVersion: "TLS13",
        maxVersion: "TLS13",
        cipherSuites: [],
        curves: [],
        preferServerCipherSuites: true,
      },
      http2: false,
    });
    expect([...(r.settings.access.users ?? [])]).toEqual([["prom", hash]]);
    // A blank header is unset, as in the toolkit.
    expect(r.settings.access.headers).toEqual([
      ["X-Frame-Options", "deny"],
      ["Strict-Transport-Security", "max-age=31536000"],
    ]);
  });

  test("the certificate and key inline, an absolute path, cipher suites, curves, HTTP/2, a rate limit", () => {
    const cert = pki.read("server.crt").trimEnd().replace(/\n/g, "\n    ");
    const key = pki.read("server.key").trimEnd().replace(/\n/g, "\n    ");
    const r = parse(
      `tls_server_config:\n  cert: |\n    ${cert}\n  key: |\n    ${key}\n  client_auth_type: RequestClientCert\n` +
        "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n" +
        "  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n" +
        `http_server_config:\n  http2: true\nrate_limit:\n  interval: 1m30s\n  burst: 5\n`,
    );
    if (!r.ok) throw new Error(r.lines.join("\n"));
    expect(r.settings.listener.http2).toBe(true);
    expect(r.settings.listener.tls).toMatchObject({
      cert: { inline: `${pki.read("server.crt").trimEnd()}\n` },
      clientAuth: "RequestClientCert",
      maxVersion: "TLS12",
      cipherSuites: ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
      curves: ["X25519", "P-256"],
      preferServerCipherSuites: false,
    });
    expect(r.settings.access.rateLimit).toEqual({ intervalMs: 90_000, burst: 5 });
    const abs = parse(`tls_server_config:\n  cert_file: ${pki.path("server.crt")}\n  key_file: ${pki.path("server.key")}\n`);
    expect(abs.ok).toBe(true);
  });

  test("what differs from exporter-toolkit in effect is a warning at its position", () => {
    const r = parse(
      `${TLS}  min_version: TLS10\n  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n` +
        "  client_auth_type: RequestClientCert\n  client_ca_file: ca.crt\n",
    );
    if (!r.ok) throw new Error(r.lines.join("\n"));
    expect(r.warnings.map((w) => w.replaceAll(pki.dir, "DIR"))).toEqual([
      "DIR/web.yml:4:16: warning: tls_server_config.min_version: TLS10 acts as TLS12: the listeners never speak TLS 1.0 or 1.1",
      "DIR/web.yml:5:19: warning: tls_server_config.cipher_suites[0]: TLS_AES_128_GCM_SHA256 has no effect: TLS 1.3 suites are not configurable (in Go either)",
      "DIR/web.yml:7:19: warning: tls_server_config.client_ca_file: not used: RequestClientCert asks for a client certificate but does not verify it",
    ]);
    const plain = parse("http_server_config:\n  http2: true\n");
    expect(plain.ok && plain.warnings.map((w) => w.replaceAll(pki.dir, "DIR"))).toEqual([
      "DIR/web.yml:2:10: warning: http_server_config.http2: has no effect without tls_server_config: plain HTTP is HTTP/1.1 only",
    ]);
  });

  test("an expired certificate loads, with a warning (Go does not check either)", () => {
    const r = parse(TLS, Date.now() + 10 * 86_400_000);
    expect(r.ok && r.warnings.map((w) => w.replaceAll(pki.dir, "DIR"))).toEqual([
      expect.stringMatching(/^DIR\/web\.yml:2:14: warning: tls_server_config\.cert_file: DIR\/server\.crt: the certificate expired on \d{4}-/),
    ]);
  });
});

describe("refused, each at FILE:LINE:COL with the field and why", () => {
  test("unknown fields, with a suggestion", () => {
    expect(problems("tls_server_config:\n  cert_file: server.crt\n  keyfile: server.key\n")).toEqual([
      "DIR/web.yml:3:3: tls_server_config.keyfile: unknown field, did you mean key_file? (one of cert_file, key_file, cert, key, client_auth_type, client_ca_file, client_ca, min_version, max_version, cipher_suites, curve_preferences, prefer_server_cipher_suites)",
    ]);
    expect(problems("tls_config:\n  cert_file: server.crt\nbasic_auth_user: {}\n")).toEqual([
      "DIR/web.yml:1:1: tls_config: unknown field (one of tls_server_config, http_server_config, basic_auth_users, rate_limit)",
      "DIR/web.yml:3:1: basic_auth_user: unknown field, did you mean basic_auth_users? (one of tls_server_config, http_server_config, basic_auth_users, rate_limit)",
    ]);
    expect(problems("http_server_config:\n  header: {}\nrate_limit:\n  intervals: 1s\n")).toEqual([
      "DIR/web.yml:2:3: http_server_config.header: unknown field, did you mean headers? (one of http2, headers)",
      "DIR/web.yml:4:3: rate_limit.intervals: unknown field, did you mean interval? (one of interval, burst)",
    ]);
  });

  test("a certificate file that does not exist, or is a directory, or holds no certificate", () => {
    mkdirSync(pki.path("a-directory"), { recursive: true });
    writeFileSync(pki.path("not-a-cert.pem"), "hello\n");
    expect(problems("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n")).toEqual([
      "DIR/web.yml:2:14: tls_server_config.cert_file: cannot read DIR/missing.crt: no such file",
    ]);
    expect(problems("tls_server_config:\n  cert_file: a-directory\n  key_file: server.key\n")).toEqual([
      "DIR/web.yml:2:14: tls_server_config.cert_file: cannot read DIR/a-directory: it is a directory",
    ]);
    expect(problems("tls_server_config:\n  cert_file: not-a-cert.pem\n  key_file: server.key\n")).toEqual([
      "DIR/web.yml:2:14: tls_server_config.cert_file: DIR/not-a-cert.pem: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
    ]);
    expect(problems(`${TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: missing-ca.crt\n`)).toEqual([
      "DIR/web.yml:5:19: tls_server_config.client_ca_file: cannot read DIR/missing-ca.crt: no such file",
    ]);
  });

  test("a key that does not match the certificate, or is not a key", () => {
    expect(problems("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n")).toEqual([
      "DIR/web.yml:3:13: tls_server_config.key_file: DIR/client.key: the key does not match the certificate (CN=server) of DIR/server.crt",
    ]);
    expect(problems("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n")).toEqual([
      expect.stringMatching(/^DIR\/web\.yml:3:13: tls_server_config\.key_file: DIR\/server\.crt: not an unencrypted PEM private key: /),
    ]);
  });

  test("a malformed bcrypt hash (never a password in clear), and a user name Basic auth cannot carry", () => {
    const lines = problems(
      `basic_auth_users:\n  a: plain-password\n  b: "$2y$10$tooshort"\n  c: "${hash.slice(0, -1)}x"\n  d: "${hash.replace("$10$", "$03$")}"\n  "e:f": "${hash}"\n  g: 42\n`,
    );
    const expected = "(a bcrypt hash as `htpasswd -nBC 10 USER` prints it after the colon: $2y$, a cost, $, 53 characters)";
    expect(lines).toEqual([
      `DIR/web.yml:2:6: basic_auth_users.a: not a bcrypt hash ${expected}`,
      `DIR/web.yml:3:6: basic_auth_users.b: not a bcrypt hash ${expected}`,
      `DIR/web.yml:4:6: basic_auth_users.c: not a bcrypt hash ${expected}`,
      `DIR/web.yml:5:6: basic_auth_users.d: not a bcrypt hash ${expected}`,
      `DIR/web.yml:6:3: basic_auth_users.e:f: "e:f" is not a user name Basic auth can carry (a name without a colon)`,
      "DIR/web.yml:7:6: basic_auth_users.g: 42 is not a string (text, in quotes if YAML would read it as something else)",
    ]);
    expect(lines.join("\n")).not.toContain("plain-password");
  });

  test("the toolkit's fields and values netprobify cannot honour, by name", () => {
    expect(problems(`${TLS}  client_allowed_sans: [client.test]\n`)).toEqual([
      "DIR/web.yml:4:24: tls_server_config.client_allowed_sans: not supported by netprobify: Bun's TLS server does not show the client certificate to netprobify, so its SANs cannot be checked (remove it; RequireAndVerifyClientCert with a client_ca_file of your own CA limits clients to the certificates it signs)",
    ]);
    for (const value of ["RequireAnyClientCert", "RequireClientCert", "VerifyClientCertIfGiven"]) {
      const lines = problems(`${TLS}  client_auth_type: ${value}\n  client_ca_file: ca.crt\n`);
      expect(lines).toEqual([
        expect.stringMatching(
          new RegExp(`^DIR/web\\.yml:4:21: tls_server_config\\.client_auth_type: ${value} is not supported by netprobify: .+ \\(NoClientCert, RequestClientCert or RequireAndVerifyClientCert\\)$`),
        ),
      ]);
    }
    expect(problems(`${TLS}  client_auth_type: Sometimes\n`)).toEqual([
      '"DIR/web.yml:4:21: tls_server_config.client_auth_type: "Sometimes" is not allowed (one of NoClientCert, RequestClientCert, RequireAnyClientCert, RequireClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)'.slice(1),
    ]);
  });

  test("headers: only those exporter-toolkit allows, with its values", () => {
    expect(problems("http_server_config:\n  headers:\n    Server: netprobify\n    x-frame-options: deny\n")).toEqual([
      '"DIR/web.yml:3:5: http_server_config.headers.Server: "Server" is not a header the web config may set (one of Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy, as exporter-toolkit allows)'.slice(1),
      '"DIR/web.yml:4:5: http_server_config.headers.x-frame-options: "x-frame-options" is not a header the web config may set (one of Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy, as exporter-toolkit allows)'.slice(1),
    ]);
    expect(problems("http_server_config:\n  headers:\n    X-Frame-Options: allow-from\n    X-Content-Type-Options: sniff\n")).toEqual([
      'DIR/web.yml:3:22: http_server_config.headers.X-Frame-Options: "allow-from" is not a value exporter-toolkit allows for X-Frame-Options (one of deny, sameorigin)',
      'DIR/web.yml:4:29: http_server_config.headers.X-Content-Type-Options: "sniff" is not a value exporter-toolkit allows for X-Content-Type-Options (one of nosniff)',
    ]);
  });

  test("TLS settings that do not hold together", () => {
    expect(problems("tls_server_config:\n  cert_file: server.crt\n")).toEqual([
      "DIR/web.yml:2:3: tls_server_config: key_file is required (or key, the private key inline) (the path of the certificate's private key, PEM)",
    ]);
    expect(problems(`${TLS}  cert: "x"\n`)).toEqual([
      "DIR/web.yml:4:3: tls_server_config.cert: both cert_file and cert are given (one of them: the file, or the PEM text inline)",
    ]);
    expect(problems(`${TLS}  client_ca_file: ca.crt\n`)).toEqual([
      "DIR/web.yml:4:3: tls_server_config.client_ca_file: client_ca_file is set but client_auth_type is NoClientCert, so no client certificate would be asked for (client_auth_type: RequireAndVerifyClientCert, or no client CA)",
    ]);
    expect(problems(`${TLS}  client_auth_type: RequireAndVerifyClientCert\n`)).toEqual([
      "DIR/web.yml:4:21: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs the CA certificates to verify client certificates against (client_ca_file or client_ca beside it)",
    ]);
    expect(problems(`${TLS}  max_version: TLS11\n`)).toEqual([
      "DIR/web.yml:4:16: tls_server_config.max_version: TLS11 leaves no version to speak: the listeners speak TLS 1.2 and 1.3 only (TLS12 or TLS13)",
    ]);
    expect(problems(`${TLS}  min_version: TLS13\n  max_version: TLS12\n`)).toEqual([
      "DIR/web.yml:4:16: tls_server_config.min_version: TLS13 is above max_version TLS12 (a version up to TLS12)",
    ]);
    expect(problems(`${TLS}  min_version: TLS14\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n  curve_preferences: [P256]\n`)).toEqual([
      expect.stringMatching(/^DIR\/web\.yml:4:16: tls_server_config\.min_version: "TLS14" is not allowed \(one of TLS10, TLS11, TLS12, TLS13\)$/),
      expect.stringMatching(/^DIR\/web\.yml:5:19: tls_server_config\.cipher_suites\[0\]: "TLS_RSA_WITH_RC4_128_SHA" is not allowed /),
      "DIR/web.yml:6:23: tls_server_config.curve_preferences[0]: \"P256\" is not allowed (one of CurveP256, CurveP384, CurveP521, X25519)",
    ]);
    expect(problems(`${TLS}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n`)).toEqual([
      "DIR/web.yml:4:18: tls_server_config.cipher_suites: no TLS 1.2 suite in the list, so no TLS 1.2 client could connect (at least one TLS_ECDHE_... suite, or min_version: TLS13)",
    ]);
  });

  test("rate_limit: a Go duration with its unit, and a burst that lets requests through", () => {
    expect(problems("rate_limit:\n  interval: 1s\n")).toEqual([
      "DIR/web.yml:2:3: rate_limit: burst is required with a non-zero interval (requests allowed at once, 1 or more)",
    ]);
    expect(problems("rate_limit:\n  interval: 1s\n  burst: 0\n")).toEqual([
      "DIR/web.yml:3:10: rate_limit.burst: 0 would refuse every request (requests allowed at once, 1 or more)",
    ]);
    expect(problems("rate_limit:\n  interval: 5\n  burst: 1\n")).toEqual([
      'DIR/web.yml:2:13: rate_limit.interval: not a duration (a duration with its unit, such as "1s", "250ms" or "1m30s", or 0 for no limit)',
    ]);
    const off = parse("rate_limit:\n  interval: 0\n  burst: 0\n");
    expect(off.ok && off.settings.access.rateLimit).toBeNull();
  });

  test("YAML that is not a map, and a file that cannot be read (66, not 65)", async () => {
    expect(problems("- a\n- b\n")).toEqual([
      'DIR/web.yml:1:1: a list is not a map (a map with tls_server_config, http_server_config, basic_auth_users or rate_limit)',
    ]);
    expect(await loadWebConfig(pki.path("nope.yml"))).toEqual({ ok: false, lines: [`${pki.path("nope.yml")}: cannot read the file: no such file`], unreadable: true });
  });
});

test("isBcryptHash: htpasswd's $2y$, $2b$ and $2a$ hashes; Bun.password.verify checks htpasswd's $2y$ as it is", async () => {
  expect(isBcryptHash(hash)).toBe(true);
  expect(hash.startsWith("$2y$10$")).toBe(true);
  expect(await Bun.password.verify("s3cret", hash)).toBe(true);
  expect(await Bun.password.verify("s3creT", hash)).toBe(false);
  const bun = await Bun.password.hash("x", { algorithm: "bcrypt", cost: 4 });
  expect(isBcryptHash(bun)).toBe(true);
  expect(isBcryptHash(bun.replace("$2b$", "$2a$"))).toBe(true);
  expect(isBcryptHash(bun.replace("$2b$", "$2x$"))).toBe(false);
  expect(isBcryptHash("$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")).toBe(false);
});

test("goDurationMs reads Go durations", () => {
  expect([goDurationMs("1s"), goDurationMs("250ms"), goDurationMs("1m30s"), goDurationMs("1.5h"), goDurationMs(0), goDurationMs("0")]).toEqual([
    1000, 250, 90_000, 5_400_000, 0, 0,
  ]);
  for (const bad of ["", "1", "-1s", "1x", "s", 5, "1s "]) expect(goDurationMs(bad)).toBeUndefined();
});

const CONFIG =
  "global:\n  probe_name: web\n  interval: 30\n  nb_proc: 1\n  logging_level: INFO\n  dns_update_interval: 0\n  prometheus_port: 9111\ngroups:\n  g: {}\ntargets:\n  t:\n    type: ICMPping\n    destination: 198.18.0.1\n";

describe("with the config: loadAll and check", () => {
  test("check FILE --web.config.file WEB: both valid, one line each", async () => {
    writeFileSync(pki.path("netprobify.yaml"), CONFIG);
    writeFileSync(pki.path("web.yml"), `${TLS}basic_auth_users:\n  prom: ${hash}\n`);
    const r = await checkFiles({ config: pki.path("netprobify.yaml"), web: pki.path("web.yml") });
    expect(r).toEqual({
      exitCode: 0,
      lines: [
        `${pki.path("netprobify.yaml")}: valid, 1 group and 1 target`,
        `${pki.path("web.yml")}: valid web config: TLS TLS12 to TLS13, client certificates: NoClientCert, Basic auth for 1 user`,
      ],
    });
    expect(await checkFiles({ web: pki.path("web.yml") })).toEqual({ exitCode: 0, lines: [r.lines[1]!] });
  });

  test("the problems of both files are told together; 65, or 66 when a file cannot be read", async () => {
    writeFileSync(pki.path("bad.yaml"), CONFIG.replace("prometheus_port: 9111", "prometheus_port: 99999"));
    writeFileSync(pki.path("bad-web.yml"), "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n");
    const both = await loadAll(pki.path("bad.yaml"), { isolated: false, webConfigPath: pki.path("bad-web.yml") });
    expect(both).toEqual({
      exitCode: 65,
      lines: [
        `${pki.path("bad.yaml")}:7:20: global.prometheus_port: 99999 is out of range (an integer from 1 to 65535)`,
        `${pki.path("bad-web.yml")}:3:13: tls_server_config.key_file: ${pki.path("client.key")}: the key does not match the certificate (CN=server) of ${pki.path("server.crt")}`,
      ],
    });
    const unreadable = await loadAll(pki.path("netprobify.yaml"), { isolated: false, webConfigPath: join(pki.dir, "none.yml") });
    expect(unreadable).toEqual({ exitCode: 66, lines: [`${join(pki.dir, "none.yml")}: cannot read the file: no such file`] });
    const ok = await loadAll(pki.path("netprobify.yaml"), { isolated: false, webConfigPath: pki.path("web.yml") });
    expect("exitCode" in ok ? ok : ok.web?.listener.tls?.clientAuth).toBe("NoClientCert");
  });

  test("api.yaml beside the config: the API's spec carries the web config's listener settings", async () => {
    writeFileSync(pki.path("api.yaml"), "token: 0123456789abcdef0123\nlisten_address: 127.0.0.1\nlisten_port: 9112\ngroups: [g]\n");
    const loaded = await loadAll(pki.path("netprobify.yaml"), { isolated: false, webConfigPath: pki.path("web.yml") });
    if ("exitCode" in loaded) throw new Error(loaded.lines.join("\n"));
    const api = loaded.inventories.specs.find((s) => s.kind === "api");
    expect(api?.listener?.tls?.cert).toEqual({ file: pki.path("server.crt") });
  });
});

describe("the command line: check [FILE] [--web.config.file WEB], and the daemon's flag", () => {
  const cli = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, (l) => out.push(l), (l) => err.push(l));
    // The first line said; a usage error then prints the usage.
    return { code, out, err: err[0] ?? "" };
  };

  test("check --web.config.file WEB alone, or with the config (either order, = or a space)", async () => {
    mkdirSync(pki.path("cli"), { recursive: true });
    writeFileSync(pki.path("cli/netprobify.yaml"), CONFIG);
    writeFileSync(pki.path("cli-web.yml"), TLS);
    const summary = `${pki.path("cli-web.yml")}: valid web config: TLS TLS12 to TLS13, client certificates: NoClientCert, no Basic auth`;
    expect(await cli(["check", "--web.config.file", pki.path("cli-web.yml")])).toEqual({ code: 0, out: [summary], err: "" });
    const both = await cli(["check", `--web.config.file=${pki.path("cli-web.yml")}`, pki.path("cli/netprobify.yaml")]);
    expect(both).toEqual({ code: 0, out: [`${pki.path("cli/netprobify.yaml")}: valid, 1 group and 1 target`, summary], err: "" });
    expect((await cli(["check", pki.path("cli/netprobify.yaml"), "--web.config.file", pki.path("cli-web.yml")])).out).toEqual(both.out);
  });

  test("a bad web config: 65 and its FILE:LINE:COL line on stderr", async () => {
    writeFileSync(pki.path("cli-bad.yml"), `${TLS}  client_allowed_sans: [x]\n`);
    const r = await cli(["check", "--web.config.file", pki.path("cli-bad.yml")]);
    expect({ code: r.code, out: r.out }).toEqual({ code: 65, out: [] });
    expect(r.err).toStartWith(`${pki.path("cli-bad.yml")}:4:24: tls_server_config.client_allowed_sans: not supported by netprobify: `);
  });

  test("usage errors (64): nothing to check, two files, the flag without its file", async () => {
    expect((await cli(["check"])).code).toBe(64);
    expect((await cli(["check", "a.yaml", "b.yaml"])).code).toBe(64);
    expect(await cli(["check", "--web.config.file"])).toMatchObject({ code: 64, err: "netprobify: --web.config.file needs a value (see netprobify check --help)" });
    expect(await cli(["check", "x.yaml", "--web.config.file="])).toMatchObject({ code: 64, err: "netprobify: --web.config.file needs a value (see netprobify check --help)" });
    expect(await cli(["x.yaml", "--web.config.file"])).toMatchObject({ code: 64, err: "netprobify: --web.config.file needs a value (see netprobify --help)" });
  });

  test("--help names the flag", async () => {
    const r = await cli(["--help"]);
    expect(r.out.join("\n")).toContain("--web.config.file");
    expect(r.out.join("\n")).toContain("check [FILE] [--web.config.file WEB]");
  });
});
