/**
 * The web config (`--web.config.file`), in the format of Prometheus exporter-toolkit that
 * node_exporter, blackbox_exporter and smokeping_prober read: TLS for both listeners, and for the
 * metrics listener Basic auth with bcrypt hashes, extra response headers and a rate limit.
 *
 * Validated like netprobify.yaml (valibot, every problem at FILE:LINE:COL): unknown fields are
 * errors, and each field of the toolkit's format is either honoured or refused by name with the
 * reason, never ignored. The files it names are read and checked here (each certificate parses,
 * the key is the certificate's), so a start or a reload fails on them rather than the listener.
 *
 * Where netprobify differs from the toolkit, it says so when it reads the file: a field it cannot
 * honour is an error, a value with a different effect (min_version below TLS12) a warning.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import * as v from "valibot";
import { readSettingsFile } from "../config/settings-file.ts";
import { formatIssue, formatWarnings, parseYamlText, type ConfigIssue, type Warning } from "../config/validate-yaml.ts";
import { hints, issueText } from "../config/schema.ts";
import type { AccessSettings } from "./access.ts";
import {
  CURVES,
  OLDEST_SPOKEN,
  readTlsMaterial,
  TLS12_CIPHER_SUITES,
  TLS13_CIPHER_SUITES,
  TLS_VERSIONS,
  type ClientAuth,
  type CurveName,
  type ListenerSettings,
  type PemRole,
  type PemSource,
  type TlsSettings,
} from "./tls.ts";

/** What the web config sets up. */
export interface WebSettings {
  /** Both listeners (metrics and targets API): TLS and HTTP/2. */
  readonly listener: ListenerSettings;
  /** The metrics listener only: the API keeps its apikey. */
  readonly access: AccessSettings;
}

export type WebConfigResult =
  | { readonly ok: true; readonly settings: WebSettings; readonly warnings: string[] }
  /** `unreadable`: the file itself cannot be read (exit 66), as opposed to read and found invalid. */
  | { readonly ok: false; readonly lines: string[]; readonly unreadable: boolean };

/**
 * The headers exporter-toolkit lets a web config set, with the values it allows (none listed:
 * any). Mirrored so that a file is accepted here exactly when the toolkit accepts it.
 */
export const SETTABLE_HEADERS: Readonly<Record<string, readonly string[]>> = {
  "Strict-Transport-Security": [],
  "X-Content-Type-Options": ["nosniff"],
  "X-Frame-Options": ["deny", "sameorigin"],
  "X-XSS-Protection": [],
  "Content-Security-Policy": [],
};
const HEADER_NAMES = Object.keys(SETTABLE_HEADERS);

const CLIENT_AUTH_NAMES = [
  "NoClientCert",
  "RequestClientCert",
  "RequireAnyClientCert",
  "RequireClientCert",
  "VerifyClientCertIfGiven",
  "RequireAndVerifyClientCert",
] as const;

/** Why a client_auth_type of the toolkit's is refused. */
const REFUSED_CLIENT_AUTH: Readonly<Record<string, string>> = {
  RequireAnyClientCert:
    "Bun's TLS server cannot require a client certificate without verifying it; RequireAndVerifyClientCert with client_ca_file requires and verifies one",
  RequireClientCert:
    "(the toolkit's old name of RequireAnyClientCert) Bun's TLS server cannot require a client certificate without verifying it; RequireAndVerifyClientCert with client_ca_file requires and verifies one",
  VerifyClientCertIfGiven:
    "Bun's TLS server either refuses a client without a certificate or does not verify the certificates it gets; use RequireAndVerifyClientCert (verified, required) or RequestClientCert (asked for, not verified)",
};

/** `$2y$` (htpasswd), `$2b$` or `$2a$`, a cost of 04 to 31, a 22-character salt and a 31-character hash. */
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
const BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * Whether a text is a bcrypt hash Bun.password.verify takes: the format, and the unused low bits
 * of the salt's and the hash's last characters clear (Bun refuses other encodings, which a
 * hand-edited hash can have).
 */
