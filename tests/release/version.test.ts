/**
 * The build facts without a build: git's view of a checkout (revision, dirty, commit time), the
 * version line when run from source, and the pin of Bun's cross runtime (package-lock.json's
 * version and integrity, checked against what npm hands over; npm is faked here, no network).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { BuildError, crossRuntime, lockedPackage, matchesIntegrity } from "../../scripts/bun-runtime.ts";
import { TARGETS } from "../../scripts/targets.ts";
import { isoSeconds, revisionOf, sourceState } from "../../src/version.ts";

const REPO = join(import.meta.dir, "..", "..");
let work = "";

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "netprobify-version-"));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function sh(script: string, cwd: string, env: Record<string, string> = {}): void {
  const r = Bun.spawnSync(["bash", "-c", script], { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${script}: ${r.stderr.toString()}`);
}

describe("sourceState: a checkout's commit, commit time and whether tracked files differ", () => {
  test("no checkout, or one without a commit: null", () => {
    const dir = mkdtempSync(join(work, "plain-"));
    expect(sourceState(dir)).toBeNull();
    sh("git init -q .", dir);
    expect(sourceState(dir)).toBeNull();
  });

  test("clean, untracked file (still clean), changed tracked file, staged change: dirty only for the last two", () => {
    const dir = mkdtempSync(join(work, "repo-"));
    const when = { GIT_COMMITTER_DATE: "@1700000000 +0000", GIT_AUTHOR_DATE: "@1700000000 +0000" };
    sh("git init -q . && echo a >f && git add f && git -c user.name=t -c user.email=t@t commit -qm one", dir, when);
    const clean = sourceState(dir);
    expect(clean).toEqual({ commit: expect.stringMatching(/^[0-9a-f]{40}$/) as unknown as string, commitTime: 1700000000, dirty: false });
    expect(revisionOf(clean!)).toBe(clean!.commit.slice(0, 12));
    writeFileSync(join(dir, "untracked"), "x");
    expect(sourceState(dir)?.dirty).toBe(false);
    writeFileSync(join(dir, "f"), "b");
    const dirty = sourceState(dir)!;
    expect(dirty.dirty).toBe(true);
    expect(revisionOf(dirty)).toBe(`${clean!.commit.slice(0, 12)}-dirty`);
    sh("git add f", dir);
    expect(sourceState(dir)?.dirty).toBe(true);
  });

  test("isoSeconds: UTC, to the second", () => {
    expect([isoSeconds(0), isoSeconds(1700000000)]).toEqual(["1970-01-01T00:00:00Z", "2023-11-14T22:13:20Z"]);
  });
});

test("run from source, --version names git's revision of this checkout and no build date", () => {
  const r = Bun.spawnSync([process.execPath, join(REPO, "src", "main.ts"), "--version"], { cwd: work, stdout: "pipe", stderr: "pipe" });
  const state = sourceState(REPO);
  const revision = state ? revisionOf(state) : "source";
  const arch = process.arch === "x64" ? "amd64" : process.arch;
  expect({ code: r.exitCode, stderr: r.stderr.toString() }).toEqual({ code: 0, stderr: "" });
  expect(r.stdout.toString()).toStartWith(`netprobify ${pkg.version} (revision ${revision}, run from source, linux/${arch}, bun ${Bun.version}, libpcap `);
});

describe("Bun's runtime for another architecture, pinned by package-lock.json", () => {
  test("the lock file pins each target's runtime package at the Bun devDependency's version, which is the Bun running", () => {
    for (const t of Object.values(TARGETS)) {
      const pin = lockedPackage(REPO, t.runtimePackage);
      expect({ name: t.runtimePackage, version: pin.version, integrity: pin.integrity.startsWith("sha512-") }).toEqual({
        name: t.runtimePackage,
        version: pkg.devDependencies.bun,
        integrity: true,
      });
    }
    expect(pkg.devDependencies.bun).toBe(Bun.version);
  });

  test("matchesIntegrity: the tarball's sha512 or nothing", () => {
    const bytes = new TextEncoder().encode("a tarball");
    const integrity = `sha512-${new Bun.CryptoHasher("sha512").update(bytes).digest("base64")}`;
    expect(matchesIntegrity(bytes, integrity)).toBe(true);
    expect(matchesIntegrity(bytes, `sha1-abc ${integrity}`)).toBe(true);
    const flipped = bytes.slice();
    flipped[0]! ^= 1;
    expect(matchesIntegrity(flipped, integrity)).toBe(false);
    expect(matchesIntegrity(bytes, "sha1-abc")).toBe(false);
  });

  /** A checkout with a lock file pinning the arm64 runtime at `integrity`, and an npm that packs a tarball holding `runtime` as package/bin/bun. */
  function fakeCheckout(runtime: string): { root: string; tarball: Uint8Array; path: string } {
    const root = mkdtempSync(join(work, "checkout-"));
    const pkgDir = join(root, "src-pkg", "package", "bin");
    mkdirSync(pkgDir, { recursive: true });
    writeFileSync(join(pkgDir, "bun"), runtime);
    sh("tar -C src-pkg -czf runtime.tgz package", root);
    const bin = join(root, "fake-bin");
    mkdirSync(bin);
    // npm pack SPEC --pack-destination DIR ...: copies the tarball there.
    writeFileSync(join(bin, "npm"), `#!/bin/sh\ntouch ${join(root, "npm-ran")}\nwhile [ "$1" != "--pack-destination" ]; do shift; done\ncp ${join(root, "runtime.tgz")} "$2/oven-bun-linux-aarch64.tgz"\n`);
    chmodSync(join(bin, "npm"), 0o755);
    return { root, tarball: readFileSync(join(root, "runtime.tgz")), path: `${bin}:${process.env.PATH}` };
  }

  function lock(root: string, integrity: string): void {
    const entry = { version: Bun.version, integrity, cpu: ["arm64"], os: ["linux"], optional: true, dev: true };
    writeFileSync(join(root, "package-lock.json"), JSON.stringify({ lockfileVersion: 3, packages: { "node_modules/@oven/bun-linux-aarch64": entry } }));
  }

  function withPath<T>(path: string, f: () => T): T {
    const saved = process.env.PATH;
    process.env.PATH = path;
    try {
      return f();
    } finally {
      process.env.PATH = saved;
    }
  }

  test("a tarball matching the pin: its package/bin/bun, unpacked under build/bun-runtime/, executable", () => {
    const c = fakeCheckout("#!/bin/sh\necho the pinned runtime\n");
    lock(c.root, `sha512-${new Bun.CryptoHasher("sha512").update(c.tarball).digest("base64")}`);
    const exe = withPath(c.path, () => crossRuntime(c.root, TARGETS.arm64));
    expect(exe).toBe(join(c.root, "build", "bun-runtime", `@oven+bun-linux-aarch64-${Bun.version}`, "bun"));
    expect(Bun.spawnSync([exe]).stdout.toString()).toBe("the pinned runtime\n");
  });

  test("a tarball not matching the pin: refused (exit 65), nothing unpacked", async () => {
    const c = fakeCheckout("#!/bin/sh\necho something else\n");
    lock(c.root, `sha512-${new Bun.CryptoHasher("sha512").update("another tarball").digest("base64")}`);
    let error: unknown;
    withPath(c.path, () => {
      try {
        crossRuntime(c.root, TARGETS.arm64);
      } catch (e) {
        error = e;
      }
    });
    expect(await Bun.file(join(c.root, "npm-ran")).exists()).toBe(true);
    expect(error).toBeInstanceOf(BuildError);
    expect({ code: (error as BuildError).exitCode, message: (error as BuildError).message }).toEqual({
      code: 65,
      message: expect.stringContaining("does not match package-lock.json's integrity") as unknown as string,
    });
    expect(Bun.file(join(c.root, "build", "bun-runtime", `@oven+bun-linux-aarch64-${Bun.version}`, "bun")).size).toBe(0);
  });

  test("a lock file pinning another version than the Bun running: refused before fetching", () => {
    const root = mkdtempSync(join(work, "old-pin-"));
    writeFileSync(join(root, "package-lock.json"), JSON.stringify({ packages: { "node_modules/@oven/bun-linux-aarch64": { version: "0.0.1", integrity: "sha512-x" } } }));
    expect(() => crossRuntime(root, TARGETS.arm64)).toThrow(`package-lock.json pins @oven/bun-linux-aarch64@0.0.1 but the build runs Bun ${Bun.version}: run npm ci`);
  });
});
