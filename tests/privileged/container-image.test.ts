/**
 * The container image (deploy/container/Containerfile, built by scripts/image.ts; issue 11):
 * - it holds the binary, the glibc files `ldd` lists, nsswitch.conf, an empty /tmp (1777) and
 *   the working directory /opt/netprobify, and nothing else (no shell); tagged latest and version;
 * - the binary inside it probes a namespace test host with the config mounted as the original
 *   documents it (`-v $PWD/config.yaml:/opt/netprobify/config.yaml`, no argument): with
 *   `podman run` where the container runtime works on this machine, otherwise from the image's
 *   exported filesystem through chroot, given only that filesystem, /proc, /dev, an empty /tmp
 *   and the mounted files, with the image's entrypoint, working directory and environment. The
 *   test says which. Its inventory child holds no capability either way.
 *
 * Needs root (test network, mounts), podman and tar. Builds under a test name and removes it.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lddFiles } from "../../scripts/image.ts";
import { freePort, parseExposition, type Exposition } from "../support/daemon-process.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";

setDefaultTimeout(120_000);

const REPO = join(import.meta.dir, "..", "..");
const NAME = `localhost/netprobify-test-${process.pid}`;
const BINARY = "/usr/local/bin/netprobify";
const WORKDIR = "/opt/netprobify";

function run(argv: string[], opts: { allowFailure?: boolean } = {}): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(argv, { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  const out = { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  if (out.code !== 0 && !opts.allowFailure) throw new Error(`${argv.join(" ")} failed (exit ${out.code}): ${out.stderr}${out.stdout}`);
  return out;
}

interface ImageConfig {
  Entrypoint: string[] | null;
  Cmd: string[] | null;
  WorkingDir: string;
  Env: string[] | null;
}

interface Entry {
  mode: string;
  path: string;
}

/** `tar -tv` lines: mode and path (directories end with /). */
function tarEntries(listing: string): Entry[] {
  return listing
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const m = /^(\S+)\s+\S+\s+\d+\s+\S+\s+\S+\s+(.+)$/.exec(l);
      if (!m) throw new Error(`unexpected tar line: ${l}`);
      return { mode: m[1]!, path: m[2]! };
    });
}

/** A running prober in the image, however it was started. */
interface Running {
  how: string;
  pid(): number;
  alive(): boolean;
  log(): string;
  stop(): Promise<number | null>;
  cleanup(): Promise<void>;
}

const dirs: string[] = [];
let version = "";
let config: ImageConfig;
let exported = "";

beforeAll(() => {
  requireRoot();
  for (const tool of ["podman", "tar", "unshare", "ldd"]) {
    if (Bun.which(tool) === null) throw new Error(`${tool} is missing: scripts/setup.sh installs it (podman, tar, util-linux, libc-bin)`);
  }
  const built = run([process.execPath, "run", "scripts/image.ts", "--name", NAME]).stdout.trim();
  console.log(built);
  version = run([join(REPO, "build", "image", "rootfs", BINARY.slice(1)), "--version"]).stdout.split(" ")[1] ?? "";
  expect(built).toStartWith(`image: ${NAME}:latest ${NAME}:${version} (id `);
  config = (JSON.parse(run(["podman", "image", "inspect", `${NAME}:latest`]).stdout) as { Config: ImageConfig }[])[0]!.Config;
  const dir = mkdtempSync(join(tmpdir(), "netprobify-image-"));
  dirs.push(dir);
  exported = join(dir, "rootfs.tar");
  const container = run(["podman", "create", `${NAME}:latest`]).stdout.trim();
  try {
    run(["podman", "export", "--output", exported, container]);
  } finally {
    run(["podman", "rm", "--force", container], { allowFailure: true });
  }
});

