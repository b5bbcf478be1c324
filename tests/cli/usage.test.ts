/**
 * The command line as a user meets it (runCli, as main.ts calls it): help for every command, and
 * every usage error as exactly one line on stderr that names the problem and points to the
 * command's --help, exit 64, nothing on stdout. None of these gets as far as needing privilege.
 */
import { describe, expect, test } from "bun:test";
import { runCli } from "../../src/cli/index.ts";

async function cli(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, (l) => out.push(...l.split("\n")), (l) => err.push(...l.split("\n")));
  return { code, out, err };
}

describe("help", () => {
  for (const argv of [["--help"], ["-h"], ["probe", "--help"], ["probe", "-h"], ["check", "-h"], ["check", "--help"]]) {
    test(`${argv.join(" ")}: exit 0, the usage on stdout, no backticks`, async () => {
      const r = await cli(argv);
      expect(r).toMatchObject({ code: 0, err: [] });
      expect(r.out.some((l) => l.startsWith("Usage: netprobify"))).toBe(true);
      expect(r.out.join("\n")).not.toContain("`");
    });
  }
});

describe("usage errors: one line naming the problem and pointing to --help, exit 64", () => {
  for (const [argv, message, help] of [
    [["--config"], "--config needs a value", "netprobify --help"],
    [["--config.file"], "--config.file needs a value", "netprobify --help"],
    [["--config", "--log.level", "debug"], "--config needs a value", "netprobify --help"],
    [["--config", "a.yaml", "--config.file", "b.yaml"], "two config files given", "netprobify --help"],
    [["a.yaml", "b.yaml"], "one config file at most", "netprobify --help"],
    [["--log.level", "verbose"], '--log.level must be debug, info, warn or error, not "verbose"', "netprobify --help"],
    [["--log.format", "xml"], '--log.format must be logfmt or json, not "xml"', "netprobify --help"],
    [["--web.listen-address", "::1:9100"], "--web.listen-address ::1:9100: an IPv6 address is written in brackets", "netprobify --help"],
    [["--web.listen-address", "127.0.0.1"], "--web.listen-address 127.0.0.1: expected HOST:PORT", "netprobify --help"],
    [["--web.listen-address", ":70000"], "the port must be from 1 to 65535", "netprobify --help"],
    [["--bogus"], "unknown option --bogus", "netprobify --help"],
    [["probe", "198.18.0.1", "--type", "icmp", "--count", "5", "--count", "6"], "--count is given twice", "netprobify probe --help"],
    [["probe", "198.18.0.1", "--type"], "--type needs a value", "netprobify probe --help"],
    [["probe", "198.18.0.1", "198.18.0.2", "--type", "icmp"], "one destination at most", "netprobify probe --help"],
    [["probe", "198.18.0.1", "--type", "icmp", "--json=yes"], "--json takes no value", "netprobify probe --help"],
    [["check"], "check takes one config file", "netprobify check --help"],
    [["check", "--strict", "x.yaml"], "unknown option --strict", "netprobify check --help"],
  ] as const) {
    test(`${argv.join(" ")}`, async () => {
      const r = await cli([...argv]);
      expect(r.code).toBe(64);
      expect(r.out).toEqual([]);
      expect(r.err.length).toBe(1);
      expect(r.err[0]).toStartWith("netprobify: ");
      expect(r.err[0]).toContain(message);
      expect(r.err[0]).toEndWith(`(see ${help})`);
    });
  }
});