export function isBcryptHash(text: string): boolean {
  if (!BCRYPT.test(text)) return false;
  const saltLast = BCRYPT_ALPHABET.indexOf(text[28]!);
  const hashLast = BCRYPT_ALPHABET.indexOf(text[59]!);
  return saltLast % 16 === 0 && hashLast % 4 === 0;
}
const BCRYPT_EXPECTED = "a bcrypt hash as `htpasswd -nBC 10 USER` prints it after the colon: $2y$, a cost, $, 53 characters";

const GO_DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, "μs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** A Go duration ("1s", "1m30s", "250ms", "0") in milliseconds; undefined when it is not one (or negative). */
export function goDurationMs(value: unknown): number | undefined {
  if (value === 0 || value === "0") return 0;
  if (typeof value !== "string" || value === "") return undefined;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < value.length) {
    re.lastIndex = at;
    const m = re.exec(value);
    if (!m) return undefined;
    total += Number(m[1]) * GO_DURATION_UNITS[m[2]!]!;
    at = re.lastIndex;
  }
  return total;
}
const DURATION_EXPECTED = 'a duration with its unit, such as "1s", "250ms" or "1m30s", or 0 for no limit';

const filePath = (text: string) =>
  v.pipe(
    v.string(),
    v.nonEmpty(),
    v.maxLength(4096),
    hints({ expected: "a path, relative to the web config file's directory or absolute" }),
    v.description(text),
  );
const pemText = (text: string) => v.pipe(v.string(), v.nonEmpty(), hints({ expected: "PEM text (-----BEGIN ...-----)" }), v.description(text));

/** A field of the toolkit's format that netprobify cannot honour: present at all, it is an error saying why. */
const refused = (why: string, instead: string) =>
  v.optional(
    v.pipe(
      v.unknown(),
      v.check(() => false, issueText(`not supported by netprobify: ${why}`, instead)),
      // Kept out of the "did you mean" suggestions and of the lists of fields.
      hints({ deprecated: true }),
    ),
  );

const TlsServerSchema = v.pipe(
  v.strictObject({
    cert_file: v.optional(filePath("The certificate (and its chain, leaf first), PEM. Re-read when it changes.")),
    key_file: v.optional(filePath("The certificate's private key, PEM, unencrypted. Re-read when it changes.")),
    cert: v.optional(pemText("The certificate inline, instead of cert_file.")),
    key: v.optional(pemText("The private key inline, instead of key_file.")),
    client_auth_type: v.optional(
      v.pipe(v.picklist(CLIENT_AUTH_NAMES), v.description("NoClientCert (default), RequestClientCert or RequireAndVerifyClientCert.")),
    ),
    client_ca_file: v.optional(filePath("CA certificates client certificates are verified against, PEM. Re-read when it changes.")),
    client_ca: v.optional(pemText("The client CA certificates inline, instead of client_ca_file.")),
    min_version: v.optional(v.picklist(TLS_VERSIONS)),
    max_version: v.optional(v.picklist(TLS_VERSIONS)),
    cipher_suites: v.optional(
      v.pipe(
        v.array(v.picklist([...TLS12_CIPHER_SUITES, ...TLS13_CIPHER_SUITES])),
        hints({ expected: "a list of Go cipher suite names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" }),
      ),
    ),
    curve_preferences: v.optional(v.array(v.picklist(Object.keys(CURVES) as CurveName[]))),
    prefer_server_cipher_suites: v.optional(v.boolean()),
    client_allowed_sans: refused(
      "Bun's TLS server does not show the client certificate to netprobify, so its SANs cannot be checked",
      "remove it; RequireAndVerifyClientCert with a client_ca_file of your own CA limits clients to the certificates it signs",
    ),
  }),
  hints({ expected: "a map with cert_file (or cert) and key_file (or key)" }),
);

