/**
 * No way from a privileged prober to code another user wrote, and no privilege for the code it
 * does run (issue 9, defect 8).
 *
 * The compiled binary with `setcap cap_net_raw+ep`, started by `nobody` on files nobody controls:
 * - a custom module in nobody's own directory is refused, logged once, counted in
 *   netprobify_inventory_errors_total, and probing goes on;
 * - a module in a root-owned directory runs, but its AF_PACKET socket fails with EPERM, and every
 *   thread of its process has empty capability sets and no_new_privs;
 * - a shared object planted where Bun used to extract the embedded libpcap
 *   (/tmp/.bun-<uid>-<hash>.so, which it loaded if the size matched), or named by
 *   NETPROBIFY_LIBPCAP, never runs; nor does a bunfig.toml preload in the working directory.
 * From source, as root: the rule where modules are planned, again in the child right before the
 * import, and for every file a module imports; root's child gives up its bounding set too.
 *
 * Needs root (setcap, setpriv, chown) and gcc.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import type { InventorySpec } from "../../src/inventory/contract.ts";
import { planInventories } from "../../src/inventory/specs.ts";
import { InventorySupervisor } from "../../src/inventory/supervisor.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { recordLog } from "../support/log-recorder.ts";
import { requireRoot } from "../support/testnet.ts";

setDefaultTimeout(30_000);

const REPO = join(import.meta.dir, "..", "..");
const NOBODY = { uid: 65534, gid: 65534 };
const EPERM = 1;

/**
 * Tries what CAP_NET_RAW allows (an AF_PACKET socket) and writes the outcome, its pid and its uid
 * to options.out; then stays up, so that its process can be inspected.
 */
const RAW_MODULE = `
import { dlopen, FFIType, read } from "bun:ffi";
import { writeFileSync } from "node:fs";
export function start(name, options, publish) {
  const libc = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
  const fd = libc.socket(17, 3, 0x0300); // AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)
  const errno = fd < 0 ? read.i32(libc.__errno_location(), 0) : 0;
  writeFileSync(options.out, JSON.stringify({ fd, errno, pid: process.pid, uid: process.getuid() }));
  publish([]);
  setInterval(() => {}, 1000);
}
`;

/** Writes its pid to options.out and stays up. */
const PID_MODULE = `
import { writeFileSync } from "node:fs";
export function start(name, options, publish) {
  writeFileSync(options.out, String(process.pid));
  publish([]);
  setInterval(() => {}, 1000);
}
`;

/** Runs `bin ARGS` as nobody, to completion. */
function runAsNobody(bin: string, args: string[], cwd: string, env: Record<string, string | undefined> = process.env) {
  return Bun.spawnSync(["setpriv", `--reuid=${NOBODY.uid}`, `--regid=${NOBODY.gid}`, "--clear-groups", bin, ...args], { cwd, env, stdout: "pipe", stderr: "pipe" });
}

const dirs: string[] = [];
function tempDir(prefix: string, mode = 0o755, owner = { uid: 0, gid: 0 }): string {
  const d = mkdtempSync(join(tmpdir(), `netprobify-priv-${prefix}-`));
  dirs.push(d);
  chmodSync(d, mode);
  chownSync(d, owner.uid, owner.gid);
  return d;
}

