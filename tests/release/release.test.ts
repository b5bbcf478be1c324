/**
 * `bun run release` as CI runs it: the commit under test cloned twice into temporary directories,
 * a release made in each (both architectures in one, amd64 in the other, side by side: two full
 * releases would add a cross-built libpcap, a qemu run and a gzip of 110 MB for nothing the amd64
 * comparison does not already show), then:
 * - reproducibility: the amd64 archive has the same sha256 in both, and sha256sums.txt verifies;
 * - the archives: sorted entries, owner 0/0, mtime the commit's time, fixed modes, the listed files;
 * - both binaries: NEEDED entries only glibc's (readelf -d), --version with the commit's revision,
 *   its time as build date, the architecture and the embedded libpcap;
 * - the arm64 binary under qemu-user: `check` on a sample of the config corpus and a usage error
 *   give the amd64 binary's exit codes and output, byte for byte. (A probe cannot run there:
 *   qemu-user 7.2 answers ENOPROTOOPT to the SOL_PACKET and SO_TIMESTAMPNS options libpcap sets on
 *   its packet socket, so pcap_activate fails.)
 * - bad input: a dirty tree's release says so; a missing tool or listed file is one line naming
 *   what to install or what is missing.
 * Needs the tools setup.sh installs (the cross toolchain, qemu-user-static, binutils) and, for the
 * hidden C library headers, root (a private mount namespace).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { GLIBC_LIBRARIES, runOn, TARGETS, type Arch } from "../../scripts/targets.ts";
import { isoSeconds } from "../../src/version.ts";

const REPO = join(import.meta.dir, "..", "..");
const VERSION = pkg.version;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], cwd: string, env: Record<string, string | undefined> = process.env): Promise<Run> {
  const p = Bun.spawn(argv, { cwd, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

function git(args: string[], cwd = REPO): string {
  const r = Bun.spawnSync(["git", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString().trim();
}

/** The process environment without SOURCE_DATE_EPOCH: the release takes the commit's time. */
function releaseEnv(): Record<string, string | undefined> {
  const env = { ...process.env };
  delete env.SOURCE_DATE_EPOCH;
  return env;
}

const lines = (text: string) => text.split("\n").filter((l) => l.length > 0);

