/**
 * Custom modules in REAL child processes: the supervisor's default launcher for kind "module"
 * (launchChild), which runs `bun src/main.ts __inventory` from source. Modules come from
 * tests/fixtures/inventory-modules, or are written into a temporary directory when they must not
 * type-check (a syntax error). Every wait polls with a deadline; every child is looked for by
 * pid afterwards.
 */
import { recordLog, type LogLine } from "../support/log-recorder.ts";
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { InventorySpec } from "../../src/inventory/contract.ts";
import { CHILD_MAX_RSS_BYTES, InventorySupervisor, type SupervisorOptions } from "../../src/inventory/supervisor.ts";

// Real processes: each test waits with its own deadlines, all well under this.
setDefaultTimeout(30_000);

const FIXTURES = join(import.meta.dir, "..", "fixtures", "inventory-modules");
const EXAMPLE = join(import.meta.dir, "..", "..", "src", "inventory", "example-module.ts");

type Line = LogLine;

interface Harness {
  sup: InventorySupervisor;
  lines: Line[];
  errors: string[];
  /** Pids the children logged ("fixture running"), per inventory, in order. */
  pids(name: string): number[];
  /** The "inventory started" lines of one inventory: one per launch. */
  starts(name: string): number;
  /** Error lines of one inventory. */
  errorsOf(name: string): string[];
}

const supervisors: InventorySupervisor[] = [];
let dir = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "netprobify-inventory-"));
});

