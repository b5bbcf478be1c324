/**
 * The web config's rules on the metrics listener (src/web/access.ts), on Request objects: Basic
 * auth against bcrypt hashes (htpasswd's $2y$ as it is), the 401 with its challenge, the cached
 * verdicts, the headers on every answer, and the rate limit on a fake clock.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { Access, basicCredentials, UNKNOWN_USER_HASH } from "../../src/web/access.ts";
import { htpasswdHash } from "../support/pki.ts";

let hash: string;
beforeAll(() => {
  hash = htpasswdHash("prom", "s3cr:et");
});

const ok = async () => new Response("metrics\n");
const request = (auth?: string) =>
  new Request("http://127.0.0.1/metrics", auth === undefined ? {} : { headers: { authorization: `Basic ${Buffer.from(auth).toString("base64")}` } });

test("basicCredentials splits at the first colon (the password may hold more) and refuses what is not Basic", () => {
  const b64 = (s: string) => `Basic ${Buffer.from(s).toString("base64")}`;
  expect(basicCredentials(b64("prom:s3cr:et"))).toEqual({ user: "prom", password: "s3cr:et" });
  expect(basicCredentials(`basic ${Buffer.from("u:").toString("base64")}`)).toEqual({ user: "u", password: "" });
  for (const bad of [null, "", "Bearer abc", b64("no-colon"), "Basic !!!", "Basic"]) expect(basicCredentials(bad)).toBeNull();
});

describe("basic_auth_users", () => {
  let access: Access;
  let handler: (r: Request) => Promise<Response>;
  beforeAll(() => {
    access = new Access({ users: new Map([["prom", hash]]), headers: [], rateLimit: null });
    handler = access.wrap(ok);
  });

  test("the right user and password (htpasswd's $2y$ hash) get through", async () => {
    const r = await handler(request("prom:s3cr:et"));
    expect([r.status, await r.text()]).toEqual([200, "metrics\n"]);
  });

  test("401 with a Basic challenge: no credentials, a wrong password, an unknown user, another scheme", async () => {
    const cases = [request(), request("prom:s3cr:eT"), request("nobody:s3cr:et"), request("prom:"), new Request("http://x/", { headers: { authorization: "Bearer t" } })];
    for (const req of cases) {
      const r = await handler(req);
      expect({ status: r.status, challenge: r.headers.get("www-authenticate") }).toEqual({ status: 401, challenge: 'Basic realm="netprobify"' });
    }
  });

});

test("verdicts are cached, an unknown user costs a bcrypt too, and hashes are checked one at a time", async () => {
  const calls: [string, string][] = [];
  let running = 0;
  let most = 0;
  const verify = async (password: string, h: string) => {
    calls.push([password, h]);
    most = Math.max(most, ++running);
    await Bun.sleep(5);
    running--;
    return password === "s3cr:et" && h === hash;
  };
  const handler = new Access({ users: new Map([["prom", hash]]), headers: [], rateLimit: null }, { verify }).wrap(ok);
  const statuses = await Promise.all(
    ["prom:s3cr:et", "prom:s3cr:et", "prom:wrong", "nobody:s3cr:et", "prom:s3cr:et", "prom:wrong"].map(async (c) => (await handler(request(c))).status),
  );
  expect(statuses).toEqual([200, 200, 401, 401, 200, 401]);
  // Concurrent first checks of the same credentials each ran; after that, the cache answers.
  const before = calls.length;
  for (const c of ["prom:s3cr:et", "prom:wrong", "nobody:s3cr:et"]) await handler(request(c));
  expect(calls.length).toBe(before);
  expect(most).toBe(1);
  expect(calls.filter(([, h]) => h === UNKNOWN_USER_HASH).map(([p]) => p)).toEqual(["s3cr:et"]);
});

test("headers are added to every answer: 200, 401 and 429 alike", async () => {
  let now = 0;
  const access = new Access(
    { users: new Map([["prom", hash]]), headers: [["X-Frame-Options", "deny"], ["Strict-Transport-Security", "max-age=60"]], rateLimit: { intervalMs: 1000, burst: 1 } },
    { now: () => now },
  );
  const handler = access.wrap(ok);
  const seen: [number, string | null, string | null][] = [];
  for (const req of [request(), request("prom:s3cr:et")]) {
    const r = await handler(req);
    seen.push([r.status, r.headers.get("x-frame-options"), r.headers.get("strict-transport-security")]);
    now += 1000;
  }
  const limited = await handler(request("prom:s3cr:et"));
  const again = await handler(request("prom:s3cr:et"));
  seen.push([again.status, again.headers.get("x-frame-options"), again.headers.get("strict-transport-security")]);
  expect(limited.status).toBe(200);
  expect(seen).toEqual([
    [401, "deny", "max-age=60"],
    [200, "deny", "max-age=60"],
    [429, "deny", "max-age=60"],
  ]);
});

test("rate_limit: a bucket of `burst` requests, one more every interval; 429 when empty, before any bcrypt", async () => {
  let now = 0;
  const handler = new Access({ users: null, headers: [], rateLimit: { intervalMs: 1000, burst: 3 } }, { now: () => now }).wrap(ok);
  const statuses = async (n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await handler(request())).status);
    return out;
  };
  expect(await statuses(4)).toEqual([200, 200, 200, 429]);
  now += 500;
  expect(await statuses(1)).toEqual([429]);
  now += 500;
  expect(await statuses(2)).toEqual([200, 429]);
  now += 10_000;
  expect(await statuses(4)).toEqual([200, 200, 200, 429]);
});
