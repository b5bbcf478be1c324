/**
 * The shipped systemd unit, deploy/systemd/netprobify.service, with its environment file
 * deploy/systemd/netprobify.default (issue 11):
 * - `systemd-analyze verify` accepts it without a word, and its offline security review stays low;
 * - the prober runs as the unit runs it, on a namespace test host: where systemd is PID 1, the
 *   shipped unit itself (a transient copy, with a drop-in pointing it at the test's binary, config
 *   and user); otherwise the compiled binary started the way the unit starts it, with what the
 *   unit grants read from the unit file: its user (nobody standing in for netprobify), its
 *   ambient capabilities and bounding set, no_new_privs, the working directory, the flags of
 *   the environment file, ExecReload's signal. The three probe types answer in both families,
 *   the API's state lands in the state directory, a reload applies, and the inventory child
 *   process holds no capability. The test says which way it ran.
 * - MemoryDenyWriteExecute=yes, which the unit leaves out, stops the prober (bun:ffi needs the JIT).
 *
 * Needs root (test network, setpriv, chown), systemd-analyze (Debian's systemd) and gcc.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, parseExposition, type Exposition } from "../support/daemon-process.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";

setDefaultTimeout(60_000);

const REPO = join(import.meta.dir, "..", "..");
const UNIT_FILE = join(REPO, "deploy", "systemd", "netprobify.service");
const DEFAULT_FILE = join(REPO, "deploy", "systemd", "netprobify.default");
const INSTALLED_BINARY = "/usr/local/bin/netprobify";
const INSTALLED_CONFIG_DIR = "/etc/netprobify";
/** The unit's user is netprobify, which a test machine need not have: nobody stands in for it. */
const NOBODY = { uid: 65534, gid: 65534 };
/** systemd's PATH for services. */
const SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";
const CAP_NET_RAW_MASK = 1n << 13n;

// ---------------------------------------------------------------------------------------------
// Unit and environment files

type Unit = Map<string, Map<string, string[]>>;

/** A unit file's sections and their settings, each key with every value it is given, in order. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (section === undefined || eq < 1) throw new Error(`unit file: unexpected line: ${raw}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

function setting(unit: Unit, section: string, key: string): string {
  const values = unit.get(section)?.get(key);
  if (values === undefined || values.length !== 1) throw new Error(`${UNIT_FILE}: [${section}] ${key}= given ${values?.length ?? 0} times, expected once`);
  return values[0]!;
}

/** A value of an Environment= line or of an environment file: one pair of quotes around it removed. */
function unquote(text: string): string {
  return /^"(.*)"$/.exec(text)?.[1] ?? text;
}

/** KEY=value lines of an environment file, comments skipped. */
function parseEnvironmentFile(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`${DEFAULT_FILE}: unexpected line: ${raw}`);
    env.set(m[1]!, unquote(m[2]!));
  }
  return env;
}

/** CAP_NET_RAW CAP_X as setpriv spells them: net_raw,x. */
function setprivCaps(list: string): string {
  return list
    .split(/\s+/)
    .map((c) => c.toLowerCase().replace(/^cap_/, ""))
    .join(",");
}

function capsMask(list: string): bigint {
  const numbers: Record<string, bigint> = { CAP_NET_RAW: 13n, CAP_NET_ADMIN: 12n, CAP_NET_BIND_SERVICE: 10n };
  return list.split(/\s+/).reduce((mask, c) => {
    const n = numbers[c];
    if (n === undefined) throw new Error(`capability ${c}: add its number to capsMask`);
    return mask | (1n << n);
  }, 0n);
}

// ---------------------------------------------------------------------------------------------
// Processes

interface ProcStatus {
  uid: number;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
  bounding: bigint;
  noNewPrivs: boolean;
}

function procStatus(path: string): ProcStatus {
  const text = readFileSync(path, "utf8");
  const field = (key: string) => {
    const m = new RegExp(`^${key}:\\s*(.+)$`, "m").exec(text);
    if (!m) throw new Error(`${path}: no ${key} line`);
    return m[1]!.trim();
  };
  const mask = (key: string) => BigInt(`0x${field(key)}`);
  return {
    uid: Number(field("Uid").split(/\s+/)[1]),
    effective: mask("CapEff"),
    permitted: mask("CapPrm"),
    inheritable: mask("CapInh"),
    ambient: mask("CapAmb"),
    bounding: mask("CapBnd"),
    noNewPrivs: field("NoNewPrivs") === "1",
  };
}