afterEach(async () => {
  await Promise.all(supervisors.splice(0).map((s) => s.stop()));
  // Whatever a test did, it leaves no child behind.
  await waitFor("no inventory child left", () => inventoryChildren().length === 0, 5_000);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function harness(options: SupervisorOptions = {}): Harness {
  const errors: string[] = [];
  const { log, lines } = recordLog();
  const sup = new InventorySupervisor(log, { onError: (name) => void errors.push(name) }, { minBackoffMs: 50, ...options });
  supervisors.push(sup);
  return {
    sup,
    lines,
    errors,
    pids: (name) => lines.filter((l) => l.msg === "fixture running" && l.fields.inventory === name).map((l) => Number(l.fields.pid)),
    starts: (name) => lines.filter((l) => l.msg === "inventory started" && l.fields.inventory === name).length,
    errorsOf: (name) => lines.filter((l) => l.level === "ERROR" && l.fields.inventory === name).map((l) => l.msg),
  };
}

function spec(name: string, modulePath: string, options: Record<string, unknown> = {}): InventorySpec {
  return { name, kind: "module", modulePath, options, baseDir: dir, logLevel: "INFO" };
}

const fixture = (file: string) => join(FIXTURES, file);

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** A /proc/PID/stat's state and parent pid; undefined when the process is gone. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: state!, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** Alive: present and not a zombie. */
function alive(pid: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.state !== "Z" && s.state !== "X";
}

/** Live `__inventory` processes whose parent is this test process. */
function inventoryChildren(): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const s = procStat(pid);
    if (!s || s.ppid !== process.pid || !alive(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("__inventory")) out.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Resident memory; 0 when the process is gone. */
function rssBytes(pid: number | "self"): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

const hostnames = (h: Harness, name: string) => h.sup.lists().get(name)?.targets.map((t) => t.hostname);

describe("a module in a child process", () => {
  test("publishes: the list is accepted, logs come through at their level; its own process, heap ceiling in its environment, oom_score_adj 1000", async () => {
    const h = harness();
    const targets = [
      { hostname: "web", type: "TCPsyn", dst_port: 443, groups: ["wan"] },
      { hostname: "db", type: "ICMPping", lifetime: "1h" },
    ];
    h.sup.apply([spec("cmdb", fixture("publish.ts"), { targets, report: "the CMDB is slow" })]);
    await waitFor("the list", () => h.sup.lists().has("cmdb"));
    expect(hostnames(h, "cmdb")).toEqual(["web", "db"]);
    expect(h.sup.version).toBe(1);

    const [pid] = h.pids("cmdb");
    expect(inventoryChildren()).toEqual([pid!]);
    expect(pid).not.toBe(process.pid);
    expect(h.lines.some((l) => l.msg === "fixture running")).toBe(true);
    // The OOM killer picks it before the prober...
    await waitFor("oom_score_adj 1000", () => readFileSync(`/proc/${pid}/oom_score_adj`, "utf8").trim() === "1000", 3_000);
    // ...and DEBUG lines stay in the child at logging_level INFO.
    expect(h.lines.some((l) => l.msg === "below the level: never sent")).toBe(false);
    // reportError: logged with the module's fields, counted.
    await waitFor("the reported error", () => h.errors.length === 1);
    expect(h.lines).toContainEqual({ level: "ERROR", msg: "the CMDB is slow", fields: { inventory: "cmdb", where: "fixture" } });

    await h.sup.stop();
    await waitFor("the child gone", () => !alive(pid!), 3_000);
    expect(inventoryChildren()).toEqual([]);
  });

  test("what a module prints and its runtime warnings are the prober's log lines, naming the inventory; nothing of Bun's own warning text", async () => {
    const h = harness();
    h.sup.apply([spec("noisy", fixture("prints.ts"))]);
    await waitFor("the list", () => h.sup.lists().has("noisy"));
    await waitFor("the three lines", () => h.lines.filter((l) => l.fields.inventory === "noisy" && l.msg !== "inventory started" && !l.msg.startsWith("inventory published")).length >= 3);
    const lines = h.lines.filter((l) => l.fields.inventory === "noisy" && l.msg !== "inventory started" && !l.msg.startsWith("inventory published"));
    expect(lines).toContainEqual({ level: "INFO", msg: "printed on stdout", fields: { inventory: "noisy", stream: "stdout" } });
    expect(lines).toContainEqual({ level: "WARNING", msg: "printed on stderr", fields: { inventory: "noisy", stream: "stderr" } });
    expect(lines).toContainEqual({ level: "WARNING", msg: "a module's warning", fields: { warning: "Warning", code: undefined, inventory: "noisy" } });
    // A short wait for anything else that would come (Bun's "(node:PID) Warning: ..." print).
    await Bun.sleep(200);
    expect(h.lines.filter((l) => l.fields.inventory === "noisy" && l.msg.includes("(node:"))).toEqual([]);
  });

  test("an invalid list from a child is refused and counted", async () => {
    const h = harness();
    h.sup.apply([spec("bad", fixture("publish.ts"), { targets: [{ hostname: "x", type: "TCPsyn", dst_port: 0 }] })]);
    await waitFor("the refusal", () => h.errors.length === 1);
    expect(h.sup.lists().has("bad")).toBe(false);
    expect(h.errorsOf("bad")).toEqual([
      "published a list that is not valid, the last good one stays: [0].dst_port: 0 is out of range (an integer from 1 to 65535)",
    ]);
  });

  test("start() rejects: failed, counted, restarted with backoff", async () => {
    const h = harness();
    h.sup.apply([spec("throws", fixture("throws.ts"))]);
    await waitFor("two failures", () => h.errors.length >= 2);
    const failures = h.errorsOf("throws");
    expect(failures[0]).toBe("inventory failed: cannot reach the CMDB; restarting it, its last good list stays in use");
    expect(failures[1]).toBe(failures[0]!);
    await waitFor("a third start", () => h.starts("throws") >= 3);
    // Each attempt was its own process.
    const pids = h.pids("throws");
    expect(new Set(pids).size).toBe(pids.length);
    await waitFor("earlier attempts gone", () => pids.slice(0, -1).every((p) => !alive(p)), 3_000);
  });

  test("a module that does not load, or exports no start: failed, with the reason", async () => {
    const broken = join(dir, "broken.ts");
    const nostart = join(dir, "nostart.ts");
    const missing = join(dir, "missing.ts");
    await writeFile(broken, "export function start( {\n  return 1;\n");
    await writeFile(nostart, "export const begin = () => undefined;\n");
    const h = harness({ minBackoffMs: 10_000 });
    h.sup.apply([spec("broken", broken), spec("nostart", nostart), spec("missing", missing)]);
    await waitFor("three failures", () => h.errors.length === 3);
    const [b] = h.errorsOf("broken");
    expect(b).toStartWith(`inventory failed: cannot load ${broken}: `);
    expect(b).toEndWith("; restarting it, its last good list stays in use");
    expect(h.errorsOf("nostart")).toEqual([
      `inventory failed: ${nostart} exports no start function; restarting it, its last good list stays in use`,
    ]);
    expect(h.errorsOf("missing")[0]).toStartWith(`inventory failed: cannot load ${missing}: `);
    // Killed (or exited) at once: nothing waits for the 10 s backoff.
    await waitFor("the failed children gone", () => inventoryChildren().length === 0, 3_000);
  });

  test("an uncaught exception or an unhandled rejection after start(): failed and counted", async () => {
    const h = harness({ minBackoffMs: 10_000 });
    h.sup.apply([spec("uncaught", fixture("misbehaves.ts"), { mode: "uncaught" }), spec("rejection", fixture("misbehaves.ts"), { mode: "rejection" })]);
    await waitFor("two failures", () => h.errors.length === 2);
    expect(h.errorsOf("uncaught")).toEqual([
      "inventory failed: uncaught: thrown from a timer; restarting it, its last good list stays in use",
    ]);
    expect(h.errorsOf("rejection")).toEqual([
      "inventory failed: unhandled rejection: nobody awaited this; restarting it, its last good list stays in use",
    ]);
    await waitFor("both children gone", () => inventoryChildren().length === 0, 3_000);
  });

  test("a list that is not plain data is reported by the child; the next good one is taken", async () => {
    const h = harness();
    h.sup.apply([spec("cycle", fixture("misbehaves.ts"), { mode: "cycle" })]);
    await waitFor("the good list", () => h.sup.lists().has("cycle"));
    expect(hostnames(h, "cycle")).toEqual(["fine"]);
    expect(h.errors).toEqual(["cycle"]);
    expect(h.errorsOf("cycle")).toHaveLength(1);
    expect(h.errorsOf("cycle")[0]).toStartWith("published a list that is not plain data: ");
    expect(h.starts("cycle")).toBe(1);
  });

  test("process.exit(3): restarted, the last good list stays", async () => {
    const h = harness();
    h.sup.apply([spec("exits", fixture("exits.ts"))]);
    await waitFor("a restart", () => h.starts("exits") >= 2);
    expect(h.errorsOf("exits")[0]).toBe(
      "inventory stopped: its process exited with status 3; restarting it, its last good list stays in use",
    );
    expect(hostnames(h, "exits")).toEqual(["exiting"]);
    expect(h.errors[0]).toBe("exits");
  });

  test("a module blocking its event loop: no heartbeat, killed and restarted, its last list stays", async () => {
    const h = harness({ heartbeatTimeoutMs: 1_500 });
    h.sup.apply([spec("stuck", fixture("blocks.ts"))]);
    await waitFor("the list", () => h.sup.lists().has("stuck"), 5_000);
    const [first] = h.pids("stuck");
    await waitFor("the hang detected", () => h.errorsOf("stuck").length >= 1, 8_000);
    expect(h.errorsOf("stuck")[0]).toMatch(/^inventory hung \(no sign of life for [\d.]+ s\); restarting it, its last good list stays in use$/);
    await waitFor("the stuck child killed", () => !alive(first!), 3_000);
    await waitFor("a new child", () => h.pids("stuck").length >= 2, 5_000);
    expect(h.pids("stuck")[1]).not.toBe(first!);
    expect(hostnames(h, "stuck")).toEqual(["stuck"]);
  });

  test("stopping a module: stop command, then gone; a reload with other options restarts it", async () => {
    const h = harness();
    h.sup.apply([spec("one", fixture("publish.ts"), { targets: [{ hostname: "a", type: "ICMPping" }] })]);
    await waitFor("the first list", () => hostnames(h, "one")?.[0] === "a");
    const [first] = h.pids("one");
    h.sup.apply([spec("one", fixture("publish.ts"), { targets: [{ hostname: "b", type: "ICMPping" }] })]);
    await waitFor("the new list", () => hostnames(h, "one")?.[0] === "b");
    await waitFor("the first child gone", () => !alive(first!), 3_000);
    const [, second] = h.pids("one");
    h.sup.apply([]);
    expect(h.sup.lists().size).toBe(0);
    await waitFor("the second child gone", () => !alive(second!), 3_000);
    expect(h.errors).toEqual([]);
  });
});

describe("the example module", () => {
  test("publishes the hosts file and follows its changes; a missing file is reported, the list stays", async () => {
    const hosts = join(dir, "hosts.txt");
    await writeFile(hosts, "# the first hosts\nweb1.example\n\nweb2.example  # trailing comment\nweb1.example\n");
    const h = harness();
    h.sup.apply([
      spec("hostlist", EXAMPLE, { path: "hosts.txt", refresh_interval: 0.2, type: "TCPsyn", dst_port: 443, groups: ["wan"] }),
    ]);
    await waitFor("the list", () => h.sup.lists().has("hostlist"));
    const list = h.sup.lists().get("hostlist")!.targets;
    expect(list.map((t) => t.hostname)).toEqual(["web1.example", "web2.example"]);
    expect(list[0]).toMatchObject({ type: "TCPsyn", dst_port: 443, groups: ["wan"] });
    expect(h.lines).toContainEqual(expect.objectContaining({ level: "INFO", msg: "host list loaded" }));

    await writeFile(hosts, "web3.example\n");
    await waitFor("the changed list", () => hostnames(h, "hostlist")?.join() === "web3.example", 5_000);
    // Unchanged file: nothing republished.
    const version = h.sup.version;
    await Bun.sleep(600);
    expect(h.sup.version).toBe(version);

    await unlink(hosts);
    await waitFor("the missing file reported", () => h.errors.length >= 2, 5_000);
    expect(h.errorsOf("hostlist")).toHaveLength(1);
    expect(h.errorsOf("hostlist")[0]).toStartWith("cannot read the host list: ");
    expect(hostnames(h, "hostlist")).toEqual(["web3.example"]);
    expect(h.starts("hostlist")).toBe(1);
  });

  test("bad options (0, or a timer past 2^31-1 ms): start throws, restarted with backoff", async () => {
    const h = harness({ minBackoffMs: 10_000 });
    h.sup.apply([spec("hostlist", EXAMPLE, { refresh_interval: 0 }), spec("overflow", EXAMPLE, { refresh_interval: 2_147_484 })]);
    await waitFor("the failures", () => h.errors.length === 2);
    const failure =
      "inventory failed: option refresh_interval must be a number of seconds above 0 and at most 86400 (a day); " +
      "restarting it, its last good list stays in use";
    expect([...h.errorsOf("hostlist"), ...h.errorsOf("overflow")]).toEqual([failure, failure]);
  });
});

describe("isolation", () => {
  test("no orphan: a child exits when its prober is killed", async () => {
    const parent = Bun.spawn([process.execPath, fixture("parent.ts"), fixture("publish.ts")], { stdout: "pipe", stderr: "inherit" });
    let child = 0;
    try {
      const reader = parent.stdout.getReader();
      let text = "";
      const deadline = performance.now() + 10_000;
      while (!/child (\d+)\n/.test(text)) {
        if (performance.now() > deadline) throw new Error(`no child pid from the parent; got ${JSON.stringify(text)}`);
        const { value, done } = await reader.read();
        if (done) throw new Error(`the parent ended; got ${JSON.stringify(text)}`);
        text += new TextDecoder().decode(value);
      }
      child = Number(/child (\d+)\n/.exec(text)![1]);
      expect(procStat(child)?.ppid).toBe(parent.pid);
      reader.releaseLock();
    } finally {
      parent.kill("SIGKILL");
      await parent.exited;
    }
    await waitFor(`child ${child} to exit after its parent`, () => !alive(child), 5_000);
  });

  // Bun has no heap ceiling that holds (BUN_JSC_gcMaxHeapSize only tunes the GC: a process given
  // it grew to 21 GiB in 60 s), so launchChild watches the child's VmRSS and kills it past
  // CHILD_MAX_RSS_BYTES. The module here stops by itself at 1 GiB, so this test is bounded even
  // when that watch fails; it fails then because the child held twice its ceiling.
  test("a module growing its heap past the ceiling dies and is restarted; the prober is unaffected", async () => {
    const h = harness({ minBackoffMs: 100 });
    const selfBefore = rssBytes("self");
    h.sup.apply([spec("ticker", fixture("ticker.ts"), { every: 100 }), spec("heap", fixture("heap.ts"), { limit_mib: 1024 })]);
    await waitFor("the ticker's list", () => h.sup.lists().has("ticker"));
    let peak = 0;
    await waitFor(
      "the heap module to die or to get past 1 GiB",
      () => {
        const [pid] = h.pids("heap");
        if (pid !== undefined && alive(pid)) peak = Math.max(peak, rssBytes(pid));
        return h.starts("heap") >= 2 || h.sup.lists().has("heap");
      },
      20_000,
    );
    expect(hostnames(h, "heap")).toBeUndefined();
    expect(peak).toBeLessThan(2 * CHILD_MAX_RSS_BYTES);
    expect(h.errorsOf("heap")[0]).toContain("over the 512 MiB ceiling");
    // The prober: its memory did not follow the child's, and the other inventory still publishes.
    expect(rssBytes("self") - selfBefore).toBeLessThan(200 * 1024 * 1024);
    const before = h.sup.lists().get("ticker")!.receivedAt;
    await waitFor("the ticker to publish again", () => h.sup.lists().get("ticker")!.receivedAt > before, 3_000);
    expect(h.errorsOf("ticker")).toEqual([]);
  });
});
