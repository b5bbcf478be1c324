/**
 * Certificates for the TLS tests, made by openssl in a fresh temporary directory: a CA, another
 * CA nobody trusts, server certificates for 127.0.0.1, ::1 and localhost (two, to swap one for
 * the other), a client certificate of each CA, and a bcrypt hash made by htpasswd. EC P-256 keys,
 * so the whole set takes a fraction of a second. `remove()` deletes the directory.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  readonly dir: string;
  /** Absolute path of `name` in the directory. */
  path(name: string): string;
  read(name: string): string;
  remove(): void;
}

function run(argv: string[], cwd: string, stdin?: string): string {
  const r = Bun.spawnSync(argv, { cwd, stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (${r.exitCode}): ${r.stderr.toString()}`);
  return r.stdout.toString();
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A self-signed CA: NAME.crt and NAME.key. */
export function makeCa(dir: string, name: string): void {
  run(["openssl", "req", "-x509", ...KEY, "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${name}`], dir);
}

/** A certificate signed by `ca`: NAME.crt and NAME.key, with the given subjectAltName. */
export function makeLeaf(dir: string, name: string, ca: string, san: string, usage: "serverAuth" | "clientAuth"): void {
  run(["openssl", "req", ...KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`], dir);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
  run(
    ["openssl", "x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`],
    dir,
  );
}

/** The bcrypt hash `htpasswd -nBC 10` prints for `user` and `password` ($2y$, cost 10). */
export function htpasswdHash(user: string, password: string, cwd = tmpdir()): string {
  const line = run(["htpasswd", "-niBC", "10", user], cwd, `${password}\n`).trim();
  return line.slice(line.indexOf(":") + 1);
}

/**
 * ca (trusted) and otherca; server and server2 (both by ca, for 127.0.0.1, ::1 and localhost);
 * client (by ca) and stranger (by otherca).
 */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "netprobify-pki-"));
  const server = "IP:127.0.0.1,IP:::1,DNS:localhost";
  makeCa(dir, "ca");
  makeCa(dir, "otherca");
  makeLeaf(dir, "server", "ca", server, "serverAuth");
  makeLeaf(dir, "server2", "ca", server, "serverAuth");
  makeLeaf(dir, "client", "ca", "DNS:client.test", "clientAuth");
  makeLeaf(dir, "stranger", "otherca", "DNS:client.test", "clientAuth");
  return {
    dir,
    path: (name) => join(dir, name),
    read: (name) => readFileSync(join(dir, name), "utf8"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The serial number of a PEM certificate, as openssl prints it (hex, upper case). */
export function serialOf(pem: string): string {
  const out = run(["openssl", "x509", "-noout", "-serial"], tmpdir(), pem);
  return out.trim().replace(/^serial=/, "");
}

/** The serial of the certificate a TLS server at host:port presents (openssl s_client), or null when the handshake fails. */
export async function presentedSerial(host: string, port: number): Promise<string | null> {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `${host}:${port}`, "-showcerts"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const text = await new Response(p.stdout).text();
  await p.exited;
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(text)?.[0];
  return pem ? serialOf(pem) : null;
}
