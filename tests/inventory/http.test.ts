import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_BODY_BYTES, start, USER_AGENT } from "../../src/inventory/http.ts";
import { run, waitFor, type Running } from "../fixtures/inventory/harness.ts";

/** What the test server answers; replaced by each test, and while a test runs. */
let answer: (request: Request) => Response | Promise<Response>;
/** Requests seen, with their headers. */
let requests: { path: string; headers: Headers }[];
let server: ReturnType<typeof Bun.serve>;
let base: string;
const running: Running[] = [];

const LIST_A = [
  { hostname: "192.0.2.1", type: "ICMPping" },
  { hostname: "web.example", destination: "192.0.2.2", type: "TCPsyn", dst_port: 443, groups: ["wan"] },
];
const LIST_B = [...LIST_A, { hostname: "2001:db8::1", type: "UDPunreachable", dst_port: 33434, address_family: "ipv6" }];
/** [1].dst_port is out of range, [2].hostname has a space. */
const INVALID = [
  { hostname: "192.0.2.1", type: "ICMPping" },
  { hostname: "192.0.2.3", type: "TCPsyn", dst_port: 70000 },
  { hostname: "bad host", type: "ICMPping" },
];

beforeEach(async () => {
  requests = [];
  answer = () => Response.json(LIST_A);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      requests.push({ path: new URL(request.url).pathname, headers: request.headers });
      return answer(request);
    },
  });
  base = await mkdtemp(join(tmpdir(), "netprobify-http-inventory-"));
});

afterEach(async () => {
  for (const inventory of running.splice(0)) await inventory.stop();
  await server.stop(true);
  await rm(base, { recursive: true, force: true });
});

const url = (path = "/targets") => `http://127.0.0.1:${server.port}${path}`;

/** Polls every 50 ms unless told otherwise (the config's schema asks for whole seconds; start() takes any). */
function startWith(options: Record<string, unknown> = {}): Running {
  const inventory = run(start, { url: url(), refresh_interval: 0.05, timeout: 2, ...options }, base, "cmdb");
  running.push(inventory);
  return inventory;
}

const polls = (n: number) => waitFor(() => requests.length >= n, `poll #${n} (have ${requests.length})`);
const published = (inventory: Running, n: number) =>
  waitFor(() => inventory.published.length >= n, `list #${n} (have ${inventory.published.length})`);
const errorsOf = (inventory: Running) => inventory.errors.map((e) => e.message);

test("publishes the list at once, with the Accept and User-Agent headers and no Authorization", async () => {
  const inventory = startWith({ refresh_interval: 60 });
  await published(inventory, 1);
  expect(inventory.last()).toEqual(LIST_A);
  expect(requests.length).toBe(1);
  const headers = requests[0]!.headers;
  expect(headers.get("accept")).toBe("application/json");
  expect(headers.get("user-agent")).toBe(USER_AGENT);
  expect(USER_AGENT).toStartWith("netprobify/");
  expect(headers.get("authorization")).toBeNull();
  expect(inventory.errors).toEqual([]);
});

test("a changed list is published, an identical one is not", async () => {
  const inventory = startWith();
  await published(inventory, 1);
  await polls(5);
  expect(inventory.published.length).toBe(1);
  answer = () => Response.json(LIST_B);
  await published(inventory, 2);
  expect(inventory.last()).toEqual(LIST_B);
  const seen = requests.length;
  await polls(seen + 4);
  expect(inventory.published.length).toBe(2);
  expect(inventory.errors).toEqual([]);
});

test("bearer_token is sent as Authorization: Bearer", async () => {
  const inventory = startWith({ bearer_token: "s3cret-token" });
  await published(inventory, 1);
  expect(requests[0]!.headers.get("authorization")).toBe("Bearer s3cret-token");
});

test("bearer_token_file is read at every poll, trimmed, relative to the config's directory", async () => {
  await writeFile(join(base, "token"), "  first-token\n");
  const inventory = startWith({ bearer_token_file: "token" });
  await published(inventory, 1);
  expect(requests[0]!.headers.get("authorization")).toBe("Bearer first-token");

  await writeFile(join(base, "token"), "rotated-token\n");
  await waitFor(() => requests.at(-1)?.headers.get("authorization") === "Bearer rotated-token", "the rotated token");

  // An unreadable token file: no request is made without it, the error is reported, the list stays.
  await rm(join(base, "token"));
  await waitFor(() => inventory.errors.length >= 1, "the report");
  expect(errorsOf(inventory)[0]).toBe(
    `${url()}: cannot read bearer_token_file ${join(base, "token")}: no such file; keeping the last good list`,
  );
  expect(inventory.published.length).toBe(1);
});

test("status 500 is reported and the last good list stays", async () => {
  const inventory = startWith();
  await published(inventory, 1);
  answer = () => new Response("boom", { status: 500 });
  await waitFor(() => inventory.errors.length >= 2, "two reports");
  expect(errorsOf(inventory)[0]).toBe(`${url()}: HTTP status 500 Internal Server Error, not 200; keeping the last good list`);
  expect(inventory.errors[0]!.fields).toEqual({ url: url() });
  expect(inventory.published.length).toBe(1);

  // Back to the same list: nothing to publish.
  answer = () => Response.json(LIST_A);
  const seen = requests.length;
  await polls(seen + 3);
  expect(inventory.published.length).toBe(1);
  expect(inventory.logs.some((l) => l.message === "the source answers a valid list again")).toBe(true);
});

