/**
 * The command line read strictly, against a command's citty definition (its `args`), and the
 * help text written from the same definition.
 *
 * citty's own parser is not used: it folds a repeated option into an array whatever the option
 * (so `--count 5 --count 6` silently fell back to the default), reads `--config` with no value
 * as "", takes `-6` for a number, accepts any unknown option, and its usage text quotes every
 * name in backticks. Here an option that takes a value must get one, a single-valued option given
 * twice is an error, and only the options declared exist.
 */
import type { ArgDef, ArgsDef, CommandDef } from "citty";
import { EXIT_USAGE, ExitError } from "./exit.ts";

export type ArgValue = string | string[] | boolean;

export interface ParsedCommandLine {
  /** Declared options given, by name: a string, a list for a repeatable option, or true. */
  options: Record<string, ArgValue>;
  positionals: string[];
  /** -h or --help was given (before any `--`): the caller prints the help instead of running. */
  help: boolean;
}

export interface ParseRules {
  /** String options that may be given several times; their value is the list, in order. */
  repeatable?: readonly string[];
}

function usageError(message: string): never {
  throw new ExitError(EXIT_USAGE, message, true);
}

/** How an option is written: one-letter names with one dash (-4), the others with two. */
export function optionSpelling(name: string): string {
  return name.length === 1 ? `-${name}` : `--${name}`;
}

function argsOf(cmd: CommandDef<ArgsDef>): ArgsDef {
  const args = cmd.args;
  if (args === undefined) return {};
  if (typeof args === "function" || args instanceof Promise) throw new Error("command arguments must be given as an object");
  return args;
}

/**
 * Reads argv against the command's declared options. Every problem is an ExitError(64) whose
 * message names the option. `--name=value` and `--name value` are the same; a value may not
 * start with "-" unless written with "=" (so a forgotten value is not filled by the next option).
 */
export function parseCommandLine(cmd: CommandDef<ArgsDef>, argv: readonly string[], rules: ParseRules = {}): ParsedCommandLine {
  const defs = argsOf(cmd);
  const byName = new Map<string, ArgDef>();
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "positional") continue;
    byName.set(name, def);
    if ("alias" in def) for (const alias of [def.alias ?? []].flat()) byName.set(alias, def);
  }
  const canonical = new Map<ArgDef, string>();
  for (const [name, def] of Object.entries(defs)) canonical.set(def, name);
  const repeatable = new Set(rules.repeatable ?? []);
  const out: ParsedCommandLine = { options: {}, positionals: [], help: false };
  // Help first: `probe --bogus -h` shows the help rather than complaining.
  for (const a of argv) {
    if (a === "--") break;
    if (a === "-h" || a === "--help") out.help = true;
  }
  if (out.help) return out;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      out.positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const written = eq < 0 ? a : a.slice(0, eq);
    const key = written.replace(/^--?/, "");
    const def = byName.get(key);
    // A one-letter option is also accepted with two dashes (--6); a long one never with one (-config).
    if (!def || (!written.startsWith("--") && key.length !== 1)) usageError(`unknown option ${written}`);
    const name = canonical.get(def)!;
    const shown = optionSpelling(name);
    if (def.type === "boolean") {
      if (eq >= 0) usageError(`${shown} takes no value`);
      out.options[name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) {
      value = a.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("-") && next !== "-")) usageError(`${shown} needs a value`);
      value = next;
      i++;
    }
    if (value === "") usageError(`${shown} needs a value`);
    const before = out.options[name];
    if (repeatable.has(name)) {
      out.options[name] = [...(Array.isArray(before) ? before : []), value];
    } else {
      if (before !== undefined) usageError(`${shown} is given twice`);
      out.options[name] = value;
    }
  }
  return out;
}

/** The option's string value, or undefined when it was not given. */
export function stringOption(parsed: ParsedCommandLine, name: string): string | undefined {
  const v = parsed.options[name];
  return typeof v === "string" ? v : undefined;
}

/** Every value of a repeatable option, in order; empty when not given. */
export function listOption(parsed: ParsedCommandLine, name: string): string[] {
  const v = parsed.options[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

/** Help lines are folded at this width, the descriptions aligned after the names. */
const HELP_WIDTH = 100;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

function columns(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length));
  const indent = 2 + width + 2;
  return rows.flatMap(([left, right]) =>
    wrap(right, Math.max(30, HELP_WIDTH - indent)).map((part, i) => `${i === 0 ? `  ${left.padEnd(width)}  ` : " ".repeat(indent)}${part}`.trimEnd()),
  );
}

/**
 * The help of a command, in plain text (no markup: it is read in a terminal and in a log):
 * description, usage line, arguments and options with their value names.
 */
export function helpText(cmd: CommandDef<ArgsDef>, usage: string, footer: string[] = []): string {
  const defs = argsOf(cmd);
  const meta = cmd.meta;
  const description = meta && typeof meta === "object" && !(meta instanceof Promise) ? meta.description : undefined;
  const lines: string[] = [];
  if (description) lines.push(description, "");
  lines.push(`Usage: ${usage}`);
  const positionals: [string, string][] = [];
  const options: [string, string][] = [];
  for (const [name, def] of Object.entries(defs)) {
    if (def.type === "positional") {
      positionals.push([name.toUpperCase(), def.description ?? ""]);
      continue;
    }
    const value = def.type === "string" ? ` ${def.valueHint ?? name.split(/[.-]/).pop()!.toUpperCase()}` : "";
    options.push([`${optionSpelling(name)}${value}`, def.description ?? ""]);
  }
  options.push(["-h, --help", "this help"]);
  if (positionals.length > 0) lines.push("", "Arguments:", ...columns(positionals));
  lines.push("", "Options:", ...columns(options));
  if (footer.length > 0) lines.push("", ...footer);
  return lines.join("\n");
}