const HttpServerSchema = v.strictObject({
  http2: v.optional(v.boolean()),
  headers: v.optional(
    v.record(
      v.pipe(
        v.string(),
        v.check((name) => HEADER_NAMES.includes(name)),
        hints({ noun: "a header the web config may set", expected: `one of ${HEADER_NAMES.join(", ")}, as exporter-toolkit allows` }),
      ),
      v.nullable(v.union([v.string(), v.number()])),
    ),
  ),
});

const UserNameSchema = v.pipe(
  v.string(),
  v.check((name) => !name.includes(":")),
  hints({ noun: "a user name Basic auth can carry", expected: "a name without a colon" }),
);

const RateLimitSchema = v.strictObject({
  interval: v.optional(
    v.pipe(
      v.union([v.string(), v.number()]),
      v.check((x) => goDurationMs(x) !== undefined, issueText("not a duration", DURATION_EXPECTED)),
    ),
  ),
  burst: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000))),
});

export const WebConfigSchema = v.pipe(
  v.strictObject({
    tls_server_config: v.nullish(TlsServerSchema),
    http_server_config: v.nullish(HttpServerSchema),
    basic_auth_users: v.nullish(
      v.record(UserNameSchema, v.pipe(v.string(), v.check(isBcryptHash, issueText("not a bcrypt hash", BCRYPT_EXPECTED)))),
    ),
    rate_limit: v.nullish(RateLimitSchema),
  }),
  hints({ expected: "a map with tls_server_config, http_server_config, basic_auth_users or rate_limit" }),
);

type RawWebConfig = v.InferOutput<typeof WebConfigSchema>;

