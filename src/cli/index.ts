/**
 * The command line: `probe`, `check`, `--version`, and (default) the daemon. Routing is done here
 * rather than by citty so that a bare FILE argument selects the daemon, as the original accepts,
 * and so that every bad argument becomes one line on stderr and exit 64.
 */
import { defineCommand, renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { PROBE_TYPE_LIST } from "../probes/registry.ts";
import { buildInfo } from "../version.ts";
import { EXIT_UNAVAILABLE, EXIT_USAGE, ExitError } from "./exit.ts";
import { parseProbeArgs, probeCommand, runProbe } from "./probe.ts";
import { daemonCommand, runDaemon } from "./daemon.ts";
import { checkFile } from "../daemon/configuration.ts";

type Out = (line: string) => void;

const checkCommand = defineCommand({
  meta: { name: "check", description: "Validate a config file without probing or resolving names" },
  args: { file: { type: "positional", description: "config file", required: true } },
});

// citty reads "-6" as a number; the prober's -4/-6 are flags.
function normaliseFamilyFlags(argv: string[]): string[] {
  return argv.map((a) => (a === "-6" ? "--6" : a === "-4" ? "--4" : a));
}

/** Every --option must be one the command declares: a misspelt flag never passes silently. */
function rejectUnknownOptions(cmd: CommandDef<ArgsDef>, argv: string[]): void {
  const args = (cmd.args ?? {}) as ArgsDef;
  const known = new Set<string>();
  for (const [name, def] of Object.entries(args)) {
    known.add(name);
    if (def.type === "boolean") known.add(`no-${name}`);
    if ("alias" in def) for (const alias of [def.alias ?? []].flat()) known.add(alias);
  }
  for (const a of argv) {
    if (a === "--") break;
    if (!a.startsWith("-") || /^-\d/.test(a)) continue;
    const name = a.replace(/^--?/, "").split("=")[0]!;
    if (!known.has(name)) throw new ExitError(EXIT_USAGE, `unknown option ${a}`, true);
  }
}

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
export async function runCli(rawArgv: string[], out: Out, err: Out): Promise<number> {
  const argv = normaliseFamilyFlags(rawArgv);
  let cmd: CommandDef<ArgsDef> | null = null;
  try {
    if (argv[0] === "--version" || argv[0] === "-V") {
      out(await versionText());
      return 0;
    }
    const sub = argv[0];
    // A custom inventory's child process (src/inventory/child.ts), started by the daemon only.
    if (sub === "__inventory") return await (await import("../inventory/child.ts")).runInventoryChild(argv.slice(1));
    if (sub === "probe") {
      cmd = probeCommand as CommandDef<ArgsDef>;
      const rest = argv.slice(1);
      if (rest.includes("--help") || rest.includes("-h")) {
        out(await renderUsage(cmd));
        return 0;
      }
      rejectUnknownOptions(cmd, rest);
      let code = 0;
      await runCommand(
        { ...cmd, run: async ({ args }) => void (code = await runProbe(parseProbeArgs(args), out)) },
        { rawArgs: rest },
      );
      return code;
    }
    if (sub === "check") {
      cmd = checkCommand as CommandDef<ArgsDef>;
      const rest = argv.slice(1);
      rejectUnknownOptions(cmd, rest);
      const files = rest.filter((a) => !a.startsWith("-"));
      if (files.length !== 1) throw new ExitError(EXIT_USAGE, "check takes one config file", true);
      const r = await checkFile(files[0]!);
      for (const line of r.lines) (r.exitCode === 0 ? out : err)(line);
      return r.exitCode;
    }
    // Anything else is the daemon: `netprobify`, `netprobify FILE`, `netprobify --config FILE`.
    cmd = daemonCommand as CommandDef<ArgsDef>;
    if (argv.includes("--help") || argv.includes("-h")) {
      out(await renderUsage(cmd));
      out(`\nOther commands: check FILE, probe DEST --type ${PROBE_TYPE_LIST.map((t) => t.name).join("|")} (see probe --help), --version`);
      return 0;
    }
    rejectUnknownOptions(cmd, argv);
    const positional = argv.filter((a, i) => !a.startsWith("-") && argv[i - 1] !== "--config");
    if (positional.length > 1) throw new ExitError(EXIT_USAGE, `one config file at most, not ${positional.join(" ")}`, true);
    let code = 0;
    await runCommand(
      { ...cmd, run: async ({ args }) => void (code = await runDaemon(args as { file?: string; config?: string })) },
      { rawArgs: argv },
    );
    return code;
  } catch (e) {
    if (e instanceof ExitError) {
      err(`netprobify: ${e.message}`);
      if (e.showUsage && cmd) err(await renderUsage(cmd));
      return e.exitCode;
    }
    if (e instanceof Error && e.name === "LibpcapUnavailable") {
      err(`netprobify: ${e.message}`);
      return EXIT_UNAVAILABLE;
    }
    throw e;
  }
}
