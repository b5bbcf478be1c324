/**
 * The default command: `netprobify [FILE]` or `netprobify --config.file FILE` runs the daemon;
 * with no file, netprobify.yaml then config.yaml from the working directory, else the built-in
 * default. The flags are spelt as the exporter ecosystem spells them (--web.listen-address,
 * --log.level, --log.format), so a unit file or a Helm chart written for blackbox_exporter reads
 * the same here.
 *
 * The daemon's stderr is a log stream (journald, a collector), so a failed start is told in log
 * lines too: each config issue as its own line (msg holds the FILE:LINE:COL text `check` prints),
 * then one CRITICAL line with the exit code. Bad arguments (64) are still told as the other
 * commands tell them, one line, because they come before there is a daemon to log.
 */
import { isIPv6 } from "node:net";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { findConfigFile } from "../config/load.ts";
import type { StartFailure } from "../daemon/configuration.ts";
import { Daemon, ListenError, type ListenAddress } from "../daemon/daemon.ts";
import { FLAG_LEVELS, LOG_FORMATS, logger, type LevelName, type Logger, type LogFormat } from "../log.ts";
import { listOption, stringOption, type ParsedCommandLine } from "./args.ts";
import { EXIT_NOINPUT, EXIT_OK, EXIT_OSERR, EXIT_SOFTWARE, EXIT_UNAVAILABLE, EXIT_USAGE, ExitError } from "./exit.ts";
import { requireRawPacketPrivilege } from "./privilege.ts";

export const daemonCommand = defineCommand({
  meta: { name: "netprobify", description: "Probe the targets of a config file and serve their metrics" },
  args: {
    file: { type: "positional", description: "config file (default: netprobify.yaml, then config.yaml, then the built-in self-test)", required: false },
    "config.file": { type: "string", valueHint: "FILE", description: "config file, as the positional FILE" },
    config: { type: "string", valueHint: "FILE", description: "the same as --config.file" },
    "web.listen-address": {
      type: "string",
      valueHint: "HOST:PORT",
      description: "where to serve /metrics, e.g. 127.0.0.1:9100, [::1]:9100 or :9100 (every address); repeat it for several; replaces the config's prometheus_address and prometheus_port",
    },
    "log.level": { type: "string", valueHint: "LEVEL", description: "debug, info, warn or error; replaces the config's logging_level" },
    "log.format": { type: "string", valueHint: "FORMAT", description: "logfmt (default) or json: one JSON object per line, the same keys" },
    "web.config.file": {
      type: "string",
      valueHint: "FILE",
      description: "web config in exporter-toolkit's format: TLS for the metrics and API listeners, Basic auth (bcrypt) and headers for metrics",
    },
  },
});

/** Options of the daemon command that can be repeated. */
export const DAEMON_REPEATABLE = ["web.listen-address"] as const;

export interface DaemonArgs {
  /** The config file given, or undefined to look for one. */
  config: string | undefined;
  /** --web.config.file, or undefined. */
  webConfig: string | undefined;
  /** --web.listen-address, in order; null when not given (the config's address and port). */
  listen: ListenAddress[] | null;
  /** --log.level; null when not given (the config's logging_level). */
  logLevel: LevelName | null;
  logFormat: LogFormat;
}

function usage(message: string): never {
  throw new ExitError(EXIT_USAGE, message, true);
}

/**
 * host:port as the ecosystem writes a listen address: an IPv6 address in brackets ([::1]:9100),
 * an empty host for every address (:9100, IPv4 and IPv6 alike).
 */
export function parseListenAddress(text: string): ListenAddress {
  const bad = (why: string): never => usage(`--web.listen-address ${text}: ${why}`);
  const m = /^(?:\[([^\]]*)\]|([^\[\]:]*)):(\d+)$/.exec(text);
  if (!m) {
    return bad(
      /^[^\[\]]*:.*:/.test(text) ? "an IPv6 address is written in brackets, as [::1]:9100" : "expected HOST:PORT, as 127.0.0.1:9100, [::1]:9100 or :9100",
    );
  }
  const [, v6, host, portText] = m;
  if (v6 !== undefined && !isIPv6(v6)) bad(`${v6} is not an IPv6 address`);
  const port = Number(portText);
  if (port < 1 || port > 65535) bad("the port must be from 1 to 65535");
  const hostname = v6 ?? (host === "" ? "::" : host!);
  return { hostname, port, text };
}

