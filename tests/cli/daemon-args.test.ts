/**
 * The daemon's flags as the daemon receives them (parseDaemonArgs): the listeners of repeated
 * --web.listen-address in order, the config file from any of its three spellings, the log level
 * and format.
 */
import { describe, expect, test } from "bun:test";
import type { ArgsDef, CommandDef } from "citty";
import { parseCommandLine } from "../../src/cli/args.ts";
import { DAEMON_REPEATABLE, daemonCommand, parseDaemonArgs, parseListenAddress } from "../../src/cli/daemon.ts";
import { ExitError } from "../../src/cli/exit.ts";

function daemonArgs(argv: string[]) {
  return parseDaemonArgs(parseCommandLine(daemonCommand as CommandDef<ArgsDef>, argv, { repeatable: DAEMON_REPEATABLE }));
}

describe("the daemon's flags", () => {
  test("--web.listen-address repeated: every listener, in order; an empty host is every address, IPv6 in brackets", () => {
    const a = daemonArgs(["--web.listen-address", "127.0.0.1:9100", "--web.listen-address", "[::1]:9101", "--web.listen-address=:9102", "--web.listen-address", "localhost:9103"]);
    expect(a.listen).toEqual([
      { hostname: "127.0.0.1", port: 9100, text: "127.0.0.1:9100" },
      { hostname: "::1", port: 9101, text: "[::1]:9101" },
      { hostname: "::", port: 9102, text: ":9102" },
      { hostname: "localhost", port: 9103, text: "localhost:9103" },
    ]);
    expect(daemonArgs([]).listen).toBeNull();
  });

  test("--config.file is --config is FILE; the same file twice is no conflict", () => {
    expect(daemonArgs(["--config.file", "a.yaml"]).config).toBe("a.yaml");
    expect(daemonArgs(["--config", "a.yaml"]).config).toBe("a.yaml");
    expect(daemonArgs(["a.yaml", "--config.file", "a.yaml"]).config).toBe("a.yaml");
    expect(daemonArgs([]).config).toBeUndefined();
  });

  test("--log.level maps the ecosystem's names onto the config's levels; --log.format defaults to logfmt", () => {
    expect(["debug", "info", "warn", "error"].map((l) => daemonArgs(["--log.level", l]).logLevel)).toEqual(["DEBUG", "INFO", "WARNING", "ERROR"]);
    expect(daemonArgs([]).logLevel).toBeNull();
    expect(daemonArgs([]).logFormat).toBe("logfmt");
    expect(daemonArgs(["--log.format", "json"]).logFormat).toBe("json");
  });

  test("a bracketed address that is not IPv6 is refused", () => {
    expect(() => parseListenAddress("[198.18.0.1]:9100")).toThrow(ExitError);
    expect(() => parseListenAddress("[fd00::1]:0")).toThrow("the port must be from 1 to 65535");
  });
});
