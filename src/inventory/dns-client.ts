/**
 * A stub resolver for the dns inventory: one question asked of a list of servers over UDP, and
 * again over TCP when the UDP answer is truncated. node:dns cannot do this: it neither says that
 * an answer was truncated nor lets the caller ask over TCP, and it hides SERVFAIL from NXDOMAIN
 * behind one error code per platform.
 *
 * - Each attempt has a fresh random 16-bit ID and a fresh socket (so a fresh source port), and
 *   the UDP socket is connected: the kernel drops datagrams from any other address and port. An
 *   answer is taken only when it is a response with the query's ID, opcode and question; any
 *   other datagram is ignored and the wait goes on (a spoofer must guess both ID and port).
 * - NOERROR and NXDOMAIN are answers. SERVFAIL, REFUSED and the other codes, no answer within the
 *   timeout, a refused connection or a malformed answer make the next server be asked; servers
 *   that timed out are asked again in the next round, up to `attempts` rounds.
 * - Over TCP (RFC 7766) the message is framed by a two-byte length, so it is at most 65,535 bytes.
 */
import { getRandomValues } from "node:crypto";
import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { connect, isIP } from "node:net";
import type { DnsServerAddress } from "../config/schema.ts";
import {
  decodeMessage,
  encodeQuery,
  MAX_MESSAGE_BYTES,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  rcodeName,
  sameName,
  CLASS_IN,
  type Message,
} from "./dns-wire.ts";

export interface QueryTiming {
  /** How long one attempt (one server, UDP and then TCP) may take. */
  readonly timeoutMs: number;
  /** Rounds over the servers that did not answer at all. */
  readonly attempts: number;
}

export type QueryResult =
  | { readonly ok: true; readonly message: Message; readonly server: string; readonly overTcp: boolean }
  | { readonly ok: false; readonly problem: string };

/** What one attempt gave: an answer, or why not and whether another round may help. */
type Attempt = { ok: true; message: Message; overTcp: boolean } | { ok: false; problem: string; timedOut: boolean };

