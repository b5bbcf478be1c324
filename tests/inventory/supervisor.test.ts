/**
 * InventorySupervisor with a fake `launch`: no Worker, no process. Each launched inventory is a
 * FakeProcess the test drives (emit a message, exit) and inspects (commands sent, kills). Timers
 * are real but short (minBackoffMs 20, heartbeatTimeoutMs 300); waits poll with a deadline.
 */
import { recordLog, type LogLine } from "../support/log-recorder.ts";
import { afterEach, describe, expect, test } from "bun:test";
import type { InventoryCommand, InventoryMessage, InventorySpec } from "../../src/inventory/contract.ts";
import { InventorySupervisor, MAX_BACKOFF_MS, type InventoryProcess, type Launch, type SupervisorOptions } from "../../src/inventory/supervisor.ts";

type Line = LogLine;

class FakeProcess implements InventoryProcess {
  readonly sent: InventoryCommand[] = [];
  kills = 0;
  readonly launchedAt = performance.now();
  constructor(
    readonly spec: InventorySpec,
    readonly emit: (message: InventoryMessage) => void,
    readonly exit: (reason: string) => void,
  ) {}
  send(command: InventoryCommand): void {
    this.sent.push(command);
  }
  kill(): void {
    this.kills++;
  }
}

interface Harness {
  sup: InventorySupervisor;
  procs: FakeProcess[];
  lines: Line[];
  errors: string[];
  /** The processes launched for one inventory, oldest first. */
  of(name: string): FakeProcess[];
  /** Specs whose launch throws this instead of starting. */
  failLaunch: Set<string>;
}

