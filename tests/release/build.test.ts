/**
 * build.ts on a fresh clone: the output's directory (dist/ by default) does not exist yet.
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

test("build.ts creates the output's directory when it does not exist (dist/ on a fresh clone)", () => {
  const dir = mkdtempSync(join(tmpdir(), "netprobify-build-"));
  try {
    const outfile = join(dir, "not", "there", "yet", "netprobify");
    const r = Bun.spawnSync([process.execPath, "run", "build.ts", "--outfile", outfile], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect({ code: r.exitCode, stderr: r.stderr.toString().slice(-500) }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(outfile)).toBe(true);
    const v = Bun.spawnSync([outfile, "--version"], { stdout: "pipe" });
    expect(v.stdout.toString()).toStartWith("netprobify ");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
