/**
 * The `api` dynamic inventory: an HTTP API through which people add targets for a while (an
 * engineer who wants a host probed for the next two hours), as the original's
 * dynamic_inventories/api.py did, with its gaps closed:
 *
 * - api.yaml is validated like netprobify.yaml (valibot, unknown fields rejected, FILE:LINE:COL);
 * - every bad request is a 4xx whose JSON body names the field at fault, worded as config
 *   errors are; the original answered 500 to an unresolvable hostname and to a DELETE without
 *   every key, and ignored the lifetime a client asked for;
 * - the apikey is compared in constant time, and bodies are capped at {@link MAX_BODY_BYTES};
 * - targets survive a restart: a JSON state file, written atomically after every change;
 * - the OpenAPI document and the interactive page are served from the binary, nothing from a CDN.
 *
 * This module is the HTTP side: the routes, the store and the expiry run in {@link createApi},
 * which takes its clock, resolver, state path and publish function as arguments so tests need
 * neither a socket nor DNS; {@link serveApi} binds it to Bun.serve and {@link start} runs both.
 * api.yaml lives in api-config.ts, the targets and the request bodies' schemas in api-targets.ts,
 * the state file in api-state.ts.
 */
import type { Server } from "bun";
import crypto from "node:crypto";
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { resolve } from "node:path";
import { toJsonSchema, type SchemaNode } from "../config/describe.ts";
import { formatProblem, validateValue, type ValueProblem } from "../config/validate.ts";
import { ADDRESS_FAMILIES, InventoryTargetSchema, lifetimeSeconds, type AddressFamily } from "../config/schema.ts";
import { BAD_HOST, productionServeOptions, requestUrl } from "../http-server.ts";
import { HttpListener } from "../web/listener.ts";
import type { ListenerSettings, Transport } from "../web/tls.ts";
import type { LevelName, LogFields } from "../log.ts";
import { VERSION } from "../version.ts";
import { ApiConfigSchema, LIFETIME_EXPECTED, type ApiConfig } from "./api-config.ts";
import { openApiDocument } from "./api-docs.ts";
import { loadState, stateFileText, writeFileAtomic } from "./api-state.ts";
import {
  expiryMs,
  identity,
  logFields,
  matchesKeys,
  targetRequestSchema,
  TargetKeysSchema,
  type ApiTarget,
  type ApiTargetView,
} from "./api-targets.ts";
import uiPage from "./api-ui.html" with { type: "text" };
import type { InventoryStart, Publish } from "./contract.ts";
import { readLimited } from "./http.ts";
import { describeError } from "./runner.ts";

// --- limits ---

/** Largest request body read: a target is a few hundred bytes; 16 KiB leaves room and bounds memory. */
export const MAX_BODY_BYTES = 16 * 1024;
/**
 * Bun.serve's own cap, far above ours: bodies up to it get our JSON 413 (from Content-Length or
 * the streamed count), larger ones Bun's bare 413 before they reach us.
 */
const SERVER_BODY_BACKSTOP_BYTES = 1024 * 1024;
/** A resolver that hangs must not hold a request forever. */
const LOOKUP_TIMEOUT_MS = 5_000;
/** The expiry timer is re-armed at least this often: setTimeout cannot wait 30 days (2^31 ms). */
const MAX_TIMER_MS = 3_600_000;

// --- the API ---

/** Whether `hostname` resolves in `family`; the first address, or undefined. */
export type Lookup = (hostname: string, family: AddressFamily) => Promise<string | undefined>;

/**
 * The system resolver, bounded by {@link LOOKUP_TIMEOUT_MS}. IP literals and localhost are
 * answered without asking it.
 */
