/**
 * The targets API (src/inventory/api.ts): api.yaml, every route and status, lifetimes and expiry,
 * the state file, the documents, and start() over a real socket. Requests go through
 * `api.fetch` without a socket unless a test says otherwise; names resolve through a fake
 * resolver that knows a few .test names and IP literals, never through DNS.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import crypto from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatProblem, validateValue } from "../../src/config/validate.ts";
import { BAD_HOST } from "../../src/http-server.ts";
import { InventoryListSchema, type AddressFamily } from "../../src/config/schema.ts";
import { createApi, MAX_BODY_BYTES, start, systemLookup, type Api, type Lookup } from "../../src/inventory/api.ts";
import { ApiConfigSchema, loadApiConfig, parseApiConfigText, type ApiConfig } from "../../src/inventory/api-config.ts";
import { writeFileAtomic } from "../../src/inventory/api-state.ts";
import type { ApiTargetView } from "../../src/inventory/api-targets.ts";
import type { InventoryContext } from "../../src/inventory/contract.ts";
import { bytes, exchange } from "../support/raw-http.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "api");
const TOKEN = "s3cret-token-for-tests-0123";
const T0 = Date.parse("2026-03-01T12:00:00.000Z");

function configOf(text: string): ApiConfig {
  const result = parseApiConfigText(text, "api.yaml");
  if (!result.ok) throw new Error(result.lines.join("\n"));
  return result.config;
}

const BASE = configOf(`token: "${TOKEN}"\nlisten_address: 127.0.0.1\nlisten_port: 8009\ngroups: [lab, wan]\n`);

/** The only names the tests resolve. */
const NAMES: Record<string, Partial<Record<AddressFamily, string>>> = {
  "web1.test": { ipv4: "198.18.0.1", ipv6: "fd00::1" },
  "web2.test": { ipv4: "198.18.0.2", ipv6: "fd00::2" },
  "v4only.test": { ipv4: "198.18.0.3" },
};

const fakeLookup: Lookup = async (hostname, family) => {
  const version = isIP(hostname);
  if (version !== 0) return (version === 4) === (family === "ipv4") ? hostname : undefined;
  return NAMES[hostname.toLowerCase()]?.[family];
};

interface Harness {
  readonly api: Api;
  readonly dir: string;
  readonly statePath: string;
  /** Every list published, in order. */
  readonly lists: unknown[][];
  readonly errors: string[];
  readonly clock: { now: number };
  call(method: string, path: string, body?: unknown, key?: string | null): Promise<Response>;
}

const open: Api[] = [];
const dirs: string[] = [];
/** Problems of published lists that InventoryListSchema refuses: must stay empty. */
const refusedLists: string[] = [];

afterEach(async () => {
  for (const api of open.splice(0)) await api.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  expect(refusedLists.splice(0)).toEqual([]);
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "netprobify-api-"));
  dirs.push(dir);
  return dir;
}

async function harness(
  options: { config?: Partial<ApiConfig>; lookup?: Lookup; dir?: string; statePath?: string; clock?: { now: number } } = {},
): Promise<Harness> {
  const dir = options.dir ?? (await tempDir());
  const statePath = options.statePath ?? join(dir, "api-targets.json");
  const lists: unknown[][] = [];
  const errors: string[] = [];
  const clock = options.clock ?? { now: T0 };
  const api = await createApi(
    { ...BASE, ...options.config },
    {
      publish: (list) => {
        const checked = validateValue(InventoryListSchema, list);
        if (!checked.ok) refusedLists.push(...checked.problems.map(formatProblem));
        lists.push([...list]);
      },
      statePath,
      reportError: (message) => errors.push(message),
      lookup: options.lookup ?? fakeLookup,
      now: () => clock.now,
    },
  );
  open.push(api);
  const call = (method: string, path: string, body?: unknown, key: string | null = TOKEN) => {
    const headers: Record<string, string> = key === null ? {} : { apikey: key };
    const text = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    return api.fetch(new Request(`http://api.test${path}`, { method, headers, body: text }));
  };
  return { api, dir, statePath, lists, errors, clock, call };
}

type Answer = { status: number; body: Record<string, unknown> };

