/**
 * `bun run release`: the release archives, built reproducibly, in dist/release/:
 *   netprobify-<version>.linux-amd64.tar.gz, netprobify-<version>.linux-arm64.tar.gz, sha256sums.txt
 * Each archive holds one directory, netprobify-<version>.linux-<arch>/: the binary, LICENSE,
 * README.md, schema_config.yaml, netprobify.example.yaml and systemd/ (deploy/systemd/: the unit
 * and its environment file). <version> is package.json's, with "+dirty" when tracked files differ
 * from the commit (the binaries' revision then ends in -dirty too).
 *
 * Reproducible: the build date is the commit's time (SOURCE_DATE_EPOCH), entries are sorted, with
 * that time as mtime, owner and group 0 by number, fixed modes, and gzip -n (no name, no time):
 * two releases of one commit, in two directories, have the same sha256sums.txt
 * (tests/release/release.test.ts).
 *
 * Each binary is checked before it is packed: its NEEDED entries name only glibc libraries, and
 * it runs (`--version`, through qemu-user for another architecture) reporting the expected
 * revision, architecture and its embedded libpcap.
 *
 * Usage: bun run release [--arch amd64,arm64]
 * Exit: 0 done; 64 bad argument; 65 not a git checkout; 66 a file the archives list is missing;
 * 69 a tool missing (the line names the Debian package to install); 70 a binary failed its check.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { isoSeconds, revisionOf, sourceState } from "../src/version.ts";
import { crossRequirements, GLIBC_LIBRARIES, isArch, runOn, TARGETS, type Arch, type Requirement } from "./targets.ts";

const root = join(import.meta.dir, "..");

class ReleaseError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** A file of the archive: where it comes from in the checkout, and its name in the archive. */
interface Entry {
  readonly from: string;
  readonly to: string;
  readonly edit?: (text: string) => string;
}

const LISTED: Entry[] = [
  { from: "LICENSE", to: "LICENSE" },
  { from: "README.md", to: "README.md" },
  { from: "schema_config.yaml", to: "schema_config.yaml" },
  // Its editor hint points at the schema from tests/fixtures/config/; in the archive it lies beside it.
  { from: "tests/fixtures/config/example.yaml", to: "netprobify.example.yaml", edit: (t) => t.replace("$schema=../../../schema_config.yaml", "$schema=schema_config.yaml") },
  { from: "deploy/systemd/netprobify.service", to: "systemd/netprobify.service" },
];
const SYSTEMD_DIR = "deploy/systemd";

/** The listed files, then every other file of deploy/systemd/ (the unit's environment file). */
function entries(): Entry[] {
  for (const e of LISTED) {
    if (!existsSync(join(root, e.from))) throw new ReleaseError(`${e.from} is missing: the release archives list it`, 66);
  }
  const listed = new Set(LISTED.map((e) => e.from));
  const systemd = readdirSync(join(root, SYSTEMD_DIR))
    .map((name) => `${SYSTEMD_DIR}/${name}`)
    .filter((from) => !listed.has(from) && statSync(join(root, from)).isFile())
    .sort();
  return [...LISTED, ...systemd.map((from) => ({ from, to: `systemd/${from.slice(SYSTEMD_DIR.length + 1)}` }))];
}

const program = (name: string, debianPackage: string): Requirement => ({ what: name, found: () => Bun.which(name) !== null, debianPackage });

/** Every tool the release needs, checked before anything is built: a missing one is named with its package. */
function checkRequirements(arches: Arch[]): void {
  const needed = [program("git", "git"), program("tar", "tar"), program("gzip", "gzip"), program("readelf", "binutils"), ...arches.flatMap(crossRequirements)];
  for (const r of needed) {
    if (!r.found()) throw new ReleaseError(`${r.what} missing: install the Debian package ${r.debianPackage}`, 69);
  }
}

