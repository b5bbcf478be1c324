/**
 * `netprobify responder [--listen ADDR:PORT]... [--metrics ADDR:PORT]`: a stateful TWAMP-light
 * session-reflector (RFC 5357 4.2.1, unauthenticated, no control session) on plain UDP sockets:
 * no CAP_NET_RAW and no libpcap; port 862 needs CAP_NET_BIND_SERVICE, ports above 1023 nothing.
 * Each sender (address and port) gets its own sequence counter from 0. T2 is the kernel's
 * receive timestamp (SO_TIMESTAMPNS, read with recvmsg), T3 the clock (CLOCK_REALTIME, the same
 * clock) read just before the send, and the Sender TTL the received one (IP_RECVTTL,
 * IPV6_RECVHOPLIMIT): the reflector's hold is the time the datagram waited in this process, the
 * network's time is not in it. The error estimate's S bit is the kernel's clock state
 * (adjtimex), read again every minute.
 *
 * The sockets are read on the main thread in slices: poll(2) for up to SLICE_MS, every waiting
 * datagram reflected, then a turn of the event loop (the metrics listener, signals). A datagram
 * arriving during the turn waits for it: that wait is in T3 - T2, which the prober takes off.
 */
import { defineCommand } from "citty";
import type { ParsedCommandLine } from "./args.ts";
import { listOption, stringOption } from "./args.ts";
import { EXIT_OK, EXIT_OSERR, EXIT_USAGE, ExitError } from "./exit.ts";
import { errorEstimate, ntpFromUnix, SenderCounters, stampSent, writeReflected, type NtpTime } from "../twamp/reflector.ts";
import type { SocketPoll, TimestampedUdpSocket } from "../native/timestamped-udp.ts";

export const responderCommand = defineCommand({
  meta: { name: "responder", description: "A TWAMP-light reflector (RFC 5357), for TWAMPlight targets" },
  args: {
    listen: { type: "string", valueHint: "ADDR:PORT", description: "where to reflect, repeatable (default [::]:862, both families)" },
    metrics: { type: "string", valueHint: "ADDR:PORT", description: "serve the responder's counters at /metrics (default: none)" },
  },
});

export const RESPONDER_REPEATABLE = ["listen"] as const;

export interface Endpoint {
  host: string;
  port: number;
}

/** "198.18.0.1:862", "[fd00::1]:862", "[::]:862" into a host and a port; null when it is not one. */
export function parseEndpoint(text: string): Endpoint | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}

export interface ResponderOptions {
  listen: Endpoint[];
  metrics: Endpoint | null;
}

export function parseResponderArgs(parsed: ParsedCommandLine): ResponderOptions {
  if (parsed.positionals.length > 0) throw new ExitError(EXIT_USAGE, `responder takes no argument, not "${parsed.positionals[0]}"`, true);
  const listenTexts = listOption(parsed, "listen");
  const listen = (listenTexts.length > 0 ? listenTexts : ["[::]:862"]).map((t) => {
    const e = parseEndpoint(t);
    if (!e) throw new ExitError(EXIT_USAGE, `--listen must be ADDR:PORT ([ADDR]:PORT for IPv6), not "${t}"`, true);
    return e;
  });
  const metricsText = stringOption(parsed, "metrics");
  const metrics = metricsText === undefined ? null : parseEndpoint(metricsText);
  if (metricsText !== undefined && !metrics) throw new ExitError(EXIT_USAGE, `--metrics must be ADDR:PORT, not "${metricsText}"`, true);
  return { listen, metrics };
}

/** The responder's counters. */
export interface ResponderCounters {
  received: number;
  reflected: number;
  /** Datagrams shorter than a Sender packet: not reflected. */
  malformed: number;
  sendErrors: number;
  /** recvmsg failures other than "nothing waiting". */
  receiveErrors: number;
  /** Datagrams the kernel gave no receive timestamp for: T2 read from the clock instead. */
  untimestamped: number;
}

export interface RunningResponder {
  /** The bound endpoints (port 0 replaced by the kernel's choice). */
  readonly listening: Endpoint[];
  readonly metricsPort: number | null;
  readonly counters: ResponderCounters;
  stop(): void;
}

/** Reads the kernel's clock state; null when it cannot be read (not Linux, no libc). */
async function clockStateReader(): Promise<() => boolean | null> {
  try {
    const { clockSynchronised } = await import("../native/libc.ts");
    return clockSynchronised;
  } catch {
    return () => null;
  }
}

