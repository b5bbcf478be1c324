/**
 * Fuzzing an HTTP listener with malformed requests over raw TCP, from a seed: bad request lines,
 * HTTP/1.0 without Host, HTTP/0.9, absurd methods, header injection, oversized headers and URLs,
 * invalid percent-encoding and Host, bad Content-Length, chunked garbage, NUL bytes, requests
 * sent slowly or never finished, pipelined requests, clients leaving mid-response.
 *
 * The rule: no answer is a 5xx and none carries internal detail (a path of the working
 * directory, a stack frame, a source position, Bun's error page), the server logs no error of
 * its own, and a normal request, sent alongside every batch, is answered as usual. Bun's HTTP
 * parser refuses some bytes before any of our code runs: it then answers a bare status line
 * (400, 431, or 505 when it cannot read the request line as HTTP/1.x: HTTP/0.9, a NUL in the
 * line, an unknown version) or closes the connection (an unknown method). Those are counted
 * apart and reported, as no code of ours can change them; a close without an answer is replayed
 * alone afterwards to check that the request never reached the handler.
 *
 * Used by the CI tests (a few hundred cases) and by scripts/fuzz-http.ts (full size).
 */
import { resolve } from "node:path";
import { mulberry32 } from "./prng.ts";
import { bytes, exchange, header, type Exchange, type RawResponse } from "./raw-http.ts";

export interface FuzzTarget {
  readonly name: string;
  readonly port: number;
  /** The paths served and the methods each allows (a 405 must list them in Allow). */
  readonly routes: Readonly<Record<string, readonly string[]>>;
  /** The header line that authorizes ("Authorization: Basic ..." or "apikey: ..."), added to some requests. */
  readonly auth: string;
  /** A request the server must answer as usual, and what is wrong with an answer (undefined: nothing). */
  readonly normal: { readonly request: string; check(r: RawResponse): string | undefined };
  /** Errors the server logged or reported itself so far: any is a bug of ours. */
  serverErrors(): readonly string[];
  /** Requests that reached the fetch handler so far. */
  handled(): number;
}

export interface FuzzCase {
  readonly kind: string;
  readonly pieces: readonly Uint8Array[];
  readonly pauseMs: number;
  /** Answers asked for (pipelining). */
  readonly responses: number;
  readonly noBody: readonly boolean[];
  /** The bytes are not a whole request: the server may wait for the rest, and no answer is fine. */
  readonly partial: boolean;
  readonly abortAfterBytes?: number;
  /** The only statuses allowed, for requests only our code can answer. */
  readonly mustBe?: readonly number[];
  /** The Allow header a 405 must carry. */
  readonly allow?: string;
}

export interface FuzzOptions {
  readonly count: number;
  readonly seed: number;
  /** Connections at once. */
  readonly concurrency: number;
  /** Cases between two normal requests (and two checks of the server's errors). */
  readonly batch: number;
  /** How long a whole request may wait for its answer (ms without a byte). */
  readonly answerMs: number;
  /** How long a partial request is held open waiting for an answer that need not come. */
  readonly partialMs: number;
  /** Pause between the pieces of a request sent slowly. */
  readonly slowPauseMs: number;
  /** Closes without an answer replayed alone at the end. */
  readonly replays: number;
}

export interface Failure {
  readonly index: number;
  readonly kind: string;
  readonly why: string;
  readonly request: string;
}

export interface FuzzReport {
  readonly target: string;
  readonly seed: number;
  readonly cases: number;
  readonly elapsedMs: number;
  readonly kinds: Record<string, number>;
  /** Answers of the server's code, by status. */
  readonly statuses: Record<string, number>;
  /** Bare answers of Bun's parser (a status line and Connection: close), by status. */
  readonly parserReplies: Record<string, number>;
  /** Connections closed without any answer, by kind. */
  readonly closedWithoutAnswer: Record<string, number>;
  /** Connections reset (ECONNRESET, EPIPE), by kind: after an answer of Bun's parser, or without any. */
  readonly resets: Record<string, number>;
  readonly partialUnanswered: number;
  readonly aborted: number;
  readonly normalRequests: number;
  /** Closes without an answer replayed alone: how many reached the handler (must be 0). */
  readonly replayed: { readonly cases: number; readonly reachedHandler: number };
  /** One request per parser status and per kind closed without an answer. */
  readonly examples: Record<string, string>;
  readonly failures: Failure[];
}