/** Pids whose parent is `parent`. */
function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === parent) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** A running prober, however it was started. */
interface Launched {
  /** Which way the test ran it, for the log. */
  how: string;
  pid(): number;
  alive(): boolean;
  log(): string;
  /** What ExecReload does. */
  reload(): void;
  /** Stops it as systemd would (SIGTERM); its exit code. */
  stop(): Promise<number | null>;
  cleanup(): Promise<void>;
}

async function scrape(port: number): Promise<Exposition> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${text.slice(0, 200)}`);
  return parseExposition(text);
}

async function waitFor<T>(what: string, launched: Launched, port: number, check: (e: Exposition) => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last = "(no scrape)";
  for (;;) {
    try {
      const e = await scrape(port);
      last = e.text
        .split("\n")
        .filter((l) => /^(tcpsyn|icmp|udp_unreachable)_(sent|loss)_total|^netprobify_inventory/.test(l))
        .join("\n");
      const r = check(e);
      if (r !== undefined && r !== false) return r;
    } catch (e) {
      last = String(e);
    }
    if (!launched.alive()) throw new Error(`the prober exited while waiting for ${what} (${launched.how})\nlog:\n${launched.log()}`);
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what} (${launched.how})\nlast scrape:\n${last}\nlog:\n${launched.log()}`);
    await Bun.sleep(100);
  }
}

/** The shipped unit under systemd (PID 1): a copy under /run/systemd/system, a drop-in for the test. */
async function startUnderSystemd(opts: { name: string; bin: string; stateDir: string; args: string }): Promise<Launched> {
  const unitPath = `/run/systemd/system/${opts.name}.service`;
  const dropIn = `${unitPath}.d`;
  copyFileSync(UNIT_FILE, unitPath);
  mkdirSync(dropIn, { recursive: true });
  writeFileSync(
    join(dropIn, "test.conf"),
    [
      "[Service]",
      `User=${NOBODY.uid}`,
      `Group=${NOBODY.gid}`,
      "EnvironmentFile=",
      `Environment="NETPROBIFY_ARGS=${opts.args}"`,
      "ExecStart=",
      `ExecStart=${opts.bin} $NETPROBIFY_ARGS`,
      "StateDirectory=",
      `StateDirectory=${opts.name}`,
      "ReadWritePaths=",
      `ReadWritePaths=${opts.stateDir}`,
      `WorkingDirectory=${opts.stateDir}`,
      "Restart=no",
      "",
    ].join("\n"),
  );
  const systemctl = (...args: string[]) => {
    const r = Bun.spawnSync(["systemctl", ...args], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`systemctl ${args.join(" ")}: ${r.stderr.toString()}`);
    return r.stdout.toString().trim();
  };
  systemctl("daemon-reload");
  systemctl("start", `${opts.name}.service`);
  const mainPid = () => Number(systemctl("show", "--property=MainPID", "--value", `${opts.name}.service`));
  return {
    how: "systemd is PID 1: the shipped unit, started by systemctl (a copy in /run/systemd/system with a test drop-in)",
    pid: mainPid,
    alive: () => Bun.spawnSync(["systemctl", "is-active", "--quiet", `${opts.name}.service`]).exitCode === 0,
    log: () => Bun.spawnSync(["journalctl", "--no-pager", "-o", "cat", "-u", `${opts.name}.service`], { stdout: "pipe" }).stdout.toString(),
    reload: () => void systemctl("reload", `${opts.name}.service`),
    stop: async () => {
      systemctl("stop", `${opts.name}.service`);
      return Number(systemctl("show", "--property=ExecMainStatus", "--value", `${opts.name}.service`));
    },
    cleanup: async () => {
      Bun.spawnSync(["systemctl", "stop", `${opts.name}.service`]);
      rmSync(unitPath, { force: true });
      rmSync(dropIn, { recursive: true, force: true });
      Bun.spawnSync(["systemctl", "daemon-reload"]);
      rmSync(opts.stateDir, { recursive: true, force: true });
    },
  };
}

