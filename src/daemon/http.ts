/**
 * The HTTP side: GET /metrics (with HTTP Basic auth when PROM_USER and PROM_PASSWORD are both
 * set) and a small index. Handlers take a Request and return a Response, so tests need no socket;
 * {@link serveMetrics} binds them to Bun.serve the one way the daemon and the tests do.
 */
import type { Server } from "bun";
import { createHash, timingSafeEqual } from "node:crypto";
import { BAD_HOST, badRequest, internalError, productionServeOptions, requestUrl } from "../http-server.ts";
import { describeError } from "../inventory/runner.ts";
import { logger } from "../log.ts";
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
 * A body that writes the head, then the body's bytes straight from the caller's array in
 * chunks, waiting for the socket to drain: no scrape copies the 14 MB of 10,000 targets into a
 * new Blob (a Blob of two parts is a fresh concatenation per scrape, about 100 MB of garbage at
 * 20 scrapes a second).
 */
function partsStream(head: string, body: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    type: "direct",
    async pull(c) {
      if ((await c.write(head)) === 0 && head.length > 0) return c.close(); // client gone
      for (let o = 0; o < body.length; o += BODY_CHUNK) {
        if ((await c.write(body.subarray(o, o + BODY_CHUNK))) === 0) break;
      }
      c.close();
    },
  });
}

/** Both paths serve GET, and HEAD (the same headers, no body: Bun then never pulls the stream). */
const ALLOWED = "GET, HEAD";

function methodNotAllowed(): Response {
  return new Response("method not allowed\n", { status: 405, headers: { Allow: ALLOWED } });
}

export function makeHandler(metrics: MetricsSource, creds: Credentials | null): (req: Request) => Promise<Response> {
  const route = async (req: Request): Promise<Response> => {
    const url = requestUrl(req);
    if (!url) return badRequest(BAD_HOST);
    if (url.pathname !== "/metrics" && url.pathname !== "/") return new Response("not found\n", { status: 404 });
    if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed();
    if (url.pathname === "/") {
      return new Response("netprobify: metrics at /metrics\n", { headers: { "Content-Type": "text/plain" } });
    }
    if (creds && !authorized(req.headers.get("authorization"), creds)) {
      return new Response("authentication required\n", {
        status: 401,
        headers: { "WWW-Authenticate": 'Basic realm="netprobify"' },
      });
    }
    const { head, body } = await metrics.expositionParts();
    return new Response(partsStream(head, body), { headers: { "Content-Type": metrics.contentType } });
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
