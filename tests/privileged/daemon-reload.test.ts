/**
 * Reloading the config in a running daemon process (loopback targets): SIGHUP and
 * reload_conf_interval. Stage by stage (tests/fixtures/daemon/reload-*.yaml): targets added,
 * removed and renamed, a group renamed, percentiles changed, probe_name changed, a bad file (kept
 * running on the old config, status 1, the problem logged at FILE:LINE:COL), a good one again.
 *
 * Throughout, a background scraper checks that the HTTP listener never stops answering, that no
 * counter ever goes back, and that the process is the one that started (same pid, same start
 * time). The stages share one daemon and run in order.
 *
 * Needs root (the engine's raw packets).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { labelKey, startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { requireRoot } from "../support/testnet.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "daemon");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");

/** (destination, group) pairs that have a *_sent_total series under probe_name. */
function seriesOf(e: Exposition, probeName: string): string[] {
  return ["tcpsyn", "icmp", "udp_unreachable"]
    .flatMap((p) => e.get(`${p}_sent_total`, { probe_name: probeName }))
    .map((s) => `${s.labels.destination}|${s.labels.group}`)
    .sort();
}

const sent = (e: Exposition, probeName: string, destination: string, group: string) =>
  ["tcpsyn", "icmp", "udp_unreachable"].flatMap((p) => e.get(`${p}_sent_total`, { probe_name: probeName, destination, group }))[0]?.value;

function procStartTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
}