const REPO = resolve(import.meta.dir, "..", "..");

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const LEAKS: readonly (readonly [string, RegExp])[] = [
  ...[...new Set([process.cwd(), REPO])].filter((p) => p.length > 1).map((p) => ["a path of ours", new RegExp(escapeRegExp(p))] as const),
  ["a stack frame", /^\s+at\s+\S/m],
  ["a source position", /\/[\w.-]+\.[cm]?[jt]sx?:\d+:\d+/],
  ["Bun's error page", /__bunfallback|BunError|DevErrorPage|Bun__renderFallbackError/],
  ["Bun's default 500 text", /Something went wrong!/],
  ["node_modules", /node_modules/],
];

/** What internal detail an answer shows, if any. */
export function leak(r: RawResponse): string | undefined {
  const text = `${r.head}\r\n\r\n${Buffer.from(r.body).toString("latin1")}`;
  for (const [what, re] of LEAKS) if (re.test(text)) return what;
  return undefined;
}

/** A bare answer of Bun's parser: a status line, Connection: close, nothing else. */
export function fromParser(r: RawResponse): boolean {
  return r.body.length === 0 && r.headers.length > 0 && r.headers.every(([n]) => n === "connection");
}

/** A request for messages: JSON-quoted, long ones cut in the middle. */
export function showRequest(c: FuzzCase): string {
  const all = Buffer.concat(c.pieces.map((p) => Buffer.from(p))).toString("latin1");
  const shown = all.length <= 400 ? all : `${all.slice(0, 300)}...(${all.length - 360} bytes)...${all.slice(-60)}`;
  return `${c.kind}${c.pieces.length > 1 ? ` in ${c.pieces.length} pieces` : ""}${c.partial ? " (partial)" : ""}: ${JSON.stringify(shown)}`;
}

// --- the cases ---

const TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~";
const STANDARD_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const;
/** Host values RFC 9112 makes a 400, and ones Bun turns into a URL that does not parse. */
const BAD_HOSTS = ["a b", "[::1", "::1", "x:99999", "x:port", "%", "%zz", "a@b", "x/y", "x?y", "x#y", "[zz]", "a\tb", "é.test", "x:-1"];

