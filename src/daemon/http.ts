/**
 * The metrics listener: GET /metrics (with HTTP Basic auth when PROM_USER and PROM_PASSWORD are
 * both set; gzip when asked), a landing page, and the daemon's /-/healthy, /-/ready and
 * POST /-/reload. Handlers take a Request and return a Response, so tests need no socket;
 * {@link serveMetrics} binds them to Bun.serve the one way the daemon and the tests do.
 */
import type { Server } from "bun";
import { createHash, timingSafeEqual } from "node:crypto";
import { BAD_HOST, badRequest, internalError, productionServeOptions, requestUrl } from "../http-server.ts";
import { describeError } from "../inventory/runner.ts";
import { logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { acceptsGzip, gzipParts } from "./gzip.ts";
import type { Transport } from "../web/tls.ts";

const log = logger("http");

export interface Credentials {
  user: string;
  password: string;
}

/** PROM_USER and PROM_PASSWORD, or null when either is unset. */
export function credentialsFromEnv(env: Record<string, string | undefined> = process.env): Credentials | null {
  const user = env.PROM_USER;
  const password = env.PROM_PASSWORD;
  return user && password ? { user, password } : null;
}

/**
 * Constant-time check of an Authorization header: both sides are hashed first so that neither
 * the length nor the content of the secret shows in the time taken.
 */
export function authorized(header: string | null, creds: Credentials): boolean {
  const expected = createHash("sha256").update(`${creds.user}:${creds.password}`).digest();
  // RFC 7235: the scheme name is case-insensitive.
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? "");
  const given = createHash("sha256")
    .update(m ? Buffer.from(m[1]!, "base64").toString("utf8") : "\0no credentials")
    .digest();
  return timingSafeEqual(expected, given) && m !== null;
}

export interface MetricsSource {
  /**
   * The exposition in two parts: the head (read at scrape time) and the body (rendered once per
   * iteration, the same bytes for every scrape).
   */
  expositionParts(): Promise<{ head: string; body: Uint8Array }>;
  contentType: string;
}

/** Bytes written to the socket per step: a slow client holds at most this much of a copy. */
const BODY_CHUNK = 1 << 20;

/**
 * A body that writes the pieces in order, straight from the caller's arrays in chunks, waiting
 * for the socket to drain: no scrape copies the 14 MB of 10,000 targets into a new Blob (a Blob
 * of two parts is a fresh concatenation per scrape, about 100 MB of garbage at 20 scrapes a
 * second).
 */
function piecesStream(pieces: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    type: "direct",
    async pull(c) {
      for (const piece of pieces) {
        if (typeof piece === "string") {
          if ((await c.write(piece)) === 0 && piece.length > 0) return c.close(); // client gone
          continue;
        }
        for (let o = 0; o < piece.length; o += BODY_CHUNK) {
          if ((await c.write(piece.subarray(o, o + BODY_CHUNK))) === 0) return c.close();
        }
      }
      c.close();
    },
  });
}

/** What a reload asked over HTTP came to: ok, or the problems (FILE:LINE:COL lines). */
export interface ReloadOutcome {
  ok: boolean;
  /** What happened (ok), or the problems, one per line. */
  lines: string[];
}

/** What the listener reports about the daemon beside the metrics. */
export interface DaemonControl {
  /** Null while the main loop runs, else why it is not considered alive. */
  unhealthy(): string | null;
  /** Null once the first iteration's results are published, else why not. */
  notReady(): string | null;
  /** The reload SIGHUP runs. */
  reload(): Promise<ReloadOutcome>;
  /** Where the targets API listens when api.yaml enables it. */
  apiListener(): { address: string; port: number } | null;
}

const TEXT = "text/plain; charset=utf-8";

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "Content-Type": TEXT, "Cache-Control": "no-store", ...headers } });
}

/** The methods each path answers; any other gets 405 with this list as Allow. */
const ROUTES = new Map<string, readonly string[]>([
  ["/", ["GET", "HEAD"]],
  ["/metrics", ["GET", "HEAD"]],
  ["/-/healthy", ["GET", "HEAD"]],
  ["/-/ready", ["GET", "HEAD"]],
  ["/-/reload", ["POST"]],
]);

/**
 * The access check of the paths behind authentication (/metrics, /-/reload): null to go on,
 * else the answer. One call, so another scheme can take its place.
 */