function write(path: string, text: string, mode = 0o644, owner = { uid: 0, gid: 0 }): string {
  writeFileSync(path, text);
  chmodSync(path, mode);
  chownSync(path, owner.uid, owner.gid);
  return path;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

interface Capabilities {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
  bounding: bigint;
  noNewPrivs: boolean;
}

/** The capability lines of a /proc/PID/status (read here rather than with src/native/capabilities.ts: the test must run against code without it). */
function parseCapabilities(status: string): Capabilities {
  const mask = (key: string) => BigInt(`0x${new RegExp(`^${key}:\\s*([0-9a-f]+)$`, "m").exec(status)![1]}`);
  return {
    effective: mask("CapEff"),
    permitted: mask("CapPrm"),
    inheritable: mask("CapInh"),
    ambient: mask("CapAmb"),
    bounding: mask("CapBnd"),
    noNewPrivs: /^NoNewPrivs:\s*1$/m.test(status),
  };
}

/** Every thread of a process: empty effective, permitted, inheritable and ambient sets, no_new_privs on. */
function threadStates(pid: number): ({ tid: string } & Capabilities)[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => ({ tid, ...parseCapabilities(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8")) }));
}

function expectConfined(pid: number): void {
  const main = parseCapabilities(readFileSync(`/proc/${pid}/status`, "utf8"));
  expect({ eff: main.effective, prm: main.permitted, amb: main.ambient, nnp: main.noNewPrivs }).toEqual({ eff: 0n, prm: 0n, amb: 0n, nnp: true });
  const threads = threadStates(pid);
  expect(threads.length).toBeGreaterThan(1);
  for (const t of threads) {
    expect({ tid: t.tid, eff: t.effective, prm: t.permitted, inh: t.inheritable, amb: t.ambient, nnp: t.noNewPrivs }).toEqual({
      tid: t.tid,
      eff: 0n,
      prm: 0n,
      inh: 0n,
      amb: 0n,
      nnp: true,
    });
  }
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the setcap'd binary started by nobody", () => {
  let bin = "";
  const daemons: DaemonProcess[] = [];

  beforeAll(() => {
    requireRoot();
    for (const tool of ["setcap", "getcap", "setpriv", "gcc"]) {
      if (Bun.which(tool) === null) throw new Error(`${tool} is missing: scripts/setup.sh installs it (libcap2-bin, util-linux, gcc)`);
    }
    const buildDir = tempDir("bin");
    bin = join(buildDir, "netprobify");
    const build = Bun.spawnSync([process.execPath, "run", "build.ts", "--outfile", bin], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    if (build.exitCode !== 0) throw new Error(`build.ts failed: ${build.stderr.toString()}${build.stdout.toString()}`);
    chmodSync(bin, 0o755);
    const setcap = Bun.spawnSync(["setcap", "cap_net_raw+ep", bin], { stderr: "pipe" });
    const getcap = Bun.spawnSync(["getcap", bin], { stdout: "pipe" }).stdout.toString();
    if (setcap.exitCode !== 0 || !getcap.includes("cap_net_raw")) {
      throw new Error(`cannot give ${bin} CAP_NET_RAW (does ${tmpdir()} keep security xattrs?): ${setcap.stderr.toString()} ${getcap}`);
    }
  });

  afterAll(async () => {
    await Promise.all(daemons.map((d) => d.stop({ keepDir: true })));
  });

  const config = (modules: string) => `
global:
  probe_name: priv
  interval: 1
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  lan: {src_port_a: 50000, src_port_z: 50003}
targets:
  loopback: {type: ICMPping, destination: 127.0.0.1, nb_packets: 1, timeout: 1}
inventories:
${modules}
`;

  const inventoryChildren = (parent: number) =>
    readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          const stat = readFileSync(`/proc/${p}/stat`, "utf8");
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === parent;
        } catch {
          return false;
        }
      });

  test("a module in a directory nobody owns is refused: logged once, counted, probing goes on", async () => {
    const work = tempDir("refused", 0o755, NOBODY);
    const modules = join(work, "dynamic_inventories");
    mkdirSync(modules);
    chownSync(modules, NOBODY.uid, NOBODY.gid);
    const out = join(work, "raw-result.json");
    write(join(modules, "raw.js"), RAW_MODULE, 0o644, NOBODY);
    const d = await startDaemon({ bin, dir: work, user: NOBODY, config: config(`  modules: {raw: {out: "${out}"}}`) });
    daemons.push(d);
    await d.waitFor("the refusal counted and the loopback target probed", (e) => {
      const errors = e.value("netprobify_inventory_errors_total", { inventory: "raw" });
      const sent = e.get("icmp_sent_total", { destination: "loopback" })[0]?.value ?? 0;
      return errors === 1 && sent > 0;
    });
    // Two more probing rounds: nothing loads it meanwhile, nothing logs it again.
    const sentBefore = (await d.scrape()).get("icmp_sent_total", { destination: "loopback" })[0]!.value;
    await d.waitFor("two more rounds", (e) => e.get("icmp_sent_total", { destination: "loopback" })[0]!.value >= sentBefore + 2);
    const refusals = d.logLines.filter((l) => l.includes("raw.js: not loaded"));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toContain("level=ERROR");
    expect(refusals[0]).toContain(`${modules} is owned by nobody (uid 65534)`);
    expect(refusals[0]).toContain("loads code only from files and directories owned by root");
    expect((await d.scrape()).value("netprobify_inventory_errors_total", { inventory: "raw" })).toBe(1);
    expect(existsSync(out)).toBe(false);
    expect(inventoryChildren(d.pid)).toEqual([]);
    await d.stop({ keepDir: true });
    // `check` says so too.
    const check = runAsNobody(bin, ["check", d.configPath], work);
    const lines = check.stdout.toString().trim().split("\n");
    expect(check.exitCode).toBe(0);
    expect(lines[0]).toStartWith(`warning: ${join(modules, "raw.js")}: not loaded: ${modules} is owned by nobody (uid 65534)`);
    expect(lines.at(-1)).toEndWith("inventories: raw (module, refused)");
  });

  test("a module in a root-owned directory runs without any capability: AF_PACKET fails with EPERM", async () => {
    const work = tempDir("work", 0o755, NOBODY);
    const modules = tempDir("modules");
    write(join(modules, "raw.js"), RAW_MODULE);
    const out = join(work, "raw-result.json");
    const d = await startDaemon({ bin, dir: work, user: NOBODY, config: config(`  modules_directory: ${modules}\n  modules: {raw: {out: "${out}"}}`) });
    daemons.push(d);
    await waitFor("the module's result", () => existsSync(out) && readFileSync(out, "utf8").endsWith("}"));
    const result = JSON.parse(readFileSync(out, "utf8")) as { fd: number; errno: number; pid: number; uid: number };
    expect({ fd: result.fd, errno: result.errno, uid: result.uid }).toEqual({ fd: -1, errno: EPERM, uid: NOBODY.uid });
    expect(inventoryChildren(d.pid)).toEqual([String(result.pid)]);
    expectConfined(result.pid);
    // The prober itself keeps what it needs.
    expect(parseCapabilities(readFileSync(`/proc/${d.pid}/status`, "utf8")).effective).toBe(1n << 13n);
    expect((await d.scrape()).value("netprobify_inventory_errors_total", { inventory: "raw" })).toBe(0);
    await d.stop({ keepDir: true });
  });

  test("a shared object planted at /tmp/.bun-<uid>-<hash>.so never runs; the embedded libpcap is loaded", () => {
    const work = tempDir("plant", 0o755, NOBODY);
    const marker = join(work, "planted-code-ran");
    const source = write(
      join(work, "planted.c"),
      `#include <stdio.h>\n__attribute__((constructor)) static void planted(void) { FILE *f = fopen("${marker}", "w"); if (f) fclose(f); }\n`,
    );
    const planted = join(work, "planted.so");
    const gcc = Bun.spawnSync(["gcc", "-shared", "-fPIC", "-o", planted, source], { stderr: "pipe" });
    if (gcc.exitCode !== 0) throw new Error(`gcc: ${gcc.stderr.toString()}`);
    // Bun 1.4 named the extracted copy after a hash of its bytes, and loaded a file already there
    // when its size matched. TMPDIR does not move it: glibc drops TMPDIR for a setcap'd program.
    const embedded = readFileSync(join(REPO, "build", "libpcap", "libpcap.so"));
    const bytes = Buffer.alloc(embedded.length);
    readFileSync(planted).copy(bytes);
    const path = `/tmp/.bun-${NOBODY.uid}-${Bun.hash(embedded).toString(16)}.so`;
    rmSync(path, { force: true });
    try {
      writeFileSync(path, bytes, { mode: 0o600 });
      chownSync(path, NOBODY.uid, NOBODY.gid);
      const r = runAsNobody(bin, ["--version"], work);
      expect(existsSync(marker)).toBe(false);
      expect({ code: r.exitCode, out: r.stdout.toString().trim() }).toEqual({ code: 0, out: expect.stringMatching(/libpcap 1\.\d+\.\d+ \(embedded\)\)$/) });
    } finally {
      rmSync(path, { force: true });
    }
    // Named by NETPROBIFY_LIBPCAP: a file of nobody's is not loaded either.
    chownSync(planted, NOBODY.uid, NOBODY.gid);
    const r = runAsNobody(bin, ["--version"], work, { ...process.env, NETPROBIFY_LIBPCAP: planted });
    expect(existsSync(marker)).toBe(false);
    expect(r.stdout.toString()).toContain("libpcap not loadable");
  });

  test("a bunfig.toml or .env in the working directory does not steer the binary", () => {
    const work = tempDir("cwd", 0o755, NOBODY);
    const marker = join(work, "preloaded-code-ran");
    write(join(work, "preload.js"), `require("node:fs").writeFileSync("${marker}", "");\n`, 0o644, NOBODY);
    write(join(work, "bunfig.toml"), 'preload = ["./preload.js"]\n', 0o644, NOBODY);
    write(join(work, ".env"), "NETPROBIFY_LIBPCAP=/nonexistent/libpcap.so\n", 0o644, NOBODY);
    const r = runAsNobody(bin, ["--version"], work);
    expect(existsSync(marker)).toBe(false);
    expect(r.stdout.toString()).toContain("(embedded)");
  });
});