export const systemLookup: Lookup = async (hostname, family) => {
  const version = isIP(hostname);
  if (version !== 0) return (version === 4) === (family === "ipv4") ? hostname : undefined;
  if (hostname.toLowerCase() === "localhost") return family === "ipv4" ? "127.0.0.1" : "::1";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${LOOKUP_TIMEOUT_MS} ms`)), LOOKUP_TIMEOUT_MS);
  });
  try {
    const found = await Promise.race([dnsLookup(hostname, { family: family === "ipv4" ? 4 : 6 }), timeout]);
    return found.address;
  } finally {
    clearTimeout(timer);
  }
};

export interface ApiDeps {
  /** Hands the inventory's whole list to the prober. */
  readonly publish: Publish;
  /** Absolute path of the state file. */
  readonly statePath: string;
  /** A failure recovered from (state file unreadable or unwritable): counted by the prober. */
  readonly reportError: (message: string, fields?: LogFields) => void;
  readonly log?: (level: LevelName, message: string, fields?: LogFields) => void;
  /** Default {@link systemLookup}. */
  readonly lookup?: Lookup;
  /** ms since the epoch. Default Date.now. */
  readonly now?: () => number;
  /** The inventory's name, for the targets' description "from_<name>, owner <owner>". Default api. */
  readonly name?: string;
}

export interface Api {
  /** Answers one request; never throws, never answers 5xx to bad input. */
  fetch(request: Request): Promise<Response>;
  /** The targets held now, as GET shows them. */
  targets(): ApiTargetView[];
  /** The list last published. */
  published(): readonly unknown[];
  /** Drops expired targets (also done by a timer and before every request). */
  sweep(): void;
  /** Stops the timer and waits for the last state file write. */
  close(): Promise<void>;
}

const COMMON_HEADERS = { "x-content-type-options": "nosniff", "cache-control": "no-store" } as const;

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...COMMON_HEADERS, ...headers },
  });
}

/** An error answer: `error` says it all; `field` and `expected` are there for programs. */
function fail(
  status: number,
  error: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  // The original answered with an x-error header; keep it for clients that read it. Header values
  // are bytes: anything but printable ASCII (an echoed hostname, say) becomes "?".
  const header = error.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
  return json(status, { error, ...extra }, { "x-error": header, ...headers });
}

function invalid(problems: readonly ValueProblem[], status = 400): Response {
  const first = problems[0] ?? { path: "", message: "the body is not valid", expected: "" };
  const extra: Record<string, unknown> = {};
  // A missing field is reported at the map that lacks it (path ""), as in config files.
  const field = first.path || first.missing;
  if (field) extra.field = field;
  if (first.expected) extra.expected = first.expected;
  extra.problems = problems.map((p) => ({ field: p.path, message: p.message, expected: p.expected }));
  return fail(status, formatProblem(first), extra);
}

type BodyResult = { ok: true; value: unknown } | { ok: false; response: Response };

/** Reads at most {@link MAX_BODY_BYTES} of the body, whatever the client declares or streams. */
async function readJsonBody(request: Request): Promise<BodyResult> {
  const tooLarge = () => ({
    ok: false as const,
    response: fail(413, `the body is larger than ${MAX_BODY_BYTES} bytes`, { limit: MAX_BODY_BYTES }),
  });
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared.trim()) > MAX_BODY_BYTES) return tooLarge();
  let bytes: Buffer | undefined;
  try {
    bytes = await readLimited(request.body, MAX_BODY_BYTES);
  } catch (error) {
    return { ok: false, response: fail(400, `the body could not be read: ${describeError(error)}`) };
  }
  if (bytes === undefined) return tooLarge();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, response: fail(400, "the body is not UTF-8 text", { expected: "a JSON object" }) };
  }
  if (text.trim() === "") return { ok: false, response: fail(400, "the body is empty", { expected: "a JSON object" }) };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, response: fail(400, `the body is not valid JSON: ${describeError(error)}`, { expected: "a JSON object" }) };
  }
}

/** GET /api/targets query parameters; an empty value filters nothing, as in the original. */
const QUERY_FILTERS = ["hostname", "owner", "address_family"] as const;
type QueryFilter = (typeof QUERY_FILTERS)[number];

type Handler = (request: Request, url: URL) => Promise<Response> | Response;

/**
 * The API over a config and its dependencies: loads the state file, publishes once, and answers
 * requests through `fetch`.
 */
export async function createApi(config: ApiConfig, deps: ApiDeps): Promise<Api> {
  const now = deps.now ?? Date.now;
  const lookup = deps.lookup ?? systemLookup;
  const log = deps.log ?? (() => undefined);
  const name = deps.name ?? "api";
  const tokenDigest = digest(config.token);
  const postSchema = targetRequestSchema(config);

  let targets: ApiTarget[] = [];
  let lastPublished: readonly unknown[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let writing: Promise<void> = Promise.resolve();
  let closed = false;

  const groupsOf = (t: ApiTarget) => t.groups ?? config.groups;
  const view = (t: ApiTarget): ApiTargetView => ({
    owner: t.owner,
    hostname: t.hostname,
    type: t.type,
    dst_port: t.dst_port,
    ip_payload_size: t.ip_payload_size,
    address_family: t.address_family,
    groups: [...groupsOf(t)],
    creation_date: new Date(t.created).toISOString(),
    lifetime: t.lifetime,
    expiry_date: new Date(expiryMs(t)).toISOString(),
  });

  /** What the prober receives: the fields InventoryTargetSchema knows, nothing of the API's own. */
  const published = (t: ApiTarget): Record<string, unknown> => ({
    hostname: t.hostname,
    type: t.type,
    ...(t.type === "ICMPping" ? {} : { dst_port: t.dst_port }),
    ...(t.ip_payload_size === 0 ? {} : { ip_payload_size: t.ip_payload_size }),
    address_family: t.address_family,
    groups: [...groupsOf(t)],
    nb_packets: config.nb_packets,
    // The original's API targets were labelled state="in production": dashboards may match it.
    state: "in production",
    description: `from_${name}, owner ${t.owner}`,
    creation_date: new Date(t.created).toISOString(),
    lifetime: t.lifetime,
  });

  const publishAll = () => {
    lastPublished = targets.map(published);
    deps.publish(lastPublished);
  };

  /** Queues a write of the list as it is now; resolves to an error text when it failed. */
  const persist = (): Promise<string | undefined> => {
    const snapshot = stateFileText(
      targets.map((t) => ({ ...view(t), groups_chosen: t.groups !== undefined })),
      now(),
    );
    const done = writing.then(() => writeFileAtomic(deps.statePath, snapshot));
    writing = done.catch(() => undefined);
    return done.then(
      () => undefined,
      (error: unknown) => {
        const message = `cannot write the state file: ${describeError(error)}`;
        deps.reportError(message, { state_file: deps.statePath });
        return message;
      },
    );
  };

  const arm = () => {
    clearTimeout(timer);
    timer = undefined;
    if (closed || targets.length === 0) return;
    // A loop, not Math.min(...list): a spread of 100,000 arguments can overflow the stack.
    let next = Infinity;
    for (const t of targets) next = Math.min(next, expiryMs(t));
    const delay = Math.max(0, Math.min(next - now(), MAX_TIMER_MS));
    timer = setTimeout(() => {
      timer = undefined;
      sweep();
    }, delay);
    timer.unref?.();
  };

  /** The targets changed: tell the prober, save them, and set the timer for the next expiry. */
  const changed = (): Promise<string | undefined> => {
    publishAll();
    arm();
    return persist();
  };

  function sweep(): void {
    const at = now();
    const alive = (t: ApiTarget) => expiryMs(t) > at;
    if (targets.every(alive)) {
      // Every request sweeps: the timer armed at the last change stands unless it is the one that fired.
      if (timer === undefined) arm();
      return;
    }
    const expired = targets.filter((t) => !alive(t));
    targets = targets.filter(alive);
    for (const t of expired) log("INFO", "API target expired", logFields(t));
    void changed();
  }

  // --- start: the state file, then one publish ---

  const loaded = await loadState(deps.statePath, config, now(), deps.reportError, log);
  targets = loaded.targets;
  publishAll();
  arm();
  if (loaded.rewrite) await persist();

  // --- routes ---

  const authorized = (request: Request): Response | undefined => {
    const given = request.headers.get("apikey");
    if (given === null) return fail(401, "the apikey header is missing", { field: "apikey" });
    if (given === "") return fail(401, "the apikey header is empty", { field: "apikey" });
    // Digests of equal length make timingSafeEqual applicable whatever the given length, and
    // the time taken says nothing about how much of the token matched.
    if (!crypto.timingSafeEqual(digest(given), tokenDigest)) return fail(401, "wrong apikey", { field: "apikey" });
    return undefined;
  };

  const getTargets: Handler = (_request, url) => {
    const filters: Partial<Record<QueryFilter, string>> = {};
    for (const key of new Set(url.searchParams.keys())) {
      if (!(QUERY_FILTERS as readonly string[]).includes(key)) {
        return fail(400, `${key}: unknown query parameter`, { field: key, expected: `one of ${QUERY_FILTERS.join(", ")}` });
      }
      const values = url.searchParams.getAll(key);
      if (values.length > 1) return fail(400, `${key}: given ${values.length} times`, { field: key, expected: "one value" });
      filters[key as QueryFilter] = values[0] ?? "";
    }
    const family = filters.address_family;
    if (family && !(ADDRESS_FAMILIES as readonly string[]).includes(family)) {
      return fail(400, `address_family: ${JSON.stringify(family)} is not allowed (ipv4 or ipv6)`, {
        field: "address_family",
        expected: "ipv4 or ipv6",
      });
    }
    const host = filters.hostname?.toLowerCase();
    const list = targets.filter(
      (t) =>
        (!host || t.hostname.toLowerCase() === host) &&
        (!filters.owner || t.owner === filters.owner) &&
        (!family || t.address_family === family),
    );
    return json(200, list.map(view));
  };

  const postTarget: Handler = async (request) => {
    const body = await readJsonBody(request);
    if (!body.ok) return body.response;
    const checked = validateValue(postSchema, body.value);
    if (!checked.ok) return invalid(checked.problems);
    const asked = checked.value;
    const wanted = lifetimeSeconds(asked.lifetime) ?? config.target_lifetime;
    const lifetime = Math.min(wanted, config.max_target_lifetime);
    const candidate: ApiTarget = {
      owner: asked.owner,
      hostname: asked.hostname,
      type: asked.type,
      dst_port: asked.dst_port,
      ip_payload_size: asked.ip_payload_size,
      address_family: asked.address_family,
      ...(asked.groups ? { groups: [...new Set(asked.groups)] } : {}),
      created: now(),
      lifetime,
    };
    // A last check that the prober will take it: nothing the API accepts may be refused there.
    const fit = validateValue(InventoryTargetSchema, published(candidate));
    if (!fit.ok) return invalid(fit.problems);

    const refused = conflict(candidate);
    if (refused) return refused;
    let address: string | undefined;
    let why = "";
    try {
      address = await lookup(candidate.hostname, candidate.address_family);
    } catch (error) {
      why = `: ${describeError(error)}`;
    }
    if (address === undefined) {
      const family = candidate.address_family;
      return fail(422, `hostname: ${JSON.stringify(candidate.hostname)} does not resolve to an ${family} address${why}`, {
        field: "hostname",
        expected: `a name with an ${family} address, or address_family set to the family it has`,
      });
    }
    // The lookup let other requests in: what was free may be taken now.
    sweep();
    const late = conflict(candidate);
    if (late) return late;

    const target: ApiTarget = { ...candidate, created: now() };
    targets = [...targets, target];
    log("INFO", "API target added", logFields(target));
    const warnings: string[] = [];
    if (wanted > lifetime) warnings.push(`lifetime cut from ${wanted} s to max_target_lifetime, ${lifetime} s`);
    const unsaved = await changed();
    if (unsaved) warnings.push(`${unsaved}; the target is probed but will not survive a restart`);
    return json(201, { ...view(target), ...(warnings.length > 0 ? { warnings } : {}) });
  };

  const deleteTarget: Handler = async (request) => {
    const body = await readJsonBody(request);
    if (!body.ok) return body.response;
    const checked = validateValue(TargetKeysSchema, body.value);
    if (!checked.ok) return invalid(checked.problems);
    const keys = checked.value;
    const gone = targets.filter((t) => matchesKeys(t, keys));
    if (gone.length === 0) return fail(404, "no target matches", { expected: "the keys of a target GET /api/targets lists" });
    targets = targets.filter((t) => !matchesKeys(t, keys));
    for (const t of gone) log("INFO", "API target deleted", logFields(t));
    const unsaved = await changed();
    return json(200, { deleted: gone.map(view), ...(unsaved ? { warnings: [unsaved] } : {}) });
  };

  let openApiText: string | undefined;
  const openApi: Handler = () => {
    openApiText ??= JSON.stringify(
      openApiDocument({
        version: VERSION,
        targetRequest: toJsonSchema(postSchema as SchemaNode),
        targetKeys: toJsonSchema(TargetKeysSchema as SchemaNode),
        lifetimeExpected: LIFETIME_EXPECTED,
        maxBodyBytes: MAX_BODY_BYTES,
      }),
      null,
      2,
    );
    return new Response(openApiText, { headers: { "content-type": "application/json; charset=utf-8", ...COMMON_HEADERS } });
  };

  const ui: Handler = () =>
    new Response(UI_PAGE, {
      headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": UI_CSP, ...COMMON_HEADERS },
    });

  // Relative, so that the page works behind a proxy that mounts the API under a prefix.
  const toUi: Handler = () => new Response(null, { status: 308, headers: { location: "ui/", ...COMMON_HEADERS } });

  const ROUTES: Record<string, { readonly auth: boolean; readonly methods: Readonly<Record<string, Handler>> }> = {
    "/api/targets": { auth: true, methods: { GET: getTargets } },
    "/api/target": { auth: true, methods: { POST: postTarget, DELETE: deleteTarget } },
    "/api/openapi.json": { auth: false, methods: { GET: openApi } },
    "/api/ui/": { auth: false, methods: { GET: ui } },
    "/api/ui": { auth: false, methods: { GET: toUi } },
  };

  function conflict(candidate: ApiTarget): Response | undefined {
    const key = identity(candidate);
    const existing = targets.find((t) => identity(t) === key);
    if (existing) {
      return fail(409, "the target already exists", {
        field: "hostname",
        expected: "a target differing in hostname, address_family, type, dst_port or ip_payload_size",
        target: view(existing),
      });
    }
    if (targets.length >= config.max_targets) {
      return fail(409, `the API already holds max_targets (${config.max_targets}) targets`, {
        expected: "DELETE a target, or wait for one to expire",
      });
    }
    return undefined;
  }

  async function route(request: Request): Promise<Response> {
    const url = requestUrl(request);
    if (!url) return fail(400, BAD_HOST, { field: "host" });
    const entry = Object.hasOwn(ROUTES, url.pathname) ? ROUTES[url.pathname] : undefined;
    if (!entry) return fail(404, `no such path: ${url.pathname}`, { expected: `one of ${Object.keys(ROUTES).join(", ")}` });
    const handler = Object.hasOwn(entry.methods, request.method) ? entry.methods[request.method] : undefined;
    const allowed = Object.keys(entry.methods).join(", ");
    if (!handler) {
      return fail(405, `method ${request.method} is not allowed on ${url.pathname}`, { expected: allowed }, { allow: allowed });
    }
    if (entry.auth) {
      const refused = authorized(request);
      if (refused) return refused;
      sweep();
    }
    return handler(request, url);
  }

  return {
    async fetch(request) {
      try {
        return await route(request);
      } catch (error) {
        // A bug of ours, not the client's: say so, keep serving, and let the prober count it.
        deps.reportError(`API request failed: ${describeError(error)}`, { method: request.method });
        return fail(500, "internal error");
      }
    },
    targets: () => targets.map(view),
    published: () => lastPublished,
    sweep,
    async close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      await writing;
    },
  };
}

// --- the inventory ---

/**
 * The inventory's entry point with the listener settings of the web config (TLS, HTTP/2; null:
 * plain HTTP): `options` is api.yaml's content as {@link loadApiConfig} returns it (checked again
 * here). Resolves once the server listens; stops it when `context.signal` aborts. The apikey
 * stays the API's only authentication, whatever the web config's basic_auth_users.
 */
export function startApi(listener: ListenerSettings | null): InventoryStart {
  return async (name, options, publish, context) => {
    const checked = validateValue(ApiConfigSchema, options);
    if (!checked.ok) throw new Error(`invalid api options: ${checked.problems.map(formatProblem).join("; ")}`);
    const config = checked.value;
    const statePath = resolve(context.baseDir, config.state_file);
    const api = await createApi(config, { name, publish, statePath, reportError: context.reportError, log: context.log });
    if (context.signal.aborted) {
      await api.close();
      return;
    }
    let server: HttpListener;
    try {
      server = HttpListener.open({
        name: "targets API",
        settings: listener,
        port: config.listen_port,
        bind: (transport, port) => serveApi(api, config.listen_address, port, context.reportError, transport),
        // A certificate change that cannot be applied is logged and counted as the inventory's error.
        log: (level, message, fields) => (level === "ERROR" ? context.reportError(message, fields) : context.log(level, message, fields)),
      });
    } catch (error) {
      await api.close();
      throw new Error(`cannot listen on ${config.listen_address} port ${config.listen_port}: ${describeError(error)}`);
    }
    context.log("INFO", "targets API listening", {
      address: config.listen_address,
      port: server.port,
      tls: server.tls,
      targets: api.targets().length,
      state_file: statePath,
    });
    context.signal.addEventListener(
      "abort",
      () => {
        server.stop(true);
        void api.close();
      },
      { once: true },
    );
  };
}

/** The inventory's entry point without a web config: plain HTTP. */
export const start: InventoryStart = startApi(null);

/**
 * The API's listener: production mode with the last-resort error handler (never Bun's
 * development error page; `reportError` gets one line), Bun's body cap as a backstop, then
 * `api.fetch`, over TLS when `transport` says so. Throws what Bun.serve throws (address taken).
 */
export function serveApi(
  api: Api,
  hostname: string,
  port: number,
  reportError: (message: string) => void,
  transport: Transport = {},
): Server<undefined> {
  return Bun.serve({
    ...productionServeOptions(reportError),
    ...transport,
    hostname,
    port,
    maxRequestBodySize: SERVER_BODY_BACKSTOP_BYTES,
    fetch: (request) => api.fetch(request),
  });
}

// --- the page ---

/**
 * bun-types declares `*.html` imports as an HTMLBundle (the form without an import attribute);
 * `with { type: "text" }` makes it the file's text, embedded in the compiled binary.
 */
const UI_PAGE: string = uiPage as unknown as string;

/**
 * The page's inline script and style are allowed by their hashes and nothing else may load:
 * the browser itself guarantees the page fetches nothing but this origin.
 */
const UI_CSP = (() => {
  const hashes = (tag: string) =>
    [...UI_PAGE.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))]
      .map((m) => `'sha256-${crypto.createHash("sha256").update(m[1] ?? "").digest("base64")}'`)
      .join(" ");
  return [
    "default-src 'none'",
    `script-src ${hashes("script")}`,
    `style-src ${hashes("style")}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
})();

// --- internal ---

function digest(text: string): Buffer {
  return crypto.createHash("sha256").update(text, "utf8").digest();
}