function spawnChecked(argv: string[], what: string, env?: Record<string, string>): string {
  const r = Bun.spawnSync(argv, { cwd: root, env: env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new ReleaseError(`${what} failed (exit ${r.exitCode}): ${r.stderr.toString().trim().split("\n").at(-1) ?? ""}`, 70);
  return r.stdout.toString();
}

/** The binary's NEEDED libraries must all be glibc's, and it must run and say what it is. */
function checkBinary(arch: Arch, binary: string, expected: { version: string; revision: string; buildDate: string }): void {
  const dynamic = spawnChecked(["readelf", "-d", binary], `readelf -d ${binary}`);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  const foreign = needed.filter((lib) => !GLIBC_LIBRARIES.test(lib));
  if (needed.length === 0 || foreign.length > 0) throw new ReleaseError(`the ${arch} binary needs ${foreign.join(", ") || "no library at all"}: only glibc's are allowed`, 70);
  const out = spawnChecked(runOn(arch, binary, ["--version"]), `${arch} binary --version`, { PATH: process.env.PATH ?? "/usr/bin:/bin" }).trim();
  const want = `netprobify ${expected.version} (revision ${expected.revision}, built ${expected.buildDate}, linux/${arch}, bun ${Bun.version}, libpcap `;
  if (!out.startsWith(want) || !out.endsWith("(embedded))")) throw new ReleaseError(`the ${arch} binary says "${out}", not "${want}... (embedded))"`, 70);
}

/** Packs `dir` (inside `parent`) into `archive`, the same bytes for the same files whatever the machine's clock, user or umask. */
async function pack(parent: string, dir: string, archive: string, epoch: number): Promise<void> {
  const tar = ["tar", "--sort=name", "--format=gnu", `--mtime=@${epoch}`, "--owner=0", "--group=0", "--numeric-owner", "-C", parent, "-cf", "-", dir];
  const p = Bun.spawn(["bash", "-c", 'set -o pipefail; "${@:2}" | gzip -n >"$1"', "pack", archive, ...tar], { cwd: root, stdin: "ignore", stdout: "inherit", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  if (code !== 0) throw new ReleaseError(`packing ${archive} failed (exit ${code}): ${err.trim()}`, 70);
}

function sha256(path: string): string {
  return new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex");
}

async function release(arches: Arch[]): Promise<void> {
  checkRequirements(arches);
  const files = entries();
  const state = sourceState(root);
  if (!state) throw new ReleaseError(`${root} is not a git checkout: the revision and the build date come from its commit`, 65);
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && !/^\d+$/.test(fromEnv)) throw new ReleaseError(`SOURCE_DATE_EPOCH=${fromEnv} is no count of seconds`, 64);
  const epoch = fromEnv !== undefined ? Number(fromEnv) : state.commitTime;
  const expected = { version: pkg.version, revision: revisionOf(state), buildDate: isoSeconds(epoch) };
  const label = pkg.version + (state.dirty ? "+dirty" : "");
  if (state.dirty) console.error(`release: tracked files differ from commit ${state.commit.slice(0, 12)}: the archives are ${label}, the binaries' revision ${expected.revision}`);

  const out = join(root, "dist", "release");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const staging = mkdtempSync(join(root, "dist", ".release-"));
  try {
    const dirs: { arch: Arch; dir: string }[] = [];
    for (const arch of arches) {
      const dir = `netprobify-${label}.linux-${arch}`;
      const top = join(staging, dir);
      mkdirSync(join(top, "systemd"), { recursive: true });
      const binary = join(top, "netprobify");
      // build.ts says why when it fails (one line): its exit code is the release's, with nothing added.
      const build = Bun.spawnSync([process.execPath, "run", "build.ts", "--target", arch, "--outfile", binary], {
        cwd: root,
        env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
        stdin: "ignore",
        stdout: "ignore",
        stderr: "inherit",
      });
      if (build.exitCode !== 0) throw new ReleaseError("", build.exitCode ?? 1);
      chmodSync(binary, 0o755);
      for (const f of files) {
        const to = join(top, f.to);
        if (f.edit) writeFileSync(to, f.edit(readFileSync(join(root, f.from), "utf8")));
        else copyFileSync(join(root, f.from), to);
        chmodSync(to, 0o644);
      }
      for (const d of [top, join(top, "systemd")]) chmodSync(d, 0o755);
      dirs.push({ arch, dir });
    }
    // Checked and packed side by side: qemu and gzip are the slow parts.
    await Promise.all(
      dirs.map(async ({ arch, dir }) => {
        checkBinary(arch, join(staging, dir, "netprobify"), expected);
        await pack(staging, dir, join(out, `${dir}.tar.gz`), epoch);
      }),
    );
    const archives = dirs.map(({ dir }) => `${dir}.tar.gz`).sort();
    const sums = archives.map((name) => ({ name, sum: sha256(join(out, name)) }));
    // The format sha256sum -c reads.
    writeFileSync(join(out, "sha256sums.txt"), sums.map(({ name, sum }) => `${sum}  ${name}\n`).join(""));
    for (const { name, sum } of sums) console.log(`release: dist/release/${name} (${(statSync(join(out, name)).size / 1e6).toFixed(1)} MB) ${sum}`);
    console.log(`release: dist/release/sha256sums.txt (revision ${expected.revision}, built ${expected.buildDate})`);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function parseArches(argv: string[]): Arch[] {
  const i = argv.indexOf("--arch");
  if (i < 0) return ["amd64", "arm64"];
  const names = (argv[i + 1] ?? "").split(",").filter((n) => n.length > 0);
  const bad = names.filter((n) => !isArch(n));
  if (names.length === 0 || bad.length > 0) throw new ReleaseError(`--arch ${argv[i + 1] ?? ""}: a comma-separated list of ${Object.keys(TARGETS).join(", ")}`, 64);
  return [...new Set(names)] as Arch[];
}

try {
  await release(parseArches(process.argv.slice(2)));
} catch (e) {
  if (!(e instanceof ReleaseError)) throw e;
  if (e.message) console.error(`release: ${e.message}`);
  process.exit(e.exitCode);
}
