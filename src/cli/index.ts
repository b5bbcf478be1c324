/**
 * The command line: `probe`, `check`, `--version`, and (default) the daemon. Routing is done here
 * rather than by citty so that a bare FILE argument selects the daemon, as the original accepts.
 * Every bad argument is one line on stderr, which names the problem and points to the command's
 * --help, and exit 64.
 */
import { defineCommand, type ArgsDef, type CommandDef } from "citty";
import { PROBE_TYPE_LIST } from "../probes/registry.ts";
import { buildInfo } from "../version.ts";
import { helpText, parseCommandLine, stringOption } from "./args.ts";
import { EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, ExitError } from "./exit.ts";
import { parseProbeArgs, probeCommand, runProbe } from "./probe.ts";
import { parseResponderArgs, RESPONDER_REPEATABLE, responderCommand, runResponder } from "./responder.ts";
import { DAEMON_REPEATABLE, daemonCommand, logInternalError, parseDaemonArgs, runDaemon } from "./daemon.ts";
import { checkFiles } from "../daemon/configuration.ts";
import { logRuntimeWarnings, setLogFormat, setLogLevel } from "../log.ts";

type Out = (line: string) => void;

const checkCommand = defineCommand({
  meta: { name: "check", description: "Validate a config file without probing or resolving names" },
  args: {
    file: { type: "positional", description: "config file", required: false },
    "web.config.file": { type: "string", valueHint: "FILE", description: "a web config to check, with the config file when one is given (as the daemon loads them)" },
  },
});

/** Each command: its definition, its usage line and where its help is. */
const COMMANDS = {
  daemon: { cmd: daemonCommand, usage: "netprobify [OPTIONS] [FILE]", help: "netprobify --help" },
  probe: { cmd: probeCommand, usage: "netprobify probe DESTINATION --type TYPE [OPTIONS]", help: "netprobify probe --help" },
  check: { cmd: checkCommand, usage: "netprobify check [FILE] [--web.config.file FILE]", help: "netprobify check --help" },
  responder: { cmd: responderCommand, usage: "netprobify responder [--listen ADDR:PORT]... [--metrics ADDR:PORT]", help: "netprobify responder --help" },
} as const;

const DAEMON_FOOTER = [
  "Other commands:",
  "  netprobify check [FILE] [--web.config.file WEB]   validate a config file and a web config (see check --help)",
  `  netprobify probe DESTINATION --type TYPE          a one-shot measurement, TYPE ${PROBE_TYPE_LIST.map((t) => t.name).join(", ")} (see probe --help)`,
  "  netprobify responder [--listen ADDR:PORT]...      a TWAMP-light reflector for TWAMPlight targets (see responder --help)",
  "  netprobify --version                              netprobify's version, revision and build date, Bun's and libpcap's versions",
];

/** Loaded here, on demand: only --version and the engine's Worker load libpcap (and bun:ffi). */
export async function versionText(): Promise<string> {
  const { libpcapVersion, LibpcapUnavailable } = await import("../native/libpcap.ts");
  let pcap: string;
  try {
    const v = libpcapVersion();
    pcap = `libpcap ${v.version}${v.embedded ? " (embedded)" : ` (${v.path})`}`;
  } catch (e) {
    if (!(e instanceof LibpcapUnavailable)) throw e;
    pcap = "libpcap not loadable";
  }
  const b = buildInfo();
  const built = b.buildDate ? `built ${b.buildDate}` : "run from source";
  return `netprobify ${b.version} (revision ${b.revision}, ${built}, linux/${b.arch}, bun ${Bun.version}, ${pcap})`;
}

/** Runs the command line; returns the exit code. Only main.ts exits. */
export async function runCli(argv: string[], out: Out, err: Out): Promise<number> {
  let command: (typeof COMMANDS)[keyof typeof COMMANDS] | null = null;
  try {
    if (argv[0] === "--version" || argv[0] === "-V") {
      out(await versionText());
      return EXIT_OK;
    }
    const sub = argv[0];
    // A custom inventory's child process (src/inventory/child.ts), started by the daemon only.
    if (sub === "__inventory") return await (await import("../inventory/child.ts")).runInventoryChild(argv.slice(1), err);
    logRuntimeWarnings();
    if (sub === "probe") {
      command = COMMANDS.probe;
      const parsed = parseCommandLine(command.cmd as CommandDef<ArgsDef>, argv.slice(1));
      if (parsed.help) {
        out(helpText(command.cmd as CommandDef<ArgsDef>, command.usage));
        return EXIT_OK;
      }
      return await runProbe(parseProbeArgs(parsed), out);
    }
    if (sub === "responder") {
      command = COMMANDS.responder;
      const parsed = parseCommandLine(command.cmd as CommandDef<ArgsDef>, argv.slice(1), { repeatable: RESPONDER_REPEATABLE });
      if (parsed.help) {
        out(helpText(command.cmd as CommandDef<ArgsDef>, command.usage));
        return EXIT_OK;
      }
      return await runResponder(parseResponderArgs(parsed), out);
    }
    if (sub === "check") {
      command = COMMANDS.check;
      const parsed = parseCommandLine(command.cmd as CommandDef<ArgsDef>, argv.slice(1));
      if (parsed.help) {
        out(helpText(command.cmd as CommandDef<ArgsDef>, command.usage));
        return EXIT_OK;
      }
      const web = stringOption(parsed, "web.config.file");
      if (parsed.positionals.length > 1 || (parsed.positionals.length === 0 && web === undefined)) {
        throw new ExitError(EXIT_USAGE, "check takes one config file, and --web.config.file FILE for a web config", true);
      }
      const r = await checkFiles({ config: parsed.positionals[0], web });
      for (const line of r.lines) (r.exitCode === EXIT_OK ? out : err)(line);
      return r.exitCode;
    }
    // Anything else is the daemon: `netprobify`, `netprobify FILE`, `netprobify --config.file FILE`.
    command = COMMANDS.daemon;
    const parsed = parseCommandLine(command.cmd as CommandDef<ArgsDef>, argv, { repeatable: DAEMON_REPEATABLE });
    if (parsed.help) {
      out(helpText(command.cmd as CommandDef<ArgsDef>, command.usage, DAEMON_FOOTER));
      return EXIT_OK;
    }
    const args = parseDaemonArgs(parsed);
    setLogFormat(args.logFormat);
    if (args.logLevel) setLogLevel(args.logLevel);
    try {
      return await runDaemon(args);
    } catch (e) {
      // The daemon's stderr is its log: even a bug of ours is told as a log line there.
      return logInternalError("stopped by an internal error", e);
    }
  } catch (e) {
    if (e instanceof ExitError) {
      err(`netprobify: ${e.message}${e.showUsage && command ? ` (see ${command.help})` : ""}`);
      return e.exitCode;
    }
    if (e instanceof Error && e.name === "LibpcapUnavailable") {
      err(`netprobify: ${e.message}`);
      return EXIT_UNAVAILABLE;
    }
    throw e;
  }
}
