/**
 * The `http` built-in inventory, in the spirit of Prometheus http_sd: polls a URL answering a
 * JSON list of targets (InventoryListSchema) and publishes it.
 *
 * - The first poll runs at once, the next ones every refresh_interval seconds (counted from the
 *   start of the previous poll); each poll, body included, is bounded by `timeout` seconds.
 * - Sent: `Accept: application/json`, `User-Agent: netprobify/<version>`, and
 *   `Authorization: Bearer <token>` from bearer_token or bearer_token_file (read at every poll, so
 *   a rotated token is picked up; trimmed; relative to the config's directory).
 * - Expected: 200 with a JSON list of at most MAX_INVENTORY_TARGETS targets, at most 16 MiB.
 *   Redirects are followed (at most 5) only to the same scheme, and the token is not sent to
 *   another origin.
 * - Any failure (connection, timeout, status, size, JSON, schema) is reported through
 *   context.reportError at every poll it happens and the last good list stays in use: nothing is
 *   published. A list is published only when it differs from the one last published.
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { formatProblem, validateValue } from "../config/validate.ts";
import { InventoryListSchema } from "../config/schema.ts";
import { VERSION } from "../version.ts";
import type { InventoryStart } from "./contract.ts";
import { describeError } from "./runner.ts";
import { abortableSleep } from "../daemon/timers.ts";

/** Largest body read; a bigger one is a failed poll. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Redirects followed in one poll. */
const MAX_REDIRECTS = 5;
/** Schema problems named in one report; the rest are counted. */
const MAX_REPORTED_PROBLEMS = 3;

export const USER_AGENT = `netprobify/${VERSION} (http inventory)`;

/** The options, as the prober's schema (HttpInventoryConfig) guarantees them. */
interface HttpOptions {
  readonly url: string;
  readonly refreshMs: number;
  readonly timeoutMs: number;
  readonly bearerToken: string | undefined;
  /** Absolute. */
  readonly bearerTokenFile: string | undefined;
}

export const start: InventoryStart = async (_name, options, publish, context) => {
  const opts = readOptions(options, context.baseDir);
  const where = displayUrl(opts.url);
  let lastPublished: string | undefined;
  let failing = false;
  while (!context.signal.aborted) {
    const began = performance.now();
    const result = await poll(opts, context.signal);
    if (context.signal.aborted) break;
    if (result.ok) {
      if (failing) context.log("INFO", "the source answers a valid list again", { url: where });
      failing = false;
      const text = JSON.stringify(result.targets);
      if (text !== lastPublished) {
        lastPublished = text;
        context.log("INFO", "publishing targets", { url: where, targets: result.targets.length });
        publish(result.targets);
      }
    } else {
      failing = true;
      context.reportError(`${where}: ${result.problem}; keeping the last good list`, { url: where });
    }
    await abortableSleep(Math.max(0, opts.refreshMs - (performance.now() - began)), context.signal);
  }
};

type PollResult = { ok: true; targets: readonly unknown[] } | { ok: false; problem: string };

/** One poll: the validated list, or one line saying what went wrong. */
async function poll(opts: HttpOptions, stop: AbortSignal): Promise<PollResult> {
  const token = await bearerToken(opts);
  if (!token.ok) return token;

  // One deadline for the whole poll, body included; a timer of our own so that none is left behind.
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new TimeoutError()), opts.timeoutMs);
  const onStop = () => deadline.abort(stop.reason);
  stop.addEventListener("abort", onStop, { once: true });
  try {
    const response = await fetchFollowing(opts.url, token.value, deadline.signal);
    if (!response.ok) return response;
    const body = await readBody(response.value);
    if (!body.ok) return body;
    let data: unknown;
    try {
      data = JSON.parse(body.value);
    } catch (e) {
      const type = response.value.headers.get("content-type") ?? "none";
      return { ok: false, problem: `the answer is not JSON (content-type ${type}): ${describe(e)}` };
    }
    const checked = validateValue(InventoryListSchema, data);
    if (!checked.ok) {
      const shown = checked.problems.slice(0, MAX_REPORTED_PROBLEMS).map(formatProblem).join("; ");
      const more = checked.problems.length - MAX_REPORTED_PROBLEMS;
      return { ok: false, problem: `the list is invalid: ${shown}${more > 0 ? `; and ${more} more problems` : ""}` };
    }
    // The raw data: the prober validates it again and fills the defaults itself.
    return { ok: true, targets: data as readonly unknown[] };
  } catch (e) {
    if (deadline.signal.reason instanceof TimeoutError) {
      return { ok: false, problem: `no complete answer within ${opts.timeoutMs / 1000} s` };
    }
    return { ok: false, problem: describe(e) };
  } finally {
    clearTimeout(timer);
    stop.removeEventListener("abort", onStop);
  }
}

class TimeoutError extends Error {
  constructor() {
    super("timeout");
  }
}