/** A file with only comments, blank lines and document markers: the toolkit reads it as no settings. */
const EMPTY_DOCUMENT = /^(?:\s*(?:#.*)?(?:---|\.\.\.)?\s*(?:#.*)?(?:\r?\n|$))*$/;

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;

/**
 * Validates web config text and checks the files it names.
 * @param file The name printed in front of each issue; relative paths in the file are resolved
 *   against its directory unless `baseDir` is given.
 */
export function parseWebConfigText(text: string, file: string, options: { baseDir?: string; now?: number } = {}): WebConfigResult {
  const baseDir = options.baseDir ?? dirname(resolve(file));
  if (EMPTY_DOCUMENT.test(text)) return { ok: true, settings: settingsOf({}, null), warnings: [] };
  const parsed = parseYamlText(text, file, WebConfigSchema);
  if (!parsed.ok) return { ok: false, lines: parsed.issues.map(formatIssue), unreadable: false };
  const raw = parsed.value;
  const issues: ConfigIssue[] = [];
  const warnings: Warning[] = [...parsed.warnings];
  type Key = string | number;
  const at = (keys: readonly Key[], where: "value" | "key" | "map") => parsed.locator.position(keys, where);
  const pathOf = (keys: readonly Key[]) => keys.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`)).join("");
  const issue = (keys: readonly Key[], where: "value" | "key" | "map", message: string, expected = "") =>
    issues.push({ file, ...at(keys, where), path: pathOf(keys), message, expected });
  const warn = (keys: readonly Key[], message: string) => warnings.push({ ...at(keys, "value"), path: pathOf(keys), message });

  const t = raw.tls_server_config ?? undefined;
  const T = "tls_server_config";
  let tls: TlsSettings | null = null;
  if (t && Object.keys(t).length > 0) {
    const source = (fileKey: "cert_file" | "key_file" | "client_ca_file", inlineKey: "cert" | "key" | "client_ca"): PemSource | null => {
      const path = t[fileKey];
      const inline = t[inlineKey];
      if (path !== undefined && inline !== undefined) {
        issue([T, inlineKey], "key", `both ${fileKey} and ${inlineKey} are given`, `one of them: the file, or the PEM text inline`);
      }
      if (path !== undefined) return { file: isAbsolute(path) ? path : resolve(baseDir, path) };
      return inline !== undefined ? { inline } : null;
    };
    const cert = source("cert_file", "cert");
    const key = source("key_file", "key");
    const clientCa = source("client_ca_file", "client_ca");
    if (!cert) issue([T], "map", "cert_file is required (or cert, the certificate inline)", "the path of the server certificate, PEM");
    if (!key) issue([T], "map", "key_file is required (or key, the private key inline)", "the path of the certificate's private key, PEM");

    const authName = t.client_auth_type ?? "NoClientCert";
    const refusal = REFUSED_CLIENT_AUTH[authName];
    if (refusal) {
      issue([T, "client_auth_type"], "value", `${authName} is not supported by netprobify: ${refusal}`, "NoClientCert, RequestClientCert or RequireAndVerifyClientCert");
    }
    const clientAuth = authName as ClientAuth;
    const caKey = t.client_ca_file !== undefined ? "client_ca_file" : "client_ca";
    if (clientCa && authName === "NoClientCert") {
      issue(
        [T, caKey],
        "key",
        `${caKey} is set but client_auth_type is NoClientCert, so no client certificate would be asked for`,
        "client_auth_type: RequireAndVerifyClientCert, or no client CA",
      );
    }
    if (!clientCa && authName === "RequireAndVerifyClientCert") {
      issue(
        [T, "client_auth_type"],
        "value",
        "RequireAndVerifyClientCert needs the CA certificates to verify client certificates against",
        "client_ca_file or client_ca beside it",
      );
    }
    if (clientCa && authName === "RequestClientCert") {
      warn([T, caKey], "not used: RequestClientCert asks for a client certificate but does not verify it");
    }

    const minVersion = t.min_version ?? "TLS12";
    const maxVersion = t.max_version ?? "TLS13";
    const rank = (x: string) => TLS_VERSIONS.indexOf(x as (typeof TLS_VERSIONS)[number]);
    if (rank(maxVersion) < rank(OLDEST_SPOKEN)) {
      issue([T, "max_version"], "value", `${maxVersion} leaves no version to speak: the listeners speak TLS 1.2 and 1.3 only`, "TLS12 or TLS13");
    } else if (rank(minVersion) > rank(maxVersion)) {
      issue([T, "min_version"], "value", `${minVersion} is above max_version ${maxVersion}`, `a version up to ${maxVersion}`);
    }
    if (t.min_version !== undefined && rank(minVersion) < rank(OLDEST_SPOKEN)) {
      warn([T, "min_version"], `${minVersion} acts as TLS12: the listeners never speak TLS 1.0 or 1.1`);
    }
    const suites = t.cipher_suites ?? [];
    suites.forEach((name, i) => {
      if ((TLS13_CIPHER_SUITES as readonly string[]).includes(name)) {
        warn([T, "cipher_suites", i], `${name} has no effect: TLS 1.3 suites are not configurable (in Go either)`);
      }
    });
    const tls12Suites = suites.filter((name) => (TLS12_CIPHER_SUITES as readonly string[]).includes(name));
    if (suites.length > 0 && tls12Suites.length === 0 && rank(minVersion) < rank("TLS13")) {
      issue([T, "cipher_suites"], "value", "no TLS 1.2 suite in the list, so no TLS 1.2 client could connect", "at least one TLS_ECDHE_... suite, or min_version: TLS13");
    }
    if (cert && key) {
      tls = {
        cert,
        key,
        clientCa,
        clientAuth,
        minVersion,
        maxVersion,
        cipherSuites: [...new Set(tls12Suites)],
        curves: [...new Set((t.curve_preferences ?? []).map((c) => CURVES[c]))],
        preferServerCipherSuites: t.prefer_server_cipher_suites ?? true,
      };
    }
  }

  const h = raw.http_server_config ?? undefined;
  if (h?.http2 === true && !tls) warn(["http_server_config", "http2"], "has no effect without tls_server_config: plain HTTP is HTTP/1.1 only");
  for (const [name, value] of Object.entries(h?.headers ?? {})) {
    const allowed = SETTABLE_HEADERS[name] ?? [];
    const text = value === null ? "" : String(value);
    if (text !== "" && allowed.length > 0 && !allowed.includes(text)) {
      issue(["http_server_config", "headers", name], "value", `${JSON.stringify(text)} is not a value exporter-toolkit allows for ${name}`, `one of ${allowed.join(", ")}`);
    }
  }

  const r = raw.rate_limit ?? undefined;
  if (r) {
    const intervalMs = goDurationMs(r.interval ?? 0) ?? 0;
    if (intervalMs > 0 && (r.burst ?? 0) === 0) {
      if (r.burst === undefined) issue(["rate_limit"], "map", "burst is required with a non-zero interval", "requests allowed at once, 1 or more");
      else issue(["rate_limit", "burst"], "value", "0 would refuse every request", "requests allowed at once, 1 or more");
    }
  }

  // The files are read only once the settings make sense: a problem in them is then the only one told.
  if (issues.length === 0 && tls) {
    const fieldOf = (role: PemRole): string => {
      const [fileKey, inlineKey] = role === "cert" ? ["cert_file", "cert"] : role === "key" ? ["key_file", "key"] : ["client_ca_file", "client_ca"];
      return t?.[fileKey as keyof typeof t] !== undefined ? fileKey! : inlineKey!;
    };
    const material = readTlsMaterial(tls, options.now);
    if (!material.ok) for (const p of material.problems) issue([T, fieldOf(p.role)], "value", p.message);
    else for (const w of material.warnings) warn([T, fieldOf(w.role)], w.message);
  }
  if (issues.length > 0) {
    const lines = issues.sort((a, b) => a.line - b.line || a.col - b.col).map(formatIssue);
    return { ok: false, lines: [...new Set(lines)], unreadable: false };
  }
  return { ok: true, settings: settingsOf(raw, tls), warnings: formatWarnings(file, warnings) };
}

function settingsOf(raw: RawWebConfig, tls: TlsSettings | null): WebSettings {
  const h = raw.http_server_config ?? undefined;
  const headers = Object.entries(h?.headers ?? {}).flatMap(([name, value]): [string, string][] =>
    value === null || String(value) === "" ? [] : [[name, String(value)]],
  );
  const users = raw.basic_auth_users ? new Map(Object.entries(raw.basic_auth_users)) : null;
  const intervalMs = goDurationMs(raw.rate_limit?.interval ?? 0) ?? 0;
  return {
    listener: { tls, http2: tls !== null && h?.http2 === true },
    access: {
      users: users && users.size > 0 ? users : null,
      headers,
      rateLimit: intervalMs > 0 ? { intervalMs, burst: raw.rate_limit?.burst ?? 0 } : null,
    },
  };
}

/** Reads and validates the web config file; `unreadable` with one line when it cannot be read. */
export async function loadWebConfig(path: string, options: { now?: number } = {}): Promise<WebConfigResult> {
  const read = await readSettingsFile(path);
  if ("failure" in read) return { ok: false, lines: [`${path}: cannot read the file: ${read.failure}`], unreadable: true };
  return parseWebConfigText(read.text, path, options);
}

/** One line of what a web config sets up, for `check` and the start log. */
export function describeWebSettings(s: WebSettings): string {
  const tls = s.listener.tls;
  const parts = [
    tls
      ? `TLS ${tls.minVersion < "TLS12" ? "TLS12" : tls.minVersion} to ${tls.maxVersion}, client certificates: ${tls.clientAuth}${s.listener.http2 ? ", HTTP/2" : ""}`
      : "no TLS",
    s.access.users ? `Basic auth for ${plural(s.access.users.size, "user")}` : "no Basic auth",
  ];
  if (s.access.headers.length > 0) parts.push(plural(s.access.headers.length, "extra header"));
  if (s.access.rateLimit) parts.push(`rate limit: ${s.access.rateLimit.burst} at once, 1 more every ${s.access.rateLimit.intervalMs} ms`);
  return parts.join(", ");
}
