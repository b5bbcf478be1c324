/**
 * The TLS side of the web config: the settings both listeners serve with (plain data, so they
 * cross to the API's Worker), reading and checking the certificate, key and client CA PEM text,
 * and turning them into Bun.serve options.
 *
 * What Bun's TLS server can enforce decides what is offered here (tested in tests/web/):
 * requestCert and rejectUnauthorized give NoClientCert, RequestClientCert (asked for, never
 * checked) and RequireAndVerifyClientCert, but no way to require a certificate without verifying
 * it, or to verify one only when given; Bun.serve shows no peer certificate to the handler, so
 * client_allowed_sans cannot be checked either. TLS 1.0 and 1.1 are never spoken (BoringSSL as
 * Bun builds it). The version bounds, server cipher preference, cipher list and curves map to
 * secureOptions, ciphers and ecdhCurve.
 */
import type { TLSOptions } from "bun";
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from "node:fs";
import { readFailure } from "../config/settings-file.ts";

/** client_auth_type values the listeners enforce. */
export const CLIENT_AUTH_TYPES = ["NoClientCert", "RequestClientCert", "RequireAndVerifyClientCert"] as const;
export type ClientAuth = (typeof CLIENT_AUTH_TYPES)[number];

/** exporter-toolkit's version names, oldest first. */
export const TLS_VERSIONS = ["TLS10", "TLS11", "TLS12", "TLS13"] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];
/** The oldest version Bun's TLS server speaks. */
export const OLDEST_SPOKEN: TlsVersion = "TLS12";

/**
 * The TLS 1.2 cipher suites of Go's tls.CipherSuites(), which exporter-toolkit accepts by these
 * names; BoringSSL takes the same standard names in its cipher list.
 */
export const TLS12_CIPHER_SUITES = [
  "TLS_RSA_WITH_AES_128_CBC_SHA",
  "TLS_RSA_WITH_AES_256_CBC_SHA",
  "TLS_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_RSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
  "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
  "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
  "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
  "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
  "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
] as const;
/** TLS 1.3 suites: Go lists them but never lets them be configured, and neither does BoringSSL. */
export const TLS13_CIPHER_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] as const;

/** exporter-toolkit's curve names, and BoringSSL's for them. */
export const CURVES = { CurveP256: "P-256", CurveP384: "P-384", CurveP521: "P-521", X25519: "X25519" } as const;
export type CurveName = keyof typeof CURVES;

/** PEM text given in a file (an absolute path) or inline in the web config. */
export type PemSource = { readonly file: string } | { readonly inline: string };

/** tls_server_config, checked and with its paths made absolute. */
export interface TlsSettings {
  readonly cert: PemSource;
  readonly key: PemSource;
  readonly clientCa: PemSource | null;
  readonly clientAuth: ClientAuth;
  readonly minVersion: TlsVersion;
  readonly maxVersion: TlsVersion;
  /** TLS 1.2 suites in order of preference; empty: BoringSSL's default list. */
  readonly cipherSuites: readonly string[];
  /** BoringSSL curve names in order of preference; empty: the default. */
  readonly curves: readonly string[];
  readonly preferServerCipherSuites: boolean;
}

/** What a listener serves with: TLS or plain HTTP, and whether HTTP/2 is offered (TLS only). */
export interface ListenerSettings {
  readonly tls: TlsSettings | null;
  readonly http2: boolean;
}

/** The PEM text in use: what Bun.serve is given, and compared to notice a change. */
export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly ca: string | null;
}

/** Which setting a problem is about: the PEM source of the certificate, the key or the client CA. */
export type PemRole = "cert" | "key" | "clientCa";

export interface PemProblem {
  readonly role: PemRole;
  readonly message: string;
}

/** A certificate, key or CA file is small; anything larger is a mistake (a log file named by accident). */
export const MAX_PEM_FILE_BYTES = 1 << 20;

/**
 * A PEM file's text, or why it cannot be had. Only a regular file is read, opened without
 * blocking and examined before a byte is read: a FIFO or a device must not hang a reload.
 */