afterAll(() => {
  for (const tag of ["latest", version].filter((t) => t !== "")) run(["podman", "rmi", "--force", `${NAME}:${tag}`], { allowFailure: true });
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the container image", () => {
  test("holds the binary, the glibc files ldd lists, nsswitch.conf, /tmp (1777) and /opt/netprobify; nothing else", () => {
    const entries = tarEntries(run(["tar", "-tvf", exported]).stdout);
    const files = entries.filter((e) => !e.path.endsWith("/"));
    const libraries = lddFiles(run(["ldd", join(REPO, "build", "image", "rootfs", BINARY.slice(1))]).stdout);
    expect(files.map((e) => `/${e.path}`).sort()).toEqual([BINARY, "/etc/nsswitch.conf", ...libraries].sort());
    expect(files.every((e) => e.mode.startsWith("-"))).toBe(true);
    expect(entries.find((e) => e.path === "tmp/")?.mode).toBe("drwxrwxrwt");
    // Directories: those on the files' paths, plus /tmp and the working directory.
    const needed = new Set(["tmp/", "opt/", "opt/netprobify/"]);
    for (const f of files) {
      const parts = f.path.split("/");
      for (let i = 1; i < parts.length; i++) needed.add(`${parts.slice(0, i).join("/")}/`);
    }
    expect(entries.filter((e) => e.path.endsWith("/")).map((e) => e.path).sort()).toEqual([...needed].sort());
    expect(config).toMatchObject({ Entrypoint: [BINARY], WorkingDir: WORKDIR });
    expect(config.Cmd ?? []).toEqual([]);
  });

  test("tagged latest and with the binary's version", () => {
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    const ids = ["latest", version].map((tag) => run(["podman", "image", "inspect", "--format", "{{.Id}}", `${NAME}:${tag}`]).stdout.trim());
    expect(ids[0]).toBe(ids[1]!);
    const size = Number(run(["podman", "image", "inspect", "--format", "{{.Size}}", `${NAME}:latest`]).stdout.trim());
    console.log(`image size: ${(size / 1e6).toFixed(1)} MB`);
  });

  describe("the binary in it, config mounted as /opt/netprobify/config.yaml", () => {
    let net: TestNet;
    let h: TestHost;
    let running: Running | undefined;

    beforeAll(async () => {
      net = await createTestNet();
      h = net.hosts[0]!;
    });

    afterAll(async () => {
      await running?.cleanup();
      await net?.teardown();
    });

    test("probes a namespace host; its inventory child holds no capability", async () => {
      const work = mkdtempSync(join(tmpdir(), "netprobify-image-run-"));
      dirs.push(work);
      chmodSync(work, 0o755);
      const port = await freePort();
      const configFile = join(work, "config.yaml");
      writeFileSync(
        configFile,
        `
global:
  probe_name: image
  interval: 1
  nb_proc: 1
  logging_level: INFO
  prometheus_port: ${port}
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  lan: {src_port_a: 50000, src_port_z: 50003}
targets:
  syn4: {type: TCPsyn, destination: ${h.v4.host}, dst_port: ${h.openPort}, nb_packets: 2, timeout: 1}
  icmp6: {type: ICMPping, destination: "${h.v6.host}", nb_packets: 2, timeout: 1}
inventories:
  modules: {hosts: {address: ${h.v4.routedExample}}}
`,
      );
      const modules = join(work, "dynamic_inventories");
      mkdirSync(modules, { mode: 0o755 });
      writeFileSync(
        join(modules, "hosts.js"),
        `export function start(name, options, publish) {\n  publish([{ hostname: options.address, type: "ICMPping", groups: ["lan"], nb_packets: 2, timeout: 1 }]);\n  setInterval(() => {}, 1000);\n}\n`,
        { mode: 0o644 },
      );

      // Does the container runtime work here? podman exits 125 or 126 when it cannot start the
      // container at all; any other failure is the image's, and the podman run below reports it.
      const probe = run(["podman", "run", "--rm", `${NAME}:latest`, "--version"], { allowFailure: true });
      running =
        probe.code === 125 || probe.code === 126
          ? startInChroot(work, configFile, modules, `podman run cannot start a container on this machine (exit ${probe.code}: ${probe.stderr.trim().split("\n").at(-1)})`)
          : startWithPodman(configFile, modules);
      const r = running;
      console.log(`container image test: ${r.how}`);

      const answered = (e: Exposition, prefix: string, destination: string) => {
        const sent = e.value(`${prefix}_sent_total`, { destination }) ?? 0;
        const p50 = e.value(`${prefix}_round_trip_seconds`, { destination, percentile: "50" }) ?? 0;
        return sent >= 4 && e.value(`${prefix}_loss_total`, { destination }) === 0 && p50 > 0;
      };
      const moduleTarget = `hosts_${h.v4.routedExample}`;
      const deadline = performance.now() + 30_000;
      let last = "(no scrape)";
      for (;;) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
          const e = parseExposition(await res.text());
          last = e.text.split("\n").filter((l) => /_(sent|loss)_total\{/.test(l)).join("\n");
          if (answered(e, "tcpsyn", "syn4") && answered(e, "icmp", "icmp6") && answered(e, "icmp", moduleTarget)) break;
        } catch (e) {
          last = String(e);
        }
        if (!r.alive()) throw new Error(`the prober exited (${r.how})\nlog:\n${r.log()}`);
        if (performance.now() > deadline) throw new Error(`timed out waiting for answers (${r.how})\nlast scrape:\n${last}\nlog:\n${r.log()}`);
        await Bun.sleep(100);
      }
      // No argument: it found the mounted config in its working directory.
      expect(r.log()).toContain(`config=${WORKDIR}/config.yaml`);
      const children = readdirSync("/proc").filter((p) => {
        if (!/^\d+$/.test(p)) return false;
        try {
          const stat = readFileSync(`/proc/${p}/stat`, "utf8");
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === r.pid();
        } catch {
          return false;
        }
      });
      expect(children).toHaveLength(1);
      const status = readFileSync(`/proc/${children[0]}/status`, "utf8");
      const caps = Object.fromEntries([...status.matchAll(/^(Cap(?:Eff|Prm|Inh|Amb)):\s*([0-9a-f]+)$/gm)].map((m) => [m[1]!, BigInt(`0x${m[2]}`)]));
      expect(caps).toEqual({ CapInh: 0n, CapPrm: 0n, CapEff: 0n, CapAmb: 0n });
      expect(await r.stop()).toBe(0);
    });
  });
});