function metricsText(c: ResponderCounters, senders: number, synchronised: boolean | null): string {
  const lines = [
    "# HELP twamp_responder_received_total datagrams received by the TWAMP-light responder.",
    "# TYPE twamp_responder_received_total counter",
    `twamp_responder_received_total ${c.received}`,
    "# HELP twamp_responder_reflected_total datagrams reflected.",
    "# TYPE twamp_responder_reflected_total counter",
    `twamp_responder_reflected_total ${c.reflected}`,
    "# HELP twamp_responder_malformed_total datagrams shorter than a TWAMP-Test Sender packet (14 bytes): not reflected.",
    "# TYPE twamp_responder_malformed_total counter",
    `twamp_responder_malformed_total ${c.malformed}`,
    "# HELP twamp_responder_send_errors_total reflected packets the socket refused.",
    "# TYPE twamp_responder_send_errors_total counter",
    `twamp_responder_send_errors_total ${c.sendErrors}`,
    "# HELP twamp_responder_receive_errors_total failed reads of the responder's sockets (recvmsg).",
    "# TYPE twamp_responder_receive_errors_total counter",
    `twamp_responder_receive_errors_total ${c.receiveErrors}`,
    "# HELP twamp_responder_untimestamped_total datagrams without a kernel receive timestamp: their T2 is the clock read after the receive.",
    "# TYPE twamp_responder_untimestamped_total counter",
    `twamp_responder_untimestamped_total ${c.untimestamped}`,
    "# HELP twamp_responder_senders senders (address and port) with a sequence counter.",
    "# TYPE twamp_responder_senders gauge",
    `twamp_responder_senders ${senders}`,
  ];
  if (synchronised !== null) {
    lines.push(
      "# HELP twamp_responder_clock_synchronised 1 when the kernel says its clock is synchronised (the S bit of the error estimate).",
      "# TYPE twamp_responder_clock_synchronised gauge",
      `twamp_responder_clock_synchronised ${synchronised ? 1 : 0}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** How long one poll(2) may hold the main thread before the event loop gets a turn. */
const SLICE_MS = 20;
/** Datagrams reflected per socket per slice: one busy socket cannot starve the others or the event loop. */
const BURST = 256;
const EAGAIN = 11;

/** Starts reflecting on every endpoint; rejects (nothing left open) when one cannot be bound. */
export async function startResponder(o: ResponderOptions): Promise<RunningResponder> {
  const counters: ResponderCounters = { received: 0, reflected: 0, malformed: 0, sendErrors: 0, receiveErrors: 0, untimestamped: 0 };
  const senders = new SenderCounters();
  const readClock = await clockStateReader();
  const native = await import("../native/timestamped-udp.ts");
  let synchronised = readClock();
  const clockTimer = setInterval(() => (synchronised = readClock()), 60_000);
  clockTimer.unref();
  const out = new Uint8Array(65_536);
  const t2: NtpTime = { sec: 0, frac: 0 };
  const t3: NtpTime = { sec: 0, frac: 0 };
  const clock = { sec: 0, nsec: 0 };
  const sockets: TimestampedUdpSocket[] = [];
  const listening: Endpoint[] = [];
  let server: ReturnType<typeof Bun.serve> | null = null;
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(clockTimer);
    for (const s of sockets) s.close();
    server?.stop(true);
  };

  const reflectFrom = (sock: TimestampedUdpSocket) => {
    for (let k = 0; k < BURST; k++) {
      const n = sock.receive();
      if (n === -EAGAIN) return;
      if (n < 0) {
        counters.receiveErrors++;
        return;
      }
      counters.received++;
      if (sock.receivedSec >= 0) ntpFromUnix(sock.receivedSec, sock.receivedNsec, t2);
      else {
        counters.untimestamped++;
        sock.now(clock);
        ntpFromUnix(clock.sec, clock.nsec, t2);
      }
      const len = writeReflected(sock.data, n, out, 0, t2, null, errorEstimate(synchronised === true), sock.ttl);
      if (len < 0) {
        counters.malformed++;
        continue;
      }
      // The counter advances only for what is reflected (4.2.1: the packets this reflector sent).
      const seq = senders.take(sock.senderKey());
      out[0] = seq >>> 24;
      out[1] = (seq >>> 16) & 0xff;
      out[2] = (seq >>> 8) & 0xff;
      out[3] = seq & 0xff;
      sock.now(clock);
      stampSent(out, ntpFromUnix(clock.sec, clock.nsec, t3));
      if (sock.reply(out, len) === len) counters.reflected++;
      else counters.sendErrors++;
    }
  };

  let poll: SocketPoll | null = null;
  const slice = () => {
    if (stopped || !poll) return;
    try {
      if (poll.wait(SLICE_MS) > 0) for (let i = 0; i < sockets.length; i++) if (poll.ready(i)) reflectFrom(sockets[i]!);
    } catch {
      // poll itself failing (EINTR aside) leaves nothing to wait on: counted, tried again next turn.
      counters.receiveErrors++;
    }
    setImmediate(slice);
  };

  try {
    for (const e of o.listen) {
      const sock = new native.TimestampedUdpSocket(e.host, e.port);
      sockets.push(sock);
      listening.push({ host: e.host, port: sock.port });
    }
    poll = new native.SocketPoll(sockets.map((s) => s.fd));
    if (o.metrics) {
      server = Bun.serve({
        hostname: o.metrics.host,
        port: o.metrics.port,
        fetch: (req) =>
          new URL(req.url).pathname === "/metrics"
            ? new Response(metricsText(counters, senders.size, synchronised), { headers: { "content-type": "text/plain; version=0.0.4" } })
            : new Response("netprobify responder: see /metrics\n", { status: 404 }),
      });
    }
  } catch (e) {
    stop();
    throw e;
  }
  setImmediate(slice);
  return { listening, metricsPort: server?.port ?? null, counters, stop };
}

/** Runs until SIGINT or SIGTERM. */
export async function runResponder(o: ResponderOptions, out: (line: string) => void): Promise<number> {
  let r: RunningResponder;
  try {
    r = await startResponder(o);
  } catch (e) {
    throw new ExitError(EXIT_OSERR, `responder cannot listen: ${e instanceof Error ? e.message : String(e)}`);
  }
  out(`netprobify responder: reflecting on ${r.listening.map((e) => `${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`).join(", ")}${r.metricsPort !== null ? `, metrics on port ${r.metricsPort}` : ""}`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  r.stop();
  return EXIT_OK;
}