export function readPemFile(path: string): { text: string } | { failure: string } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    return { failure: readFailure(e) };
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) return { failure: "it is a directory" };
    if (!st.isFile()) return { failure: "it is not a regular file" };
    if (st.size > MAX_PEM_FILE_BYTES) return { failure: `it is ${st.size.toLocaleString("en-US")} bytes, over the limit of 1 MiB for a PEM file` };
    const buffer = Buffer.alloc(st.size);
    let length = 0;
    while (length < buffer.length) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return { text: buffer.toString("utf8", 0, length) };
  } catch (e) {
    return { failure: readFailure(e) };
  } finally {
    closeSync(fd);
  }
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** The certificates of a PEM text, parsed; a message when there is none or one does not parse. */
function parseCertificates(text: string): X509Certificate[] | string {
  const blocks = [...text.matchAll(PEM_BLOCK)].filter((m) => m[1] === "CERTIFICATE");
  if (blocks.length === 0) return "no PEM certificate (-----BEGIN CERTIFICATE-----) in it";
  const out: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block[0]));
    } catch (e) {
      return `certificate ${i + 1} of ${blocks.length} does not parse: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  return out;
}

function describe(source: PemSource): string {
  return "file" in source ? source.file : "the inline PEM text";
}

function readSource(source: PemSource): { text: string } | { failure: string } {
  if ("inline" in source) return { text: source.inline };
  const r = readPemFile(source.file);
  return "failure" in r ? { failure: `cannot read ${source.file}: ${r.failure}` } : r;
}

/**
 * Reads the certificate chain, the key and the client CAs, and checks them as the TLS server
 * would: each parses, and the key is the first certificate's.
 * @param now For the expiry warning (ms since the epoch).
 * @returns The material and warnings (an expired certificate still loads, as in Go), or every problem.
 */
export function readTlsMaterial(
  s: TlsSettings,
  now = Date.now(),
): { ok: true; material: TlsMaterial; warnings: PemProblem[]; leaf: X509Certificate } | { ok: false; problems: PemProblem[] } {
  const problems: PemProblem[] = [];
  const cert = readSource(s.cert);
  const key = readSource(s.key);
  const ca = s.clientCa ? readSource(s.clientCa) : null;
  let leaf: X509Certificate | undefined;
  let privateKey: KeyObject | undefined;
  if ("failure" in cert) problems.push({ role: "cert", message: cert.failure });
  else {
    const certs = parseCertificates(cert.text);
    if (typeof certs === "string") problems.push({ role: "cert", message: `${describe(s.cert)}: ${certs}` });
    else leaf = certs[0];
  }
  if ("failure" in key) problems.push({ role: "key", message: key.failure });
  else {
    try {
      privateKey = createPrivateKey(key.text);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      problems.push({ role: "key", message: `${describe(s.key)}: not an unencrypted PEM private key: ${why}` });
    }
  }
  let caText: string | null = null;
  if (ca && s.clientCa) {
    if ("failure" in ca) problems.push({ role: "clientCa", message: ca.failure });
    else {
      const certs = parseCertificates(ca.text);
      if (typeof certs === "string") problems.push({ role: "clientCa", message: `${describe(s.clientCa)}: ${certs}` });
      caText = ca.text;
    }
  }
  if (leaf && privateKey && !leaf.checkPrivateKey(privateKey)) {
    const subject = leaf.subject.replace(/\n/g, ", ");
    problems.push({ role: "key", message: `${describe(s.key)}: the key does not match the certificate (${subject}) of ${describe(s.cert)}` });
  }
  if (problems.length > 0 || !leaf || "failure" in cert || "failure" in key) return { ok: false, problems };
  const warnings: PemProblem[] = [];
  const expires = Date.parse(leaf.validTo);
  if (Number.isFinite(expires) && expires < now) {
    warnings.push({ role: "cert", message: `${describe(s.cert)}: the certificate expired on ${new Date(expires).toISOString()}` });
  }
  return { ok: true, material: { cert: cert.text, key: key.text, ca: caText }, warnings, leaf };
}

/**
 * What tells that the files changed, without reading them: identity, size and times of each
 * (stat follows symlinks, so a swapped link counts). "-" stands for a file that cannot be stat'ed.
 */
export function materialStamp(s: TlsSettings): string {
  const files = [s.cert, s.key, s.clientCa].flatMap((p) => (p && "file" in p ? [p.file] : []));
  return files
    .map((file) => {
      try {
        const st = statSync(file, { bigint: true });
        return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      } catch {
        return "-";
      }
    })
    .join("|");
}

/** Whether the settings read any file: only then can the material change under a running listener. */
export const readsFiles = (s: TlsSettings): boolean => [s.cert, s.key, s.clientCa].some((p) => p !== null && "file" in p);

// BoringSSL's SSL_OP_* bits, as Bun passes secureOptions to SSL_CTX_set_options.
const SSL_OP_CIPHER_SERVER_PREFERENCE = 0x00400000;
const SSL_OP_NO_TLSv1_2 = 0x08000000;
const SSL_OP_NO_TLSv1_3 = 0x20000000;

/** Bun's TLSOptions plus ecdhCurve, which Bun.serve honours but bun-types does not declare. */
export type ServeTls = TLSOptions & { ecdhCurve?: string };

/** The Bun.serve options of a TLS listener: what {@link Transport} holds. */
export function serveTls(s: TlsSettings, m: TlsMaterial): ServeTls {
  let secureOptions = 0;
  if (s.preferServerCipherSuites) secureOptions |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  if (s.minVersion === "TLS13") secureOptions |= SSL_OP_NO_TLSv1_2;
  if (s.maxVersion === "TLS12") secureOptions |= SSL_OP_NO_TLSv1_3;
  return {
    cert: m.cert,
    key: m.key,
    ...(m.ca !== null ? { ca: m.ca } : {}),
    requestCert: s.clientAuth !== "NoClientCert",
    rejectUnauthorized: s.clientAuth === "RequireAndVerifyClientCert",
    secureOptions,
    ...(s.cipherSuites.length > 0 ? { ciphers: s.cipherSuites.join(":") } : {}),
    ...(s.curves.length > 0 ? { ecdhCurve: s.curves.join(":") } : {}),
  };
}

/** What Bun.serve is given besides the handler: TLS and HTTP/2, or nothing for plain HTTP/1.1. */
export interface Transport {
  tls?: ServeTls;
  http2?: boolean;
}