describe("bun run release, twice from one commit in two directories", () => {
  let work = "";
  let a = "";
  let b = "";
  let commit = "";
  let commitTime = 0;
  const bins: Partial<Record<Arch, string>> = {};

  /** A checkout of `commit` in `dir`, with node_modules inside it as npm ci makes it (hard links: no copy). */
  function checkout(dir: string): void {
    git(["clone", "--quiet", "--shared", "--no-checkout", REPO, dir]);
    git(["checkout", "--quiet", "--detach", commit], dir);
    const modules = realpathSync(join(REPO, "node_modules"));
    const cp = Bun.spawnSync(["cp", "-al", modules, join(dir, "node_modules")], { stderr: "pipe" });
    if (cp.exitCode !== 0) {
      const copy = Bun.spawnSync(["cp", "-a", modules, join(dir, "node_modules")], { stderr: "pipe" });
      if (copy.exitCode !== 0) throw new Error(`copying node_modules: ${copy.stderr.toString()}`);
    }
  }

  async function release(dir: string, args: string[] = []): Promise<Run> {
    return run([process.execPath, "run", "scripts/release.ts", ...args], dir, releaseEnv());
  }

  beforeAll(async () => {
    commit = git(["rev-parse", "HEAD"]);
    commitTime = Number(git(["log", "-1", "--format=%ct"]));
    work = mkdtempSync(join(tmpdir(), "netprobify-release-"));
    a = join(work, "a");
    b = join(work, "second-checkout");
    checkout(a);
    checkout(b);
    const [ra, rb] = await Promise.all([release(a), release(b, ["--arch", "amd64"])]);
    for (const [name, r] of [["a", ra], ["second-checkout", rb]] as const) {
      if (r.code !== 0) throw new Error(`release in ${name} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
    }
    for (const arch of ["amd64", "arm64"] as Arch[]) {
      const dir = join(work, `extract-${arch}`);
      mkdirSync(dir);
      const x = Bun.spawnSync(["tar", "-xzf", join(a, "dist", "release", `netprobify-${VERSION}.linux-${arch}.tar.gz`), "-C", dir]);
      if (x.exitCode !== 0) throw new Error(`tar -x of the ${arch} archive failed`);
      bins[arch] = join(dir, `netprobify-${VERSION}.linux-${arch}`, "netprobify");
    }
  }, 600_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("dist/release holds the two archives and sha256sums.txt, which sha256sum -c verifies", async () => {
    expect(readdirSync(join(a, "dist", "release")).sort()).toEqual([`netprobify-${VERSION}.linux-amd64.tar.gz`, `netprobify-${VERSION}.linux-arm64.tar.gz`, "sha256sums.txt"]);
    const r = await run(["sha256sum", "-c", "sha256sums.txt"], join(a, "dist", "release"));
    expect({ code: r.code, out: lines(r.stdout) }).toEqual({ code: 0, out: [`netprobify-${VERSION}.linux-amd64.tar.gz: OK`, `netprobify-${VERSION}.linux-arm64.tar.gz: OK`] });
  });

  test("reproducible: the other checkout's amd64 archive is the same bytes", () => {
    const sums = (dir: string) => readFileSync(join(dir, "dist", "release", "sha256sums.txt"), "utf8");
    const amd64 = (text: string) => lines(text).filter((l) => l.endsWith(".linux-amd64.tar.gz"));
    expect(amd64(sums(b))).toEqual(amd64(sums(a)));
    expect(amd64(sums(a)).length).toBe(1);
  });

  for (const arch of ["amd64", "arm64"] as Arch[]) {
    test(`the ${arch} archive: one directory, sorted entries, owner 0/0, mtime the commit's, fixed modes, the listed files`, async () => {
      const r = await run(["tar", "--numeric-owner", "--utc", "--full-time", "-tvzf", join(a, "dist", "release", `netprobify-${VERSION}.linux-${arch}.tar.gz`)], work);
      expect(r.code).toBe(0);
      const when = isoSeconds(commitTime).replace("T", " ").replace("Z", "");
      const top = `netprobify-${VERSION}.linux-${arch}/`;
      const systemd = readdirSync(join(a, "deploy", "systemd")).sort();
      const entries = lines(r.stdout).map((l) => {
        const [mode, owner, , date, time, name] = l.split(/\s+/);
        return { mode, owner, when: `${date} ${time}`, name };
      });
      expect(entries.map((e) => e.name)).toEqual([
        top,
        `${top}LICENSE`,
        `${top}README.md`,
        `${top}netprobify`,
        `${top}netprobify.example.yaml`,
        `${top}schema_config.yaml`,
        `${top}systemd/`,
        ...systemd.map((f) => `${top}systemd/${f}`),
      ]);
      expect(systemd).toContain("netprobify.service");
      for (const e of entries) {
        const mode = e.name!.endsWith("/") ? "drwxr-xr-x" : e.name === `${top}netprobify` ? "-rwxr-xr-x" : "-rw-r--r--";
        expect(e).toEqual({ mode, owner: "0/0", when, name: e.name });
      }
    });

    test(`the ${arch} binary's NEEDED entries are glibc's only`, async () => {
      const r = await run(["readelf", "-d", bins[arch]!], work);
      const needed = [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
      expect(needed).toContain("libc.so.6");
      expect(needed.filter((l) => !GLIBC_LIBRARIES.test(l))).toEqual([]);
    });

    test(`the ${arch} binary's --version: the commit's revision, its time as build date, linux/${arch}, Bun's and the embedded libpcap's versions`, async () => {
      const r = await run(runOn(arch, bins[arch]!, ["--version"]), work);
      const want = `netprobify ${VERSION} (revision ${commit.slice(0, 12)}, built ${isoSeconds(commitTime)}, linux/${arch}, bun ${Bun.version}, libpcap `;
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      expect(r.stdout.startsWith(want)).toBe(true);
      expect(r.stdout).toMatch(/, libpcap 1\.\d+\.\d+ \(embedded\)\)\n$/);
    }, 60_000);
  }

  test("arm64 under qemu-user: check on a sample of the config corpus, and a usage error, exit and print exactly what the amd64 binary does", async () => {
    // Every field and warnings; several errors at once; one error with its position. (Each run costs
    // qemu's seconds-long start of the arm64 runtime: the whole corpus would take minutes.)
    const corpus = ["example.yaml", "bad-several-errors.yaml", "bad-destination-cidr.yaml"];
    const cases = [...corpus.map((f) => ["check", `tests/fixtures/config/${f}`]), ["probe", "198.18.0.1", "--type", "bogus"]];
    const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8" };
    const results: { args: string; amd64: Run; arm64: Run }[] = [];
    // Two at a time: qemu's start of the arm64 runtime takes seconds.
    for (let i = 0; i < cases.length; i += 2) {
      const batch = cases.slice(i, i + 2);
      results.push(
        ...(await Promise.all(
          batch.map(async (args) => ({ args: args.join(" "), amd64: await run([bins.amd64!, ...args], a, env), arm64: await run(runOn("arm64", bins.arm64!, args), a, env) })),
        )),
      );
    }
    for (const r of results) expect({ args: r.args, ...r.arm64 }).toEqual({ args: r.args, ...r.amd64 });
    // The sample spans the outcomes: valid files (0), invalid ones (65, FILE:LINE:COL), a usage error (64).
    expect(results.map((r) => r.amd64.code)).toEqual([0, 65, 65, 64]);
    expect(results[2]!.arm64.stderr).toMatch(/^tests\/fixtures\/config\/bad-destination-cidr\.yaml:\d+:\d+: targets\.web\.destination: /);
  }, 120_000);

  describe("bad input", () => {
    test("a release from a tree with uncommitted changes: archives named <version>+dirty, the binary's revision ends in -dirty", async () => {
      writeFileSync(join(b, "README.md"), readFileSync(join(b, "README.md"), "utf8") + "\nan uncommitted line\n");
      const r = await release(b, ["--arch", "amd64"]);
      expect(r.code).toBe(0);
      expect(lines(r.stderr)).toEqual([`release: tracked files differ from commit ${commit.slice(0, 12)}: the archives are ${VERSION}+dirty, the binaries' revision ${commit.slice(0, 12)}-dirty`]);
      expect(readdirSync(join(b, "dist", "release")).sort()).toEqual([`netprobify-${VERSION}+dirty.linux-amd64.tar.gz`, "sha256sums.txt"]);
      const x = join(work, "dirty");
      mkdirSync(x);
      expect(Bun.spawnSync(["tar", "-xzf", join(b, "dist", "release", `netprobify-${VERSION}+dirty.linux-amd64.tar.gz`), "-C", x]).exitCode).toBe(0);
      const v = await run([join(x, `netprobify-${VERSION}+dirty.linux-amd64`, "netprobify"), "--version"], x);
      expect(v.stdout).toContain(`(revision ${commit.slice(0, 12)}-dirty, built ${isoSeconds(commitTime)},`);
    }, 120_000);

    /** PATH with every program of /usr/bin and /bin but `hidden`. */
    function pathWithout(hidden: string): string {
      const dir = mkdtempSync(join(work, "path-"));
      for (const from of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
        for (const name of readdirSync(from)) {
          if (name === hidden) continue;
          try {
            symlinkSync(join(from, name), join(dir, name));
          } catch {
            // already linked from an earlier directory (/bin is /usr/bin on merged-/usr systems)
          }
        }
      }
      return dir;
    }

    for (const [tool, debianPackage] of [
      [`${TARGETS.arm64.triplet}-gcc`, TARGETS.arm64.crossCompiler],
      [TARGETS.arm64.qemu, "qemu-user-static"],
      ["readelf", "binutils"],
    ]) {
      test(`no ${tool}: exit 69 and one line naming the Debian package ${debianPackage}, before building anything`, async () => {
        const r = await run([process.execPath, "run", "scripts/release.ts"], a, { ...releaseEnv(), PATH: pathWithout(tool!) });
        expect({ code: r.code, stdout: r.stdout, stderr: lines(r.stderr) }).toEqual({
          code: 69,
          stdout: "",
          stderr: [`release: ${tool} missing: install the Debian package ${debianPackage}`],
        });
      }, 30_000);
    }

    test("no npm to fetch the pinned arm64 runtime (the checkout that built amd64 only has none): exit 69, one line naming npm, no staging left in dist/", async () => {
      git(["checkout", "--quiet", "README.md"], b); // clean again after the dirty release
      const r = await run([process.execPath, "run", "scripts/release.ts", "--arch", "arm64"], b, { ...releaseEnv(), PATH: pathWithout("npm") });
      expect({ code: r.code, stdout: r.stdout, stderr: lines(r.stderr) }).toEqual({
        code: 69,
        stdout: "",
        stderr: [`build: npm missing (to fetch ${TARGETS.arm64.runtimePackage}@${Bun.version}): install the Debian package npm`],
      });
      expect(readdirSync(join(b, "dist")).filter((f) => f.startsWith(".release-"))).toEqual([]);
    }, 30_000);

    test("no C library headers for arm64 (hidden by an empty mount in a private mount namespace): exit 69 naming libc6-dev-arm64-cross", async () => {
      if (process.getuid?.() !== 0) throw new Error("this test needs root to hide /usr/aarch64-linux-gnu/include in a private mount namespace");
      const include = join(TARGETS.arm64.sysroot, "include");
      const r = await run(["unshare", "--mount", "--propagation", "private", "sh", "-c", `mount -t tmpfs none ${include} && exec "$@"`, "sh", process.execPath, "run", "scripts/release.ts"], a, releaseEnv());
      expect({ code: r.code, stderr: lines(r.stderr) }).toEqual({ code: 69, stderr: [`release: ${include}/stdio.h missing: install the Debian package ${TARGETS.arm64.crossLibc}`] });
    }, 30_000);

    test("a file the archives list is missing: exit 66 and one line naming it", async () => {
      rmSync(join(a, "deploy", "systemd", "netprobify.service"));
      const r = await release(a);
      expect({ code: r.code, stderr: lines(r.stderr) }).toEqual({ code: 66, stderr: ["release: deploy/systemd/netprobify.service is missing: the release archives list it"] });
    }, 30_000);

    test("--arch with an unknown architecture: exit 64, one line", async () => {
      const r = await release(a, ["--arch", "amd64,riscv64"]);
      expect({ code: r.code, stderr: lines(r.stderr) }).toEqual({ code: 64, stderr: ["release: --arch amd64,riscv64: a comma-separated list of amd64, arm64"] });
    });
  });
});
