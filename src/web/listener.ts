/**
 * A listener (the metrics port, the targets API) that serves plain HTTP or TLS, and follows its
 * certificate files: they are stat'ed every second (three stat calls, nothing read while they do
 * not change), and when they change and the new set checks out (each parses, the key is the
 * certificate's) the server is bound again with them, so the next connection gets the new
 * certificate without a restart. Bun.serve cannot swap the certificate of a running server
 * (server.reload ignores tls), hence the new server. A set that does not check out (a key not
 * written yet, a truncated file) is logged once and the certificate in use stays; it is tried
 * again at the next change.
 *
 * The old server stops listening and lets its requests in flight finish; the new one binds the
 * same address and port at once (about 2 ms, the time to build the TLS context), in which window
 * a new connection would be refused. Should the new one fail to bind, the old certificate is
 * bound again; should that fail too, binding is retried every check.
 */
import type { Server } from "bun";
import type { LogFields } from "../log.ts";
import { materialStamp, readTlsMaterial, readsFiles, serveTls, type ListenerSettings, type TlsMaterial, type Transport } from "./tls.ts";

/** Where the listener's lines go: the daemon's logger, or an inventory's context.log. */
export type ListenerLog = (level: "INFO" | "WARNING" | "ERROR", message: string, fields?: LogFields) => void;

/** How often the certificate files are looked at. */
export const CERTIFICATE_CHECK_MS = 1_000;

export interface ListenerOptions {
  /** Names the listener in log lines: "metrics", "targets API". */
  readonly name: string;
  /** Null: plain HTTP/1.1. */
  readonly settings: ListenerSettings | null;
  readonly port: number;
  /** Binds one server on `port` with `transport`; throws what Bun.serve throws. */
  readonly bind: (transport: Transport, port: number) => Server<undefined>;
  /** ERROR lines are the certificate changes that could not be applied, each told once: callers count them. */
  readonly log: ListenerLog;
  readonly checkEveryMs?: number;
}

/** The listener cannot be opened: a certificate problem, or what Bun.serve threw. */
export class ListenerOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ListenerOpenError";
  }
}

const sameMaterial = (a: TlsMaterial | null, b: TlsMaterial) => a !== null && a.cert === b.cert && a.key === b.key && a.ca === b.ca;

export class HttpListener {
  #server: Server<undefined> | null = null;
  #material: TlsMaterial | null = null;
  #stamp = "";
  #port: number;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** The last problem told, with the files' stamp: a state that persists is told once, each new change again. */
  #lastProblem: string | null = null;
  #stopped = false;

  private constructor(private readonly o: ListenerOptions) {
    this.#port = o.port;
  }

  /**
   * Reads the certificate material (if TLS) and binds. Throws {@link ListenerOpenError} with the
   * certificate's problems or Bun.serve's error.
   */
  static open(o: ListenerOptions): HttpListener {
    const l = new HttpListener(o);
    const tls = o.settings?.tls ?? null;
    if (!tls) {
      l.#server = l.#bind(null);
      l.#port = l.#server.port ?? o.port;
      return l;
    }
    l.#stamp = materialStamp(tls);
    const r = readTlsMaterial(tls);
    if (!r.ok) throw new ListenerOpenError(r.problems.map((p) => p.message).join("; "));
    l.#server = l.#bind(r.material);
    l.#material = r.material;
    l.#port = l.#server.port ?? o.port;
    if (readsFiles(tls)) {
      l.#timer = setInterval(() => l.checkCertificates(), o.checkEveryMs ?? CERTIFICATE_CHECK_MS);
      l.#timer.unref?.();
    }
    return l;
  }

  get port(): number {
    return this.#server?.port ?? this.#port;
  }

  get tls(): boolean {
    return Boolean(this.o.settings?.tls);
  }

  /** Stops following the files and closes the server (`closeActive`: its connections too). */
  stop(closeActive = true): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    const server = this.#server;
    this.#server = null;
    if (server) void Promise.resolve(server.stop(closeActive)).catch(() => undefined);
  }

  /** One look at the certificate files; the timer calls it, tests may too. */
  checkCertificates(): void {
    const tls = this.o.settings?.tls;
    if (this.#stopped || !tls) return;
    const stamp = materialStamp(tls);
    if (stamp === this.#stamp && this.#server) return;
    this.#stamp = stamp;
    const r = readTlsMaterial(tls);
    if (!r.ok) {
      this.#problem(
        `certificate files changed but cannot be used: ${r.problems.map((p) => p.message).join("; ")}; ` +
          (this.#server ? "the certificate in use stays" : "not listening"),
      );
      return;
    }
    if (this.#server && sameMaterial(this.#material, r.material)) return;
    this.#rebind(r.material, r.leaf.subject.replace(/\n/g, ", "), r.leaf.validTo);
  }

  #rebind(material: TlsMaterial, subject: string, validTo: string): void {
    const previous = this.#material;
    if (this.#server) {
      const old = this.#server;
      this.#server = null;
      void Promise.resolve(old.stop(false)).catch(() => undefined);
    }
    try {
      this.#server = this.#bind(material);
      this.#material = material;
      this.#lastProblem = null;
      this.o.log("INFO", "certificate files changed: serving the new certificate", {
        listener: this.o.name,
        port: this.#port,
        subject,
        valid_until: validTo,
      });
      return;
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (previous) {
        try {
          this.#server = this.#bind(previous);
        } catch {
          this.#server = null;
        }
      }
      this.#problem(
        `cannot listen with the new certificate: ${why}; ` +
          (this.#server ? "the previous certificate stays" : "not listening, retried every check"),
      );
    }
  }

  #bind(material: TlsMaterial | null): Server<undefined> {
    const settings = this.o.settings;
    const transport: Transport =
      material && settings?.tls ? { tls: serveTls(settings.tls, material), ...(settings.http2 ? { http2: true } : {}) } : {};
    return this.o.bind(transport, this.#port);
  }

  #problem(message: string): void {
    const key = `${this.#stamp}\n${message}`;
    if (key === this.#lastProblem) return;
    this.#lastProblem = key;
    this.o.log("ERROR", message, { listener: this.o.name, port: this.#port });
  }
}
