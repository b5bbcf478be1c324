/**
 * The scripts' command lines: `--name VALUE` options, `--flag`s, bounded integers, and a usage
 * error that names the script and exits 64, so every benchmark reads and refuses its options
 * the same way. An option a script does not know is refused before it starts anything (a typo
 * must not start a 30-minute soak with the defaults); `--help` lists the options.
 */
import { EXIT_USAGE } from "../src/cli/exit.ts";

export interface ScriptArgs {
  /** The arguments after the script's path. */
  readonly argv: readonly string[];
  /** --quick: the functional run CI makes. */
  readonly quick: boolean;
  /** The value after --name, or undefined when the option is absent. */
  arg(name: string): string | undefined;
  /** Prints `SCRIPT: message` and exits 64. */
  usage(message: string): never;
  /** --name as an integer from min to max, fallback when absent; a usage error otherwise. */
  int(name: string, fallback: number, min: number, max: number): number;
  /** --name as one of `allowed`, fallback when absent; a usage error otherwise. */
  choice<T extends string>(name: string, allowed: readonly T[], fallback: T): T;
}

/** The options a script takes: `values` are followed by a value, `flags` stand alone. */
export interface ScriptOptions {
  readonly values: readonly string[];
  readonly flags?: readonly string[];
}

export function scriptArgs(script: string, options: ScriptOptions, argv: readonly string[] = process.argv.slice(2)): ScriptArgs {
  const flags = options.flags ?? [];
  const known = [...options.values.map((v) => `--${v} VALUE`), ...flags.map((f) => `--${f}`)].join(", ") || "none";
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const name = token.startsWith("--") ? token.slice(2) : null;
    if (name === "help") {
      console.log(`${script}: options: ${known} (see the comment at the top of scripts/${script}.ts)`);
      process.exit(0);
    }
    if (name !== null && flags.includes(name)) continue;
    if (name !== null && options.values.includes(name)) {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith("--")) {
        console.error(`${script}: --${name} wants a value`);
        process.exit(EXIT_USAGE);
      }
      i++;
      continue;
    }
    console.error(`${script}: ${name === null ? `unexpected argument ${token}` : `unknown option ${token}`}; the options are: ${known}`);
    process.exit(EXIT_USAGE);
  }
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const usage = (message: string): never => {
    console.error(`${script}: ${message}`);
    process.exit(EXIT_USAGE);
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const v = Number(arg(name) ?? fallback);
    if (!Number.isInteger(v) || v < min || v > max) usage(`--${name} wants an integer from ${min} to ${max}, got ${arg(name)}`);
    return v;
  };
  const choice = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const v = arg(name) ?? fallback;
    if (!(allowed as readonly string[]).includes(v)) usage(`--${name} is ${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}`);
    return v as T;
  };
  return { argv, quick: argv.includes("--quick"), arg, usage, int, choice };
}