async function answer(response: Promise<Response> | Response): Promise<Answer> {
  const r = await response;
  expect(r.headers.get("content-type")).toBe("application/json; charset=utf-8");
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function list(h: Harness, query = ""): Promise<ApiTargetView[]> {
  const r = await h.call("GET", `/api/targets${query}`);
  expect(r.status).toBe(200);
  return (await r.json()) as ApiTargetView[];
}

const lastList = (h: Harness) => h.lists.at(-1) ?? [];

// --- api.yaml ---

describe("api.yaml", () => {
  const fixture = async (name: string, groups?: string[]) =>
    parseApiConfigText(await Bun.file(join(FIXTURES, name)).text(), name, groups ? { groups } : {});

  test("a file setting every field", async () => {
    const result = await fixture("good.yaml", ["lab", "wan"]);
    expect(result).toEqual({
      ok: true,
      warnings: [],
      config: {
        token: TOKEN,
        listen_address: "127.0.0.1",
        listen_port: 8009,
        max_targets: 5,
        target_lifetime: 7200,
        max_target_lifetime: 604800,
        nb_packets: 10,
        groups: ["lab", "wan"],
        state_file: "state/api-targets.json",
      },
    });
  });

  test("defaults: 10 targets, 1 day, at most 30 days, 20 packets, api-targets.json", async () => {
    const result = await fixture("minimal.yaml");
    if (!result.ok) throw new Error(result.lines.join("\n"));
    expect(result.config).toMatchObject({
      listen_address: "::",
      max_targets: 10,
      target_lifetime: 86400,
      max_target_lifetime: 2592000,
      nb_packets: 20,
      state_file: "api-targets.json",
    });
  });

  const INVALID: [string, string[]][] = [
    ["missing-token.yaml", [
      "missing-token.yaml:1:1: token is required (text of visible ASCII characters, no space at either end, in quotes if YAML would read it as a number)",
    ]],
    ["numeric-token.yaml", [
      "numeric-token.yaml:1:8: token: 123456 is not a string (text of visible ASCII characters, no space at either end, in quotes if YAML would read it as a number)",
    ]],
    ["bad-port.yaml", ["bad-port.yaml:3:14: listen_port: 70000 is out of range (an integer from 1 to 65535)"]],
    ["unknown-field.yaml", [
      "unknown-field.yaml:4:1: max_target: unknown field, did you mean max_targets? (one of token, listen_address, listen_port, max_targets, target_lifetime, max_target_lifetime, nb_packets, groups, state_file)",
    ]],
    ["bad-lifetime.yaml", [
      'bad-lifetime.yaml:4:18: target_lifetime: "1 week" is not a lifetime (a number of seconds, or a duration such as "1d 3h 2m" (days, hours, minutes, seconds))',
    ]],
    ["lifetime-above-max.yaml", [
      "lifetime-above-max.yaml:4:18: target_lifetime: 172800 s is longer than max_target_lifetime, 86400 s (a lifetime no longer than max_target_lifetime)",
    ]],
    ["bad-listen-address.yaml", [
      'bad-listen-address.yaml:2:17: listen_address: "localhost" is not an IP address (an IPv4 or IPv6 address such as 0.0.0.0 or ::)',
    ]],
    ["bad-group.yaml", [
      'bad-group.yaml:4:15: groups[1]: "Bad Group" is not a valid group name (a name of up to 255 lowercase letters, digits, _, - and .)',
    ]],
    ["empty-groups.yaml", ["empty-groups.yaml:4:9: groups: the value is empty (a list of at least one group name)"]],
  ];
  for (const [file, lines] of INVALID) {
    test(`${file}: the exact lines`, async () => {
      expect(await fixture(file)).toEqual({ ok: false, lines, unreadable: false, missing: false });
    });
  }

  test("warnings: a short token, a group the config does not have", async () => {
    expect(await fixture("warnings.yaml", ["lab"])).toMatchObject({
      ok: true,
      warnings: [
        "warnings.yaml:1:8: warning: token: only 5 characters: use 16 or more random ones",
        'warnings.yaml:6:5: warning: groups[1]: group "nowhere" does not exist in the config; the API\'s targets do not send in it',
      ],
    });
  });

  test("loadApiConfig: a file, a missing file, a directory", async () => {
    const good = await loadApiConfig(join(FIXTURES, "good.yaml"));
    expect(good.ok).toBe(true);
    const missing = await loadApiConfig(join(FIXTURES, "absent.yaml"));
    expect(missing).toEqual({ ok: false, unreadable: true, missing: true, lines: [`${join(FIXTURES, "absent.yaml")}: cannot read the file: no such file`] });
    const dir = await loadApiConfig(FIXTURES);
    expect(dir).toMatchObject({ ok: false, unreadable: true, missing: false });
    const bad = await loadApiConfig(join(FIXTURES, "bad-port.yaml"));
    expect(bad).toMatchObject({ ok: false, missing: false, lines: [expect.stringContaining("bad-port.yaml:3:14: listen_port")] });
  });

  test("the validated config validates again unchanged: the daemon's options are start()'s input", () => {
    const again = validateValue(ApiConfigSchema, BASE);
    expect(again).toEqual({ ok: true, value: BASE });
    const raw = validateValue(ApiConfigSchema, { token: TOKEN, listen_address: "::1", listen_port: 1, groups: ["lab"], target_lifetime: "1h 30m" });
    expect(raw.ok && raw.value.target_lifetime).toBe(5400);
  });
});

// --- POST ---

describe("POST /api/target", () => {
  test("defaults of the original: ICMPping, port 80, bare header, ipv4, target_lifetime", async () => {
    const h = await harness();
    const { status, body } = await answer(h.call("POST", "/api/target", { owner: "alice", hostname: "web1.test" }));
    expect(status).toBe(201);
    expect(body).toEqual({
      owner: "alice",
      hostname: "web1.test",
      type: "ICMPping",
      dst_port: 80,
      ip_payload_size: 0,
      address_family: "ipv4",
      groups: ["lab", "wan"],
      creation_date: "2026-03-01T12:00:00.000Z",
      lifetime: 86400,
      expiry_date: "2026-03-02T12:00:00.000Z",
    });
    expect(lastList(h)).toEqual([
      {
        hostname: "web1.test",
        type: "ICMPping",
        address_family: "ipv4",
        groups: ["lab", "wan"],
        nb_packets: 20,
        state: "in production",
        description: "from_api, owner alice",
        creation_date: "2026-03-01T12:00:00.000Z",
        lifetime: 86400,
      },
    ]);
  });

  test("every type and family; a payload size is published, 0 is not; chosen groups", async () => {
    const h = await harness({ config: { nb_packets: 3 } });
    const bodies = [
      { owner: "a", hostname: "web1.test", type: "TCPsyn", dst_port: 443, ip_payload_size: 20 },
      { owner: "a", hostname: "web1.test", type: "UDPunreachable", dst_port: 33434, ip_payload_size: 1400, address_family: "ipv6" },
      { owner: "a", hostname: "198.18.0.9", type: "ICMPping", ip_payload_size: 0, groups: ["wan"] },
      { owner: "a", hostname: "fd00::9", type: "TCPsyn", dst_port: 22, address_family: "ipv6", ip_payload_size: 65535 },
    ];
    for (const body of bodies) expect((await h.call("POST", "/api/target", body)).status).toBe(201);
    expect(lastList(h)).toMatchObject([
      { hostname: "web1.test", type: "TCPsyn", dst_port: 443, ip_payload_size: 20, address_family: "ipv4", nb_packets: 3 },
      { hostname: "web1.test", type: "UDPunreachable", dst_port: 33434, ip_payload_size: 1400, address_family: "ipv6" },
      { hostname: "198.18.0.9", type: "ICMPping", groups: ["wan"] },
      { hostname: "fd00::9", type: "TCPsyn", ip_payload_size: 65535, address_family: "ipv6" },
    ]);
    const published = lastList(h) as Record<string, unknown>[];
    expect("ip_payload_size" in published[2]!).toBe(false);
    expect("dst_port" in published[2]!).toBe(false);
    expect((await list(h)).map((t) => t.groups)).toEqual([["lab", "wan"], ["lab", "wan"], ["wan"], ["lab", "wan"]]);
  });

  test("lifetimes: a duration, seconds, and a cut to max_target_lifetime with a warning", async () => {
    const h = await harness({ config: { max_target_lifetime: 7 * 86400 } });
    const one = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "web1.test", lifetime: "1d 3h 2m" }));
    expect(one.body.lifetime).toBe(86400 + 3 * 3600 + 120);
    expect(one.body.warnings).toBeUndefined();
    const two = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "web2.test", lifetime: 3600 }));
    expect(two.body).toMatchObject({ lifetime: 3600, expiry_date: "2026-03-01T13:00:00.000Z" });
    const cut = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "v4only.test", lifetime: "90d" }));
    expect(cut.status).toBe(201);
    expect(cut.body).toMatchObject({ lifetime: 604800, warnings: ["lifetime cut from 7776000 s to max_target_lifetime, 604800 s"] });
    for (const bad of ["1 week", "0s", "", "1h -5m", -5, 0, 1.5, true, null, [], {}, "1d;rm"]) {
      const r = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "198.18.0.1", lifetime: bad }));
      expect(r.status).toBe(400);
      expect(r.body.field).toBe("lifetime");
    }
    expect(await list(h)).toHaveLength(3);
  });

  test("409: the same target again (hostname without case; an ICMPping's port does not count)", async () => {
    const h = await harness();
    const post = (body: Record<string, unknown>) => answer(h.call("POST", "/api/target", { owner: "a", ...body }));
    expect((await post({ hostname: "web1.test" })).status).toBe(201);
    const again = await post({ hostname: "WEB1.test", dst_port: 8080 });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: "the target already exists", field: "hostname", target: { hostname: "web1.test" } });
    expect((await post({ hostname: "web1.test", address_family: "ipv6" })).status).toBe(201);
    expect((await post({ hostname: "web1.test", type: "TCPsyn" })).status).toBe(201);
    expect((await post({ hostname: "web1.test", type: "TCPsyn", dst_port: 443 })).status).toBe(201);
    expect((await post({ hostname: "web1.test", type: "TCPsyn", dst_port: 443 })).status).toBe(409);
    expect((await post({ hostname: "web1.test", type: "TCPsyn", dst_port: 443, ip_payload_size: 100 })).status).toBe(201);
    // Another owner asking for the same target is still a duplicate: the prober would probe it twice.
    expect((await answer(h.call("POST", "/api/target", { owner: "b", hostname: "web1.test" }))).status).toBe(409);
    expect(await list(h)).toHaveLength(5);
  });

  test("409 at max_targets, then room again after a DELETE", async () => {
    const h = await harness({ config: { max_targets: 2 } });
    expect((await h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" })).status).toBe(201);
    expect((await h.call("POST", "/api/target", { owner: "a", hostname: "web2.test" })).status).toBe(201);
    const full = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "v4only.test" }));
    expect(full).toMatchObject({ status: 409, body: { error: "the API already holds max_targets (2) targets" } });
    expect((await h.call("DELETE", "/api/target", { owner: "a", hostname: "web1.test" })).status).toBe(200);
    expect((await h.call("POST", "/api/target", { owner: "a", hostname: "v4only.test" })).status).toBe(201);
  });

  test("a hostname that does not resolve in its family: 422 naming hostname", async () => {
    const h = await harness();
    const nx = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "nowhere.test" }));
    expect(nx).toMatchObject({ status: 422, body: { field: "hostname", error: 'hostname: "nowhere.test" does not resolve to an ipv4 address' } });
    const v6 = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "v4only.test", address_family: "ipv6" }));
    expect(v6).toMatchObject({ status: 422, body: { field: "hostname" } });
    // A literal of the other family cannot resolve: said before any lookup.
    const literal = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "fd00::1" }));
    expect(literal).toMatchObject({
      status: 400,
      body: { field: "hostname", error: 'hostname: "fd00::1" is an IPv6 address, not ipv4 (an address or a name of ipv4, or address_family: ipv6)' },
    });
    expect(await list(h)).toEqual([]);
  });

  test("a resolver that throws: 422 with its reason; a body that is refused is never looked up", async () => {
    const asked: string[] = [];
    const h = await harness({
      lookup: async (hostname) => {
        asked.push(hostname);
        throw new Error("SERVFAIL");
      },
    });
    const r = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" }));
    expect(r).toMatchObject({ status: 422, body: { field: "hostname", error: 'hostname: "web1.test" does not resolve to an ipv4 address: SERVFAIL' } });
    await h.call("POST", "/api/target", { owner: "a", hostname: "web2.test", dst_port: 0 });
    await h.call("POST", "/api/target", { owner: "a", hostname: "web2.test" }, "wrong");
    expect(asked).toEqual(["web1.test"]);
  });

  test("two POSTs of one target racing through a slow lookup: one 201, one 409", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const h = await harness({
      lookup: async (hostname, family) => {
        await gate;
        return fakeLookup(hostname, family);
      },
    });
    const first = h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" });
    const second = h.call("POST", "/api/target", { owner: "b", hostname: "web1.test" });
    await Bun.sleep(5);
    release();
    const statuses = (await Promise.all([first, second])).map((r) => r.status).sort();
    expect(statuses).toEqual([201, 409]);
    expect(await list(h)).toHaveLength(1);
  });

  test("bad bodies: 400 naming the field, worded as config errors", async () => {
    const h = await harness();
    const cases: [unknown, string | undefined, string][] = [
      [{ hostname: "web1.test" }, "owner", "owner is required (1 to 128 characters, not all spaces, no control characters)"],
      [{ owner: "a" }, "hostname", "hostname is required"],
      [{ owner: "a", hostname: "web1.test", dst_port: 70000 }, "dst_port", "dst_port: 70000 is out of range (an integer from 1 to 65535)"],
      [{ owner: "a", hostname: "web1.test", dst_port: 0 }, "dst_port", "dst_port: 0 is out of range"],
      [{ owner: "a", hostname: "web1.test", dst_port: "80" }, "dst_port", 'dst_port: "80" is not a number'],
      [{ owner: "a", hostname: "web1.test", dst_port: 80.5 }, "dst_port", "dst_port: 80.5 is not an integer"],
      [{ owner: "a", hostname: "web1.test", type: "tcpsyn" }, "type", 'type: "tcpsyn" is not allowed (one of TCPsyn, ICMPping, UDPunreachable, TWAMPlight)'],
      [{ owner: "a", hostname: "web1.test", address_family: "ipv5" }, "address_family", 'address_family: "ipv5" is not allowed (ipv4 or ipv6)'],
      [{ owner: "a", hostname: "web1.test", ip_payload_size: 4 }, "ip_payload_size", "ip_payload_size: 4 is out of range for ICMPping over ipv4 (0 (the bare header) or an integer from 8 to 65515)"],
      [{ owner: "a", hostname: "web1.test", type: "TCPsyn", ip_payload_size: 19 }, "ip_payload_size", "ip_payload_size: 19 is out of range for TCPsyn over ipv4"],
      [{ owner: "a", hostname: "web1.test", ip_payload_size: 65520 }, "ip_payload_size", "ip_payload_size: 65520 is out of range for ICMPping over ipv4"],
      [{ owner: "a", hostname: "web1.test", ip_payload_size: 70000 }, "ip_payload_size", "ip_payload_size: 70000 is out of range"],
      [{ owner: "a", hostname: "web 1" }, "hostname", 'hostname: "web 1" is not a hostname or an IP address'],
      // An address range (the API has no is_subnet, and a range needs it): the request's own field is named.
      [{ owner: "a", hostname: "198.18.0.1-5" }, "hostname", 'hostname: "198.18.0.1-5" is not a hostname or an IP address'],
      [{ owner: "a", hostname: "x".repeat(254) }, "hostname", "hostname: "],
      [{ owner: "", hostname: "web1.test" }, "owner", 'owner: "" is not a valid owner'],
      [{ owner: "   ", hostname: "web1.test" }, "owner", "owner: "],
      [{ owner: "a\nb", hostname: "web1.test" }, "owner", "owner: "],
      [{ owner: "o".repeat(129), hostname: "web1.test" }, "owner", "owner: "],
      [{ owner: 7, hostname: "web1.test" }, "owner", "owner: 7 is not a string"],
      [{ owner: "a", hostname: "web1.test", groups: ["dmz"] }, "groups[0]", 'groups[0]: "dmz" is not allowed (lab or wan)'],
      [{ owner: "a", hostname: "web1.test", groups: [] }, "groups", "groups: the value is empty"],
      [{ owner: "a", hostname: "web1.test", groups: "lab" }, "groups", 'groups: "lab" is not a list'],
      [{ owner: "a", hostname: "web1.test", dts_port: 80 }, "dts_port", "dts_port: unknown field, did you mean dst_port?"],
      [{ owner: "a", hostname: "web1.test", destination: "198.18.0.1" }, "destination", "destination: unknown field"],
      [{ owner: "a", hostname: "web1.test", nb_packets: 100 }, "nb_packets", "nb_packets: unknown field"],
      [["owner", "a"], undefined, "a list is not a map"],
      ["just text", undefined, "the body is not valid JSON"],
      ['"a string"', undefined, '"a string" is not a map'],
      ["null", undefined, "the value is empty"],
      ["42", undefined, "42 is not a map"],
      ["{", undefined, "the body is not valid JSON"],
      ['{"owner":"a",}', undefined, "the body is not valid JSON"],
      ["", undefined, "the body is empty"],
      ["  \n", undefined, "the body is empty"],
    ];
    for (const [body, field, error] of cases) {
      const r = await answer(h.call("POST", "/api/target", typeof body === "string" ? body : JSON.stringify(body)));
      expect({ body, status: r.status }).toEqual({ body, status: 400 });
      expect({ body, field: r.body.field }).toEqual({ body, field });
      expect(String(r.body.error)).toStartWith(error);
    }
    expect(await list(h)).toEqual([]);
    expect(h.lists).toEqual([[]]);
  });

  test("a body that is not UTF-8: 400", async () => {
    const h = await harness();
    const bytes = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);
    const r = await answer(h.api.fetch(new Request("http://api.test/api/target", { method: "POST", headers: { apikey: TOKEN }, body: bytes })));
    expect(r).toEqual({ status: 400, body: { error: "the body is not UTF-8 text", expected: "a JSON object" } });
  });
});

