/**
 * The Bun runtime a cross-compiled binary is made of, pinned as every other dependency is:
 * package-lock.json records @oven/bun-linux-<cpu> (an optional dependency of the `bun` package)
 * with its exact version and sha512 integrity, but `npm ci` installs only the machine's own, and
 * `bun build --compile --target` would fetch the other itself, checked against nothing. So the
 * package is fetched here with npm's own client (`npm pack`: the machine's registry settings and
 * npm's cache), its tarball checked against the lock file's integrity, and its executable
 * unpacked to build/bun-runtime/<package>-<version>/bun for `--compile-executable-path`.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Target } from "./targets.ts";

/** A failure with its one-line message and the exit code for it (sysexits). */
export class BuildError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "BuildError";
  }
}

interface LockEntry {
  version: string;
  integrity: string;
}

/** The lock file's pin of `name`: version and integrity. */
export function lockedPackage(root: string, name: string): LockEntry {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as { packages?: Record<string, Partial<LockEntry>> };
  const entry = lock.packages?.[`node_modules/${name}`];
  if (typeof entry?.version !== "string" || typeof entry.integrity !== "string") {
    throw new BuildError(`package-lock.json pins no version and integrity for ${name} (npm install bun@${Bun.version} records it)`, 65);
  }
  return { version: entry.version, integrity: entry.integrity };
}

/** Whether `bytes` match an npm integrity string ("sha512-<base64>", possibly several, space-separated). */
export function matchesIntegrity(bytes: Uint8Array, integrity: string): boolean {
  const sha512 = integrity.split(/\s+/).filter((h) => h.startsWith("sha512-"));
  if (sha512.length === 0) return false;
  const digest = new Bun.CryptoHasher("sha512").update(bytes).digest("base64");
  return sha512.some((h) => h.slice("sha512-".length) === digest);
}

/**
 * The path of Bun's runtime executable for `target`, fetched and checked on first use. The lock
 * file's version must be the Bun doing the build: the bundle and the runtime it is appended to
 * come from one release.
 */
export function crossRuntime(root: string, target: Target): string {
  const name = target.runtimePackage;
  const pin = lockedPackage(root, name);
  if (pin.version !== Bun.version) {
    throw new BuildError(`package-lock.json pins ${name}@${pin.version} but the build runs Bun ${Bun.version}: run npm ci`, 65);
  }
  const dir = join(root, "build", "bun-runtime", `${name.replace("/", "+")}-${pin.version}`);
  const executable = join(dir, "bun");
  if (existsSync(executable)) return executable;
  const npm = Bun.which("npm", { PATH: process.env.PATH ?? "" });
  if (npm === null) throw new BuildError(`npm missing (to fetch ${name}@${pin.version}): install the Debian package npm`, 69);

  mkdirSync(join(root, "build", "bun-runtime"), { recursive: true });
  const work = mkdtempSync(join(root, "build", "bun-runtime", ".fetch-"));
  try {
    // --prefer-offline: a tarball already in npm's cache is not asked for again.
    const pack = Bun.spawnSync([npm, "pack", `${name}@${pin.version}`, "--pack-destination", work, "--prefer-offline", "--silent"], {
      cwd: root,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const tarballs = readdirSync(work).filter((f) => f.endsWith(".tgz"));
    if (pack.exitCode !== 0 || tarballs.length !== 1) {
      const why = pack.stderr.toString().trim().split("\n").at(-1) ?? "";
      throw new BuildError(`npm pack ${name}@${pin.version} failed (exit ${pack.exitCode}): ${why}`, 69);
    }
    const tarball = join(work, tarballs[0]!);
    if (!matchesIntegrity(readFileSync(tarball), pin.integrity)) {
      throw new BuildError(`${name}@${pin.version} from the registry does not match package-lock.json's integrity ${pin.integrity}`, 65);
    }
    const untar = Bun.spawnSync(["tar", "-xzf", tarball, "-C", work, "package/bin/bun"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    if (untar.exitCode !== 0) throw new BuildError(`${tarball} holds no package/bin/bun: ${untar.stderr.toString().trim()}`, 65);
    chmodSync(join(work, "package", "bin", "bun"), 0o755);
    mkdirSync(dir, { recursive: true });
    renameSync(join(work, "package", "bin", "bun"), executable);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return executable;
}
