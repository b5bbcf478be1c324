/**
 * What both listeners share (src/http-server.ts): the request URL read without trusting Host,
 * and the production options (no development error page, a bare 500 from the last-resort handler).
 */
import { expect, test } from "bun:test";
import { INTERNAL_ERROR_BODY, productionServeOptions, requestUrl } from "../src/http-server.ts";
import { bytes, exchange } from "./support/raw-http.ts";

test("requestUrl: the path and query whatever the Host; undefined for an invalid Host or two", () => {
  const at = (url: string, host?: string) =>
    requestUrl({ url, headers: new Headers(host === undefined ? {} : { host }) } as Request);
  // What Bun gives for HTTP/1.0 without Host, or an empty Host: the path alone.
  expect(at("/metrics?x=1")?.pathname).toBe("/metrics");
  expect(at("/metrics?x=1")?.search).toBe("?x=1");
  expect(at("/metrics", "")?.pathname).toBe("/metrics");
  expect(at("http://127.0.0.1:9090/metrics", "127.0.0.1:9090")?.pathname).toBe("/metrics");
  expect(at("http://[fd00::1]:9090/metrics", "[fd00::1]:9090")?.pathname).toBe("/metrics");
  expect(at("/a/../metrics")?.pathname).toBe("/metrics");
  // What Bun gives for invalid Host values: relative (it dropped the host) or unparsable.
  for (const [url, host] of [
    ["/metrics", "a b"],
    ["/metrics", "x/y"],
    ["/metrics", "u@x"],
    ["http://[::1/metrics", "[::1"],
    ["http://%/metrics", "%"],
    ["http://x:99999/metrics", "x:99999"],
    ["http://a/metrics", "a, b"],
  ] as const) {
    expect({ host, url: at(url, host) }).toEqual({ host, url: undefined });
  }
});

test("productionServeOptions: what escapes the fetch handler is a bare 500 and one reported line, never Bun's error page", async () => {
  const reported: string[] = [];
  const server = Bun.serve({
    ...productionServeOptions((m) => reported.push(m)),
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => {
      throw new Error(`broke at ${import.meta.path}:1:1`);
    },
  });
  try {
    const x = await exchange(server.port!, { pieces: [bytes("GET / HTTP/1.0\r\n\r\n")], idleMs: 5_000 });
    const r = x.responses[0]!;
    expect({ status: r.status, body: Buffer.from(r.body).toString() }).toEqual({ status: 500, body: INTERNAL_ERROR_BODY });
    expect(r.head).not.toContain(import.meta.dir);
  } finally {
    await server.stop(true);
  }
  expect(reported).toEqual([`HTTP request failed: broke at ${import.meta.path}:1:1`]);
});

test("productionServeOptions: a report that throws still gets the client a bare 500", () => {
  const { error } = productionServeOptions(() => {
    throw new Error("log sink broken");
  });
  const r = error(new Error("x"));
  expect(r.status).toBe(500);
});