describe("config reload in a running daemon", () => {
  let d: DaemonProcess;
  let pid: number;
  let startTime: string;
  // The background scraper's findings.
  let scraping = true;
  let scrapes = 0;
  const httpFailures: string[] = [];
  const counterDecreases: string[] = [];
  const startTimes = new Set<number>();
  let scraper: Promise<void> = Promise.resolve();

  /** Last value of every counter series seen (histogram buckets, sums and counts included). */
  const lastCounter = new Map<string, number>();

  function watch(e: Exposition): void {
    for (const s of e.samples) {
      const type = e.families.get(s.family)?.type;
      if (type !== "counter" && type !== "histogram") continue;
      const key = `${s.name}{${labelKey(s.labels)}}`;
      const before = lastCounter.get(key);
      if (before !== undefined && s.value < before) counterDecreases.push(`${key}: ${before} -> ${s.value}`);
      lastCounter.set(key, s.value);
    }
    const st = e.value("process_start_time_seconds");
    if (st !== undefined) startTimes.add(st);
  }

  const logCount = (needle: string) => d.logLines.filter((l) => l.includes(needle)).length;

  /** Writes the stage's file, sends SIGHUP (unless told not to) and waits for the outcome in the log. */
  async function reload(name: string, opts: { signal?: boolean; expect?: "reloaded" | "failed" } = {}): Promise<void> {
    const outcome = opts.expect === "failed" ? "msg=\"configuration reload failed" : "msg=\"configuration reloaded\"";
    const before = logCount(outcome);
    d.writeConfig(fixture(name));
    if (opts.signal ?? true) d.signal("SIGHUP");
    const deadline = Date.now() + 15_000;
    while (logCount(outcome) === before) {
      if (!d.alive) throw new Error(`daemon exited during the reload of ${name}:\n${d.stderr}`);
      if (Date.now() > deadline) throw new Error(`no "${outcome}" in the log after writing ${name}; log:\n${d.stderr}`);
      await Bun.sleep(20);
    }
  }

  beforeAll(async () => {
    requireRoot();
    d = await startDaemon({ config: fixture("reload-1.yaml") });
    pid = d.pid;
    startTime = procStartTime(pid);
    scraper = (async () => {
      while (scraping && d.alive) {
        try {
          watch(await d.scrape({ timeoutMs: 5000 }));
          scrapes++;
        } catch (e) {
          httpFailures.push(e instanceof Error ? e.message : String(e));
        }
        await Bun.sleep(100);
      }
    })();
  }, 30_000);

  afterAll(async () => {
    scraping = false;
    await scraper;
    await d?.stop();
  });

  test("stage 1: every (target, group) of the first file is probed; the hostname target resolves", async () => {
    const want = ["gone_udp", "keep_icmp6", "keep_name", "keep_tcp", "old_name"].flatMap((t) => [`${t}|g1`, `${t}|g2`]);
    const e = await d.waitFor("two iterations of every series", (x) =>
      seriesOf(x, "nb-reload").join() === want.join() && want.every((s) => (sent(x, "nb-reload", ...(s.split("|") as [string, string])) ?? 0) >= 4) ? x : undefined,
    );
    expect(e.value("app_host_resolution_status", { destination: "keep_name" })).toBe(1);
    expect(e.get("icmp_round_trip_seconds", { destination: "keep_icmp6", group: "g1" }).map((s) => s.labels.percentile).sort()).toEqual(["50", "95"]);
    expect(e.value("app_reload_conf_failed_status", { probe_name: "nb-reload" })).toBe(0);
  });

  test("stage 2 (SIGHUP): removed, renamed-from and old-group and old-percentile series vanish at once; added, renamed-to and new-group series appear; kept counters go on", async () => {
    const before = await d.scrape();
    const keptBefore = sent(before, "nb-reload", "keep_tcp", "g1")!;
    await reload("reload-2.yaml");
    const now = await d.scrape();
    const gone = now.samples.filter(
      (s) =>
        ["gone_udp", "old_name"].includes(s.labels.destination ?? "") ||
        s.labels.group === "g2" ||
        (s.labels.percentile !== undefined && s.labels.percentile !== "99"),
    );
    expect(gone.map((s) => `${s.name}{${labelKey(s.labels)}}`)).toEqual([]);
    // Targets that stay keep their counters through the reload.
    expect(sent(now, "nb-reload", "keep_tcp", "g1")! >= keptBefore).toBe(true);

    const want = ["added_udp6", "keep_icmp6", "keep_name", "keep_tcp", "new_name"].flatMap((t) => [`${t}|g1`, `${t}|g2_new`]).sort();
    const e = await d.waitFor("the new file's series", (x) => (seriesOf(x, "nb-reload").join() === want.join() ? x : undefined));
    for (const p of ["tcpsyn", "icmp", "udp_unreachable"]) {
      expect(e.get(`${p}_round_trip_seconds`).every((s) => s.labels.percentile === "99")).toBe(true);
    }
    expect(e.get("icmp_round_trip_seconds", { destination: "new_name", group: "g2_new" }).map((s) => s.labels.percentile)).toEqual(["99"]);
    expect(e.get("app_host_resolution_status").map((s) => s.labels.destination).sort()).toEqual(["added_udp6", "keep_icmp6", "keep_name", "keep_tcp", "new_name"]);
    // And they go on counting from where they were.
    const later = await d.waitFor("keep_tcp to count on", (x) => ((sent(x, "nb-reload", "keep_tcp", "g1") ?? 0) > keptBefore ? x : undefined));
    expect(sent(later, "nb-reload", "keep_tcp", "g1")! - keptBefore).toBeGreaterThanOrEqual(3);
    expect(later.value("app_reload_conf_failed_status", { probe_name: "nb-reload" })).toBe(0);
  });

  test("stage 3 (SIGHUP, probe_name changed): every series with the old probe_name vanishes at once, the new name's appear", async () => {
    await reload("reload-3.yaml");
    const now = await d.scrape();
    expect(now.withLabel("probe_name", "nb-reload").map((s) => `${s.name}{${labelKey(s.labels)}}`)).toEqual([]);
    const want = ["added_udp6", "keep_icmp6", "keep_name", "keep_tcp", "new_name"].flatMap((t) => [`${t}|g1`, `${t}|g2_new`]).sort();
    const e = await d.waitFor("the new probe_name's series", (x) => (seriesOf(x, "nb-reload-2").join() === want.join() ? x : undefined));
    expect(e.withLabel("probe_name", "nb-reload")).toEqual([]);
    expect(e.value("app_reload_conf_failed_status", { probe_name: "nb-reload-2" })).toBe(0);
    expect(e.value("app_iteration_time_seconds", { probe_name: "nb-reload-2" })! > 0).toBe(true);
  });

  test("stage 4 (SIGHUP, bad file): app_reload_conf_failed_status 1, FILE:LINE:COL in the log, probing goes on with the running config", async () => {
    const before = await d.scrape();
    const seriesBefore = seriesOf(before, "nb-reload-2");
    const keptBefore = sent(before, "nb-reload-2", "keep_tcp", "g1")!;
    await reload("reload-bad.yaml", { expect: "failed" });
    // The problem is the line after the one reload() waited for: it may still be in the pipe.
    const problem = `${d.configPath}:5:12: global.nb_proc:`;
    for (const deadline = Date.now() + 5000; !d.stderr.includes(problem) && Date.now() < deadline; ) await Bun.sleep(20);
    expect(d.stderr).toContain(problem);
    const e = await d.waitFor("status 1 and another iteration", (x) =>
      x.value("app_reload_conf_failed_status", { probe_name: "nb-reload-2" }) === 1 && (sent(x, "nb-reload-2", "keep_tcp", "g1") ?? 0) > keptBefore ? x : undefined,
    );
    expect(seriesOf(e, "nb-reload-2")).toEqual(seriesBefore);
  });

  test("stage 5 (SIGHUP, good file again, now with reload_conf_interval 1): status back to 0", async () => {
    await reload("reload-4.yaml");
    const e = await d.waitFor("status 0", (x) => (x.value("app_reload_conf_failed_status", { probe_name: "nb-reload-2" }) === 0 ? x : undefined));
    expect(seriesOf(e, "nb-reload-2").length).toBe(10);
  });

  test("stage 6 (no signal): reload_conf_interval picks up an added target, then a bad file (status 1), then a good one (status 0)", async () => {
    await reload("reload-5.yaml", { signal: false });
    await d.waitFor("timer_added's series", (x) => (sent(x, "nb-reload-2", "timer_added", "g1") ?? 0) > 0 && (sent(x, "nb-reload-2", "timer_added", "g2_new") ?? 0) > 0);
    await reload("reload-bad.yaml", { signal: false, expect: "failed" });
    await d.waitFor("status 1", (x) => x.value("app_reload_conf_failed_status", { probe_name: "nb-reload-2" }) === 1);
    await reload("reload-5.yaml", { signal: false });
    await d.waitFor("status 0", (x) => x.value("app_reload_conf_failed_status", { probe_name: "nb-reload-2" }) === 0);
  });

  test("all along: one process (same pid and start time, one start logged), the listener always answered, no counter went back", async () => {
    scraping = false;
    await scraper;
    expect(d.alive).toBe(true);
    expect(d.pid).toBe(pid);
    expect(procStartTime(pid)).toBe(startTime);
    expect(d.logLines.filter((l) => l.includes("msg=starting")).length).toBe(1);
    expect(startTimes.size).toBe(1);
    expect(scrapes).toBeGreaterThan(20);
    expect(httpFailures).toEqual([]);
    expect(counterDecreases).toEqual([]);
    // Still serving after all that.
    expect((await d.fetch("/metrics")).status).toBe(200);
  });
});