const running: InventorySupervisor[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

function harness(options: SupervisorOptions = {}): Harness {
  const procs: FakeProcess[] = [];
  const errors: string[] = [];
  const failLaunch = new Set<string>();
  const { log, lines } = recordLog();
  const launch: Launch = (spec, onMessage, onExit) => {
    if (failLaunch.has(spec.name)) throw new Error("no such binary");
    const p = new FakeProcess(spec, onMessage, onExit);
    procs.push(p);
    return p;
  };
  const sup = new InventorySupervisor(log, { onError: (name) => void errors.push(name) }, { launch: () => launch, minBackoffMs: 20, ...options });
  running.push(sup);
  return { sup, procs, lines, errors, failLaunch, of: (name) => procs.filter((p) => p.spec.name === name) };
}

function spec(name: string, options: Record<string, unknown> = {}, kind: InventorySpec["kind"] = "module"): InventorySpec {
  return { name, kind, modulePath: kind === "module" ? `/mods/${name}.ts` : undefined, options, baseDir: "/etc/netprobify", logLevel: "INFO" };
}

const GOOD = [
  { hostname: "web", type: "TCPsyn", dst_port: 443 },
  { hostname: "db", type: "ICMPping", groups: ["wan"] },
];
const OTHER = [{ hostname: "cache", type: "ICMPping" }];

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

const errorLines = (h: Harness) => h.lines.filter((l) => l.level === "ERROR");
const hostnames = (h: Harness, name: string) => h.sup.lists().get(name)?.targets.map((t) => t.hostname);

describe("lists", () => {
  test("a valid list is accepted: lists() has it, parsed, and the version moves", () => {
    let now = 1_000_000;
    const h = harness({ now: () => now });
    h.sup.apply([spec("cmdb")]);
    expect(h.procs).toHaveLength(1);
    expect(h.sup.names()).toEqual(["cmdb"]);
    expect(h.sup.lists().size).toBe(0);
    expect(h.sup.version).toBe(0);

    now += 5;
    h.procs[0]!.emit({ kind: "publish", targets: GOOD });
    const got = h.sup.lists().get("cmdb")!;
    expect(got.receivedAt).toBe(1_000_005);
    expect(got.targets.map((t) => t.hostname)).toEqual(["web", "db"]);
    // Parsed by the schema: defaults are there.
    expect(got.targets[0]!.nb_packets).toBe(1);
    expect(h.sup.version).toBe(1);
    expect(h.lines).toContainEqual({ level: "INFO", msg: "inventory published its targets", fields: { inventory: "cmdb", targets: 2 } });

    h.procs[0]!.emit({ kind: "publish", targets: OTHER });
    expect(hostnames(h, "cmdb")).toEqual(["cache"]);
    expect(h.sup.version).toBe(2);
    // Later lists are logged at DEBUG only.
    expect(h.lines.filter((l) => l.msg === "inventory published its targets").map((l) => l.level)).toEqual(["INFO", "DEBUG"]);
    // An empty list is a list: it replaces the last one.
    h.procs[0]!.emit({ kind: "publish", targets: [] });
    expect(hostnames(h, "cmdb")).toEqual([]);
    expect(h.errors).toEqual([]);
  });

  test("an invalid list is refused: the last good one stays, each counted, each distinct error logged once", () => {
    const h = harness();
    h.sup.apply([spec("cmdb")]);
    const p = h.procs[0]!;
    p.emit({ kind: "publish", targets: GOOD });
    const good = h.sup.lists().get("cmdb");
    const version = h.sup.version;

    for (let i = 0; i < 3; i++) p.emit({ kind: "publish", targets: [{ type: "ICMPping" }] });
    expect(h.sup.lists().get("cmdb")).toBe(good!);
    expect(h.sup.version).toBe(version);
    expect(h.errors).toEqual(["cmdb", "cmdb", "cmdb"]);
    expect(errorLines(h)).toEqual([
      {
        level: "ERROR",
        msg: "published a list that is not valid, the last good one stays: [0]: hostname is required for a ICMPping target (a hostname or an IP address)",
        fields: { inventory: "cmdb" },
      },
    ]);

    // Another error is another line; not a list at all too.
    p.emit({ kind: "publish", targets: { hostname: "x" } });
    p.emit({ kind: "publish", targets: { hostname: "x" } });
    expect(h.errors).toHaveLength(5);
    expect(errorLines(h)).toHaveLength(2);
    expect(errorLines(h)[1]!.msg).toBe(
      "published a list that is not valid, the last good one stays: a map is not a list (a list of at most 100000 targets)",
    );

    // A good list clears the memory: the same error after it is logged again.
    p.emit({ kind: "publish", targets: OTHER });
    expect(hostnames(h, "cmdb")).toEqual(["cache"]);
    p.emit({ kind: "publish", targets: { hostname: "x" } });
    expect(errorLines(h)).toHaveLength(3);
    // Nothing of this restarts the inventory.
    expect(h.procs).toHaveLength(1);
    expect(p.kills).toBe(0);
  });

  test("a refused list quotes three problems and counts the rest", () => {
    const h = harness();
    h.sup.apply([spec("cmdb")]);
    h.procs[0]!.emit({
      kind: "publish",
      targets: [{ type: "ICMPping" }, { type: "ICMPping" }, { type: "ICMPping" }, { type: "ICMPping" }, { type: "ICMPping" }],
    });
    const msg = errorLines(h)[0]!.msg;
    expect(msg).toEndWith(" (and 2 more)");
    expect(msg.match(/hostname is required/g)).toHaveLength(3);
    expect(msg).toContain("[0]: hostname is required");
    expect(msg).toContain("; [2]: hostname is required");
    // An invalid first list: nothing to keep, nothing published.
    expect(h.sup.lists().has("cmdb")).toBe(false);
    expect(h.sup.version).toBe(0);
  });

  test("errors the module reports: counted each time, logged once while they repeat, fields kept", () => {
    const h = harness();
    h.sup.apply([spec("cmdb")]);
    const p = h.procs[0]!;
    p.emit({ kind: "publish", targets: GOOD });
    for (let i = 0; i < 4; i++) p.emit({ kind: "error", message: "the CMDB did not answer", fields: { url: "http://cmdb/" } });
    p.emit({ kind: "error", message: "the CMDB answered 500" });
    expect(h.errors).toHaveLength(5);
    expect(errorLines(h)).toEqual([
      { level: "ERROR", msg: "the CMDB did not answer", fields: { inventory: "cmdb", url: "http://cmdb/" } },
      { level: "ERROR", msg: "the CMDB answered 500", fields: { inventory: "cmdb" } },
    ]);
    expect(hostnames(h, "cmdb")).toEqual(["web", "db"]);
  });

  test("log messages are forwarded at their level with the inventory's name; odd messages are not trusted", () => {
    const h = harness();
    h.sup.apply([spec("cmdb")]);
    const p = h.procs[0]!;
    const before = h.lines.length;
    p.emit({ kind: "log", level: "WARNING", message: "slow source", fields: { ms: 900 } });
    p.emit({ kind: "log", level: "DEBUG", message: "polled" });
    p.emit({ kind: "log", level: "CRITICAL", message: "gave up" });
    expect(h.lines.slice(before)).toEqual([
      { level: "WARNING", msg: "slow source", fields: { inventory: "cmdb", ms: 900 } },
      { level: "DEBUG", msg: "polled", fields: { inventory: "cmdb" } },
      { level: "CRITICAL", msg: "gave up", fields: { inventory: "cmdb" } },
    ]);
    const count = h.lines.length;
    p.emit(null as unknown as InventoryMessage);
    p.emit("publish" as unknown as InventoryMessage);
    expect(h.lines.length).toBe(count);
    p.emit({ kind: "nonsense" } as unknown as InventoryMessage);
    expect(h.errors).toEqual(["cmdb"]);
    expect(h.lines.at(-1)).toEqual({ level: "ERROR", msg: "sent a message of unknown kind", fields: { inventory: "cmdb" } });
  });

  // The supervisor spreads the module's fields after `inventory`, so a module can have its log
  // lines and its errors attributed to another inventory ("only within its own namespace").
  test("a module's fields cannot put another inventory's name on its log lines", () => {
    const h = harness();
    h.sup.apply([spec("cmdb")]);
    const p = h.procs[0]!;
    p.emit({ kind: "log", level: "INFO", message: "hello", fields: { inventory: "api" } });
    p.emit({ kind: "error", message: "bad", fields: { inventory: "api" } });
    expect(h.lines.slice(-2).map((l) => l.fields.inventory)).toEqual(["cmdb", "cmdb"]);
  });
});

describe("restarts", () => {
  test('"failed": killed, counted, restarted after the backoff, doubling while it keeps failing; the list stays', async () => {
    const h = harness({ minBackoffMs: 20 });
    h.sup.apply([spec("cmdb")]);
    h.procs[0]!.emit({ kind: "publish", targets: GOOD });

    const delays: number[] = [];
    for (let n = 1; n <= 3; n++) {
      const p = h.of("cmdb").at(-1)!;
      const failedAt = performance.now();
      p.emit({ kind: "failed", message: `boom ${n}` });
      expect(p.kills).toBe(1);
      expect(h.errors).toHaveLength(n);
      expect(h.sup.lists().get("cmdb")!.targets).toHaveLength(2);
      await waitFor(`restart ${n}`, () => h.procs.length === n + 1);
      delays.push(h.procs[n]!.launchedAt - failedAt);
    }
    const failures = errorLines(h);
    expect(failures.map((l) => l.msg)).toEqual([1, 2, 3].map((n) => `inventory failed: boom ${n}; restarting it, its last good list stays in use`));
    expect(failures.map((l) => l.fields)).toEqual([
      { inventory: "cmdb", restart_in_s: 0.02, failures_in_a_row: 1 },
      { inventory: "cmdb", restart_in_s: 0.04, failures_in_a_row: 2 },
      { inventory: "cmdb", restart_in_s: 0.08, failures_in_a_row: 3 },
    ]);
    // Timers may be late, never early (1 ms of slack for the clock's rounding).
    delays.forEach((d, i) => expect(d).toBeGreaterThanOrEqual(20 * 2 ** i - 1));
    expect(h.lines.filter((l) => l.msg === "inventory started")).toHaveLength(4);
    // Each start is a start command's spec: the same as the first.
    expect(h.procs.every((p) => p.spec === h.procs[0]!.spec)).toBe(true);
    expect(h.sup.lists().get("cmdb")!.targets).toHaveLength(2);
  });

  test("the backoff is capped at MAX_BACKOFF_MS", () => {
    const h = harness({ minBackoffMs: 100_000 });
    h.sup.apply([spec("cmdb")]);
    h.procs[0]!.emit({ kind: "failed", message: "boom" });
    expect(errorLines(h)[0]!.fields.restart_in_s).toBe(MAX_BACKOFF_MS / 1000);
  });

  test("an inventory that ran for a minute before failing starts its backoff over", async () => {
    let now = 0;
    const h = harness({ now: () => now, minBackoffMs: 20, heartbeatTimeoutMs: 3_600_000 });
    h.sup.apply([spec("cmdb")]);
    h.procs[0]!.emit({ kind: "failed", message: "a" });
    await waitFor("restart 1", () => h.procs.length === 2);
    h.procs[1]!.emit({ kind: "failed", message: "b" });
    await waitFor("restart 2", () => h.procs.length === 3);
    now += 60_000;
    h.procs[2]!.emit({ kind: "failed", message: "c" });
    expect(errorLines(h).map((l) => l.fields.failures_in_a_row)).toEqual([1, 2, 1]);
    expect(errorLines(h).map((l) => l.fields.restart_in_s)).toEqual([0.02, 0.04, 0.02]);
  });

  test("a crash (onExit) restarts it; a failed message followed by the exit counts once", async () => {
    const h = harness();
    h.sup.apply([spec("cmdb")]);
    h.procs[0]!.emit({ kind: "publish", targets: GOOD });
    h.procs[0]!.exit("its process exited with status 1");
    expect(h.errors).toEqual(["cmdb"]);
    expect(errorLines(h)[0]!.msg).toBe("inventory stopped: its process exited with status 1; restarting it, its last good list stays in use");
    await waitFor("restart after the crash", () => h.procs.length === 2);

    h.procs[1]!.emit({ kind: "failed", message: "cannot load" });
    h.procs[1]!.exit("its process exited with status 1");
    expect(h.errors).toEqual(["cmdb", "cmdb"]);
    await waitFor("restart after the failure", () => h.procs.length === 3);
    expect(hostnames(h, "cmdb")).toEqual(["web", "db"]);
  });

  test("a launch that throws is counted and retried with the backoff", async () => {
    const h = harness();
    h.failLaunch.add("cmdb");
    h.sup.apply([spec("cmdb")]);
    expect(h.procs).toHaveLength(0);
    expect(h.errors).toEqual(["cmdb"]);
    expect(errorLines(h)[0]!.msg).toBe("inventory cannot start: no such binary; restarting it, its last good list stays in use");
    await waitFor("a second attempt", () => h.errors.length === 2);
    h.failLaunch.delete("cmdb");
    await waitFor("a launch", () => h.procs.length === 1);
    expect(errorLines(h).map((l) => l.fields.failures_in_a_row)).toEqual([1, 2]);
  });

  test("heartbeat silence: killed and restarted; heartbeats or any message keep it alive", async () => {
    const h = harness({ heartbeatTimeoutMs: 300, minBackoffMs: 20 });
    h.sup.apply([spec("beating"), spec("chatty"), spec("silent")]);
    const [beating, chatty, silent] = h.procs;
    beating!.emit({ kind: "publish", targets: GOOD });
    silent!.emit({ kind: "publish", targets: OTHER });
    const start = performance.now();
    // 0.9 s: three heartbeat timeouts.
    while (performance.now() - start < 900) {
      beating!.emit({ kind: "heartbeat" });
      chatty!.emit({ kind: "log", level: "DEBUG", message: "still here" });
      await Bun.sleep(50);
    }
    expect(beating!.kills).toBe(0);
    expect(chatty!.kills).toBe(0);
    expect(silent!.kills).toBe(1);
    // Killed between 300 ms and 300 ms + one watchdog period (100 ms) + slack.
    const hung = errorLines(h).find((l) => l.fields.inventory === "silent")!;
    expect(hung.msg).toMatch(/^inventory hung \(no sign of life for [\d.]+ s\); restarting it, its last good list stays in use$/);
    expect(h.errors).toContain("silent");
    await waitFor("the hung one restarted", () => h.of("silent").length >= 2);
    expect(hostnames(h, "silent")).toEqual(["cache"]);
    expect(h.of("beating")).toHaveLength(1);
  });

  test("the watchdog kills within the timeout plus its period (min(5 s, timeout / 3))", async () => {
    const h = harness({ heartbeatTimeoutMs: 300, minBackoffMs: 10_000 });
    const t0 = performance.now();
    h.sup.apply([spec("silent")]);
    await waitFor("the kill", () => h.procs[0]!.kills === 1, 2_000);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(300);
    // Far below the 5 s a fixed period would give; loose enough for a loaded machine.
    expect(took).toBeLessThan(1_500);
  });
});

describe("apply and stop", () => {
  test("an unchanged spec keeps running and keeps its list", () => {
    const h = harness();
    h.sup.apply([spec("cmdb", { url: "x" })]);
    h.procs[0]!.emit({ kind: "publish", targets: GOOD });
    const version = h.sup.version;
    // Equal, not the same object: a reload builds new specs.
    h.sup.apply([spec("cmdb", { url: "x" })]);
    expect(h.procs).toHaveLength(1);
    expect(h.procs[0]!.sent).toEqual([]);
    expect(h.procs[0]!.kills).toBe(0);
    expect(h.sup.version).toBe(version);
    expect(hostnames(h, "cmdb")).toEqual(["web", "db"]);
  });

  test("a changed spec: the old one stopped (stop, then killed after the grace), a new one started", async () => {
    const h = harness();
    h.sup.apply([spec("cmdb", { url: "x" }), spec("other")]);
    const [old, other] = h.procs;
    old!.emit({ kind: "publish", targets: GOOD });
    other!.emit({ kind: "publish", targets: OTHER });
    const version = h.sup.version;

    h.sup.apply([spec("cmdb", { url: "y" }), spec("other")]);
    expect(old!.sent).toEqual([{ kind: "stop" }]);
    expect(h.of("cmdb")).toHaveLength(2);
    expect(h.of("cmdb")[1]!.spec.options).toEqual({ url: "y" });
    expect(h.lines).toContainEqual({ level: "INFO", msg: "inventory stopped: its settings changed", fields: { inventory: "cmdb" } });
    // The old list went with the old settings.
    expect(h.sup.lists().has("cmdb")).toBe(false);
    expect(h.sup.version).toBe(version + 1);
    expect(other!.kills).toBe(0);
    expect(other!.sent).toEqual([]);

    // Whatever the old process still says is ignored, its exit too.
    old!.emit({ kind: "publish", targets: OTHER });
    old!.emit({ kind: "failed", message: "late" });
    old!.exit("its process exited with status 0");
    expect(h.sup.lists().has("cmdb")).toBe(false);
    expect(h.errors).toEqual([]);
    expect(h.of("cmdb")[1]!.kills).toBe(0);

    await waitFor("the old one killed", () => old!.kills === 1, 3_000);
    h.of("cmdb")[1]!.emit({ kind: "publish", targets: OTHER });
    expect(hostnames(h, "cmdb")).toEqual(["cache"]);
  });

  test("a removed spec stops and its list disappears", async () => {
    const h = harness();
    h.sup.apply([spec("gone"), spec("kept")]);
    const [gone, kept] = h.procs;
    gone!.emit({ kind: "publish", targets: GOOD });
    kept!.emit({ kind: "publish", targets: OTHER });
    const version = h.sup.version;

    h.sup.apply([spec("kept")]);
    expect(gone!.sent).toEqual([{ kind: "stop" }]);
    expect([...h.sup.lists().keys()]).toEqual(["kept"]);
    expect(h.sup.names()).toEqual(["kept"]);
    expect(h.sup.version).toBe(version + 1);
    expect(h.lines).toContainEqual({ level: "INFO", msg: "inventory stopped: it was removed", fields: { inventory: "gone" } });
    await waitFor("the removed one killed", () => gone!.kills === 1, 3_000);
    expect(h.procs).toHaveLength(2);
    expect(h.errors).toEqual([]);

    // A removed inventory that never published does not move the version.
    h.sup.apply([spec("kept"), spec("silent")]);
    const v = h.sup.version;
    h.sup.apply([spec("kept")]);
    expect(h.sup.version).toBe(v);
  });

  test("an inventory waiting to restart is not restarted once removed", async () => {
    const h = harness({ minBackoffMs: 50 });
    h.sup.apply([spec("cmdb")]);
    h.procs[0]!.emit({ kind: "failed", message: "boom" });
    h.sup.apply([]);
    await Bun.sleep(150);
    expect(h.procs).toHaveLength(1);
    expect(h.sup.names()).toEqual([]);
  });

  test("stop() sends stop to every running inventory, kills them all, and nothing restarts", async () => {
    const h = harness({ minBackoffMs: 50, heartbeatTimeoutMs: 300 });
    h.sup.apply([spec("a"), spec("b"), spec("c", {}, "file")]);
    h.procs[0]!.emit({ kind: "publish", targets: GOOD });
    h.procs[2]!.emit({ kind: "failed", message: "down" });
    expect(h.procs.map((p) => p.kills)).toEqual([0, 0, 1]);

    await h.sup.stop();
    expect(h.procs.map((p) => p.sent)).toEqual([[{ kind: "stop" }], [{ kind: "stop" }], []]);
    expect(h.procs.map((p) => p.kills >= 1)).toEqual([true, true, true]);
    expect(h.sup.names()).toEqual([]);
    expect(h.sup.lists().size).toBe(0);
    // No restart of c, and no watchdog failure of a and b for their silence (300 ms timeout).
    await Bun.sleep(500);
    expect(h.procs).toHaveLength(3);
    expect(h.errors).toEqual(["c"]);
    expect(errorLines(h)).toHaveLength(1);
  });
});
