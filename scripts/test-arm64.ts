/**
 * Runs test files under qemu-user with the arm64 Bun runtime the release embeds (package-lock.json's
 * pin, scripts/bun-runtime.ts): the program's own code on the other architecture, beyond the
 * release test's sample. Not part of CI: emulation makes it minutes.
 * Usage: bun run scripts/test-arm64.ts [bun test arguments] (default: the test directories that
 * need no root), with a 10-minute timeout per test (emulated code runs several times slower).
 * Without binfmt_misc (containers), a test that spawns process.execPath, an aarch64 executable,
 * gets exit 127 from the kernel: tests/config/fuzz.test.ts's CLI mutants.
 */
import { join } from "node:path";
import { BuildError, crossRuntime } from "./bun-runtime.ts";
import { crossRequirements, hostArch, TARGETS } from "./targets.ts";

const root = join(import.meta.dir, "..");
const target = TARGETS.arm64;
if (hostArch() === "arm64") {
  console.error("test-arm64: this machine is arm64: run bun test itself");
  process.exit(64);
}
const missing = crossRequirements("arm64").find((r) => r.what === target.qemu && !r.found());
if (missing) {
  console.error(`test-arm64: ${missing.what} missing: install the Debian package ${missing.debianPackage}`);
  process.exit(69);
}
let runtime: string;
try {
  runtime = crossRuntime(root, target);
} catch (e) {
  if (!(e instanceof BuildError)) throw e;
  console.error(`test-arm64: ${e.message}`);
  process.exit(e.exitCode);
}
const args = process.argv.slice(2);
const tests = args.length > 0 ? args : ["tests/config", "tests/packet", "tests/engine", "tests/probes", "tests/targets", "tests/daemon"];
const r = Bun.spawnSync([target.qemu, "-L", target.sysroot, runtime, "test", "--timeout", "600000", ...tests], { cwd: root, stdio: ["inherit", "inherit", "inherit"] });
process.exit(r.exitCode ?? 1);