export function generator(random: () => number, target: Pick<FuzzTarget, "routes" | "auth" | "port">) {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const chance = (p: number) => random() < p;
  const text = (n: number, chars = TOKEN_CHARS) => Array.from({ length: n }, () => chars[int(chars.length)]).join("");
  const anyByte = (n: number) => Array.from({ length: n }, () => String.fromCharCode(int(256))).join("");
  const routes = Object.keys(target.routes);
  const host = `Host: 127.0.0.1:${target.port}`;

  const path = () => (chance(0.75) ? pick(routes) : pick(["/nope", `${pick(routes)}/`, `/${text(1 + int(30))}`, "//", "/./", `${pick(routes)}?${text(5)}=${text(5)}`]));
  const authMaybe = (p = 0.3) => (chance(p) ? [target.auth] : []);
  /** A request Bun accepts, with the headers given. */
  const request = (method: string, target_: string, headers: readonly string[], body = "", version = "HTTP/1.1") =>
    `${method} ${target_} ${version}\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n${body}`;
  const valid = (method = pick(["GET", "GET", "HEAD"] as const), p = path(), extra: readonly string[] = []) => ({
    text: request(method, p, [host, ...authMaybe(), ...extra]),
    head: method === "HEAD",
  });

  type Made = Omit<FuzzCase, "kind" | "pauseMs" | "responses" | "noBody" | "partial" | "pieces"> &
    Partial<Pick<FuzzCase, "pauseMs" | "responses" | "noBody" | "partial" | "pieces">> & { text?: string; head?: boolean };
  const make: Record<string, () => Made> = {
    "request-line": () => {
      const p = path();
      return {
        text: pick([
          `GET  ${p} HTTP/1.1\r\n${host}\r\n\r\n`,
          `GET\t${p}\tHTTP/1.1\r\n${host}\r\n\r\n`,
          ` GET ${p} HTTP/1.1\r\n${host}\r\n\r\n`,
          `GET ${p} HTTP/1.1 extra\r\n${host}\r\n\r\n`,
          `GET HTTP/1.1\r\n${host}\r\n\r\n`,
          `GET ${p}\r\n${host}\r\n\r\n`,
          `${p} HTTP/1.1\r\n${host}\r\n\r\n`,
          `GET ${p} ${pick(["HTTP/1.2", "HTTP/9.9", "HTTP/2", "HTTP/3.0", "HTTX/1.1", "http/1.1", "HTTP/1.", "HTTP/01.1", "HTTP/1.10", "HTTP/-1.1", "HTTP/1.1x", "HTTP /1.1"])}\r\n${host}\r\n\r\n`,
          `GET ${p} HTTP/1.1\n${host}\n\n`,
          `GET ${p} HTTP/1.1\r${host}\r\r`,
          `\r\n\r\nGET ${p} HTTP/1.1\r\n${host}\r\n\r\n`,
          `GET ${p} HTTP/1.1\r\n${host}\r\n\n`,
          `\r\n`.repeat(1 + int(100)),
          `GET ${p} HTTP/1.1\r\n \r\n${host}\r\n\r\n`,
        ]),
      };
    },
    "http/1.0 without Host": () => {
      const method = pick(["GET", "GET", "HEAD", "POST"] as const);
      return { text: request(method, path(), [...authMaybe(0.5)], "", "HTTP/1.0"), head: method === "HEAD" };
    },
    "http/0.9": () => ({ text: pick([`GET ${path()}\r\n`, `GET ${path()}\r\n\r\n`, `GET ${path()}\n`, "GET\r\n\r\n"]) }),
    method: () => {
      const m = pick([
        text(1 + int(12), "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        text(1 + int(12), "abcdefghijklmnopqrstuvwxyz"),
        "get",
        "G ET",
        "GET\0",
        "TRACE",
        "CONNECT",
        "PROPFIND",
        "M-SEARCH",
        "X".repeat(1 + int(70_000)),
        anyByte(1 + int(20)).replace(/[\r\n ]/g, "_"),
        "ÇGET",
      ]);
      return { text: request(m, path(), [host, ...authMaybe()]) };
    },
    "method not allowed": () => {
      const p = pick(routes);
      const allowed = target.routes[p]!;
      const method = pick(STANDARD_METHODS.filter((m) => !allowed.includes(m)));
      return {
        text: request(method, p, [host, ...authMaybe(), "Content-Length: 0"]),
        head: method === "HEAD",
        mustBe: [405],
        allow: allowed.join(", "),
      };
    },
    "header injection": () => {
      const name = pick(["X-Test", "Authorization", "apikey", "Host", "Content-Type", "Cookie"]);
      const line = pick([
        `${name}: a\rb`,
        `${name}: a\nInjected: 1`,
        `${name}: a\r\n folded`,
        `${name}: a\r\n\tfolded`,
        `${name}: ${anyByte(1 + int(40)).replace(/[\r\n]/g, "")}`,
        `${name}: \x01\x02\x7f`,
        `Bad Name: x`,
        `: empty name`,
        `NoColon`,
        `X(y): 1`,
        `${name} : space before colon`,
        `X-Test: ${"%0d%0aSet-Cookie: x=1"}`,
      ]);
      if (chance(0.3)) return { text: `GET ${path()}\r\nInjected: 1 HTTP/1.1\r\n${host}\r\n\r\n` };
      return { text: request(pick(["GET", "POST"]), path(), [host, ...authMaybe(), line]) };
    },
    "bad Host": () => {
      const method = pick(["GET", "HEAD"] as const);
      const headers = chance(0.2) ? [`Host: ${pick(["a", "127.0.0.1"])}`, `Host: ${pick(["b", "127.0.0.2"])}`] : [`Host: ${pick(BAD_HOSTS)}`];
      return { text: request(method, path(), [...headers, ...authMaybe()]), head: method === "HEAD", mustBe: [400] };
    },
    "oversized header": () => {
      const size = pick([4_000, 8_000, 16_000, 64_000, 256_000, 1_000_000]);
      return { text: request("GET", path(), [host, ...authMaybe(), `${pick(["X-Big", "Cookie", "Authorization", "apikey"])}: ${"a".repeat(size)}`]) };
    },
    "many headers": () => {
      const n = pick([50, 100, 101, 200, 1_000, 5_000]);
      return { text: request("GET", path(), [host, ...authMaybe(), ...Array.from({ length: n }, (_, i) => `X-H${i}: ${i}`)]) };
    },
    "oversized URL": () => {
      const size = pick([2_000, 8_000, 16_000, 64_000, 256_000, 1_000_000]);
      const p = pick(routes);
      return { text: request("GET", chance(0.5) ? `${p}?q=${"a".repeat(size)}` : `/${"a".repeat(size)}`, [host, ...authMaybe()]) };
    },
    "percent-encoding": () => {
      const bad = pick(["%zz", "%", "%0", "%00", "%2e%2e/", "%ff%fe", "%c0%af", "%25", "%%", "%u0041", "%0d%0a", "%2F", "%3F", "%23", "%e2%80%ae"]);
      const p = pick(routes);
      const t = pick([`${p}${bad}`, `/${bad}${p.slice(1)}`, `${p}?x=${bad}`, `${p}?${bad}`, `/%6detrics`, `${p}/..%2f`]);
      return { text: request(pick(["GET", "GET", "DELETE"]), t, [host, ...authMaybe()]) };
    },
    "target form": () => ({
      text: request(
        pick(["GET", "OPTIONS", "CONNECT"]),
        pick(["*", `http://evil.example${pick(routes)}`, `https://127.0.0.1${pick(routes)}`, "127.0.0.1:80", `//${pick(routes)}`, pick(routes).slice(1), `${pick(routes)}#frag`, "", "?", "http://", `http://[::1${pick(routes)}`]),
        [host, ...authMaybe()],
      ),
    }),
    "content-length": () => {
      const cl = pick(["abc", "-1", "1.5", "", " 5", "+5", "0x10", "99999999999999999999", "18446744073709551616", "5, 5", "5, 6", "5,5", "1e3"]);
      const body = text(int(12));
      const twice = chance(0.2);
      const numeric = /^\d+$/.test(cl.trim());
      return {
        text: request(pick(["POST", "GET", "DELETE", "PUT"]), path(), [host, ...authMaybe(0.5), `Content-Length: ${cl}`, ...(twice ? [`Content-Length: ${int(20)}`] : [])], body),
        // A length larger than what is sent leaves the server waiting for the rest.
        partial: numeric || twice,
      };
    },
    "short body": () => {
      const sent = text(int(50));
      return { text: request(pick(["POST", "DELETE"]), path(), [host, ...authMaybe(0.7), `Content-Length: ${sent.length + 1 + int(1000)}`], sent), partial: true };
    },
    chunked: () => {
      const te = pick(["chunked", "chunked", "Chunked", "gzip, chunked", "chunked, gzip", "chunked, chunked", "chunkedx", "identity", " chunked"]);
      const body = pick([
        "zz\r\n",
        "5\r\nab\r\n0\r\n\r\n",
        "-1\r\nab\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nab\r\n",
        "5;ext=\0\r\nabcde\r\n0\r\n\r\n",
        "3\r\nabc\r\n0\r\n",
        "3\r\nabc",
        "3\nabc\n0\n\n",
        "3\r\nabcXX0\r\n\r\n",
        "0\r\nTrailer: x\r\n\r\n",
        "0\r\n\r\n",
        `${(16_384 + int(100_000)).toString(16)}\r\n${"a".repeat(100)}`,
        "",
      ]);
      const withLength = chance(0.25) ? [`Content-Length: ${body.length}`] : [];
      return {
        text: request(pick(["POST", "GET", "DELETE"]), path(), [host, ...authMaybe(0.5), `Transfer-Encoding: ${te}`, ...withLength], body),
        // Whether Bun waits for more depends on how it reads each of these: no answer is fine.
        partial: true,
      };
    },
    "NUL byte": () => {
      const base = valid().text;
      const at = int(base.length);
      return { text: `${base.slice(0, at)}\0${base.slice(at)}` };
    },
    expect: () => {
      const n = 1 + int(100);
      const send = chance(0.5);
      return {
        text: request("POST", path(), [host, ...authMaybe(0.5), `Expect: ${pick(["100-continue", "100-continue", "200-ok", "x".repeat(1 + int(100))])}`, `Content-Length: ${n}`], send ? "x".repeat(n) : ""),
        partial: !send,
      };
    },
    garbage: () => ({
      text: pick([
        anyByte(1 + int(2_000)),
        `${anyByte(1 + int(200))}\r\n\r\n`,
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + anyByte(64), // a TLS ClientHello's start
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "\0".repeat(1 + int(100)),
      ]),
      partial: true,
    }),
    slow: () => {
      const v = valid();
      const k = 2 + int(6);
      const cuts = [...new Set(Array.from({ length: k - 1 }, () => 1 + int(v.text.length - 1)))].sort((a, b) => a - b);
      const edges = [0, ...cuts, v.text.length];
      return { pieces: edges.slice(1).map((e, i) => bytes(v.text.slice(edges[i], e))), head: v.head };
    },
    "never finished": () => {
      const v = valid();
      const end = v.text.indexOf("\r\n\r\n");
      return { text: v.text.slice(0, 1 + int(Math.max(1, end))), partial: true };
    },
    pipelined: () => {
      const n = 2 + int(9);
      const parts: { text: string; head: boolean }[] = [];
      for (let i = 0; i < n; i++) {
        if (chance(0.7)) {
          const method = pick(["GET", "HEAD", "GET"] as const);
          parts.push({ text: request(method, path(), [host, ...authMaybe(0.1)]), head: method === "HEAD" });
        } else {
          const bad = pick(["request-line", "bad Host", "percent-encoding", "NUL byte", "http/0.9", "method not allowed"] as const);
          const m = make[bad]!();
          parts.push({ text: m.text ?? "", head: m.head ?? false });
        }
      }
      return { text: parts.map((p) => p.text).join(""), responses: n, noBody: parts.map((p) => p.head) };
    },
    "leaves mid-response": () => {
      const p = pick(routes);
      return { text: request("GET", p, [host, target.auth]), abortAfterBytes: 1 + int(3_000) };
    },
  };
  const kinds = Object.keys(make);

  return {
    kinds,
    next(): FuzzCase {
      const kind = pick(kinds);
      const m = make[kind]!();
      const { text: t, head, ...rest } = m;
      return {
        kind,
        pauseMs: 0,
        responses: 1,
        noBody: [head ?? false],
        partial: false,
        pieces: [bytes(t ?? "")],
        ...rest,
      };
    },
  };
}

// --- the run ---

export const CI_OPTIONS: Omit<FuzzOptions, "count" | "seed"> = {
  concurrency: 16,
  batch: 100,
  answerMs: 10_000,
  partialMs: 150,
  slowPauseMs: 5,
  replays: 20,
};

function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}

