/**
 * The command-line reader (src/cli/args.ts) against a small command, and the help text of the
 * real commands: what citty's parser let through (a repeated option folded into an array and then
 * ignored, an option without its value, "-6" read as a number) is an error naming the option.
 */
import { describe, expect, test } from "bun:test";
import { defineCommand, type ArgsDef, type CommandDef } from "citty";
import { helpText, listOption, parseCommandLine, stringOption } from "../../src/cli/args.ts";
import { daemonCommand } from "../../src/cli/daemon.ts";
import { ExitError } from "../../src/cli/exit.ts";
import { probeCommand } from "../../src/cli/probe.ts";

const cmd = defineCommand({
  meta: { name: "demo", description: "A command for the tests" },
  args: {
    file: { type: "positional", description: "a file", required: false },
    "config.file": { type: "string", description: "config file" },
    "web.listen-address": { type: "string", valueHint: "HOST:PORT", description: "listen here" },
    count: { type: "string", description: "how many" },
    verbose: { type: "boolean", description: "say more" },
    "6": { type: "boolean", description: "IPv6" },
  },
}) as CommandDef<ArgsDef>;

const parse = (argv: string[]) => parseCommandLine(cmd, argv, { repeatable: ["web.listen-address"] });

/** The usage error's message; fails the test when argv parses. */
function refusal(argv: string[]): string {
  try {
    parse(argv);
  } catch (e) {
    if (!(e instanceof ExitError)) throw e;
    expect(e.exitCode).toBe(64);
    expect(e.showUsage).toBe(true);
    return e.message;
  }
  throw new Error(`${argv.join(" ")} was accepted`);
}

describe("parseCommandLine", () => {
  test("dotted names, --name value and --name=value, booleans, one-letter flags, positionals", () => {
    const p = parse(["--config.file", "a.yaml", "--count=3", "--verbose", "-6", "rest"]);
    expect(p).toEqual({ options: { "config.file": "a.yaml", count: "3", verbose: true, "6": true }, positionals: ["rest"], help: false });
    expect(stringOption(p, "config.file")).toBe("a.yaml");
    // The spelling earlier versions read (citty needed it) still works.
    expect(parse(["--6"]).options["6"]).toBe(true);
  });

  test("a repeatable option keeps every value in order; a single one stays a string", () => {
    const p = parse(["--web.listen-address", "127.0.0.1:9100", "--web.listen-address=[::1]:9100", "--web.listen-address", ":9101"]);
    expect(listOption(p, "web.listen-address")).toEqual(["127.0.0.1:9100", "[::1]:9100", ":9101"]);
    expect(listOption(parse([]), "web.listen-address")).toEqual([]);
  });

  test("an option given twice, a missing or empty value, an unknown option, a value on a boolean: one message naming it", () => {
    expect(refusal(["--count", "5", "--count", "6"])).toBe("--count is given twice");
    expect(refusal(["--config.file"])).toBe("--config.file needs a value");
    expect(refusal(["--config.file", "--verbose"])).toBe("--config.file needs a value");
    expect(refusal(["--config.file="])).toBe("--config.file needs a value");
    expect(refusal(["--bogus"])).toBe("unknown option --bogus");
    expect(refusal(["--config"])).toBe("unknown option --config");
    expect(refusal(["-count", "3"])).toBe("unknown option -count");
    expect(refusal(["--verbose=yes"])).toBe("--verbose takes no value");
  });

  test("-h and --help win over anything else before --; after --, everything is positional", () => {
    expect(parse(["--bogus", "-h"]).help).toBe(true);
    expect(parse(["--help"]).help).toBe(true);
    const p = parse(["--verbose", "--", "--help", "-x"]);
    expect(p).toEqual({ options: { verbose: true }, positionals: ["--help", "-x"], help: false });
  });
});

describe("help text", () => {
  for (const [name, c] of [
    ["daemon", daemonCommand],
    ["probe", probeCommand],
  ] as const) {
    test(`${name}: plain text, every option with its value name, no trailing blanks, no line over 100 columns`, () => {
      const text = helpText(c as CommandDef<ArgsDef>, `netprobify ${name}`);
      expect(text).not.toContain("`");
      for (const line of text.split("\n")) {
        expect(line).toBe(line.trimEnd());
        expect(line.length).toBeLessThanOrEqual(100);
      }
      expect(text).toContain("-h, --help");
    });
  }

  test("the daemon's help names the ecosystem's flags", () => {
    const text = helpText(daemonCommand as CommandDef<ArgsDef>, "netprobify [OPTIONS] [FILE]");
    for (const flag of ["--config.file FILE", "--web.listen-address HOST:PORT", "--log.level LEVEL", "--log.format FORMAT"]) expect(text).toContain(flag);
  });
});