// --- size limit ---

describe("body size", () => {
  test("413 from Content-Length, before reading a byte", async () => {
    const h = await harness();
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(1024));
      },
    });
    const request = new Request("http://api.test/api/target", {
      method: "POST",
      headers: { apikey: TOKEN, "content-length": String(MAX_BODY_BYTES + 1) },
      body,
      duplex: "half",
    } as RequestInit);
    const r = await answer(h.api.fetch(request));
    expect(r).toEqual({ status: 413, body: { error: `the body is larger than ${MAX_BODY_BYTES} bytes`, limit: MAX_BODY_BYTES } });
    expect(pulled).toBeLessThanOrEqual(1);
  });

  test("413 from the streamed size when no length is declared: reading stops at the limit", async () => {
    const h = await harness();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // An endless body: only the cap ends it.
        sent += 4096;
        controller.enqueue(new TextEncoder().encode(" ".repeat(4096)));
      },
    });
    const request = new Request("http://api.test/api/target", { method: "DELETE", headers: { apikey: TOKEN }, body, duplex: "half" } as RequestInit);
    expect(request.headers.get("content-length")).toBeNull();
    const r = await answer(h.api.fetch(request));
    expect(r.status).toBe(413);
    expect(sent).toBeLessThanOrEqual(MAX_BODY_BYTES + 3 * 4096);
  });

  test("a body of exactly the limit is read", async () => {
    const h = await harness();
    const json = JSON.stringify({ owner: "a", hostname: "web1.test" });
    const body = json + " ".repeat(MAX_BODY_BYTES - json.length);
    expect(new TextEncoder().encode(body).byteLength).toBe(MAX_BODY_BYTES);
    expect((await h.call("POST", "/api/target", body)).status).toBe(201);
    expect((await h.call("POST", "/api/target", `${body} `)).status).toBe(413);
    expect(await list(h)).toHaveLength(1);
  });
});