/**
 * GET with redirects followed by hand: only to the same scheme (no https to http downgrade, no
 * surprise upgrade either), at most MAX_REDIRECTS, and the token only to the original origin.
 */
async function fetchFollowing(
  url: string,
  token: string | undefined,
  signal: AbortSignal,
): Promise<{ ok: true; value: Response } | { ok: false; problem: string }> {
  const origin = new URL(url);
  let current = origin;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { Accept: "application/json", "User-Agent": USER_AGENT };
    if (token !== undefined && current.origin === origin.origin) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(current, { headers, signal, redirect: "manual" });
    if (response.status === 200) return { ok: true, value: response };
    const location = response.headers.get("location");
    await response.body?.cancel().catch(() => undefined);
    if (![301, 302, 303, 307, 308].includes(response.status) || location === null) {
      return { ok: false, problem: `HTTP status ${response.status}${response.statusText ? ` ${response.statusText}` : ""}, not 200` };
    }
    if (hop >= MAX_REDIRECTS) return { ok: false, problem: `more than ${MAX_REDIRECTS} redirects` };
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      return { ok: false, problem: `HTTP status ${response.status} redirects to an invalid URL` };
    }
    if (next.protocol !== current.protocol) {
      return { ok: false, problem: `HTTP status ${response.status} redirects to ${next.protocol} from ${current.protocol}; not followed` };
    }
    current = next;
  }
}

/** The body as text, refused past MAX_BODY_BYTES whatever Content-Length says. */
async function readBody(response: Response): Promise<{ ok: true; value: string } | { ok: false; problem: string }> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > MAX_BODY_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    return { ok: false, problem: `the answer is ${declared} bytes, over the limit of ${MAX_BODY_BYTES} bytes` };
  }
  const bytes = await readLimited(response.body, MAX_BODY_BYTES);
  if (bytes === undefined) return { ok: false, problem: `the answer is over the limit of ${MAX_BODY_BYTES} bytes` };
  try {
    return { ok: true, value: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return { ok: false, problem: "the answer is not UTF-8 text" };
  }
}

/**
 * A body stream read whole, or undefined once it streams past `limit` bytes (and cancelled);
 * a read error is thrown. The targets API (api.ts) reads request bodies with it too.
 */
export async function readLimited(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Buffer | undefined> {
  if (!body) return Buffer.alloc(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks, size);
    size += value.byteLength;
    if (size > limit) {
      // The other side may be gone already: the outcome is the same.
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
}

/** The token to send: bearer_token, or bearer_token_file read now and trimmed; none without either. */
async function bearerToken(opts: HttpOptions): Promise<{ ok: true; value: string | undefined } | { ok: false; problem: string }> {
  let token = opts.bearerToken;
  if (opts.bearerTokenFile !== undefined) {
    try {
      token = (await readFile(opts.bearerTokenFile, "utf8")).trim();
    } catch (e) {
      return { ok: false, problem: `cannot read bearer_token_file ${opts.bearerTokenFile}: ${describe(e)}` };
    }
    if (token === "") return { ok: false, problem: `bearer_token_file ${opts.bearerTokenFile} is empty` };
  }
  // A header cannot hold line breaks or other control characters; say so without echoing the token.
  if (token !== undefined && /[\u0000-\u001f\u007f]/.test(token)) {
    return { ok: false, problem: "the bearer token holds control characters" };
  }
  return { ok: true, value: token };
}

function readOptions(options: Readonly<Record<string, unknown>>, baseDir: string): HttpOptions {
  const { url, refresh_interval, timeout, bearer_token, bearer_token_file } = options;
  if (typeof url !== "string" || !URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    throw new Error("the http inventory needs a url option (an http:// or https:// URL)");
  }
  const seconds = (value: unknown, fallback: number, field: string) => {
    if (value === undefined) return fallback * 1000;
    if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) throw new Error(`the http inventory's ${field} must be a positive number`);
    return value * 1000;
  };
  const text = (value: unknown, field: string) => {
    if (value === undefined) return undefined;
    if (typeof value !== "string" || value === "") throw new Error(`the http inventory's ${field} must be a non-empty string`);
    return value;
  };
  const tokenFile = text(bearer_token_file, "bearer_token_file");
  return {
    url,
    refreshMs: seconds(refresh_interval, 60, "refresh_interval"),
    timeoutMs: seconds(timeout, 10, "timeout"),
    bearerToken: text(bearer_token, "bearer_token")?.trim(),
    bearerTokenFile: tokenFile === undefined ? undefined : resolve(baseDir, tokenFile),
  };
}

/** The URL as logged: without user and password. */
function displayUrl(url: string): string {
  const u = new URL(url);
  u.username = "";
  u.password = "";
  return u.href;
}


function describe(e: unknown): string {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ConnectionRefused" || code === "ECONNREFUSED") return "connection refused";
  return describeError(e);
}
