/**
 * The default command: `netprobify [FILE]` or `netprobify --config FILE` runs the daemon; with
 * no file, netprobify.yaml then config.yaml from the working directory, else the built-in default.
 */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { findConfigFile } from "../config/load.ts";
import { Daemon } from "../daemon/daemon.ts";
import { logger } from "../log.ts";
import { EXIT_USAGE, ExitError } from "./exit.ts";
import { requireRawPacketPrivilege } from "./privilege.ts";

export const daemonCommand = defineCommand({
  meta: { name: "netprobify", description: "Probe the targets of a config file and serve their metrics" },
  args: {
    file: { type: "positional", description: "config file (default: netprobify.yaml, then config.yaml, then the built-in self-test)", required: false },
    config: { type: "string", description: "config file, as the positional FILE" },
  },
});

export async function runDaemon(args: { file?: string; config?: string }, err: (line: string) => void): Promise<number> {
  if (args.file && args.config && args.file !== args.config) {
    throw new ExitError(EXIT_USAGE, `two config files given: ${args.file} and --config ${args.config}`, true);
  }
  const given = args.config ?? args.file;
  const path = given ? resolve(given) : ((await findConfigFile(process.cwd())) ?? null);
  requireRawPacketPrivilege();
  const started = await Daemon.start({ configPath: path });
  if ("exitCode" in started) {
    for (const line of started.lines) err(line);
    return started.exitCode;
  }
  const d = started;
  const log = logger("daemon");
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
  await d.run();
  log.info("stopped");
  return 0;
}