// --- GET ---

describe("GET /api/targets", () => {
  async function seeded(): Promise<Harness> {
    const h = await harness();
    const bodies = [
      { owner: "alice", hostname: "web1.test" },
      { owner: "alice", hostname: "web1.test", address_family: "ipv6" },
      { owner: "bob", hostname: "web2.test", type: "TCPsyn", dst_port: 443 },
      { owner: "bob", hostname: "v4only.test" },
    ];
    for (const body of bodies) expect((await h.call("POST", "/api/target", body)).status).toBe(201);
    return h;
  }
  const keys = (targets: ApiTargetView[]) => targets.map((t) => `${t.owner}/${t.hostname}/${t.address_family}`);

  test("filters by hostname (without case), owner and family; empty filters match everything", async () => {
    const h = await seeded();
    expect(keys(await list(h))).toEqual(["alice/web1.test/ipv4", "alice/web1.test/ipv6", "bob/web2.test/ipv4", "bob/v4only.test/ipv4"]);
    expect(keys(await list(h, "?hostname=WEB1.test"))).toEqual(["alice/web1.test/ipv4", "alice/web1.test/ipv6"]);
    expect(keys(await list(h, "?owner=bob"))).toEqual(["bob/web2.test/ipv4", "bob/v4only.test/ipv4"]);
    expect(keys(await list(h, "?address_family=ipv6"))).toEqual(["alice/web1.test/ipv6"]);
    expect(keys(await list(h, "?owner=alice&address_family=ipv4"))).toEqual(["alice/web1.test/ipv4"]);
    expect(keys(await list(h, "?owner=carol"))).toEqual([]);
    expect(await list(h, "?hostname=&owner=&address_family=")).toHaveLength(4);
  });

  test("bad query parameters: 400 naming them", async () => {
    const h = await seeded();
    expect(await answer(h.call("GET", "/api/targets?address_family=ipv5"))).toMatchObject({ status: 400, body: { field: "address_family" } });
    expect(await answer(h.call("GET", "/api/targets?type=TCPsyn"))).toMatchObject({
      status: 400,
      body: { field: "type", error: "type: unknown query parameter", expected: "one of hostname, owner, address_family" },
    });
    expect(await answer(h.call("GET", "/api/targets?owner=a&owner=b"))).toMatchObject({ status: 400, body: { field: "owner" } });
  });
});

