/**
 * The default command: `netprobify [FILE]` or `netprobify --config FILE` runs the daemon; with
 * no file, netprobify.yaml then config.yaml from the working directory, else the built-in default.
 *
 * The daemon's stderr is a log stream (journald, a collector), so a failed start is told in log
 * lines too: each config issue as its own line (msg holds the FILE:LINE:COL text `check` prints),
 * then one CRITICAL line with the exit code. Bad arguments (64) are still told as the other
 * commands tell them, with the usage, because they come before there is a daemon to log.
 */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { findConfigFile } from "../config/load.ts";
import type { StartFailure } from "../daemon/configuration.ts";
import { Daemon, ListenError } from "../daemon/daemon.ts";
import { logger, type Logger } from "../log.ts";
import { EXIT_NOINPUT, EXIT_OSERR, EXIT_SOFTWARE, EXIT_UNAVAILABLE, EXIT_USAGE, ExitError } from "./exit.ts";
import { requireRawPacketPrivilege } from "./privilege.ts";

export const daemonCommand = defineCommand({
  meta: { name: "netprobify", description: "Probe the targets of a config file and serve their metrics" },
  args: {
    file: { type: "positional", description: "config file (default: netprobify.yaml, then config.yaml, then the built-in self-test)", required: false },
    config: { type: "string", description: "config file, as the positional FILE" },
    "web.config.file": {
      type: "string",
      description: "web config in exporter-toolkit's format: TLS for the metrics and API listeners, Basic auth (bcrypt) and headers for metrics",
    },
  },
});

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

export async function runDaemon(args: { file?: string; config?: string; "web.config.file"?: string }): Promise<number> {
  if (args.file && args.config && args.file !== args.config) {
    throw new ExitError(EXIT_USAGE, `two config files given: ${args.file} and --config ${args.config}`, true);
  }
  const given = args.config ?? args.file;
  const path = given ? resolve(given) : ((await findConfigFile(process.cwd())) ?? null);
  const log = logger("daemon");
  let started: Daemon | StartFailure;
  try {
    requireRawPacketPrivilege();
    const web = args["web.config.file"];
    started = await Daemon.start({ configPath: path, webConfigPath: web ? resolve(web) : null });
  } catch (e) {
    const { code, unexpected } = startErrorCode(e);
    const message = e instanceof Error ? e.message : String(e);
    log.critical(unexpected ? `cannot start: internal error: ${message}` : `cannot start: ${message}`, { exit_code: code });
    if (unexpected && process.env.NETPROBIFY_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
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
  try {
    await d.run();
  } catch (e) {
    // run() contains what can fail at run time; anything reaching here is a bug, told as a log line too.
    log.critical(`stopped by an internal error: ${e instanceof Error ? e.message : String(e)}`, { exit_code: EXIT_SOFTWARE });
    if (process.env.NETPROBIFY_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return EXIT_SOFTWARE;
  }
  log.info("stopped");
  return 0;
}
