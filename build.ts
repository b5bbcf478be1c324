/**
 * Builds dist/netprobify: one executable with the Bun runtime, the engine Worker and a libc-only
 * libpcap inside. Usage: bun run build.ts [--target amd64|arm64] [--outfile PATH]
 * (default: this machine's architecture, into dist/netprobify; another into dist/netprobify.linux-<arch>).
 *
 * Another architecture's binary embeds that architecture's libpcap (build/libpcap-<arch>/, from
 * Debian's cross toolchain) and Bun's runtime package for it as package-lock.json pins it
 * (scripts/bun-runtime.ts). The revision and build date come from git (SOURCE_DATE_EPOCH when
 * set): two builds of one commit are the same bytes, whatever the directory or the clock.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { BuildError, crossRuntime } from "./scripts/bun-runtime.ts";
import { hostArch, isArch, libpcapDir, TARGETS, type Arch } from "./scripts/targets.ts";
import { isoSeconds, revisionOf, sourceState, type BuildFacts } from "./src/version.ts";

const root = import.meta.dir;

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function fail(message: string, code: number): never {
  console.error(`build: ${message}`);
  process.exit(code);
}

/** What the binary says it was built from: the checkout's commit and that commit's time. */
function buildFacts(): BuildFacts {
  const state = sourceState(root);
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && !/^\d+$/.test(fromEnv)) fail(`SOURCE_DATE_EPOCH=${fromEnv} is no count of seconds`, 64);
  const epoch = fromEnv !== undefined ? Number(fromEnv) : (state?.commitTime ?? Math.floor(Date.now() / 1000));
  return { revision: state ? revisionOf(state) : "unknown", buildDate: isoSeconds(epoch) };
}

const host = hostArch();
const archArg = option("--target") ?? host ?? "amd64";
if (!isArch(archArg)) fail(`--target ${archArg}: amd64 or arm64`, 64);
const arch: Arch = archArg;
const target = TARGETS[arch];
const outfile = resolve(option("--outfile") ?? join(root, "dist", arch === host ? "netprobify" : `netprobify.linux-${arch}`));
// Bun names each bundled module by its path from the working directory, in a comment of the
// bundle: from the checkout's root they are the same in every checkout.
process.chdir(root);

// The runtime first: a failure there is found in a second, not after a libpcap build.
let executablePath: string | undefined;
try {
  executablePath = arch === host ? undefined : crossRuntime(root, target);
} catch (e) {
  if (e instanceof BuildError) fail(e.message, e.exitCode);
  throw e;
}

const pcapDir = libpcapDir(root, arch);
if (!(await Bun.file(join(pcapDir, "libpcap.so")).exists())) {
  const r = Bun.spawnSync(["bash", "scripts/build-libpcap.sh", arch], { stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) fail(`scripts/build-libpcap.sh ${arch} failed (exit ${r.exitCode})`, r.exitCode ?? 1);
}

// src/native/libpcap.ts embeds ../../build/libpcap/libpcap.so, the machine's own: for another
// architecture the bundler is pointed at that architecture's build instead.
const LIBPCAP_IMPORT = /^\.\.\/\.\.\/build\/libpcap\/libpcap\.so$/;
let libpcapImports = 0;
const libpcapForTarget: Bun.BunPlugin = {
  name: "libpcap-for-target",
  setup(build) {
    build.onResolve({ filter: LIBPCAP_IMPORT }, () => {
      libpcapImports++;
      return { path: join(pcapDir, "libpcap.so") };
    });
  },
};

// The binary's own name is part of it (/$bunfs/root/<name>): always "netprobify", whatever the
// outfile is called, so the bytes do not depend on it.
// A fresh clone has no dist/ yet.
mkdirSync(dirname(outfile), { recursive: true });
const work = mkdtempSync(join(dirname(outfile), ".netprobify-build-"));
try {
  const result = await Bun.build({
    // Worker entries are extra entrypoints: that is how `bun build --compile` bundles them.
    entrypoints: ["src/main.ts", "src/engine/engine-worker.ts", "src/config/load-worker.ts", "src/inventory/inventory-worker.ts"],
    compile: {
      target: target.bunTarget,
      outfile: join(work, "netprobify"),
      ...(executablePath ? { executablePath } : {}),
      // A .env or bunfig.toml in the working directory (which bunfig's `preload` turns into code
      // run before main) must not steer the binary, least of all a setcap'd one started by another user.
      autoloadDotenv: false,
      autoloadBunfig: false,
      // Runtime warnings reach the log through process.on("warning") (src/log.ts); without this
      // flag Bun would also print its own "(node:PID) ..." text on stderr, outside the log format.
      execArgv: ["--no-warnings"],
    },
    define: { NETPROBIFY_BUILD: JSON.stringify(buildFacts()) },
    plugins: [libpcapForTarget],
    throw: false,
  });
  if (!result.success) fail(result.logs.map((l) => String(l)).join("\n"), 1);
  if (libpcapImports === 0) fail("src/native/libpcap.ts no longer imports ../../build/libpcap/libpcap.so: update build.ts's LIBPCAP_IMPORT", 1);
  renameSync(join(work, "netprobify"), outfile);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`build: ${outfile} (linux/${arch})`);