/** "198.18.0.53:53", "[fd00::53]:53". */
export function serverText(server: DnsServerAddress): string {
  return server.family === "ipv6" ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`;
}

/**
 * Asks `servers` in order for `name`/`type` until one answers NOERROR or NXDOMAIN. Never
 * rejects: every failure is the `problem` line, naming each server and what it did.
 */
export async function query(
  servers: readonly DnsServerAddress[],
  name: string,
  type: number,
  timing: QueryTiming,
  signal: AbortSignal,
): Promise<QueryResult> {
  const problems = new Map<string, string>();
  let retry = servers;
  for (let round = 0; round < timing.attempts && retry.length > 0; round++) {
    const timedOut: DnsServerAddress[] = [];
    for (const server of retry) {
      if (signal.aborted) return { ok: false, problem: "stopped" };
      const attempt = await exchange(server, name, type, timing.timeoutMs, signal);
      const where = serverText(server);
      if (attempt.ok) {
        const rcode = attempt.message.header.rcode;
        if (rcode === RCODE_NOERROR || rcode === RCODE_NXDOMAIN) return { ok: true, message: attempt.message, server: where, overTcp: attempt.overTcp };
        problems.set(where, `${rcodeName(rcode)}`);
        continue;
      }
      problems.set(where, attempt.problem);
      if (attempt.timedOut) timedOut.push(server);
    }
    retry = timedOut;
  }
  const tries = timing.attempts > 1 && [...problems.values()].some((p) => p.startsWith("no answer")) ? ` (${timing.attempts} rounds)` : "";
  return { ok: false, problem: [...problems].map(([server, p]) => `${server}: ${p}`).join("; ") + tries };
}

/** One server: over UDP, then over TCP if the answer came truncated. */
async function exchange(server: DnsServerAddress, name: string, type: number, timeoutMs: number, signal: AbortSignal): Promise<Attempt> {
  const deadline = performance.now() + timeoutMs;
  const udp = await overUdp(server, name, type, timeoutMs, signal);
  if (!udp.ok || !udp.message.header.tc) return udp;
  return overTcp(server, name, type, Math.max(1, deadline - performance.now()), signal);
}

function randomId(): number {
  return getRandomValues(new Uint16Array(1))[0]!;
}

/**
 * Whether `bytes` answer the query `id` for `name`/`type`: a response, a standard query, the
 * same ID and the same question. A server refusing a query may leave the question out.
 */
function answers(bytes: Uint8Array, id: number, name: string, type: number): boolean {
  const head = decodeMessage(bytes, 0);
  if (!head.ok) return false;
  const { header, questions } = head.message;
  if (!header.qr || header.opcode !== 0 || header.id !== id) return false;
  if (questions.length === 0) return header.rcode !== RCODE_NOERROR && header.rcode !== RCODE_NXDOMAIN;
  const q = questions[0]!;
  return questions.length === 1 && q.type === type && q.class === CLASS_IN && sameName(q.name, name);
}

/** The full decoding of an answer that matched its query, as an attempt. */
function decoded(bytes: Uint8Array, overTcp: boolean): Attempt {
  const d = decodeMessage(bytes);
  if (d.ok) return { ok: true, message: d.message, overTcp };
  return { ok: false, problem: `malformed answer${overTcp ? " over TCP" : ""}: ${d.problem}`, timedOut: false };
}

/** Settles once: the first outcome wins, and `cleanup` runs once. */
function settleOnce<T>(cleanup: () => void): { promise: Promise<T>; settle: (value: T) => void } {
  let settle!: (value: T) => void;
  let done = false;
  const promise = new Promise<T>((resolve) => {
    settle = (value) => {
      if (done) return;
      done = true;
      cleanup();
      resolve(value);
    };
  });
  return { promise, settle: (value) => settle(value) };
}

function describeSocketError(e: unknown): string {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  if (code === "ECONNREFUSED" || code === "ConnectionRefused") return "connection refused (nothing listens there)";
  if (code === "ENETUNREACH" || code === "EHOSTUNREACH") return "unreachable";
  return e instanceof Error ? e.message || String(code) : String(e);
}

function overUdp(server: DnsServerAddress, name: string, type: number, timeoutMs: number, signal: AbortSignal): Promise<Attempt> {
  if (signal.aborted) return Promise.resolve({ ok: false, problem: "stopped", timedOut: false });
  const id = randomId();
  const socket = createSocket(server.family === "ipv6" ? "udp6" : "udp4");
  let ignored = 0;
  const onAbort = () => settle({ ok: false, problem: "stopped", timedOut: false });
  const timer = setTimeout(() => {
    const extra = ignored > 0 ? ` (${ignored} ${ignored === 1 ? "datagram" : "datagrams"} that did not answer the query ignored)` : "";
    settle({ ok: false, problem: `no answer within ${timeoutMs / 1000} s${extra}`, timedOut: true });
  }, timeoutMs);
  const { promise, settle } = settleOnce<Attempt>(() => {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    try {
      socket.close();
    } catch {
      // Closed already.
    }
  });
  signal.addEventListener("abort", onAbort, { once: true });
  socket.on("error", (e) => settle({ ok: false, problem: describeSocketError(e), timedOut: false }));
  socket.on("message", (data: Buffer) => {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (!answers(bytes, id, name, type)) {
      ignored++;
      return;
    }
    // A truncated answer is only a sign to ask over TCP: what it holds may be cut mid-record.
    const head = decodeMessage(bytes, 0);
    if (head.ok && head.message.header.tc) settle({ ok: true, message: head.message, overTcp: false });
    else settle(decoded(bytes, false));
  });
  try {
    socket.connect(server.port, server.address, () => {
      socket.send(encodeQuery(id, name, type), (e) => {
        if (e) settle({ ok: false, problem: describeSocketError(e), timedOut: false });
      });
    });
  } catch (e) {
    settle({ ok: false, problem: describeSocketError(e), timedOut: false });
  }
  return promise;
}

function overTcp(server: DnsServerAddress, name: string, type: number, timeoutMs: number, signal: AbortSignal): Promise<Attempt> {
  if (signal.aborted) return Promise.resolve({ ok: false, problem: "stopped", timedOut: false });
  const id = randomId();
  const query = encodeQuery(id, name, type);
  const framed = new Uint8Array(2 + query.length);
  framed[0] = query.length >> 8;
  framed[1] = query.length & 0xff;
  framed.set(query, 2);
  // The length prefix bounds the answer: at most 2 + 65,535 bytes are ever held.
  const buffer = new Uint8Array(2 + MAX_MESSAGE_BYTES);
  let received = 0;
  const socket = connect({ host: server.address, port: server.port });
  const onAbort = () => settle({ ok: false, problem: "stopped", timedOut: false });
  const timer = setTimeout(
    () => settle({ ok: false, problem: `truncated over UDP, and no whole answer over TCP within ${(timeoutMs / 1000).toFixed(1)} s`, timedOut: true }),
    timeoutMs,
  );
  const { promise, settle } = settleOnce<Attempt>(() => {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    socket.destroy();
  });
  signal.addEventListener("abort", onAbort, { once: true });
  socket.on("connect", () => socket.write(framed));
  socket.on("error", (e) => settle({ ok: false, problem: `truncated over UDP, and over TCP: ${describeSocketError(e)}`, timedOut: false }));
  socket.on("end", () => settle({ ok: false, problem: `truncated over UDP, and the TCP connection closed after ${received} bytes`, timedOut: false }));
  socket.on("data", (chunk: Buffer) => {
    const expected = received >= 2 ? 2 + ((buffer[0]! << 8) | buffer[1]!) : buffer.length;
    const take = Math.min(chunk.length, expected - received);
    buffer.set(chunk.subarray(0, take), received);
    received += take;
    if (received < 2) return;
    const length = (buffer[0]! << 8) | buffer[1]!;
    if (received < 2 + length) return;
    const bytes = buffer.subarray(2, 2 + length);
    if (!answers(bytes, id, name, type)) {
      settle({ ok: false, problem: "truncated over UDP, and the TCP answer does not match the query", timedOut: false });
      return;
    }
    settle(decoded(bytes, true));
  });
  return promise;
}

/** The resolver the system uses when nothing else is said. */
export const RESOLV_CONF = "/etc/resolv.conf";
const DEFAULT_SERVER: DnsServerAddress = { address: "127.0.0.1", port: 53, family: "ipv4" };

/**
 * The `nameserver` lines of resolv.conf, in order, at most `max`; 127.0.0.1:53 when there is none
 * (what the C library does). `problem` says why the default was used.
 */
export async function systemServers(path: string, max: number): Promise<{ servers: DnsServerAddress[]; problem?: string }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    return { servers: [DEFAULT_SERVER], problem: `cannot read ${path} (${describeSocketError(e)}); asking ${serverText(DEFAULT_SERVER)}` };
  }
  const servers: DnsServerAddress[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const address = m[1]!;
    const family = isIP(address.replace(/%.*$/, ""));
    if (family === 0) continue;
    if (servers.length < max) servers.push({ address, port: 53, family: family === 6 ? "ipv6" : "ipv4" });
  }
  if (servers.length === 0) return { servers: [DEFAULT_SERVER], problem: `no nameserver in ${path}; asking ${serverText(DEFAULT_SERVER)}` };
  return { servers };
}
