/**
 * The benchmark scripts of issue 14 run end to end in their quick mode and print whole tables
 * (the figures themselves are not asserted: they are the benchmarks' business, on a quiet
 * machine), and each refuses what it cannot do in one line with a non-zero exit and nothing on
 * stdout: not root, a tool missing, the bench lock held. A run in which a case fails says so
 * above its tables (PARTIAL RUN) and exits 1.
 *
 * Needs root, and what the scripts need: gcc and libpcap's headers, python3, tcpdump, curl,
 * prometheus and promtool, setpriv. The quick runs take the real /tmp/bench.lock, waiting up to
 * 60 s for it (NETPROBIFY_BENCH_LOCK_WAIT): a benchmark running on the machine longer than that
 * fails them, with its one line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXIT_FAILURE, EXIT_NOPERM, EXIT_UNAVAILABLE } from "../../src/cli/exit.ts";
import { EXIT_TEMPFAIL } from "../../scripts/bench-lock.ts";
import { REPO } from "../support/daemon-process.ts";
import { requireRoot } from "../support/testnet.ts";

const SCRIPTS = ["bench-engine", "bench-accuracy", "bench-capacity", "bench-cost"] as const;
const YARDSTICK = [resolve(REPO, "..", "shared", "bench"), resolve(REPO, "..", "..", "shared", "bench")];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function runScript(script: string, args: string[], env: Record<string, string> = {}, prefix: string[] = []): Promise<Run> {
  const proc = Bun.spawn([...prefix, process.execPath, join(REPO, "scripts", `${script}.ts`), ...args], {
    cwd: REPO,
    env: { ...process.env, NETPROBIFY_BENCH_LOCK_WAIT: "60", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** The markdown tables of an output: header cells and the rows' cells. */
function tables(out: string): { header: string[]; rows: string[][] }[] {
  const found: { header: string[]; rows: string[][] }[] = [];
  const cells = (line: string) => line.slice(1, -1).split(" | ").map((c) => c.trim());
  const lines = out.split("\n");
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i]!.startsWith("| ") || !/^\|(---\|)+$/.test(lines[i + 1]!)) continue;
    const header = cells(lines[i]!);
    const rows: string[][] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j]!.startsWith("| "); j++) rows.push(cells(lines[j]!));
    found.push({ header, rows });
    i = j;
  }
  return found;
}

/** What every complete run prints: its context, whole tables, no failure. */
function expectComplete(r: Run, tableCount: number): { header: string[]; rows: string[][] }[] {
  expect({ code: r.code, stderrTail: r.code === 0 ? "" : r.stderr.slice(-2000) }).toEqual({ code: 0, stderrTail: "" });
  expect(r.stdout).not.toContain("PARTIAL RUN");
  expect(r.stdout).not.toContain("FAILED");
  expect(r.stdout).toMatch(/^Command: `sudo node_modules\/\.bin\/bun scripts\/bench-[a-z]+\.ts --quick`$/m);
  expect(r.stdout).toMatch(/^Commit: [0-9a-f]{12}/m);
  expect(r.stdout).toMatch(/^Load average \(1 \/ 5 \/ 15 min\) before: [\d.]+ [\d.]+ [\d.]+, after: [\d.]+ [\d.]+ [\d.]+ \(the run.s own work included\), nproc \d+; other processes used [\d.]+ CPU-s during the run, [\d.]+% of the machine/m);
  const t = tables(r.stdout);
  expect(t.length).toBe(tableCount);
  for (const { header, rows } of t) {
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.length).toBe(header.length);
      // The first cell names the row; every row has at least one figure.
      expect(row.slice(1).some((c) => /\d/.test(c))).toBe(true);
    }
  }
  return t;
}

