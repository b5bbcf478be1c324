/**
 * Fuzzing the targets API with bad requests from a fixed seed: invalid and truncated JSON, wrong
 * types, unknown fields, out-of-range numbers, bad lifetimes, huge strings, deep nesting, nulls,
 * lists for maps, bad tokens, methods and paths, over-size bodies, duplicates, names that do not
 * resolve. Every one must get a 4xx (never 2xx, never 5xx) with a JSON body naming the field at
 * fault when one is, and after every batch the list of targets must be what it was.
 *
 * 10,000 requests go through `api.fetch` (no socket: fast), then a batch over a real socket
 * (serveApi) covers the HTTP layer, and raw malformed HTTP (tests/support/http-fuzz.ts) the
 * listener under it. A failure prints the seed and the case's index: rerun with
 * FUZZ_SEED=<seed> to get the same requests.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatProblem, validateValue } from "../../src/config/validate.ts";
import { InventoryListSchema, type AddressFamily } from "../../src/config/schema.ts";
import { createApi, MAX_BODY_BYTES, serveApi, type Api, type Lookup } from "../../src/inventory/api.ts";
import { parseApiConfigText } from "../../src/inventory/api-config.ts";
import type { ApiTargetView } from "../../src/inventory/api-targets.ts";
import { CI_OPTIONS, formatReport, fuzz } from "../support/http-fuzz.ts";
import { startApiTarget } from "../support/http-fuzz-targets.ts";
import { mulberry32 } from "../support/prng.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_2026);
const CASES = 10_000;
const BATCH = 500;
const SOCKET_CASES = 1_000;
/** Raw malformed HTTP: a few seconds here; scripts/fuzz-http.ts runs 100,000. */
const HTTP_CASES = 400;
const TOKEN = "fuzz-token-0123456789-abcdef";
const GROUPS = ["lab", "wan"];

/** One bad request and what its answer must say. */
interface Case {
  /** The generator's name. */
  readonly kind: string;
  /** What the generator made, for failure messages. */
  readonly note?: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string | Uint8Array;
  /** Statuses allowed; all 4xx. */
  readonly status: readonly number[];
  /** Fields one of which the answer must name; undefined: no field is at fault. */
  readonly fields?: readonly string[];
}

/** A case before the dispatcher names its kind. */
type Made = Omit<Case, "kind">;

const SEEDS = [
  { owner: "alice", hostname: "web1.test" },
  { owner: "alice", hostname: "web1.test", type: "TCPsyn", dst_port: 443, ip_payload_size: 64 },
  { owner: "bob", hostname: "web2.test", address_family: "ipv6", type: "UDPunreachable", dst_port: 33434 },
  { owner: "bob", hostname: "198.18.0.7", lifetime: "2h" },
];

const NAMES: Record<string, Partial<Record<AddressFamily, string>>> = {
  "web1.test": { ipv4: "198.18.0.1", ipv6: "fd00::1" },
  "web2.test": { ipv4: "198.18.0.2", ipv6: "fd00::2" },
  "web3.test": { ipv4: "198.18.0.3", ipv6: "fd00::3" },
};
const fakeLookup: Lookup = async (hostname, family) => {
  const version = isIP(hostname);
  if (version !== 0) return (version === 4) === (family === "ipv4") ? hostname : undefined;
  return NAMES[hostname.toLowerCase()]?.[family];
};

const POST_FIELDS = ["owner", "hostname", "type", "dst_port", "ip_payload_size", "address_family", "lifetime", "groups"] as const;
const KEY_FIELDS = ["owner", "hostname", "type", "dst_port", "ip_payload_size", "address_family"] as const;
type Field = (typeof POST_FIELDS)[number];

const ROUTES = new Set(["/api/targets", "/api/target", "/api/openapi.json", "/api/ui/", "/api/ui"]);