/** `podman run` as the original documents it, plus the capability podman leaves out by default. */
function startWithPodman(configFile: string, modules: string): Running {
  const name = `netprobify-test-${process.pid}`;
  run([
    "podman",
    "run",
    "--detach",
    "--name",
    name,
    "--network",
    "host",
    "--cap-add=NET_RAW",
    "-v",
    `${configFile}:${WORKDIR}/config.yaml`,
    "-v",
    `${modules}:${WORKDIR}/dynamic_inventories`,
    `${NAME}:latest`,
  ]);
  const pid = Number(run(["podman", "inspect", "--format", "{{.State.Pid}}", name]).stdout.trim());
  return {
    how: "podman run --network host",
    pid: () => pid,
    alive: () => run(["podman", "inspect", "--format", "{{.State.Running}}", name], { allowFailure: true }).stdout.trim() === "true",
    log: () => run(["podman", "logs", name], { allowFailure: true }).stderr,
    stop: async () => {
      run(["podman", "stop", "--time", "10", name]);
      return Number(run(["podman", "inspect", "--format", "{{.State.ExitCode}}", name]).stdout.trim());
    },
    cleanup: async () => void run(["podman", "rm", "--force", name], { allowFailure: true }),
  };
}

/**
 * The image's filesystem, exported and unpacked, run through chroot in a mount namespace of its
 * own: /proc, /dev, an empty tmpfs on /tmp and the two mounted paths are all it gets from the
 * host; the image's entrypoint, working directory and environment, nothing else.
 */
function startInChroot(work: string, configFile: string, modules: string, why: string): Running {
  const root = join(work, "rootfs");
  mkdirSync(root);
  run(["tar", "-xf", exported, "-C", root]);
  // Mount points a runtime creates in the container; they are not in the image.
  for (const d of ["proc", "dev", `${WORKDIR.slice(1)}/dynamic_inventories`]) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, WORKDIR, "config.yaml"), "");
  const script = [
    'R=$1; CFG=$2; MODS=$3; shift 3',
    'mount --rbind /proc "$R/proc"',
    'mount --rbind /dev "$R/dev"',
    'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"',
    `mount --bind "$CFG" "$R${WORKDIR}/config.yaml"`,
    `mount --bind "$MODS" "$R${WORKDIR}/dynamic_inventories"`,
    'exec /usr/bin/env -i "$@"',
  ].join(" && ");
  const argv = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "/bin/sh",
    "-c",
    script,
    "sh",
    root,
    configFile,
    modules,
    ...(config.Env ?? []),
    "HOME=/root",
    "/usr/bin/unshare",
    `--root=${root}`,
    `--wd=${config.WorkingDir}`,
    ...(config.Entrypoint ?? []),
    ...(config.Cmd ?? []),
  ];
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: {} });
  let stderr = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += dec.decode(chunk, { stream: true });
  })();
  return {
    how: `${why}: the image's filesystem through chroot, with only /proc, /dev, an empty /tmp and the mounted files`,
    pid: () => {
      // Every step execs: the process Bun started is the prober, rooted in the image.
      if (readlinkSync(`/proc/${proc.pid}/root`) !== root) throw new Error(`pid ${proc.pid} is not rooted in ${root} yet`);
      return proc.pid;
    },
    alive: () => proc.exitCode === null && proc.signalCode === null,
    log: () => stderr,
    stop: async () => {
      proc.kill("SIGTERM");
      return Promise.race([proc.exited, Bun.sleep(10_000).then(() => null)]);
    },
    cleanup: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}