describe("benchmark scripts (issue 14): quick mode end to end, and refusals", () => {
  let dir = "";
  beforeAll(() => {
    requireRoot();
    dir = mkdtempSync(join(tmpdir(), "bench-quick-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("bench-engine --quick: netprobify beside both C reference variants, every case, with unanswered and drops", async () => {
    const r = await runScript("bench-engine", ["--quick"]);
    const [throughput, details] = expectComplete(r, 2);
    expect(throughput!.header).toEqual([
      "case",
      "netprobify probes/s",
      "C loop `pcap_inject` probes/s",
      "C loop `sendmmsg` x64 probes/s",
      "netprobify / best C variant",
      "netprobify / `pcap_inject`",
    ]);
    expect(throughput!.rows.map((row) => row[0])).toHaveLength(6);
    // The four cases the C loop does have a ratio; the UDP ones have none.
    expect(throughput!.rows.slice(0, 4).every((row) => /^\d+%$/.test(row[4]!) && /^\d+%$/.test(row[5]!))).toBe(true);
    expect(details!.header).toEqual(["case", "unanswered", "capture drops", "CPU-s / 1M probes", "RTT p50 us", "RTT p99 us"]);
    expect(details!.rows.slice(0, 4).every((row) => /^[\d,]+ \/ [\d,]+ \/ [\d,]+$/.test(row[1]!) && /^[\d,]+ \/ [\d,]+ \/ [\d,]+$/.test(row[2]!))).toBe(true);
    expect(r.stdout).toMatch(/^Idle: CPU while a batch waits 2 s for answers that never come: [\d.]+% of a core\.$/m);
  }, 90_000);

  test("bench-accuracy --quick: the low-rate, veth (near and far end) and daemon tables", async () => {
    const r = await runScript("bench-accuracy", ["--quick"]);
    const [low, veth, daemon] = expectComplete(r, 3);
    expect(low!.rows).toHaveLength(6);
    expect(veth!.header).toContain("far-end RTT p50 / p99 us");
    expect(veth!.header).toContain("near minus far p50 / p99 us");
    expect(veth!.rows.length).toBeGreaterThanOrEqual(2);
    for (const row of veth!.rows) expect(row[veth!.header.indexOf("far-end RTT p50 / p99 us")]).toMatch(/^[\d.]+ \/ [\d.]+$/);
    expect(daemon!.rows).toHaveLength(6);
    expect(r.stdout).toContain("This is a matching check, not an independent clock");
  }, 120_000);

  test("bench-capacity --quick: a search of two counts, each judged, and the engine's closed loop beside", async () => {
    const r = await runScript("bench-capacity", ["--quick"]);
    const [steps] = expectComplete(r, 1);
    expect(steps!.rows).toHaveLength(2);
    for (const row of steps!.rows) expect(["sustained", "not sustained"]).toContain(row[3]!);
    expect(r.stdout).toMatch(/^Engine closed loop .* median [\d,]+;/m);
    expect(r.stdout).toMatch(/^Capacity: /m);
  }, 120_000);

  test("bench-cost --quick: one count with every target's series and bounded, scrape latency as Prometheus measured it, loss checked on the veth", async () => {
    const r = await runScript("bench-cost", ["--quick"]);
    const [cost] = expectComplete(r, 1);
    expect(cost!.rows.map((row) => row[1])).toEqual(["every target's", "bounded: groups + worst 10"]);
    for (const row of cost!.rows) {
      const cell = (name: string) => row[cost!.header.findIndex((h) => h.startsWith(name))]!;
      expect(cell("gzip scrape by Prometheus")).toMatch(/^[\d.]+ \/ [\d.]+ \(\d+\)$/);
      expect(cell("plain scrape by")).toMatch(/^[\d.]+ \/ [\d.]+ \(\d+\)$/);
      expect(cell("loss")).toBe("0, 0 (every probe and answer counted)");
    }
  }, 120_000);

  test("not root: one line, exit 77, nothing on stdout", async () => {
    for (const script of SCRIPTS) {
      const r = await runScript(script, ["--quick"], { HOME: dir }, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
      expect({ script, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
        script,
        code: EXIT_NOPERM,
        stdout: "",
        stderr: expect.stringMatching(new RegExp(`^${script}: needs root \\([^\\n]*\\)\\n$`)) as unknown as string,
      });
    }
  }, 30_000);

  test("a tool missing: one line naming it, exit 69, nothing on stdout", async () => {
    for (const script of SCRIPTS) {
      const r = await runScript(script, ["--quick"], { PATH: dir });
      expect({ script, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
        script,
        code: EXIT_UNAVAILABLE,
        stdout: "",
        stderr: expect.stringMatching(new RegExp(`^${script}: cannot run: flock, [^\\n]* not found in PATH [^\\n]*\\n$`)) as unknown as string,
      });
    }
  }, 30_000);

  test("the lock held by another benchmark: one line, exit 75, nothing on stdout, no waiting", async () => {
    const lock = join(dir, "bench.lock");
    // In a process group of its own: flock forks the shell that holds the lock with it.
    const holder = Bun.spawn(["flock", "-n", lock, "-c", "echo held; exec sleep 60"], { stdout: "pipe", stderr: "inherit", detached: true });
    try {
      const reader = holder.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe("held\n");
      for (const script of SCRIPTS) {
        const r = await runScript(script, ["--quick"], { NETPROBIFY_BENCH_LOCK: lock, NETPROBIFY_BENCH_LOCK_WAIT: "0" });
        expect({ script, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
          script,
          code: EXIT_TEMPFAIL,
          stdout: "",
          stderr: `${script}: cannot run: another benchmark holds ${lock}; run it when that one has ended (NETPROBIFY_BENCH_LOCK_WAIT=SECONDS waits for it)\n`,
        });
      }
    } finally {
      process.kill(-holder.pid, "SIGKILL");
      await holder.exited;
    }
  }, 30_000);

  test("a case that fails is named above the tables (PARTIAL RUN), the others still measured, exit 1", async () => {
    // A reference loop that builds and runs but prints nothing bench-engine can read.
    const real = YARDSTICK.find((d) => Bun.file(join(d, "net.sh")).size > 0);
    expect(real).toBeDefined();
    const fake = join(dir, "yardstick");
    rmSync(fake, { recursive: true, force: true });
    Bun.spawnSync(["mkdir", "-p", fake]);
    copyFileSync(join(real!, "net.sh"), join(fake, "net.sh"));
    writeFileSync(join(fake, "plbench.c"), '#include <stdio.h>\nint main(void) { puts("proto=? sender=? nothing measured"); return 0; }\n');
    const r = await runScript("bench-engine", ["--quick", "--count", "1000"], { NETPROBIFY_YARDSTICK_DIR: fake });
    expect(r.code).toBe(EXIT_FAILURE);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("PARTIAL RUN: 4 case(s) failed, their figures are missing or incomplete:");
    expect(lines.slice(1, 5).every((l) => /^- .+: plbench \S+ (inject|mmsg): no .* in its output/.test(l))).toBe(true);
    // The cases without the C loop were measured all the same.
    const [throughput] = tables(r.stdout);
    expect(throughput!.rows.filter((row) => row[0]!.startsWith("UDP") && /\d/.test(row[1]!))).toHaveLength(2);
  }, 60_000);
});