/** Validates the daemon's options (every problem an ExitError(64) naming the option). */
export function parseDaemonArgs(parsed: ParsedCommandLine): DaemonArgs {
  const positionals = parsed.positionals;
  if (positionals.length > 1) usage(`one config file at most, not ${positionals.join(" ")}`);
  const given = [
    ["FILE", positionals[0]],
    ["--config.file", stringOption(parsed, "config.file")],
    ["--config", stringOption(parsed, "config")],
  ].filter((g): g is [string, string] => g[1] !== undefined);
  const files = new Set(given.map(([, f]) => f));
  if (files.size > 1) usage(`two config files given: ${given.map(([how, f]) => (how === "FILE" ? f : `${how} ${f}`)).join(" and ")}`);
  const addresses = listOption(parsed, "web.listen-address");
  const levelText = stringOption(parsed, "log.level");
  const logLevel = levelText === undefined ? null : (FLAG_LEVELS[levelText] ?? null);
  if (levelText !== undefined && logLevel === null) usage(`--log.level must be debug, info, warn or error, not "${levelText}"`);
  const formatText = stringOption(parsed, "log.format") ?? "logfmt";
  if (!(LOG_FORMATS as readonly string[]).includes(formatText)) usage(`--log.format must be logfmt or json, not "${formatText}"`);
  return {
    config: given[0]?.[1],
    webConfig: stringOption(parsed, "web.config.file"),
    listen: addresses.length === 0 ? null : addresses.map(parseListenAddress),
    logLevel,
    logFormat: formatText as LogFormat,
  };
}

/** Logs why the config stopped the start; returns its exit code. */
function reportConfigFailure(log: Logger, failure: StartFailure): number {
  if (failure.exitCode === EXIT_NOINPUT) {
    // The line names the file and says why it cannot be read: nothing to add but the verdict.
    for (const line of failure.lines) log.critical(`cannot start: ${line}`, { exit_code: failure.exitCode });
    return failure.exitCode;
  }
  const issues = logger("config");
  for (const line of failure.lines) issues.error(line);
  log.critical("cannot start: the configuration is invalid", { issues: failure.lines.length, exit_code: failure.exitCode });
  return failure.exitCode;
}

/** The exit code of an error thrown while starting (sysexits), and whether it is a bug of ours. */
function startErrorCode(e: unknown): { code: number; unexpected: boolean } {
  if (e instanceof ExitError) return { code: e.exitCode, unexpected: false };
  if (e instanceof ListenError) return { code: EXIT_OSERR, unexpected: false };
  // The engine Worker rethrows libpcap's error by name, not by class.
  if (e instanceof Error && e.name === "LibpcapUnavailable") return { code: EXIT_UNAVAILABLE, unexpected: false };
  return { code: EXIT_SOFTWARE, unexpected: true };
}

/** The stack of an unexpected error as a log field, when NETPROBIFY_DEBUG asks for it. */
function debugStack(e: unknown): string | undefined {
  return process.env.NETPROBIFY_DEBUG && e instanceof Error ? e.stack : undefined;
}

/** Logs an internal error the way every other line is logged; returns EXIT_SOFTWARE. */
export function logInternalError(what: string, e: unknown, log: Logger = logger("daemon")): number {
  log.critical(`${what}: ${e instanceof Error ? e.message : String(e)}`, { exit_code: EXIT_SOFTWARE, stack: debugStack(e) });
  return EXIT_SOFTWARE;
}

export async function runDaemon(args: DaemonArgs): Promise<number> {
  const path = args.config ? resolve(args.config) : ((await findConfigFile(process.cwd())) ?? null);
  const log = logger("daemon");
  let started: Daemon | StartFailure;
  try {
    requireRawPacketPrivilege();
    started = await Daemon.start({ configPath: path, webConfigPath: args.webConfig ? resolve(args.webConfig) : null, listen: args.listen, logLevel: args.logLevel });
  } catch (e) {
    const { code, unexpected } = startErrorCode(e);
    const message = e instanceof Error ? e.message : String(e);
    log.critical(unexpected ? `cannot start: internal error: ${message}` : `cannot start: ${message}`, {
      exit_code: code,
      stack: unexpected ? debugStack(e) : undefined,
    });
    return code;
  }
  if ("exitCode" in started) return reportConfigFailure(log, started);
  const d = started;
  process.on("SIGHUP", () => {
    log.info("SIGHUP: reloading the configuration");
    void d.reload();
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping`);
    void d.stop();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // An error nothing caught would otherwise be Bun's multi-line report on stderr: it is one log
  // line instead, and the process ends with EXIT_SOFTWARE as for any other bug.
  const crashed = new Promise<number>((done) => {
    process.on("uncaughtException", (e) => done(logInternalError("stopped by an uncaught error", e, log)));
    process.on("unhandledRejection", (e) => done(logInternalError("stopped by an unhandled rejection", e, log)));
  });
  const ran = d.run().then(
    () => {
      log.info("stopped");
      return EXIT_OK;
    },
    // run() contains what can fail at run time; anything reaching here is a bug.
    (e: unknown) => logInternalError("stopped by an internal error", e, log),
  );
  return Promise.race([ran, crashed]);
}
