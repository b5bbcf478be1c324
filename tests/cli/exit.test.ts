/**
 * The exit codes are a public contract (README "Exit codes", the spec's sysexits): scripts and
 * service managers act on the numbers. Everything else refers to src/cli/exit.ts by name, so this
 * is where the numbers themselves are pinned.
 */
import { expect, test } from "bun:test";
import * as exit from "../../src/cli/exit.ts";

test("every exit code has its documented number", () => {
  const { ExitError: _class, ...codes } = exit;
  expect(codes).toEqual({
    EXIT_OK: 0,
    EXIT_FAILURE: 1,
    EXIT_NO_ANSWER: 1,
    EXIT_USAGE: 64,
    EXIT_DATAERR: 65,
    EXIT_NOINPUT: 66,
    EXIT_NOHOST: 68,
    EXIT_UNAVAILABLE: 69,
    EXIT_SOFTWARE: 70,
    EXIT_OSERR: 71,
    EXIT_NOPERM: 77,
    EXIT_INTERRUPTED: 130,
  });
});
