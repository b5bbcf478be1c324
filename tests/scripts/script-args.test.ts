/**
 * The scripts refuse what they do not know before starting anything: a typo in an option once
 * started a 30-minute soak with its defaults.
 */
import { expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { EXIT_USAGE } from "../../src/cli/exit.ts";

const SCRIPTS = resolve(import.meta.dir, "..", "..", "scripts");

function run(script: string, args: string[]) {
  const r = Bun.spawnSync([process.execPath, join(SCRIPTS, `${script}.ts`), ...args], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test("an unknown option, a stray argument or a missing value: one line naming it, exit 64, nothing started", () => {
  expect(run("soak", ["--minute", "1"])).toEqual({
    code: EXIT_USAGE,
    stdout: "",
    stderr:
      "soak: unknown option --minute; the options are: --minutes VALUE, --warmup-minutes VALUE, --interval VALUE, --reload-every VALUE, --churn-every VALUE, --samples VALUE, --replacements VALUE, --runner VALUE\n",
  });
  expect(run("bench-capacity", ["30"])).toMatchObject({ code: EXIT_USAGE, stdout: "", stderr: expect.stringMatching(/^bench-capacity: unexpected argument 30; the options are: --start VALUE, .*--quick\n$/) });
  expect(run("bench-cost", ["--targets"])).toEqual({ code: EXIT_USAGE, stdout: "", stderr: "bench-cost: --targets wants a value\n" });
  expect(run("bench-engine", ["--count", "--quick"])).toEqual({ code: EXIT_USAGE, stdout: "", stderr: "bench-engine: --count wants a value\n" });
  expect(run("soak", ["--runner", "nope"])).toEqual({ code: EXIT_USAGE, stdout: "", stderr: "soak: --runner is auto, dist or bun\n" });
  expect(run("bench-engine", ["--count", "12"])).toEqual({ code: EXIT_USAGE, stdout: "", stderr: "bench-engine: --count wants an integer from 1000 to 10000000, got 12\n" });
});

test("--help lists the options and exits 0", () => {
  for (const script of ["bench-engine", "bench-accuracy", "bench-capacity", "bench-cost", "bench-daemon", "soak"]) {
    const r = run(script, ["--help"]);
    expect({ script, code: r.code, stderr: r.stderr }).toEqual({ script, code: 0, stderr: "" });
    expect(r.stdout).toMatch(new RegExp(`^${script}: options: --\\S+ .* \\(see the comment at the top of scripts/${script}\\.ts\\)\\n$`));
  }
});
