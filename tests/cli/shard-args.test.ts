/**
 * --shard I/N and the NETPROBIFY_SHARD_* environment as the daemon command reads them: the flag
 * wins, then the environment; every malformed setting is one usage line and exit 64, before
 * anything starts (no privilege needed).
 */
import { describe, expect, test } from "bun:test";
import type { ArgsDef, CommandDef } from "citty";
import { join } from "node:path";
import { parseCommandLine } from "../../src/cli/args.ts";
import { DAEMON_REPEATABLE, daemonCommand, parseDaemonArgs } from "../../src/cli/daemon.ts";
import { ExitError } from "../../src/cli/exit.ts";
import { runCli } from "../../src/cli/index.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");

function daemonArgs(argv: string[], env: Record<string, string> = {}, hostname = "vm") {
  return parseDaemonArgs(parseCommandLine(daemonCommand as CommandDef<ArgsDef>, argv, { repeatable: DAEMON_REPEATABLE }), env, () => hostname);
}

describe("where the shard comes from", () => {
  test("--shard I/N", () => {
    expect(daemonArgs(["--shard", "1/3"]).shard).toEqual({ shard: { index: 1, count: 3 }, source: "--shard" });
    expect(daemonArgs(["--shard=0/1"]).shard).toEqual({ shard: { index: 0, count: 1 }, source: "--shard" });
  });

  test("NETPROBIFY_SHARD_COUNT with NETPROBIFY_SHARD_INDEX: a number, a pod name, or this host's ordinal", () => {
    expect(daemonArgs([], { NETPROBIFY_SHARD_COUNT: "4", NETPROBIFY_SHARD_INDEX: "3" }).shard).toEqual({ shard: { index: 3, count: 4 }, source: "environment" });
    expect(daemonArgs([], { NETPROBIFY_SHARD_COUNT: "4", NETPROBIFY_SHARD_INDEX: "netprobify-2" }).shard?.shard).toEqual({ index: 2, count: 4 });
    expect(daemonArgs([], { NETPROBIFY_SHARD_COUNT: "4", NETPROBIFY_SHARD_INDEX: "hostname" }, "netprobify-1").shard?.shard).toEqual({ index: 1, count: 4 });
  });

  test("the flag wins over the environment, which is then not read", () => {
    const env = { NETPROBIFY_SHARD_COUNT: "4", NETPROBIFY_SHARD_INDEX: "hostname" };
    expect(daemonArgs(["--shard", "0/2"], env).shard).toEqual({ shard: { index: 0, count: 2 }, source: "--shard" });
  });

  test("neither: null, the config's global.shard applies", () => {
    expect(daemonArgs([]).shard).toBeNull();
  });

  test("a bad environment is a usage error naming the variable", () => {
    expect(() => daemonArgs([], { NETPROBIFY_SHARD_COUNT: "3", NETPROBIFY_SHARD_INDEX: "3" })).toThrow(ExitError);
    expect(() => daemonArgs([], { NETPROBIFY_SHARD_COUNT: "0", NETPROBIFY_SHARD_INDEX: "0" })).toThrow('NETPROBIFY_SHARD_COUNT="0": the count must be an integer from 1 to 256');
  });
});

async function cli(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, (l) => out.push(...l.split("\n")), (l) => err.push(...l.split("\n")));
  return { code, out, err };
}

describe("--shard refused: one line, exit 64", () => {
  for (const [value, message] of [
    ["3/3", "netprobify: --shard 3/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0) (see netprobify --help)"],
    ["x", "netprobify: --shard x: expected INDEX/COUNT, such as 0/3 for the first of 3 probers (see netprobify --help)"],
    ["0/0", "netprobify: --shard 0/0: the count must be an integer from 1 to 256 (see netprobify --help)"],
    ["-1/3", "netprobify: --shard -1/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0) (see netprobify --help)"],
    ["1.5/3", "netprobify: --shard 1.5/3: the index must be an integer from 0 to 2, below the count 3 (probers are numbered from 0) (see netprobify --help)"],
  ] as const) {
    test(`--shard=${value}`, async () => {
      expect(await cli([`--shard=${value}`, "/nonexistent/netprobify.yaml"])).toEqual({ code: 64, out: [], err: [message] });
    });
  }

  test("--help names the flag and the variables", async () => {
    const r = await cli(["--help"]);
    const help = r.out.join(" ").replace(/\s+/g, " ");
    expect(help).toContain("--shard I/N");
    expect(help).toContain("NETPROBIFY_SHARD_COUNT");
    expect(help).toContain("NETPROBIFY_SHARD_INDEX");
  });
});

test("the binary's entry point: a malformed NETPROBIFY_SHARD_INDEX is one line on stderr and exit 64, before any privilege is needed", async () => {
  const proc = Bun.spawn([process.execPath, MAIN, "/nonexistent/netprobify.yaml"], {
    env: { ...process.env, NETPROBIFY_SHARD_COUNT: "3", NETPROBIFY_SHARD_INDEX: "three" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect({ code, out, err }).toEqual({
    code: 64,
    out: "",
    err: 'netprobify: NETPROBIFY_SHARD_INDEX="three": expected an index from 0, a pod name ending in -<ordinal> such as netprobify-2, or hostname (see netprobify --help)\n',
  });
});