test("a server that never answers times out after `timeout` seconds; the last good list stays", async () => {
  const inventory = startWith({ timeout: 0.2 });
  await published(inventory, 1);
  answer = () => new Promise<Response>(() => {});
  const began = performance.now();
  await waitFor(() => inventory.errors.length >= 1, "the timeout");
  const waited = performance.now() - began;
  expect(errorsOf(inventory)[0]).toBe(`${url()}: no complete answer within 0.2 s; keeping the last good list`);
  expect(waited).toBeGreaterThan(150);
  expect(waited).toBeLessThan(1_500);
  expect(inventory.published.length).toBe(1);
});

test("a body that stalls half-way also times out", async () => {
  answer = () =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('[{"hostname": "192.0.2.1",'));
        },
      }),
      { headers: { "content-type": "application/json" } },
    );
  const inventory = startWith({ timeout: 0.2 });
  await waitFor(() => inventory.errors.length >= 1, "the timeout");
  expect(errorsOf(inventory)[0]).toBe(`${url()}: no complete answer within 0.2 s; keeping the last good list`);
  expect(inventory.published).toEqual([]);
});

test("connection refused is reported", async () => {
  const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = closed.port;
  await closed.stop(true);
  const inventory = startWith({ url: `http://127.0.0.1:${port}/` });
  await waitFor(() => inventory.errors.length >= 1, "the report");
  expect(errorsOf(inventory)[0]).toBe(`http://127.0.0.1:${port}/: connection refused; keeping the last good list`);
  expect(inventory.published).toEqual([]);
});

test("garbage instead of JSON is reported and the last good list stays", async () => {
  const inventory = startWith();
  await published(inventory, 1);
  answer = () => new Response("<html>maintenance</html>", { headers: { "content-type": "text/html" } });
  await waitFor(() => inventory.errors.length >= 1, "the report");
  expect(errorsOf(inventory)[0]).toStartWith(`${url()}: the answer is not JSON (content-type text/html): `);
  expect(inventory.published.length).toBe(1);
});

test("a list failing the schema is reported with its paths and the last good list stays", async () => {
  const inventory = startWith();
  await published(inventory, 1);
  answer = () => Response.json(INVALID);
  await waitFor(() => inventory.errors.length >= 1, "the report");
  expect(errorsOf(inventory)[0]).toBe(
    `${url()}: the list is invalid: [1].dst_port: 70000 is out of range (an integer from 1 to 65535); ` +
      `[2].hostname: "bad host" is not a hostname or an IP address (a hostname or an IP address); keeping the last good list`,
  );
  answer = () => Response.json({ targets: LIST_B });
  await waitFor(() => inventory.errors.length >= 3, "the next reports");
  expect(errorsOf(inventory).at(-1)).toStartWith(`${url()}: the list is invalid: a map is not a list`);
  expect(inventory.published).toEqual([LIST_A]);
});

test("a body over the size limit is refused, with or without Content-Length", async () => {
  const inventory = startWith();
  await published(inventory, 1);
  answer = () => new Response("x".repeat(MAX_BODY_BYTES + 1));
  await waitFor(() => inventory.errors.length >= 1, "the report");
  expect(errorsOf(inventory)[0]).toBe(
    `${url()}: the answer is ${MAX_BODY_BYTES + 1} bytes, over the limit of ${MAX_BODY_BYTES} bytes; keeping the last good list`,
  );
  // Streamed without a length, and without end: reading stops at the limit.
  const chunk = new Uint8Array(1024 * 1024).fill(0x20);
  answer = () => new Response(new ReadableStream({ pull: (controller) => controller.enqueue(chunk) }));
  await waitFor(() => errorsOf(inventory).some((e) => e.includes("over the limit of") && !e.includes(" bytes, over")), "the streamed report");
  expect(errorsOf(inventory).at(-1)).toBe(
    `${url()}: the answer is over the limit of ${MAX_BODY_BYTES} bytes; keeping the last good list`,
  );
  expect(inventory.published.length).toBe(1);
});

test("redirects are followed within the scheme, never to another scheme", async () => {
  answer = (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/targets") return Response.redirect(url("/moved"), 302);
    if (path === "/moved") return Response.json(LIST_B);
    return Response.redirect(`https://127.0.0.1:${server.port}/targets`, 301);
  };
  const inventory = startWith({ bearer_token: "tok" });
  await published(inventory, 1);
  expect(inventory.last()).toEqual(LIST_B);
  expect(requests.slice(0, 2).map((r) => [r.path, r.headers.get("authorization")])).toEqual([
    ["/targets", "Bearer tok"],
    ["/moved", "Bearer tok"],
  ]);

  const other = startWith({ url: url("/to-https") });
  await waitFor(() => other.errors.length >= 1, "the report");
  expect(errorsOf(other)[0]).toBe(
    `${url("/to-https")}: HTTP status 301 redirects to https: from http:; not followed; keeping the last good list`,
  );
  expect(other.published).toEqual([]);
});

test("stopping ends start() at once, even in the middle of a poll", async () => {
  answer = () => new Promise<Response>(() => {});
  const inventory = run(start, { url: url(), refresh_interval: 60, timeout: 30 }, base);
  await polls(1);
  const began = performance.now();
  await inventory.stop();
  expect(performance.now() - began).toBeLessThan(500);
  expect(inventory.errors).toEqual([]);
  expect(inventory.published).toEqual([]);
});

test("stopped, it leaves nothing that keeps the process alive", async () => {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "..", "fixtures", "inventory", "stop-exits.ts"), "http"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill(), 5_000);
  const code = await child.exited;
  clearTimeout(timer);
  expect(await new Response(child.stderr).text()).toBe("");
  expect(await new Response(child.stdout).text()).toBe("stopped\n");
  expect(code).toBe(0);
});