export function denied(req: Request, creds: Credentials | null): Response | null {
  if (!creds || authorized(req.headers.get("authorization"), creds)) return null;
  return text(401, "authentication required\n", { "WWW-Authenticate": 'Basic realm="netprobify"' });
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const WILDCARD = new Set(["", "0.0.0.0", "::", "[::]"]);

/**
 * The targets API's documentation link: the API's own address, or for a wildcard address the
 * host the browser used for this page. Protocol-relative, so it takes this page's scheme.
 */
function apiDocsLink(api: { address: string; port: number }, req: Request): string {
  let host = api.address;
  if (WILDCARD.has(host)) {
    // Without a Host header (or with one no URL can hold) there is no name to link to.
    const given = URL.parse(`http://${req.headers.get("host") ?? ""}`)?.hostname;
    if (!given) return `the targets API: <code>/api/ui/</code> on port ${api.port}`;
    host = given;
  } else if (host.includes(":")) host = `[${host}]`;
  const href = `//${host}:${api.port}/api/ui/`;
  return `<a href="${escapeHtml(href)}">targets API documentation</a> (<code>${escapeHtml(href)}</code>)`;
}

function landingPage(req: Request, control: DaemonControl | null): string {
  const api = control?.apiListener() ?? null;
  const items = [
    `<li><a href="metrics">metrics</a>: the Prometheus exposition</li>`,
    ...(control
      ? [
          `<li><a href="-/healthy">-/healthy</a>: 200 while the probing loop runs</li>`,
          `<li><a href="-/ready">-/ready</a>: 200 once the first iteration's results are published</li>`,
          `<li><code>POST /-/reload</code>: re-reads the configuration, as SIGHUP does</li>`,
        ]
      : []),
    ...(api ? [`<li>${apiDocsLink(api, req)}</li>`] : []),
  ];
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>netprobify</title></head>
<body>
<h1>netprobify</h1>
<p>The network prober, version ${escapeHtml(VERSION)}.</p>
<ul>
${items.join("\n")}
</ul>
</body>
</html>
`;
}

/** GET or HEAD /metrics: the exposition, gzip-encoded when the scraper accepts it. */
async function metricsResponse(req: Request, metrics: MetricsSource): Promise<Response> {
  const { head, body } = await metrics.expositionParts();
  const headers: Record<string, string> = { "Content-Type": metrics.contentType, Vary: "Accept-Encoding" };
  if (!acceptsGzip(req.headers.get("accept-encoding"))) return new Response(piecesStream([head, body]), { headers });
  headers["Content-Encoding"] = "gzip";
  // HEAD: the headers a GET would get, without compressing anything.
  if (req.method === "HEAD") return new Response(null, { headers });
  return new Response(piecesStream(await gzipParts(head, body)), { headers });
}

async function reloadResponse(control: DaemonControl): Promise<Response> {
  log.info("reload requested over HTTP (POST /-/reload)");
  const outcome = await control.reload();
  const body = outcome.lines.map((l) => `${l}\n`).join("");
  return text(outcome.ok ? 200 : 500, body);
}

/**
 * The listener's routes: `/` (a landing page), `/metrics`, and with `control` the daemon's
 * `/-/healthy`, `/-/ready` and `POST /-/reload`. /metrics and /-/reload are behind {@link denied};
 * the landing page and the health checks are not (load balancers and orchestrators probe them).
 */
export function makeHandler(
  metrics: MetricsSource,
  creds: Credentials | null,
  control: DaemonControl | null = null,
): (req: Request) => Promise<Response> {
  const route = async (req: Request): Promise<Response> => {
    const url = requestUrl(req);
    if (!url) return badRequest(BAD_HOST);
    const path = url.pathname;
    const methods = ROUTES.get(path);
    if (!methods || (!control && path.startsWith("/-/"))) return text(404, "not found\n");
    if (!methods.includes(req.method)) return text(405, "method not allowed\n", { Allow: methods.join(", ") });
    switch (path) {
      case "/":
        return new Response(landingPage(req, control), { headers: { "Content-Type": "text/html; charset=utf-8" } });
      case "/metrics":
        return denied(req, creds) ?? (await metricsResponse(req, metrics));
      case "/-/healthy": {
        const why = control!.unhealthy();
        return why === null ? text(200, "healthy\n") : text(503, `unhealthy: ${why}\n`);
      }
      case "/-/ready": {
        const why = control!.notReady();
        return why === null ? text(200, "ready\n") : text(503, `not ready: ${why}\n`);
      }
      default:
        return denied(req, creds) ?? (await reloadResponse(control!));
    }
  };
  return async (req) => {
    try {
      return await route(req);
    } catch (e) {
      // Our fault, not the client's: one line in the log, nothing of it in the answer.
      log.error("metrics request failed", { method: req.method, error: describeError(e) });
      return internalError();
    }
  };
}

export interface MetricsServerOptions {
  hostname: string;
  port: number;
  /** {@link makeHandler}'s handler. */
  fetch: (req: Request) => Promise<Response>;
  /** TLS and HTTP/2 from the web config (src/web/listener.ts); none: plain HTTP/1.1. */
  transport?: Transport;
}

/**
 * The metrics listener: production mode and the last-resort error handler (never Bun's
 * development error page, never a stack on stderr), then `fetch`. Throws what Bun.serve throws
 * (port taken).
 */
export function serveMetrics(o: MetricsServerOptions): Server<undefined> {
  return Bun.serve({
    ...productionServeOptions((message) => log.error(message)),
    ...o.transport,
    hostname: o.hostname,
    port: o.port,
    fetch: o.fetch,
  });
}
