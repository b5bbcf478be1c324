/**
 * A raw HTTP/1.x client for tests and fuzzers: writes the bytes it is given (malformed on
 * purpose, in pieces with pauses if asked) on a fresh TCP connection, and parses what comes back
 * into responses, however many the bytes asked for (pipelining).
 */
import { connect, type Socket } from "node:net";

export interface RawResponse {
  status: number;
  /** The status line and the header lines, as received (latin1). */
  head: string;
  /** Header names lower-cased, in order, repeated ones kept. */
  headers: [string, string][];
  body: Uint8Array;
}

export interface Exchange {
  /** Final responses (1xx interim ones are left out), in order. */
  responses: RawResponse[];
  /** Bytes after the last whole response: a response cut short, or something that is not HTTP. */
  trailing: Uint8Array;
  /**
   * answered: every response asked for came; closed: the server closed first; reset: ECONNRESET
   * or EPIPE; timeout: nothing for `idleMs`; aborted: the client hung up as asked; not-http: what
   * came is not an HTTP response (in `trailing`); error: connecting failed.
   */
  end: "answered" | "closed" | "reset" | "timeout" | "aborted" | "not-http" | "error";
  error?: string;
}

export interface ExchangeOptions {
  host?: string;
  /** Written in order on one connection. */
  pieces: readonly Uint8Array[];
  /** Between pieces. */
  pauseMs?: number;
  /** Final responses to wait for; default 1. */
  responses?: number;
  /** Per response, whether it answers a HEAD (no body whatever the headers say). */
  noBody?: readonly boolean[];
  /** Once everything is written, give up after this long without a byte from the server. */
  idleMs: number;
  /** Hang up once this many bytes came, as a scraper that goes away mid-response. */
  abortAfterBytes?: number;
}

export function header(r: RawResponse, name: string): string | undefined {
  return r.headers.find(([n]) => n === name)?.[1];
}

type Parsed = { response: RawResponse; used: number } | "more" | "until-close" | "not-http";

const CRLFCRLF = Buffer.from("\r\n\r\n");

/** One response from the start of `buf`, or what is missing. */
function parseOne(buf: Buffer, noBody: boolean, closed: boolean): Parsed {
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) return closed && buf.length > 0 ? "not-http" : "more";
  const head = buf.subarray(0, end).toString("latin1");
  const lines = head.split("\r\n");
  const m = /^HTTP\/\d\.\d (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!m) return "not-http";
  const status = Number(m[1]);
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return "not-http";
    headers.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]);
  }
  const response = (body: Uint8Array, used: number) => ({ response: { status, head, headers, body }, used });
  let at = end + 4;
  if (noBody || status < 200 || status === 204 || status === 304) return response(new Uint8Array(0), at);
  const te = headers.find(([n]) => n === "transfer-encoding")?.[1];
  if (te !== undefined && /chunked$/i.test(te)) {
    const parts: Uint8Array[] = [];
    for (;;) {
      const eol = buf.indexOf("\r\n", at);
      if (eol < 0) return closed ? "not-http" : "more";
      const size = Number.parseInt(buf.subarray(at, eol).toString("latin1"), 16);
      if (!Number.isFinite(size)) return "not-http";
      if (buf.length < eol + 2 + size + 2) return closed ? "not-http" : "more";
      if (size === 0) return response(Buffer.concat(parts), eol + 4);
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
  }
  const cl = headers.find(([n]) => n === "content-length")?.[1];
  if (cl !== undefined) {
    const length = Number(cl);
    if (!Number.isSafeInteger(length) || length < 0) return "not-http";
    if (buf.length < at + length) return closed ? "not-http" : "more";
    return response(buf.subarray(at, at + length), at + length);
  }
  return closed ? response(buf.subarray(at), buf.length) : "until-close";
}

/** Sends `o.pieces` on a new connection to host:port and collects the answers. */
export function exchange(port: number, o: ExchangeOptions): Promise<Exchange> {
  const wanted = o.responses ?? 1;
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let received = 0;
    const responses: RawResponse[] = [];
    let idle: ReturnType<typeof setTimeout> | undefined;
    let written = false;
    let done = false;
    const socket: Socket = connect({ port, host: o.host ?? "127.0.0.1" });

    /** Takes the whole responses off the front of `buf`. */
    const drain = (closed: boolean): "complete" | "more" | "not-http" => {
      while (responses.length < wanted) {
        const parsed = parseOne(buf, o.noBody?.[responses.length] ?? false, closed);
        if (parsed === "not-http") return parsed;
        if (typeof parsed === "string") return "more";
        buf = buf.subarray(parsed.used);
        if (parsed.response.status >= 200) responses.push(parsed.response);
      }
      return "complete";
    };
    const finish = (end: Exchange["end"], error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      socket.destroy();
      resolve({ responses, trailing: new Uint8Array(buf), end, ...(error === undefined ? {} : { error }) });
    };
    const armIdle = () => {
      clearTimeout(idle);
      if (written) idle = setTimeout(() => finish("timeout"), o.idleMs);
    };

    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (o.abortAfterBytes !== undefined && received >= o.abortAfterBytes) return finish("aborted");
      const state = drain(false);
      if (state === "complete") return finish("answered");
      if (state === "not-http") return finish("not-http");
      armIdle();
    });
    socket.on("end", () => {
      const state = drain(true);
      finish(state === "complete" ? "answered" : state === "not-http" ? "not-http" : "closed");
    });
    socket.on("close", () => finish(responses.length >= wanted ? "answered" : "closed"));
    socket.on("error", (e: NodeJS.ErrnoException) => {
      drain(true);
      if (responses.length >= wanted) return finish("answered");
      finish(e.code === "ECONNRESET" || e.code === "EPIPE" ? "reset" : "error", e.code ?? e.message);
    });
    socket.once("connect", async () => {
      for (const [i, piece] of o.pieces.entries()) {
        if (done || socket.destroyed) return;
        if (i > 0 && o.pauseMs) await Bun.sleep(o.pauseMs);
        if (done || socket.destroyed) return;
        socket.write(piece);
      }
      written = true;
      armIdle();
    });
  });
}

/** One request as bytes: every char of `text` is one byte (latin1), so any byte can be written. */
export function bytes(text: string): Uint8Array {
  return Buffer.from(text, "latin1");
}
