/**
 * Builds dist/netprobify: one executable with the Bun runtime, the engine Worker and a libc-only
 * libpcap inside. Usage: bun run build.ts [--outfile PATH]
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

const root = import.meta.dir;
const outArg = process.argv.indexOf("--outfile");
const outfile = outArg > 0 ? process.argv[outArg + 1]! : join(root, "dist", "netprobify");

function run(argv: string[]): void {
  const r = Bun.spawnSync(argv, { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) {
    console.error(`build: ${argv.join(" ")} failed with exit code ${r.exitCode}`);
    process.exit(1);
  }
}

if (!existsSync(join(root, "build", "libpcap", "libpcap.so"))) run(["bash", "scripts/build-libpcap.sh"]);

// Worker entries are passed as extra entrypoints: that is how `bun build --compile` bundles them.
run([
  process.execPath,
  "build",
  "--compile",
  "--target=bun-linux-x64",
  // A .env or bunfig.toml in the working directory (which bunfig's `preload` turns into code run
  // before main) must not steer the binary, least of all a setcap'd one started by another user.
  "--no-compile-autoload-dotenv",
  "--no-compile-autoload-bunfig",
  // Runtime warnings reach the log through process.on("warning") (src/log.ts); without this
  // flag Bun would also print its own "(node:PID) ..." text on stderr, outside the log format.
  "--compile-exec-argv=--no-warnings",
  "src/main.ts",
  "src/engine/engine-worker.ts",
  "src/config/load-worker.ts",
  "src/inventory/inventory-worker.ts",
  "--outfile",
  outfile,
]);
console.log(`build: ${outfile}`);