/** Builds the cases; every generator makes a request that is wrong by construction. */
function generator(random: () => number) {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const chance = (p: number) => random() < p;
  const text = (n: number, alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.") =>
    Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join("");
  const anyText = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + int(95))).join("");

  const auth = { apikey: TOKEN };
  const jsonHeaders = { ...auth, "content-type": "application/json" };

  /** A body the API would accept (a new target, or an existing target's keys for DELETE). */
  const validPost = (): Record<string, unknown> => {
    const body: Record<string, unknown> = { owner: pick(["carol", "dave", "ops team"]), hostname: pick(["web3.test", "198.18.9.9", "fd00::99"]) };
    body.address_family = isIP(String(body.hostname)) === 6 ? "ipv6" : "ipv4";
    if (chance(0.5)) body.type = pick(["TCPsyn", "ICMPping", "UDPunreachable"]);
    if (chance(0.3)) body.dst_port = 1 + int(65535);
    if (chance(0.3)) body.lifetime = pick(["1h", "1d 3h 2m", 600]);
    if (chance(0.2)) body.groups = [pick(GROUPS)];
    return body;
  };

  /** A value of the wrong type or out of range for a field. */
  const wrongValue = (field: Field, body: Record<string, unknown>): unknown => {
    const notString = [1, -1, 0.5, true, false, null, [], ["a"], {}, { a: 1 }];
    const notInteger = ["80", "", true, null, [], [80], {}, 80.5, -0.25, 1e-9];
    switch (field) {
      case "owner":
        return pick([...notString, "", "   ", "a\nb", "tab\there", "\u0000", "o".repeat(129 + int(500))]);
      case "hostname":
        return pick([...notString, "", "has space", "semi;colon", "slash/x", "h".repeat(254 + int(300)), "é.test", "a@b"]);
      case "type":
        return pick([...notString, "", "tcpsyn", "ICMP", "ping", "TCPSYN", "UDP"]);
      case "address_family":
        return pick([...notString, "", "IPv4", "ipv5", "4", "inet6"]);
      case "dst_port":
        return pick([...notInteger, 0, -1, 65536, 70000, 1e6, 2 ** 53, -65535]);
      case "ip_payload_size": {
        const type = String(body.type ?? "ICMPping");
        const family = String(body.address_family ?? "ipv4");
        const header = type === "TCPsyn" ? 20 : 8;
        const max = family === "ipv6" ? 65535 : 65515;
        return pick([...notInteger, -1, 1 + int(header - 1), max + 1 + int(1000), 1e9]);
      }
      case "lifetime":
        return pick([true, false, null, [], ["1h"], {}, -1, 0, 1.5, -3600, "", "1 week", "1y", "d1", "-1d", "1.5h", "0s", "0d 0h", "1h;", "forever", "1e3"]);
      case "groups":
        return pick([null, "lab", 1, {}, [], [1], [null], ["dmz"], ["lab", "dmz"], ["LAB"], [["lab"]]]);
    }
  };

  /** A body to /api/target; POST unless said (DELETE refuses lifetime and groups, which POST bodies may hold). */
  const post = (body: string | Uint8Array, status: readonly number[], fields?: readonly string[], note = "", method = "POST"): Made => ({
    note,
    method,
    path: "/api/target",
    headers: jsonHeaders,
    body,
    status,
    ...(fields ? { fields } : {}),
  });

  const generators: Record<string, () => Made> = {
    invalidJson: () =>
      post(
        pick([
          anyText(1 + int(200)),
          "{",
          "}",
          "{owner: 'a'}",
          '{"owner":"a",}',
          "[1,2",
          "nul",
          "tru",
          '{"owner":"a" "hostname":"b"}',
          "\u0000",
          '{"a":1}{"b":2}',
          "NaN",
          "{'owner':'a','hostname':'b'}",
        ]),
        [400],
        undefined,
        "invalid JSON",
        pick(["POST", "DELETE"]),
      ),
    truncatedJson: () => {
      const full = JSON.stringify(validPost());
      return post(full.slice(0, 1 + int(full.length - 1)), [400], undefined, "truncated JSON", pick(["POST", "DELETE"]));
    },
    emptyBody: () => post(pick(["", " ", "\n\t "]), [400], undefined, "empty body", pick(["POST", "DELETE"])),
    wrongType: () => {
      const body = validPost();
      const method = pick(["POST", "DELETE"]);
      const field = method === "POST" ? pick(POST_FIELDS) : pick(KEY_FIELDS);
      body.type ??= "ICMPping";
      body[field] = wrongValue(field, body);
      if (method === "DELETE") {
        delete body.lifetime;
        delete body.groups;
      }
      return post(JSON.stringify(body), [400], [field], "wrong type", method);
    },
    unknownField: () => {
      const body = validPost();
      const key = pick(["dts_port", "Owner", "hostnames", "nb_packets", "destination", "groups_", "state", "description", text(1 + int(20)), "é", ""]);
      body[key] = pick([1, "x", null, [], {}]);
      return post(JSON.stringify(body), [400], [key], "unknown field");
    },
    protoKey: () => {
      const key = pick(["__proto__", "constructor", "prototype", "toString", "hasOwnProperty"]);
      const inner = JSON.stringify(validPost()).slice(1, -1);
      return post(`{"${key}":{"owner":1},${inner}}`, [400], [key], "prototype key");
    },
    outOfRange: () => {
      const body = validPost();
      body.type = pick(["TCPsyn", "ICMPping", "UDPunreachable"]);
      const field = pick(["dst_port", "ip_payload_size"] as const);
      body[field] =
        field === "dst_port"
          ? pick([0, -1, 65536, 99999, 2 ** 31, -(2 ** 31)])
          : (() => {
              const header = body.type === "TCPsyn" ? 20 : 8;
              const max = body.address_family === "ipv6" ? 65535 : 65515;
              return pick([1 + int(header - 1), max + 1 + int(100_000), -1 - int(100)]);
            })();
      return post(JSON.stringify(body), [400], [field], "out of range");
    },
    hugeNumberText: () => {
      const inner = JSON.stringify({ ...validPost(), dst_port: 1 }).slice(1, -1).replace('"dst_port":1', `"dst_port":${pick(["1e999", "-1e999", "1e-999", "123456789012345678901234567890", "-0.0000001", "65535.5"])}`);
      return post(`{${inner}}`, [400], ["dst_port"], "huge number text");
    },
    badLifetime: () => {
      const body = { ...validPost(), lifetime: wrongValue("lifetime", {}) };
      return post(JSON.stringify(body), [400], ["lifetime"], "bad lifetime");
    },
    hugeString: () => {
      const field = pick(["owner", "hostname", "type", "address_family"] as const);
      const body = { ...validPost(), [field]: text(300 + int(20_000)) };
      const json = JSON.stringify(body);
      const over = new TextEncoder().encode(json).byteLength > MAX_BODY_BYTES;
      return post(json, over ? [413] : [400], over ? undefined : [field], "huge string");
    },
    deepNesting: () => {
      const depth = 50 + int(4_000);
      const shape = pick(["array", "object", "top"] as const);
      if (shape === "top") return post(`${"[".repeat(depth)}${"]".repeat(depth)}`, [400], undefined, "deep nesting", pick(["POST", "DELETE"]));
      const field = pick(POST_FIELDS);
      const nested = shape === "array" ? `${"[".repeat(depth)}1${"]".repeat(depth)}` : `${'{"a":'.repeat(depth / 4)}1${"}".repeat(depth / 4)}`;
      const inner = JSON.stringify({ ...validPost(), [field]: 0 }).slice(1, -1).replace(`"${field}":0`, `"${field}":${nested}`);
      const json = `{${inner}}`;
      const over = json.length > MAX_BODY_BYTES;
      return post(json, over ? [413] : [400], over ? undefined : [field], "deep nesting");
    },
    nulls: () => {
      if (chance(0.2)) return post("null", [400], undefined, "null body");
      const field = pick(POST_FIELDS);
      return post(JSON.stringify({ ...validPost(), [field]: null }), [400], [field], "null field");
    },
    notAnObject: () =>
      post(JSON.stringify(pick([[validPost()], [], [1, 2], "owner", 42, true, [null]])), [400], undefined, "not an object", pick(["POST", "DELETE"])),
    missingRequired: () => {
      const body = validPost();
      const field = pick(["owner", "hostname"]);
      delete body[field];
      return post(JSON.stringify(body), [400], [field], "missing field");
    },
    badToken: () => {
      const headers: Record<string, string> = { "content-type": "application/json" };
      const choice = int(7);
      if (choice === 1) headers.apikey = "";
      if (choice === 2) headers.apikey = TOKEN.slice(0, int(TOKEN.length));
      if (choice === 3) headers.apikey = `${TOKEN}${text(1 + int(5))}`;
      if (choice === 4) headers.apikey = TOKEN.toUpperCase();
      if (choice === 5) {
        const at = int(TOKEN.length);
        headers.apikey = `${TOKEN.slice(0, at)}${TOKEN[at] === "x" ? "y" : "x"}${TOKEN.slice(at + 1)}`;
      }
      if (choice === 6) headers.apikey = anyText(1 + int(2_000)).trim() || "k";
      if (chance(0.2)) headers.Authorization = `Bearer ${TOKEN}`;
      const route = pick([
        { method: "GET", path: "/api/targets" },
        { method: "POST", path: "/api/target" },
        { method: "DELETE", path: "/api/target" },
      ]);
      const body = route.method === "GET" ? undefined : JSON.stringify(chance(0.5) ? validPost() : SEEDS[int(SEEDS.length)]);
      return { ...route, headers, ...(body ? { body } : {}), status: [401], fields: ["apikey"] };
    },
    wrongMethod: () => {
      const [method, path] = pick([
        ["PUT", "/api/target"],
        ["PATCH", "/api/target"],
        ["GET", "/api/target"],
        ["OPTIONS", "/api/target"],
        ["HEAD", "/api/target"],
        ["POST", "/api/targets"],
        ["DELETE", "/api/targets"],
        ["PUT", "/api/targets"],
        ["POST", "/api/openapi.json"],
        ["DELETE", "/api/ui/"],
        ["PROPFIND", "/api/target"],
        ["PURGE", "/api/targets"],
      ] as const);
      const body = method === "GET" || method === "HEAD" ? undefined : JSON.stringify(validPost());
      return { method, path, headers: jsonHeaders, ...(body ? { body } : {}), status: [405] };
    },
    wrongPath: () => {
      let path = "";
      do {
        path = pick([
          `/api/${text(1 + int(12), "abcdefghijklmnopqrstuvwxyz_-")}`,
          `/api/target${pick(["s/", "/", "z", "/1", "//", "%20", "?", "#"])}${text(int(4))}`,
          `/${text(int(20), "abcdefghijklmnopqrstuvwxyz/_%")}`,
          "/API/targets",
          "/api//targets",
          "/api/targets.json",
          "/api/ui/index.html",
          "/metrics",
          "/",
        ]);
      } while (ROUTES.has(new URL(`http://api.test${path}`).pathname));
      const method = pick(["GET", "POST", "DELETE"]);
      const body = method === "GET" ? undefined : JSON.stringify(validPost());
      return { method, path, headers: jsonHeaders, ...(body ? { body } : {}), status: [404] };
    },
    overSize: () => {
      const size = MAX_BODY_BYTES + 1 + int(3 * MAX_BODY_BYTES);
      const json = JSON.stringify(validPost());
      const body = pick([`${json}${" ".repeat(size - json.length)}`, "x".repeat(size), `{"owner":"${"o".repeat(size)}"}`]);
      return post(body, [413], undefined, "over-size", pick(["POST", "DELETE"]));
    },
    badQuery: () => {
      const [query, field] = pick([
        [`?${text(1 + int(8), "abcdefghijklmnopqrstuvwxyz")}x=1`, undefined],
        ["?address_family=ipv5", "address_family"],
        ["?address_family=IPV4", "address_family"],
        ["?owner=a&owner=b", "owner"],
        ["?hostname=a&hostname=", "hostname"],
        ["?type=TCPsyn", "type"],
        ["?dst_port=80", "dst_port"],
      ] as const);
      const named = field ?? /^\?(\w+)=/.exec(query)?.[1] ?? "";
      return { method: "GET", path: `/api/targets${query}`, headers: auth, status: [400], fields: [named] };
    },
    notUtf8: () => {
      const bytes = new TextEncoder().encode(JSON.stringify(validPost()));
      const broken = new Uint8Array(bytes.length + 2);
      broken.set(bytes);
      broken.set(pick([[0xff, 0xfe], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0]]), 1 + int(bytes.length - 1));
      return post(broken, [400], undefined, "not UTF-8", pick(["POST", "DELETE"]));
    },
    duplicate: () => {
      const seed: Record<string, unknown> = { ...SEEDS[int(SEEDS.length)]!, owner: pick(["alice", "bob", "someone else"]) };
      if (chance(0.5)) seed.hostname = String(seed.hostname).toUpperCase();
      delete seed.lifetime;
      return post(JSON.stringify(seed), [409], ["hostname"], "duplicate");
    },
    unresolvable: () => {
      const body: Record<string, unknown> = { ...validPost(), hostname: pick([`nx-${text(1 + int(10))}.test`, "web3.invalid", "198.18.0.1"]) };
      // An IPv4 literal asked for over ipv6 is refused before the lookup (400), a name after it (422).
      if (body.hostname === "198.18.0.1") body.address_family = "ipv6";
      else if (body.address_family === "ipv6" && isIP(String(body.hostname)) === 0) body.address_family = pick(["ipv4", "ipv6"]);
      return post(JSON.stringify(body), body.hostname === "198.18.0.1" ? [400] : [422], ["hostname"], "unresolvable");
    },
    deleteAbsent: () => {
      const body = { owner: pick(["alice", "bob", "carol"]), hostname: pick(["web3.test", "nothing.test", "198.18.0.8"]) };
      return post(JSON.stringify(body), [404], undefined, "delete absent", "DELETE");
    },
    twoFaults: () => {
      const body = validPost();
      body.type ??= "ICMPping";
      const a = pick(POST_FIELDS);
      let b = pick(POST_FIELDS);
      while (b === a) b = pick(POST_FIELDS);
      body[a] = wrongValue(a, body);
      body[b] = wrongValue(b, body);
      const json = JSON.stringify(body);
      const over = new TextEncoder().encode(json).byteLength > MAX_BODY_BYTES;
      return post(json, over ? [413] : [400], over ? undefined : [a, b], "two faults");
    },
  };
  const kinds = Object.keys(generators);
  // Cases are counted by generator: every one must have run often enough to mean something.
  const next = (): Case => {
    const kind = pick(kinds);
    return { ...generators[kind]!(), kind };
  };
  return { next, kinds };
}