describe("the ownership rule, from source as root", () => {
  beforeAll(() => requireRoot());

  function config(): Config {
    const text =
      "global: {probe_name: p, interval: 30, nb_proc: 1, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}\n" +
      "groups: {lan: {src_port_a: 50000, src_port_z: 50003}}\n";
    const r = parseConfigText(text, "c.yaml");
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    return r.config;
  }

  async function plan(base: string): Promise<Map<string, InventorySpec>> {
    const p = await planInventories(config(), base, true);
    return new Map(p.specs.map((s) => [s.name, s]));
  }

  test("planning: owner and mode of the module, its directory and every directory above", async () => {
    const base = tempDir("plan");
    const modules = join(base, "dynamic_inventories");
    mkdirSync(modules, { mode: 0o755 });
    write(join(modules, "good.js"), PID_MODULE);
    write(join(modules, "groupwritable.js"), PID_MODULE, 0o664);
    write(join(modules, "theirs.js"), PID_MODULE, 0o644, NOBODY);
    const elsewhere = tempDir("elsewhere", 0o755, NOBODY);
    write(join(elsewhere, "target.js"), PID_MODULE);
    symlinkSync(join(elsewhere, "target.js"), join(modules, "linked.js"));
    let specs = await plan(base);
    // /tmp above it is world-writable, but sticky and root's: nobody can replace root's entries.
    expect(specs.get("good")!.refused).toBeUndefined();
    const groupWritable = join(modules, "groupwritable.js");
    expect(specs.get("groupwritable")!.refused).toStartWith(`${groupWritable}: not loaded: ${groupWritable} is writable by its group (mode 0664)`);
    expect(specs.get("theirs")!.refused).toContain("theirs.js is owned by nobody (uid 65534)");
    expect(specs.get("linked")!.refused).toContain(`${elsewhere} is owned by nobody (uid 65534)`);
    // The modules directory itself may not be writable by others, sticky or not: each file in it runs.
    chmodSync(modules, 0o1777);
    specs = await plan(base);
    expect(specs.get("good")!.refused).toContain(`not loaded: ${modules} is writable by others (mode 01777)`);
    // Not privileged: nothing to protect, nothing refused.
    expect((await planInventories(config(), base, false)).specs.every((s) => s.refused === undefined)).toBe(true);
  });

  function harness() {
    const { log, lines } = recordLog();
    const errors: string[] = [];
    const sup = new InventorySupervisor(log, { onError: (name) => void errors.push(name) }, { minBackoffMs: 60_000 });
    return { sup, lines, errors };
  }

  const spec = (name: string, modulePath: string, options: Record<string, unknown>): InventorySpec => ({
    name,
    kind: "module",
    modulePath,
    options,
    baseDir: tmpdir(),
    logLevel: "INFO",
  });

  test("the child checks again right before the import: a directory that changed owner since the plan is refused", async () => {
    const modules = tempDir("toctou");
    const out = join(modules, "pid");
    write(join(modules, "late.js"), PID_MODULE);
    // Planned while root's; nobody's by the time the child starts.
    chownSync(modules, NOBODY.uid, NOBODY.gid);
    const { sup, lines, errors } = harness();
    try {
      sup.apply([spec("late", join(modules, "late.js"), { out })]);
      await waitFor("the child's refusal", () => errors.length > 0);
      const failure = lines.find((l) => l.level === "ERROR")!.msg;
      expect(failure).toContain(`${modules} is owned by nobody (uid 65534)`);
      expect(existsSync(out)).toBe(false);
    } finally {
      await sup.stop();
    }
  });

  test("every file a module imports passes the rule; JSON imports still work", async () => {
    const modules = tempDir("imports");
    const theirs = tempDir("helper", 0o755, NOBODY);
    write(join(theirs, "helper.js"), "export const helped = true;\n", 0o644, NOBODY);
    write(join(modules, "data.json"), '{"answer": 42}');
    const out = join(modules, "result");
    write(
      join(modules, "helped.js"),
      `import { helped } from "${join(theirs, "helper.js")}";\n` + `export function start() { require("node:fs").writeFileSync("${out}", String(helped)); }\n`,
    );
    write(
      join(modules, "json.js"),
      `import data from "./data.json";\nimport { answer } from "./data.json";\nconst viaRequire = require("./data.json");\n` +
        `export function start(n, o, publish) {\n` +
        `  require("node:fs").writeFileSync("${out}-json", [data.answer, answer, viaRequire.answer].join(","));\n` +
        `  publish([]);\n  setInterval(() => {}, 1000);\n}\n`,
    );
    const { sup, lines, errors } = harness();
    try {
      sup.apply([spec("helped", join(modules, "helped.js"), {}), spec("json", join(modules, "json.js"), {})]);
      await waitFor("the helper's refusal and the JSON module's result", () => errors.includes("helped") && existsSync(`${out}-json`));
      const failure = lines.find((l) => l.level === "ERROR" && l.fields.inventory === "helped")!.msg;
      expect(failure).toContain(`${join(theirs, "helper.js")}: not loaded: ${theirs} is owned by nobody (uid 65534)`);
      expect(existsSync(out)).toBe(false);
      expect(readFileSync(`${out}-json`, "utf8")).toBe("42,42,42");
      expect(errors).not.toContain("json");
    } finally {
      await sup.stop();
    }
  });

  test("root's child runs without capabilities, bounding set included, in every thread", async () => {
    const modules = tempDir("root");
    const out = join(modules, "pid");
    write(join(modules, "pid.js"), PID_MODULE);
    const { sup } = harness();
    try {
      sup.apply([spec("pid", join(modules, "pid.js"), { out })]);
      await waitFor("the module's pid", () => existsSync(out) && readFileSync(out, "utf8") !== "");
      const pid = Number(readFileSync(out, "utf8"));
      expectConfined(pid);
      for (const t of threadStates(pid)) expect({ tid: t.tid, bounding: t.bounding }).toEqual({ tid: t.tid, bounding: 0n });
    } finally {
      await sup.stop();
    }
  });
});