// --- DELETE ---

describe("DELETE /api/target", () => {
  test("the keys a POST used remove exactly that target; the answer lists it", async () => {
    const h = await harness();
    const tcp = { owner: "a", hostname: "web1.test", type: "TCPsyn", dst_port: 443, ip_payload_size: 0, address_family: "ipv4" };
    await h.call("POST", "/api/target", tcp);
    await h.call("POST", "/api/target", { ...tcp, dst_port: 80 });
    const r = await answer(h.call("DELETE", "/api/target", tcp));
    expect(r.status).toBe(200);
    expect(r.body.deleted).toMatchObject([{ hostname: "web1.test", dst_port: 443 }]);
    expect((await list(h)).map((t) => t.dst_port)).toEqual([80]);
    expect(lastList(h)).toMatchObject([{ dst_port: 80 }]);
  });

  test("keys left out match any value; hostname without case; the owner must match", async () => {
    const h = await harness();
    for (const type of ["ICMPping", "TCPsyn", "UDPunreachable"]) {
      await h.call("POST", "/api/target", { owner: "a", hostname: "web1.test", type });
    }
    await h.call("POST", "/api/target", { owner: "b", hostname: "web2.test" });
    expect(await answer(h.call("DELETE", "/api/target", { owner: "b", hostname: "web1.test" }))).toMatchObject({
      status: 404,
      body: { error: "no target matches" },
    });
    const r = await answer(h.call("DELETE", "/api/target", { owner: "a", hostname: "Web1.Test", address_family: "ipv4" }));
    expect((r.body.deleted as unknown[]).length).toBe(3);
    expect((await list(h)).map((t) => t.hostname)).toEqual(["web2.test"]);
    expect(await answer(h.call("DELETE", "/api/target", { owner: "a", hostname: "web1.test" }))).toMatchObject({ status: 404 });
  });

  test("bad bodies: 400 naming the field; lifetime and groups are not keys", async () => {
    const h = await harness();
    await h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" });
    for (const [body, field] of [
      [{ hostname: "web1.test" }, "owner"],
      [{ owner: "a", hostname: "web1.test", dst_port: -1 }, "dst_port"],
      [{ owner: "a", hostname: "web1.test", type: "ping" }, "type"],
      [{ owner: "a", hostname: "web1.test", lifetime: "1d" }, "lifetime"],
      [{ owner: "a", hostname: "web1.test", groups: ["lab"] }, "groups"],
      [{ owner: "a", hostname: ["web1.test"] }, "hostname"],
    ] as [Record<string, unknown>, string | undefined][]) {
      const r = await answer(h.call("DELETE", "/api/target", body));
      expect({ body, status: r.status, field: r.body.field }).toEqual({ body, status: 400, field });
    }
    expect(await list(h)).toHaveLength(1);
  });
});

// --- auth, methods, paths ---

describe("apikey, methods and paths", () => {
  test("missing, empty or wrong apikey: 401 naming apikey, nothing changes", async () => {
    const h = await harness();
    await h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" });
    const before = await list(h);
    const cases: [string | null, string][] = [
      [null, "the apikey header is missing"],
      ["", "the apikey header is empty"],
      ["wrong", "wrong apikey"],
      [TOKEN.slice(0, -1), "wrong apikey"],
      [`${TOKEN}x`, "wrong apikey"],
      [TOKEN.toUpperCase(), "wrong apikey"],
      ["k".repeat(10_000), "wrong apikey"],
    ];
    for (const [key, error] of cases) {
      for (const [method, path, body] of [
        ["GET", "/api/targets", undefined],
        ["POST", "/api/target", { owner: "a", hostname: "web2.test" }],
        ["DELETE", "/api/target", { owner: "a", hostname: "web1.test" }],
      ] as const) {
        const r = await answer(h.call(method, path, body, key));
        expect(r).toEqual({ status: 401, body: { error, field: "apikey" } });
      }
    }
    expect(await list(h)).toEqual(before);
  });

  test("the apikey is compared with crypto.timingSafeEqual over digests of equal length", async () => {
    const h = await harness();
    const spy = spyOn(crypto, "timingSafeEqual");
    try {
      await h.call("GET", "/api/targets", undefined, "x");
      await h.call("GET", "/api/targets", undefined, "y".repeat(300));
      await h.call("GET", "/api/targets");
      expect(spy).toHaveBeenCalledTimes(3);
      for (const [a, b] of spy.mock.calls) {
        expect((a as Buffer).byteLength).toBe(32);
        expect((b as Buffer).byteLength).toBe(32);
      }
      expect(spy.mock.results.map((r) => r.value)).toEqual([false, false, true]);
    } finally {
      spy.mockRestore();
    }
  });

  test("405 with Allow, 404 for unknown paths, /api/ui redirects to /api/ui/", async () => {
    const h = await harness();
    for (const [method, path, allow] of [
      ["POST", "/api/targets", "GET"],
      ["DELETE", "/api/targets", "GET"],
      ["GET", "/api/target", "POST, DELETE"],
      ["PUT", "/api/target", "POST, DELETE"],
      ["PATCH", "/api/target", "POST, DELETE"],
      ["OPTIONS", "/api/target", "POST, DELETE"],
      ["HEAD", "/api/targets", "GET"],
      ["POST", "/api/openapi.json", "GET"],
      ["DELETE", "/api/ui/", "GET"],
    ] as const) {
      const r = await h.call(method, path, undefined, null);
      expect({ method, path, status: r.status, allow: r.headers.get("allow") }).toEqual({ method, path, status: 405, allow });
    }
    for (const path of ["/", "/api", "/api/", "/api/targets/", "/API/targets", "/api/target/web1", "/api/ui/index.html", "/metrics", "/api/%00"]) {
      const r = await answer(h.call("GET", path));
      expect({ path, status: r.status }).toEqual({ path, status: 404 });
    }
    const ui = await h.call("GET", "/api/ui", undefined, null);
    expect(ui.status).toBe(308);
    expect(new URL(ui.headers.get("location") ?? "", "http://api.test/api/ui").pathname).toBe("/api/ui/");
  });
});