// --- the run ---

let dir = "";
let api: Api;
let publishes = 0;
const refused: string[] = [];
/** Failures the API reported (a state file write, a bug caught as a 500): must stay empty. */
const reported: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "netprobify-api-fuzz-"));
  const parsed = parseApiConfigText(
    `token: "${TOKEN}"\nlisten_address: 127.0.0.1\nlisten_port: 8009\nmax_targets: 6\ngroups: [${GROUPS.join(", ")}]\n`,
    "api.yaml",
  );
  if (!parsed.ok) throw new Error(parsed.lines.join("\n"));
  api = await createApi(parsed.config, {
    publish: (list) => {
      publishes++;
      const checked = validateValue(InventoryListSchema, list);
      if (!checked.ok) refused.push(...checked.problems.map(formatProblem));
    },
    statePath: join(dir, "api-targets.json"),
    reportError: (message) => reported.push(message),
    lookup: fakeLookup,
    now: () => Date.parse("2026-03-01T12:00:00Z"),
  });
  for (const seed of SEEDS) {
    const r = await api.fetch(
      new Request("http://api.test/api/target", { method: "POST", headers: { apikey: TOKEN }, body: JSON.stringify(seed) }),
    );
    expect(r.status).toBe(201);
  }
});

afterAll(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

const toRequest = (base: string, c: Case) =>
  new Request(`${base}${c.path}`, { method: c.method, headers: c.headers, ...(c.body === undefined ? {} : { body: c.body }) });

async function listed(send: (r: Request) => Promise<Response>, base: string): Promise<ApiTargetView[]> {
  const r = await send(new Request(`${base}/api/targets`, { headers: { apikey: TOKEN } }));
  expect(r.status).toBe(200);
  return (await r.json()) as ApiTargetView[];
}

/** Sends the cases in batches; returns how many of each kind went, for the record. */
async function run(
  cases: readonly Case[],
  send: (r: Request) => Promise<Response>,
  base: string,
  label: string,
): Promise<Record<string, number>> {
  const before = await listed(send, base);
  const state = await readFile(join(dir, "api-targets.json"), "utf8");
  const publishedBefore = publishes;
  const kinds: Record<string, number> = {};
  for (let start = 0; start < cases.length; start += BATCH) {
    for (let i = start; i < Math.min(start + BATCH, cases.length); i++) {
      const c = cases[i]!;
      kinds[c.kind] = (kinds[c.kind] ?? 0) + 1;
      const where = `${label} case ${i} (seed ${SEED}, ${c.kind}${c.note ? `: ${c.note}` : ""}): ${c.method} ${c.path} ${
        typeof c.body === "string" ? c.body.slice(0, 120) : c.body ? "<bytes>" : ""
      }`;
      const response = await send(toRequest(base, c));
      if (!c.status.includes(response.status)) throw new Error(`${where}\n  got ${response.status}, expected ${c.status.join(" or ")}: ${await response.text()}`);
      // A HEAD answer has no body on the wire.
      if (c.method === "HEAD" && base !== "http://api.test") continue;
      const text = await response.text();
      let answer: { error?: unknown; field?: unknown };
      try {
        answer = JSON.parse(text) as { error?: unknown; field?: unknown };
      } catch {
        throw new Error(`${where}\n  the answer is not JSON: ${text.slice(0, 200)}`);
      }
      if (typeof answer.error !== "string" || answer.error === "") throw new Error(`${where}\n  no error text: ${text.slice(0, 200)}`);
      if (c.fields) {
        const field = typeof answer.field === "string" ? answer.field : "";
        const named = c.fields.some((f) => field === f || field.startsWith(`${f}[`) || field.startsWith(`${f}.`));
        if (!named) throw new Error(`${where}\n  names field ${JSON.stringify(answer.field)}, expected one of ${c.fields.join(", ")}: ${text.slice(0, 300)}`);
      }
    }
    expect(await listed(send, base)).toEqual(before);
  }
  expect(publishes).toBe(publishedBefore);
  expect(await readFile(join(dir, "api-targets.json"), "utf8")).toBe(state);
  expect(refused).toEqual([]);
  expect(reported).toEqual([]);
  return kinds;
}

test(`${CASES} bad requests through api.fetch: every one a 4xx naming its field, the list unchanged`, async () => {
  const { next, kinds } = generator(mulberry32(SEED));
  const cases = Array.from({ length: CASES }, next);
  const ran = await run(cases, (r) => api.fetch(r), "http://api.test", "in-process");
  expect(Object.keys(ran).sort()).toEqual([...kinds].sort());
  for (const [kind, count] of Object.entries(ran)) expect({ kind, enough: count >= 300 }).toEqual({ kind, enough: true });
}, 60_000);

test(`${SOCKET_CASES} bad requests over a real socket`, async () => {
  const server = serveApi(api, "127.0.0.1", 0, (message) => reported.push(message));
  try {
    const { next } = generator(mulberry32(SEED ^ 0xa5a5a5a5));
    const cases = Array.from({ length: SOCKET_CASES }, next);
    await run(cases, (r) => fetch(r), `http://127.0.0.1:${server.port}`, "socket");
  } finally {
    await server.stop(true);
  }
}, 60_000);

test("malformed HTTP on the API's listener (raw TCP, tests/support/http-fuzz.ts): no 5xx, no internal detail, a normal request answered alongside", async () => {
  const target = await startApiTarget();
  try {
    const report = await fuzz(target, { ...CI_OPTIONS, count: HTTP_CASES, seed: SEED });
    if (report.failures.length > 0) console.error(formatReport(report));
    expect(report.failures).toEqual([]);
    expect(Object.keys(report.kinds).length).toBeGreaterThanOrEqual(20);
    expect(report.normalRequests).toBe(Math.ceil(HTTP_CASES / CI_OPTIONS.batch) + 1);
  } finally {
    await target.stop();
  }
}, 60_000);
