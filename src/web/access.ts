/**
 * Who may use the metrics listener and what its answers carry, from the web config: HTTP Basic
 * auth against bcrypt hashes (basic_auth_users), a token-bucket rate limit (rate_limit) and the
 * extra response headers (http_server_config.headers), wrapped around a request handler.
 *
 * bcrypt at cost 10 is about 70 ms of CPU, so each (user, hash, password) verdict is cached, as
 * exporter-toolkit does, and hashes are checked one at a time: a flood of wrong passwords costs
 * one core at most, never the probing threads' CPU. An unknown user is checked against a fixed
 * hash of the same cost, so the time taken does not tell which users exist.
 */
import { createHash } from "node:crypto";

export interface RateLimit {
  /** One request's worth of tokens comes back every intervalMs. */
  readonly intervalMs: number;
  /** Requests allowed at once (the bucket's size, full at start). */
  readonly burst: number;
}

export interface AccessSettings {
  /** User name to bcrypt hash; null: no authentication from the web config. */
  readonly users: ReadonlyMap<string, string> | null;
  /** Added to every answer. */
  readonly headers: readonly (readonly [string, string])[];
  readonly rateLimit: RateLimit | null;
}

export const NO_ACCESS_RULES: AccessSettings = { users: null, headers: [], rateLimit: null };

/** A bcrypt hash (cost 10) of a random password nobody knows: what an unknown user is checked against. */
export const UNKNOWN_USER_HASH = "$2y$10$ZnMa9i4CyXo5yJ0D1TnFq.sYZRaS5fPyBFjsOxqhF2mzGzphc4o8S";
/** Verdicts kept; the oldest goes first. */
const CACHE_ENTRIES = 256;
/** Hash checks waiting at once beyond which a request is answered 429 instead of queued. */
const MAX_WAITING_CHECKS = 64;

const TEXT = { "content-type": "text/plain; charset=utf-8" } as const;

export function unauthorized(): Response {
  return new Response("authentication required\n", {
    status: 401,
    headers: { ...TEXT, "WWW-Authenticate": 'Basic realm="netprobify"' },
  });
}

export function tooManyRequests(): Response {
  return new Response("too many requests\n", { status: 429, headers: TEXT });
}

/** The user and password of a Basic Authorization header (RFC 7617: split at the first colon). */
export function basicCredentials(header: string | null): { user: string; password: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header ?? "");
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Test seams; the defaults are what the daemon runs with. */
export interface AccessOptions {
  /** A monotonic clock in ms, for the rate limit. */
  now?: () => number;
  /** Checks a password against a bcrypt hash. */
  verify?: (password: string, hash: string) => Promise<boolean>;
}

export class Access {
  readonly #settings: AccessSettings;
  readonly #now: () => number;
  readonly #verify: (password: string, hash: string) => Promise<boolean>;
  readonly #cache = new Map<string, boolean>();
  #checks: Promise<unknown> = Promise.resolve();
  #waiting = 0;
  #tokens: number;
  #refilledAt: number;

  constructor(settings: AccessSettings, options: AccessOptions = {}) {
    this.#settings = settings;
    this.#now = options.now ?? (() => performance.now());
    this.#verify = options.verify ?? ((password, hash) => Bun.password.verify(password, hash));
    this.#tokens = settings.rateLimit?.burst ?? 0;
    this.#refilledAt = this.#now();
  }

  get authenticates(): boolean {
    return this.#settings.users !== null;
  }

  /** `handler` behind the rate limit and the users, its answers with the headers. */
  wrap(handler: (request: Request) => Promise<Response>): (request: Request) => Promise<Response> {
    return async (request) => this.#withHeaders(await this.#admit(request, handler));
  }

  async #admit(request: Request, handler: (request: Request) => Promise<Response>): Promise<Response> {
    if (!this.#take()) return tooManyRequests();
    const users = this.#settings.users;
    if (users) {
      const verdict = await this.#check(users, basicCredentials(request.headers.get("authorization")));
      if (verdict === "busy") return tooManyRequests();
      if (!verdict) return unauthorized();
    }
    return handler(request);
  }

  /** Takes a token from the bucket; false when it is empty. */
  #take(): boolean {
    const limit = this.#settings.rateLimit;
    if (!limit) return true;
    const now = this.#now();
    this.#tokens = Math.min(limit.burst, this.#tokens + (now - this.#refilledAt) / limit.intervalMs);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  async #check(users: ReadonlyMap<string, string>, given: { user: string; password: string } | null): Promise<boolean | "busy"> {
    if (!given) return false;
    const hash = users.get(given.user);
    const key = createHash("sha256")
      .update(`${given.user.length}:${given.user}\0${hash ?? ""}\0${given.password}`)
      .digest("base64");
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached;
    if (this.#waiting >= MAX_WAITING_CHECKS) return "busy";
    this.#waiting++;
    const check = this.#checks.then(() => this.#verify(given.password, hash ?? UNKNOWN_USER_HASH).catch(() => false));
    this.#checks = check;
    let ok: boolean;
    try {
      ok = (await check) && hash !== undefined;
    } finally {
      this.#waiting--;
    }
    if (this.#cache.size >= CACHE_ENTRIES) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(key, ok);
    return ok;
  }

  #withHeaders(response: Response): Response {
    const headers = this.#settings.headers;
    if (headers.length === 0) return response;
    try {
      for (const [name, value] of headers) response.headers.set(name, value);
      return response;
    } catch {
      // An answer with immutable headers (not one of ours so far): a copy carries them.
      const copy = new Headers(response.headers);
      for (const [name, value] of headers) copy.set(name, value);
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers: copy });
    }
  }
}