export async function fuzz(target: FuzzTarget, o: FuzzOptions, progress?: (done: number) => void): Promise<FuzzReport> {
  const began = performance.now();
  const { next } = generator(mulberry32(o.seed), target);
  const report = {
    target: target.name,
    seed: o.seed,
    cases: o.count,
    elapsedMs: 0,
    kinds: {} as Record<string, number>,
    statuses: {} as Record<string, number>,
    parserReplies: {} as Record<string, number>,
    closedWithoutAnswer: {} as Record<string, number>,
    resets: {} as Record<string, number>,
    partialUnanswered: 0,
    aborted: 0,
    normalRequests: 0,
    replayed: { cases: 0, reachedHandler: 0 },
    examples: {} as Record<string, string>,
    failures: [] as Failure[],
  };
  const closedCases: FuzzCase[] = [];
  const fail = (index: number, c: FuzzCase, why: string) => report.failures.push({ index, kind: c.kind, why, request: showRequest(c) });

  const send = (c: FuzzCase) =>
    exchange(target.port, {
      pieces: c.pieces,
      pauseMs: c.pieces.length > 1 ? o.slowPauseMs : 0,
      responses: c.responses,
      noBody: c.noBody,
      idleMs: c.partial ? o.partialMs : o.answerMs,
      ...(c.abortAfterBytes === undefined ? {} : { abortAfterBytes: c.abortAfterBytes }),
    });

  const judge = (index: number, c: FuzzCase, x: Exchange) => {
    bump(report.kinds, c.kind);
    for (const r of x.responses) {
      const leaked = leak(r);
      if (leaked) fail(index, c, `the answer (${r.status}) shows ${leaked}`);
      if (fromParser(r)) {
        bump(report.parserReplies, String(r.status));
        report.examples[`Bun's parser answered ${r.status}: ${c.kind}`] ??= showRequest(c);
        // 505 is how Bun's parser refuses a request line it cannot read as HTTP/1.x; any other 5xx is not.
        if (r.status >= 500 && r.status !== 505) fail(index, c, `Bun answered a bare ${r.status}`);
        else if (c.mustBe && r.status < 500 && !c.mustBe.includes(r.status)) fail(index, c, `Bun's parser answered ${r.status}, expected ${c.mustBe.join(" or ")}`);
        continue;
      }
      bump(report.statuses, String(r.status));
      if (r.status >= 500) fail(index, c, `answered ${r.status}: ${JSON.stringify(Buffer.from(r.body).toString("latin1").slice(0, 200))}`);
      else if (c.mustBe && !c.mustBe.includes(r.status)) fail(index, c, `answered ${r.status}, expected ${c.mustBe.join(" or ")}`);
      if (r.status === 405 && c.allow !== undefined && header(r, "allow") !== c.allow) {
        fail(index, c, `405 with Allow ${JSON.stringify(header(r, "allow"))}, expected ${JSON.stringify(c.allow)}`);
      }
    }
    const parserOnly = x.responses.length > 0 && x.responses.every(fromParser);
    switch (x.end) {
      case "answered":
        break;
      case "aborted":
        report.aborted++;
        break;
      case "closed":
        if (x.responses.length === 0) {
          bump(report.closedWithoutAnswer, c.kind);
          report.examples[`closed without an answer: ${c.kind}`] ??= showRequest(c);
          closedCases.push(c);
        }
        break;
      case "reset":
        bump(report.resets, `${c.kind}${x.responses.length === 0 ? " (no answer)" : parserOnly ? " (after Bun's parser answered)" : " (after an answer)"}`);
        if (x.responses.length === 0) {
          report.examples[`reset without an answer: ${c.kind}`] ??= showRequest(c);
          closedCases.push(c);
        }
        break;
      case "timeout":
        if (c.partial) report.partialUnanswered++;
        else fail(index, c, `no answer within ${o.answerMs} ms (${x.responses.length} of ${c.responses} came)`);
        break;
      case "not-http":
        fail(index, c, `the answer is not HTTP: ${JSON.stringify(Buffer.from(x.trailing).toString("latin1").slice(0, 200))}`);
        break;
      case "error":
        fail(index, c, `cannot connect: ${x.error}`);
        break;
    }
  };

  const normal = async (index: number) => {
    const x = await exchange(target.port, { pieces: [bytes(target.normal.request)], idleMs: o.answerMs });
    report.normalRequests++;
    const r = x.responses[0];
    const why = r ? target.normal.check(r) : `no answer (${x.end}${x.error ? ` ${x.error}` : ""})`;
    if (why) report.failures.push({ index, kind: "normal request", why, request: JSON.stringify(target.normal.request) });
  };

  let errorsSeen = target.serverErrors().length;
  for (let start = 0; start < o.count; start += o.batch) {
    const cases = Array.from({ length: Math.min(o.batch, o.count - start) }, next);
    let taken = 0;
    const worker = async () => {
      while (taken < cases.length) {
        const i = taken++;
        const c = cases[i]!;
        judge(start + i, c, await send(c));
      }
    };
    await Promise.all([normal(start), ...Array.from({ length: o.concurrency }, worker)]);
    const errors = target.serverErrors();
    for (const e of errors.slice(errorsSeen)) report.failures.push({ index: start, kind: "server error", why: e, request: `one of cases ${start}-${start + cases.length - 1}` });
    errorsSeen = errors.length;
    progress?.(start + cases.length);
  }
  await normal(o.count);

  // A close without an answer is Bun's parser refusing the bytes only if the handler never saw them.
  for (const c of closedCases.slice(0, o.replays)) {
    const before = target.handled();
    const x = await send(c);
    report.replayed.cases++;
    if (target.handled() > before && x.responses.length === 0) {
      report.replayed.reachedHandler++;
      fail(-1, c, `reached the handler, then the connection ended without an answer (${x.end})`);
    }
  }
  report.elapsedMs = Math.round(performance.now() - began);
  return report;
}