// --- expiry ---

describe("expiry", () => {
  test("a target past its lifetime is dropped and the list published again", async () => {
    const h = await harness();
    await h.call("POST", "/api/target", { owner: "a", hostname: "web1.test", lifetime: "1h" });
    h.clock.now += 30 * 60_000;
    await h.call("POST", "/api/target", { owner: "a", hostname: "web2.test", lifetime: "1h" });
    h.clock.now += 30 * 60_000 - 1;
    h.api.sweep();
    expect(lastList(h)).toHaveLength(2);
    h.clock.now += 1;
    h.api.sweep();
    expect(lastList(h)).toMatchObject([{ hostname: "web2.test" }]);
    expect((await list(h)).map((t) => t.hostname)).toEqual(["web2.test"]);
    h.clock.now += 30 * 60_000;
    // A request sweeps too: an expired target neither shows nor blocks a POST of the same.
    expect((await list(h)).map((t) => t.hostname)).toEqual([]);
    expect(lastList(h)).toEqual([]);
  });

  test("the timer drops a target without any request", async () => {
    const lists: unknown[][] = [];
    const dir = await tempDir();
    const api = await createApi(BASE, {
      publish: (l) => lists.push([...l]),
      statePath: join(dir, "state.json"),
      reportError: () => undefined,
      lookup: fakeLookup,
    });
    open.push(api);
    const r = await api.fetch(
      new Request("http://api.test/api/target", {
        method: "POST",
        headers: { apikey: TOKEN },
        body: JSON.stringify({ owner: "a", hostname: "web1.test", lifetime: 1 }),
      }),
    );
    expect(r.status).toBe(201);
    expect(lists.at(-1)).toHaveLength(1);
    const deadline = Date.now() + 3_000;
    while (lists.at(-1)?.length !== 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(lists.at(-1)).toEqual([]);
    expect(api.targets()).toEqual([]);
  });
});

// --- state file ---

describe("state file", () => {
  test("targets come back after a restart, with their dates, and are published at start", async () => {
    const dir = await tempDir();
    const first = await harness({ dir });
    await first.call("POST", "/api/target", { owner: "a", hostname: "web1.test", type: "TCPsyn", dst_port: 443, lifetime: "2h" });
    first.clock.now += 60_000;
    await first.call("POST", "/api/target", { owner: "b", hostname: "fd00::5", address_family: "ipv6", groups: ["wan"] });
    const before = await list(first);
    await first.api.close();

    const second = await harness({ dir, clock: { now: first.clock.now + 60_000 } });
    expect(await list(second)).toEqual(before);
    expect(second.lists[0]).toEqual(first.lists.at(-1));
    expect(second.errors).toEqual([]);
    expect(await readdir(dir)).toEqual(["api-targets.json"]);
  });

  test("at start: expired targets dropped, lifetimes cut to a lowered maximum, chosen groups narrowed", async () => {
    const dir = await tempDir();
    const first = await harness({ dir });
    await first.call("POST", "/api/target", { owner: "a", hostname: "web1.test", lifetime: "1h" });
    await first.call("POST", "/api/target", { owner: "a", hostname: "web2.test", lifetime: "20d", groups: ["wan"] });
    await first.api.close();

    const second = await harness({
      dir,
      config: { max_target_lifetime: 86400 * 7, groups: ["lab"] },
      clock: { now: T0 + 2 * 3_600_000 },
    });
    expect(await list(second)).toMatchObject([{ hostname: "web2.test", lifetime: 604800, groups: ["lab"] }]);
    const saved = JSON.parse(await readFile(second.statePath, "utf8")) as { targets: unknown[] };
    expect(saved.targets).toMatchObject([{ hostname: "web2.test", lifetime: 604800 }]);
  });

  test("every change is written atomically: no temporary file is ever left", async () => {
    const h = await harness({ config: { max_targets: 50 } });
    const writes: Promise<Response>[] = [];
    for (let i = 0; i < 20; i++) writes.push(h.call("POST", "/api/target", { owner: "a", hostname: `198.18.1.${i}` }));
    expect((await Promise.all(writes)).map((r) => r.status)).toEqual(Array(20).fill(201));
    for (let i = 0; i < 20; i += 2) await h.call("DELETE", "/api/target", { owner: "a", hostname: `198.18.1.${i}` });
    expect(await readdir(h.dir)).toEqual(["api-targets.json"]);
    const saved = JSON.parse(await readFile(h.statePath, "utf8")) as { version: number; targets: ApiTargetView[] };
    expect(saved.version).toBe(1);
    expect(saved.targets.map((t) => t.hostname)).toEqual((await list(h)).map((t) => t.hostname));
    expect(saved.targets).toHaveLength(10);
  });

  test("writeFileAtomic: a failed write leaves the old file whole and no temporary file", async () => {
    const dir = await tempDir();
    const path = join(dir, "state.json");
    await writeFileAtomic(path, "old");
    await writeFileAtomic(path, "new");
    expect(await readFile(path, "utf8")).toBe("new");
    await mkdir(join(dir, "a-directory"));
    await writeFile(join(dir, "a-directory", "x"), "keeps the directory non-empty");
    await expect(writeFileAtomic(join(dir, "a-directory"), "text")).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(["a-directory", "state.json"]);
    expect(await readFile(path, "utf8")).toBe("new");
  });

  test("a state file that cannot be written: the target is still added, with a warning, and the error reported", async () => {
    const dir = await tempDir();
    const h = await harness({ dir, statePath: join(dir, "no-such-dir", "state.json") });
    const r = await answer(h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" }));
    expect(r.status).toBe(201);
    expect(r.body.warnings).toEqual([expect.stringMatching(/^cannot write the state file: .*will not survive a restart$/)]);
    expect(h.errors).toEqual([expect.stringMatching(/^cannot write the state file/)]);
    expect(await list(h)).toHaveLength(1);
    expect(await readdir(dir)).toEqual([]);
  });

  test("a corrupt state file is reported and moved aside; the API starts empty", async () => {
    for (const garbage of ["{not json", '{"version":2,"targets":[]}', "[]", '{"version":1}']) {
      const dir = await tempDir();
      const path = join(dir, "api-targets.json");
      await writeFile(path, garbage);
      const h = await harness({ dir });
      expect(h.errors).toEqual([expect.stringMatching(/^state file is corrupt \(.*\); it was moved to .*api-targets\.json\.corrupt-/)]);
      expect(h.lists).toEqual([[]]);
      expect(await list(h)).toEqual([]);
      const files = (await readdir(dir)).sort();
      expect(files).toEqual(["api-targets.json", expect.stringMatching(/^api-targets\.json\.corrupt-2026-03-01T12-00-00-000Z$/)]);
      expect(await readFile(join(dir, files[1]!), "utf8")).toBe(garbage);
      // The API works on and saves a fresh file.
      expect((await h.call("POST", "/api/target", { owner: "a", hostname: "web1.test" })).status).toBe(201);
      expect(JSON.parse(await readFile(path, "utf8"))).toMatchObject({ version: 1, targets: [{ hostname: "web1.test" }] });
    }
  });

  test("invalid entries are dropped and reported, the valid ones kept", async () => {
    const dir = await tempDir();
    const first = await harness({ dir });
    await first.call("POST", "/api/target", { owner: "a", hostname: "web1.test" });
    await first.call("POST", "/api/target", { owner: "a", hostname: "web2.test" });
    await first.api.close();
    const saved = JSON.parse(await readFile(first.statePath, "utf8")) as { targets: Record<string, unknown>[] };
    saved.targets.push(
      { ...saved.targets[0], dst_port: 70000 },
      { hostname: "x" },
      // Valid field by field, but the prober would refuse it, and with it the whole list.
      { ...saved.targets[0], hostname: "web3.test", ip_payload_size: 4 },
    );
    await writeFile(first.statePath, JSON.stringify(saved));

    const second = await harness({ dir });
    expect((await list(second)).map((t) => t.hostname)).toEqual(["web1.test", "web2.test"]);
    expect(second.errors).toEqual([
      expect.stringMatching(
        /3 invalid target\(s\): targets\[2\]: dst_port: 70000 is out of range .*; targets\[3\]: .*; targets\[4\]: 4 is out of range for ICMPping over ipv4/,
      ),
    ]);
    expect(JSON.parse(await readFile(second.statePath, "utf8")).targets).toHaveLength(2);
  });
});

// --- documents ---

describe("OpenAPI document and page", () => {
  test("openapi.json: OpenAPI 3.1, every endpoint, the apikey scheme, body schemas from the validators; no apikey needed", async () => {
    const h = await harness();
    const r = await h.call("GET", "/api/openapi.json", undefined, null);
    expect(r.status).toBe(200);
    type Operation = { security?: unknown[]; requestBody?: unknown; responses: Record<string, unknown> };
    const doc = (await r.json()) as {
      openapi: string;
      security: unknown;
      paths: Record<string, Record<string, Operation>>;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, { properties?: Record<string, { enum?: unknown; items?: { enum?: unknown } }>; required?: string[] }> };
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.apikey).toMatchObject({ type: "apiKey", in: "header", name: "apikey" });
    expect(doc.security).toEqual([{ apikey: [] }]);
    const operations = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
    expect(operations.sort()).toEqual(["DELETE /api/target", "GET /api/openapi.json", "GET /api/targets", "GET /api/ui/", "POST /api/target"]);
    expect(Object.keys(doc.paths["/api/target"]!.post!.responses).sort()).toEqual(["201", "400", "401", "405", "409", "413", "422"]);
    expect(Object.keys(doc.paths["/api/target"]!.delete!.responses).sort()).toEqual(["200", "400", "401", "404", "405", "413"]);
    expect(doc.paths["/api/ui/"]!.get!.security).toEqual([]);
    expect(doc.paths["/api/targets"]!.get!.security).toBeUndefined();
    const request = doc.components.schemas.TargetRequest!;
    expect(request.required).toEqual(["owner", "hostname"]);
    expect(request.properties?.type?.enum).toEqual(["TCPsyn", "ICMPping", "UDPunreachable", "TWAMPlight"]);
    expect(request.properties?.groups?.items?.enum).toEqual(["lab", "wan"]);
    expect(Object.keys(doc.components.schemas.TargetKeys!.properties ?? {})).toEqual([
      "owner",
      "hostname",
      "type",
      "dst_port",
      "ip_payload_size",
      "address_family",
    ]);
    // Every $ref points at a schema that exists.
    for (const m of JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) {
      expect(Object.keys(doc.components.schemas)).toContain(m[1]!);
    }
  });

  test("the page: served without apikey, self-contained, locked to its origin by its CSP", async () => {
    const h = await harness();
    const r = await h.call("GET", "/api/ui/", undefined, null);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const page = await r.text();
    expect(page).toStartWith("<!doctype html>");
    // Nothing from elsewhere: no absolute URL at all, no element that loads a resource.
    expect(page).not.toMatch(/https?:\/\//i);
    expect(page).not.toMatch(/\/\/[a-z0-9.-]+\.[a-z]{2,}/i);
    expect(page).not.toMatch(/<(script|link|img|iframe)[^>]*\s(src|href)=/i);
    expect(page).not.toMatch(/@import|url\(/);
    expect(page).toContain('new URL("../openapi.json", pageUrl)');
    // Its script parses, and the CSP allows exactly its inline script and style.
    const script = /<script>([\s\S]*?)<\/script>/.exec(page)?.[1] ?? "";
    expect(() => new Function(script)).not.toThrow();
    const csp = r.headers.get("content-security-policy") ?? "";
    const hash = (text: string) => `'sha256-${crypto.createHash("sha256").update(text).digest("base64")}'`;
    expect(csp).toContain(`script-src ${hash(script)}`);
    expect(csp).toContain(`style-src ${hash(/<style>([\s\S]*?)<\/style>/.exec(page)?.[1] ?? "")}`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
  });
});

// --- start(): the inventory over a real socket ---

async function freePort(): Promise<number> {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port;
  await probe.stop(true);
  if (port === undefined) throw new Error("no port");
  return port;
}

describe("start()", () => {
  test("listens, serves, saves beside the config, and stops when aborted", async () => {
    const dir = await tempDir();
    const port = await freePort();
    const controller = new AbortController();
    const lists: unknown[][] = [];
    const logs: string[] = [];
    const errors: string[] = [];
    const context: InventoryContext = {
      baseDir: dir,
      logLevel: "INFO",
      log: (level, message) => logs.push(`${level} ${message}`),
      reportError: (message) => errors.push(message),
      signal: controller.signal,
    };
    await start("api", { ...BASE, listen_port: port }, (l) => lists.push([...l]), context);
    try {
      expect(lists).toEqual([[]]);
      expect(logs).toContain("INFO targets API listening");
      const url = `http://127.0.0.1:${port}`;
      // systemLookup answers IP literals and localhost itself: no DNS is asked here.
      const post = await fetch(`${url}/api/target`, {
        method: "POST",
        headers: { apikey: TOKEN, "content-type": "application/json" },
        body: JSON.stringify({ owner: "a", hostname: "127.0.0.1", type: "TCPsyn", dst_port: 9 }),
      });
      expect(post.status).toBe(201);
      expect(lists.at(-1)).toMatchObject([{ hostname: "127.0.0.1", type: "TCPsyn", dst_port: 9 }]);
      const local = await fetch(`${url}/api/target`, {
        method: "POST",
        headers: { apikey: TOKEN },
        body: JSON.stringify({ owner: "a", hostname: "localhost", address_family: "ipv6" }),
      });
      expect(local.status).toBe(201);
      expect((await fetch(`${url}/api/ui/`)).status).toBe(200);
      const big = await fetch(`${url}/api/target`, { method: "POST", headers: { apikey: TOKEN }, body: "x".repeat(MAX_BODY_BYTES * 2) });
      expect(big.status).toBe(413);
      expect(await big.json()).toMatchObject({ limit: MAX_BODY_BYTES });
      const saved = JSON.parse(await readFile(join(dir, "api-targets.json"), "utf8")) as { targets: unknown[] };
      expect(saved.targets).toHaveLength(2);
    } finally {
      controller.abort();
    }
    await Bun.sleep(20);
    await expect(fetch(`http://127.0.0.1:${port}/api/ui/`)).rejects.toThrow();
    expect(errors).toEqual([]);
  });

  test("over a raw socket: HTTP/1.0 without Host is served (it was a 400); an invalid Host, or two, is a 400 naming host", async () => {
    const dir = await tempDir();
    const port = await freePort();
    const controller = new AbortController();
    const errors: string[] = [];
    const context: InventoryContext = {
      baseDir: dir,
      logLevel: "INFO",
      log: () => undefined,
      reportError: (message) => errors.push(message),
      signal: controller.signal,
    };
    await start("api", { ...BASE, listen_port: port }, () => undefined, context);
    const ask = async (text: string) => {
      const x = await exchange(port, { pieces: [bytes(text)], idleMs: 5_000 });
      const r = x.responses[0];
      return { end: x.end, status: r?.status, body: r && (JSON.parse(Buffer.from(r.body).toString()) as unknown) };
    };
    try {
      expect(await ask(`GET /api/targets HTTP/1.0\r\napikey: ${TOKEN}\r\n\r\n`)).toEqual({ end: "answered", status: 200, body: [] });
      expect(await ask("GET /api/openapi.json HTTP/1.0\r\n\r\n")).toMatchObject({ status: 200 });
      for (const host of ["[::1", "x:99999", "a b", "x/y", "a@b"]) {
        expect({ host, ...(await ask(`GET /api/targets HTTP/1.1\r\nHost: ${host}\r\napikey: ${TOKEN}\r\n\r\n`)) }).toMatchObject({
          host,
          status: 400,
          body: { error: BAD_HOST, field: "host" },
        });
      }
      expect(await ask(`GET /api/targets HTTP/1.1\r\nHost: a\r\nHost: b\r\napikey: ${TOKEN}\r\n\r\n`)).toMatchObject({ status: 400 });
    } finally {
      controller.abort();
    }
    expect(errors).toEqual([]);
  });

  test("invalid options or a port in use: start() rejects with the reason", async () => {
    const dir = await tempDir();
    const context: InventoryContext = {
      baseDir: dir,
      logLevel: "INFO",
      log: () => undefined,
      reportError: () => undefined,
      signal: new AbortController().signal,
    };
    await expect(start("api", { ...BASE, listen_port: 0 }, () => undefined, context)).rejects.toThrow(
      "invalid api options: listen_port: 0 is out of range (an integer from 1 to 65535)",
    );
    const { token: _token, ...noToken } = BASE;
    await expect(start("api", noToken, () => undefined, context)).rejects.toThrow("invalid api options: token is required");
    const busy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    try {
      await expect(start("api", { ...BASE, listen_port: busy.port }, () => undefined, context)).rejects.toThrow(
        `cannot listen on 127.0.0.1 port ${busy.port}`,
      );
    } finally {
      await busy.stop(true);
    }
  });

  test("systemLookup answers literals and localhost without a resolver", async () => {
    expect(await systemLookup("198.18.0.1", "ipv4")).toBe("198.18.0.1");
    expect(await systemLookup("198.18.0.1", "ipv6")).toBeUndefined();
    expect(await systemLookup("fd00::1", "ipv6")).toBe("fd00::1");
    expect(await systemLookup("fd00::1", "ipv4")).toBeUndefined();
    expect(await systemLookup("LOCALHOST", "ipv4")).toBe("127.0.0.1");
    expect(await systemLookup("localhost", "ipv6")).toBe("::1");
  });
});