/** The binary started as the unit starts it, without systemd: setpriv with what the unit grants. */
function startAsTheUnitWould(unit: Unit, opts: { bin: string; stateDir: string; args: string }): Launched {
  const ambient = setting(unit, "Service", "AmbientCapabilities");
  const bounding = setting(unit, "Service", "CapabilityBoundingSet");
  const noNewPrivs = setting(unit, "Service", "NoNewPrivileges") === "yes";
  const execStart = setting(unit, "Service", "ExecStart").split(/\s+/);
  if (execStart[0] !== INSTALLED_BINARY || execStart.slice(1).join(" ") !== "$NETPROBIFY_ARGS") {
    throw new Error(`ExecStart=${execStart.join(" ")}: this test starts "${INSTALLED_BINARY} $NETPROBIFY_ARGS"`);
  }
  const argv = [
    "setpriv",
    `--reuid=${NOBODY.uid}`,
    `--regid=${NOBODY.gid}`,
    "--clear-groups",
    // An ambient capability must be inheritable too; systemd sets both.
    `--inh-caps=-all,+${setprivCaps(ambient)}`,
    `--ambient-caps=-all,+${setprivCaps(ambient)}`,
    `--bounding-set=-all,+${setprivCaps(bounding)}`,
    ...(noNewPrivs ? ["--no-new-privs"] : []),
    opts.bin,
    // An unquoted $VAR in ExecStart is split at white space.
    ...opts.args.split(/\s+/),
  ];
  const proc = Bun.spawn(argv, {
    cwd: opts.stateDir,
    env: { PATH: SERVICE_PATH, LANG: "C.UTF-8", HOME: opts.stateDir, USER: "nobody", LOGNAME: "nobody", SHELL: "/usr/sbin/nologin" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let stderr = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += dec.decode(chunk, { stream: true });
  })();
  const reloadCommand = setting(unit, "Service", "ExecReload").split(/\s+/);
  return {
    how: "systemd is not PID 1 here: the binary under setpriv, as nobody, with the unit's capabilities and no_new_privs",
    pid: () => proc.pid,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    log: () => stderr,
    reload: () => {
      const r = Bun.spawnSync(reloadCommand.map((a) => (a === "$MAINPID" ? String(proc.pid) : a)), { stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`${reloadCommand.join(" ")}: ${r.stderr.toString()}`);
    },
    stop: async () => {
      proc.kill("SIGTERM");
      const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => null)]);
      return code;
    },
    cleanup: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------

const unitText = readFileSync(UNIT_FILE, "utf8");
const unit = parseUnit(unitText);
const dirs: string[] = [];
let bin = "";

beforeAll(() => {
  requireRoot();
  for (const tool of ["systemd-analyze", "setpriv", "gcc"]) {
    if (Bun.which(tool) === null) throw new Error(`${tool} is missing: scripts/setup.sh installs it (systemd, util-linux, gcc)`);
  }
  const buildDir = mkdtempSync(join(tmpdir(), "netprobify-unit-bin-"));
  dirs.push(buildDir);
  chmodSync(buildDir, 0o755);
  bin = join(buildDir, "netprobify");
  const build = Bun.spawnSync([process.execPath, "run", "build.ts", "--outfile", bin], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`build.ts failed: ${build.stderr.toString()}${build.stdout.toString()}`);
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("deploy/systemd/netprobify.service", () => {
  test("systemd-analyze verify accepts it without a warning; the offline security review rates it at most 2.5", () => {
    // verify wants ExecStart's binary to exist: a copy of the unit names the one just built.
    const dir = mkdtempSync(join(tmpdir(), "netprobify-unit-verify-"));
    dirs.push(dir);
    const copy = join(dir, "netprobify.service");
    const execStart = /^ExecStart=\/usr\/local\/bin\/netprobify /m;
    expect(execStart.test(unitText)).toBe(true);
    writeFileSync(copy, unitText.replace(execStart, `ExecStart=${bin} `));
    const verify = Bun.spawnSync(["systemd-analyze", "verify", copy], { stdout: "pipe", stderr: "pipe" });
    expect({ code: verify.exitCode, output: verify.stdout.toString() + verify.stderr.toString() }).toEqual({ code: 0, output: "" });
    const security = Bun.spawnSync(["systemd-analyze", "security", "--offline=yes", "--threshold=25", "--no-pager", copy], { stdout: "pipe", stderr: "pipe" });
    const overall = /Overall exposure level for netprobify\.service: (\d+\.\d+)/.exec(security.stdout.toString())?.[1];
    console.log(`systemd-analyze security --offline: exposure ${overall}`);
    expect(security.exitCode).toBe(0);
    expect(Number(overall)).toBeLessThanOrEqual(2.5);
  });

  test("grants CAP_NET_RAW and nothing else, ambient and bounding alike, with no_new_privs", () => {
    expect(capsMask(setting(unit, "Service", "AmbientCapabilities"))).toBe(CAP_NET_RAW_MASK);
    expect(setting(unit, "Service", "CapabilityBoundingSet")).toBe(setting(unit, "Service", "AmbientCapabilities"));
    expect(setting(unit, "Service", "NoNewPrivileges")).toBe("yes");
    expect(setting(unit, "Service", "RestrictAddressFamilies").split(/\s+/).sort()).toEqual(["AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"]);
    expect(unit.get("Service")?.has("MemoryDenyWriteExecute")).toBe(false);
  });

  describe("running as the unit runs it", () => {
    let net: TestNet;
    let h: TestHost;
    let launched: Launched | undefined;

    beforeAll(async () => {
      net = await createTestNet();
      h = net.hosts[0]!;
    });

    afterAll(async () => {
      await launched?.cleanup();
      await net?.teardown();
    });

    test("probes a namespace host with CAP_NET_RAW alone; the API state lands in the state directory; the inventory child holds no capability", async () => {
      const systemdIsPid1 = readFileSync("/proc/1/comm", "utf8").trim() === "systemd";
      // Under systemd the service's /tmp is private: its files live in /run instead.
      const base = systemdIsPid1 ? join("/run", `netprobify-unit-test-${process.pid}`) : mkdtempSync(join(tmpdir(), "netprobify-unit-"));
      mkdirSync(base, { recursive: true });
      dirs.push(base);
      chmodSync(base, 0o755);
      // /etc/netprobify as the README installs it: root's, readable by the service's group only.
      const configDir = join(base, "etc");
      mkdirSync(configDir, { mode: 0o750 });
      chownSync(configDir, 0, NOBODY.gid);
      const modules = join(configDir, "dynamic_inventories");
      mkdirSync(modules, { mode: 0o755 });
      const stateDir = systemdIsPid1 ? `/var/lib/netprobify-unit-test-${process.pid}` : join(base, "state");
      if (!systemdIsPid1) {
        mkdirSync(stateDir, { mode: 0o750 });
        chownSync(stateDir, NOBODY.uid, NOBODY.gid);
      }
      const [port, apiPort] = [await freePort(), await freePort()];
      const writeConfigFile = (name: string, text: string) => {
        const path = join(configDir, name);
        writeFileSync(path, text, { mode: 0o640 });
        chownSync(path, 0, NOBODY.gid);
        return path;
      };
      const config = (extraTargets = "") => `
global:
  probe_name: unit
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
  udp4: {type: UDPunreachable, destination: ${h.v4.host}, dst_port: ${h.closedPort}, nb_packets: 2, timeout: 1}
${extraTargets}
inventories:
  modules: {hosts: {address: ${h.v4.routedExample}}}
`;
      writeConfigFile("netprobify.yaml", config());
      writeConfigFile(
        "api.yaml",
        `token: "unit-test-token-0123456789"\nlisten_address: 127.0.0.1\nlisten_port: ${apiPort}\ngroups: [lan]\nstate_file: ${join(stateDir, "api-targets.json")}\n`,
      );
      // A custom module: its child process publishes one target and stays up to be inspected.
      writeFileSync(
        join(modules, "hosts.js"),
        `export function start(name, options, publish) {\n  publish([{ hostname: options.address, type: "ICMPping", groups: ["lan"], nb_packets: 2, timeout: 1 }]);\n  setInterval(() => {}, 1000);\n}\n`,
        { mode: 0o644 },
      );
      // The environment file's flags, with /etc/netprobify standing for the test's config directory.
      const shippedArgs = parseEnvironmentFile(readFileSync(DEFAULT_FILE, "utf8")).get("NETPROBIFY_ARGS");
      expect(shippedArgs).toBe(`--config ${INSTALLED_CONFIG_DIR}/netprobify.yaml`);
      const args = shippedArgs!.replace(`${INSTALLED_CONFIG_DIR}/`, `${configDir}/`);
      // The unit's fallback when the environment file is absent says the same.
      expect(unit.get("Service")?.get("Environment")?.map(unquote)).toEqual([`NETPROBIFY_ARGS=${shippedArgs}`]);

      let runBin = bin;
      if (systemdIsPid1) {
        runBin = join(base, "netprobify");
        copyFileSync(bin, runBin);
        chmodSync(runBin, 0o755);
      }
      launched = systemdIsPid1
        ? await startUnderSystemd({ name: `netprobify-unit-test-${process.pid}`, bin: runBin, stateDir, args })
        : startAsTheUnitWould(unit, { bin: runBin, stateDir, args });
      const run = launched;
      console.log(`systemd unit test: ${run.how}`);

      const answered = (e: Exposition, prefix: string, destination: string) => {
        const sent = e.value(`${prefix}_sent_total`, { destination }) ?? 0;
        const lost = e.value(`${prefix}_loss_total`, { destination });
        const p50 = e.value(`${prefix}_round_trip_seconds`, { destination, percentile: "50" }) ?? 0;
        return sent >= 4 && lost === 0 && p50 > 0;
      };
      const moduleTarget = `hosts_${h.v4.routedExample}`;
      await waitFor("two answered iterations of every target, the module's included", run, port, (e) =>
        answered(e, "tcpsyn", "syn4") && answered(e, "icmp", "icmp6") && answered(e, "udp_unreachable", "udp4") && answered(e, "icmp", moduleTarget),
      );

      // The prober: nobody, CAP_NET_RAW in every set the unit fills, nothing else, no_new_privs.
      const daemon = procStatus(`/proc/${run.pid()}/status`);
      expect(daemon).toEqual({
        uid: NOBODY.uid,
        effective: CAP_NET_RAW_MASK,
        permitted: CAP_NET_RAW_MASK,
        inheritable: CAP_NET_RAW_MASK,
        ambient: CAP_NET_RAW_MASK,
        bounding: CAP_NET_RAW_MASK,
        noNewPrivs: true,
      });
      // Its inventory child, every thread of it: no capability at all.
      const children = childrenOf(run.pid());
      expect(children).toHaveLength(1);
      const child = children[0]!;
      expect(readFileSync(`/proc/${child}/cmdline`, "utf8").split("\0")).toContain("__inventory");
      for (const tid of readdirSync(`/proc/${child}/task`)) {
        const s = procStatus(`/proc/${child}/task/${tid}/status`);
        expect({ tid, eff: s.effective, prm: s.permitted, inh: s.inheritable, amb: s.ambient, nnp: s.noNewPrivs }).toEqual({ tid, eff: 0n, prm: 0n, inh: 0n, amb: 0n, nnp: true });
      }

      // The API writes its state where the unit lets it write: the state directory.
      const post = await fetch(`http://127.0.0.1:${apiPort}/api/target`, {
        method: "POST",
        headers: { apikey: "unit-test-token-0123456789", "content-type": "application/json" },
        body: JSON.stringify({ owner: "unit-test", hostname: h.v4.host, type: "ICMPping", lifetime: "1h" }),
      });
      expect(post.status).toBe(201);
      const stateFile = join(stateDir, "api-targets.json");
      const deadline = performance.now() + 10_000;
      while (!existsSync(stateFile) && performance.now() < deadline) await Bun.sleep(50);
      expect(statSync(stateFile).uid).toBe(NOBODY.uid);
      expect(readFileSync(stateFile, "utf8")).toContain(h.v4.host);

      // ExecReload: a target added to the config is probed.
      writeConfigFile("netprobify.yaml", config(`  syn6: {type: TCPsyn, destination: "${h.v6.host}", dst_port: ${h.openPort}, nb_packets: 2, timeout: 1}`));
      run.reload();
      await waitFor("the target added by the reload answered", run, port, (e) => answered(e, "tcpsyn", "syn6"));

      expect(await run.stop()).toBe(0);
      expect(run.log()).not.toContain("level=ERROR");
    });
  });

  test("MemoryDenyWriteExecute=yes, left out of the unit, would stop the prober: bun:ffi needs JavaScriptCore's JIT", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netprobify-unit-mdwe-"));
    dirs.push(dir);
    const wrapper = join(dir, "deny-write-execute");
    const gcc = Bun.spawnSync(["gcc", "-O2", "-Wall", "-Werror", "-o", wrapper, join(REPO, "tests", "support", "deny-write-execute.c")], { stderr: "pipe" });
    if (gcc.exitCode !== 0) throw new Error(`gcc: ${gcc.stderr.toString()}`);
    // The filter lets an ordinary program run...
    expect(Bun.spawnSync([wrapper, "/bin/true"]).exitCode).toBe(0);
    // ...and stops the prober at its first native call.
    const config = join(dir, "netprobify.yaml");
    writeFileSync(
      config,
      `global: {probe_name: mdwe, interval: 1, nb_proc: 1, logging_level: INFO, prometheus_address: 127.0.0.1, prometheus_port: ${await freePort()}, dns_update_interval: 0}\n` +
        "groups: {lan: {src_port_a: 50000, src_port_z: 50003}}\n" +
        "targets: {lo: {type: ICMPping, destination: 127.0.0.1, nb_packets: 1, timeout: 1}}\n",
    );
    const r = Bun.spawnSync([wrapper, bin, "--config", config], { cwd: dir, stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    expect({ code: r.exitCode, jit: r.stderr.toString().includes("bun:ffi requires the JIT") }).toEqual({ code: 70, jit: true });
  });
});