/** The report as lines for a person. */
export function formatReport(r: FuzzReport): string {
  const counts = (c: Record<string, number>) =>
    Object.entries(c)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ") || "none";
  const lines = [
    `${r.target}: ${r.cases} cases, seed 0x${r.seed.toString(16)}, ${(r.elapsedMs / 1000).toFixed(1)} s (${Math.round(r.cases / (r.elapsedMs / 1000))} cases/s)`,
    `  answers of the server, by status: ${counts(r.statuses)}`,
    `  bare answers of Bun's parser, by status: ${counts(r.parserReplies)}`,
    `  closed without an answer, by kind: ${counts(r.closedWithoutAnswer)}`,
    `  resets, by kind: ${counts(r.resets)}`,
    `  partial requests left unanswered: ${r.partialUnanswered}; clients that left mid-response: ${r.aborted}`,
    `  normal requests alongside: ${r.normalRequests}; closes replayed alone: ${r.replayed.cases}, reaching the handler: ${r.replayed.reachedHandler}`,
    `  cases by kind: ${counts(r.kinds)}`,
  ];
  if (Object.keys(r.examples).length > 0) {
    lines.push("  examples:");
    for (const [what, request] of Object.entries(r.examples).sort(([a], [b]) => a.localeCompare(b))) lines.push(`    ${what}: ${request}`);
  }
  lines.push(`  failures: ${r.failures.length}`);
  for (const f of r.failures.slice(0, 50)) lines.push(`    #${f.index} ${f.kind}: ${f.why}\n      ${f.request}`);
  if (r.failures.length > 50) lines.push(`    ... and ${r.failures.length - 50} more`);
  return lines.join("\n");
}
