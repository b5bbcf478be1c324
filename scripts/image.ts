/**
 * Builds the container image of deploy/container/Containerfile and tags it NAME:latest and
 * NAME:<version> (default NAME localhost/netprobify). Stages the build context in build/image:
 * the binary (built by build.ts, or --binary PATH), the glibc files `ldd` lists at the paths it
 * lists them, an nsswitch.conf, an empty /tmp (1777) and the working directory /opt/netprobify.
 * Builds with podman (or buildah), pulling nothing, with the image's timestamps set to the
 * commit's time (SOURCE_DATE_EPOCH when set), so one binary gives one image id.
 *
 * Usage: bun run image [--binary PATH] [--name NAME]
 * Prints one line: the tags, the image id and its size.
 */
import { chmodSync, copyFileSync, mkdirSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const root = join(import.meta.dir, "..");
const stage = join(root, "build", "image");
const rootfs = join(stage, "rootfs");
const containerfile = join(root, "deploy", "container", "Containerfile");
const BINARY_PATH = "/usr/local/bin/netprobify";
const EXIT_USAGE = 64;
const EXIT_UNAVAILABLE = 69;
const EXIT_SOFTWARE = 70;

function fail(code: number, message: string): never {
  console.error(`image: ${message}`);
  process.exit(code);
}

function parseArgs(argv: string[]): { binary: string | null; name: string } {
  let binary: string | null = null;
  let name = "localhost/netprobify";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = argv[i + 1];
    if ((arg === "--binary" || arg === "--name") && value !== undefined && !value.startsWith("--")) {
      if (arg === "--binary") binary = value;
      else name = value;
      i++;
    } else {
      fail(EXIT_USAGE, `unexpected argument ${JSON.stringify(arg)} (usage: bun run image [--binary PATH] [--name NAME])`);
    }
  }
  return { binary, name };
}

function run(argv: string[], opts: { cwd?: string; quiet?: boolean } = {}): string {
  const r = Bun.spawnSync(argv, { cwd: opts.cwd ?? root, stdout: "pipe", stderr: opts.quiet ? "pipe" : "inherit" });
  if (r.exitCode !== 0) fail(EXIT_SOFTWARE, `${argv.join(" ")} failed with exit code ${r.exitCode}${opts.quiet ? `: ${r.stderr?.toString().trim() ?? ""}` : ""}`);
  return r.stdout.toString();
}

/**
 * The files the dynamic loader maps for `binary`, as `ldd` prints them: each library's path and
 * the loader's own (linux-vdso has no file). Throws when ldd cannot find a library.
 */
export function lddFiles(lddOutput: string): string[] {
  const files: string[] = [];
  for (const line of lddOutput.split("\n")) {
    const text = line.trim();
    if (text === "") continue;
    if (text.includes("=> not found")) throw new Error(`ldd: ${text}`);
    const m = /^(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)$/.exec(text);
    if (m) files.push(m[1]!);
    else if (!/^linux-vdso\.so\.\d+ \(0x[0-9a-f]+\)$/.test(text)) throw new Error(`ldd: unexpected line: ${text}`);
  }
  if (files.length === 0) throw new Error("ldd lists no library: not a dynamically linked binary?");
  return files;
}

/** A tag built from a version string: the characters a tag allows, at most 128. */
export function versionTag(version: string): string {
  return version.replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[.-]+/, "").slice(0, 128) || "unknown";
}

function commitTime(): string | null {
  if (process.env.SOURCE_DATE_EPOCH) return process.env.SOURCE_DATE_EPOCH;
  const r = Bun.spawnSync(["git", "log", "-1", "--format=%ct"], { cwd: root, stdout: "pipe", stderr: "ignore" });
  const t = r.stdout.toString().trim();
  return r.exitCode === 0 && /^\d+$/.test(t) ? t : null;
}

function main(): void {
  const { binary, name } = parseArgs(process.argv.slice(2));
  const tool = Bun.which("podman") ?? Bun.which("buildah");
  if (tool === null) fail(EXIT_UNAVAILABLE, "needs podman or buildah: apt-get install podman (or buildah)");
  if (Bun.which("ldd") === null) fail(EXIT_UNAVAILABLE, "needs ldd: apt-get install libc-bin");

  rmSync(stage, { recursive: true, force: true });
  const staged = join(rootfs, BINARY_PATH);
  mkdirSync(dirname(staged), { recursive: true });
  if (binary === null) run([process.execPath, "run", "build.ts", "--outfile", staged]);
  else copyFileSync(binary, staged);
  chmodSync(staged, 0o755);

  let libraries: string[];
  try {
    libraries = lddFiles(run(["ldd", staged], { quiet: true }));
  } catch (e) {
    fail(EXIT_SOFTWARE, e instanceof Error ? e.message : String(e));
  }
  for (const file of libraries) {
    const into = join(rootfs, file);
    mkdirSync(dirname(into), { recursive: true });
    copyFileSync(realpathSync(file), into);
    chmodSync(into, 0o755);
  }
  // Without this file glibc asks DNS before /etc/hosts (the one the runtime writes) and stops
  // at DNS's "no such name"; this is the order a host has.
  mkdirSync(join(rootfs, "etc"));
  writeFileSync(join(rootfs, "etc", "nsswitch.conf"), "hosts: files dns\n", { mode: 0o644 });
  mkdirSync(join(rootfs, "tmp"));
  chmodSync(join(rootfs, "tmp"), 0o1777);
  mkdirSync(join(rootfs, "opt", "netprobify"), { recursive: true });

  const versionLine = run([staged, "--version"], { quiet: true }).trim();
  const version = /^netprobify (\S+)/.exec(versionLine)?.[1];
  if (version === undefined) fail(EXIT_SOFTWARE, `unexpected --version output: ${versionLine}`);
  const tags = [`${name}:latest`, `${name}:${versionTag(version)}`];
  const time = commitTime();
  const build = [
    tool,
    tool.endsWith("buildah") ? "bud" : "build",
    "--pull=never",
    "--file",
    containerfile,
    ...tags.flatMap((t) => ["--tag", t]),
    ...(time === null ? [] : ["--timestamp", time]),
    "--label",
    `org.opencontainers.image.version=${version}`,
    "--label",
    "org.opencontainers.image.title=netprobify",
    stage,
  ];
  run(build);
  const inspect = tool.endsWith("buildah") ? [tool, "inspect", "--type", "image", "--format", "{{.FromImageID}}", tags[0]!] : [tool, "image", "inspect", "--format", "{{.Id}} {{.Size}}", tags[0]!];
  const [id = "?", size] = run(inspect, { quiet: true }).trim().split(" ");
  console.log(`image: ${tags.join(" ")} (id ${id.slice(0, 12)}${size ? `, ${(Number(size) / 1e6).toFixed(1)} MB` : ""})`);
}

if (import.meta.main) main();
