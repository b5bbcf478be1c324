/**
 * Cost curve: what the daemon costs at 1,000, 10,000 and 100,000 targets (gen-targets.ts's, 10
 * packets each, interval 30 s, nb_proc = nproc, the default max_probes_per_second), scraped by a
 * real Prometheus all along.
 *
 *   sudo node_modules/.bin/bun scripts/bench-cost.ts [--quick] [--targets 1000,10000,100000]
 *        [--bounded 10000,100000] [--worst 10] [--packets 10] [--interval 30] [--iterations 3]
 *        [--scrape-interval 15] [--nb-proc N] [--runner auto|dist|bun]
 *
 * Each count of --targets runs with every target's series (the default); each count of --bounded
 * runs again with global.per_target_series false and worst_targets --worst (the opt-in bound),
 * a row of its own ("none" runs no bounded row).
 *
 * Per count, in the namespaces of prober-net.ts:
 *  - config load: `netprobify check FILE` (wall time and peak RSS, its own process), and the
 *    daemon's start to its "starting" line (config loaded) and to "serving metrics";
 *  - Debian's prometheus, started by this script inside the prober's namespace (where every port
 *    is free) once the daemon serves, scrapes /metrics every --scrape-interval s (timeout the
 *    same) with gzip, as it always asks. Prometheus 2.42 has no `enable_compression: false`
 *    (2.49 added it; checked with promtool at start): when it is missing, plain scrapes are
 *    measured by curl (time_total, no Accept-Encoding) on the same schedule, and the table says
 *    so. Scrape latency is Prometheus's own scrape_duration_seconds (the request, the body read,
 *    parsing and appending to its database) over the measured iterations: p50 and max;
 *  - one warm-up iteration, then --iterations measured ones: steady RSS is the median of the
 *    daemon's RSS sampled every second over them, peak RSS its VmHWM at the end (the config load
 *    included); CPU-s per million probes is the daemon's CPU (every thread) over them, scrapes
 *    served included, per million probes sent;
 *  - /metrics bytes, plain and gzip (as sent), from curl after the last iteration;
 *  - loss: the daemon's tcpsyn_loss_total over the measured iterations, and the veth's counters
 *    (probes received by the host = answers sent = answers received by the prober = probes sent).
 *
 * Root only; ip, curl, prometheus, promtool. Takes /tmp/bench.lock (bench-lock.ts). A count that
 * fails is named under a PARTIAL RUN banner above the table, and the exit status is then 1.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { EXIT_FAILURE } from "../src/cli/exit.ts";
import { describeRun, median, partialBanner, startRun } from "./bench-context.ts";
import { cleanUpOnExit, rootUnderBenchLock } from "./bench-lock.ts";
import { scriptArgs, type ScriptArgs } from "./script-args.ts";
import { DaemonSession, curlScrape, generatedConfig, sumMetric } from "./daemon-session.ts";
import { chooseRunner, RUNNER_CHOICES, type Runner } from "./daemon-runner.ts";
import { targetFile } from "./gen-targets.ts";
import { runMeasured, statusKb } from "./proc-stats.ts";
import { MAX_TARGET_ADDRESSES, proberNetOrExit, type LinkCounters, type ProberNet } from "./prober-net.ts";

const cli: ScriptArgs = scriptArgs("bench-cost", { values: ["targets", "bounded", "worst", "packets", "interval", "iterations", "scrape-interval", "nb-proc", "runner"], flags: ["quick"] });
const { argv, arg, int, quick } = cli;
const nproc = availableParallelism();
function counts(name: string, fallback: string): number[] {
  const text = arg(name) ?? fallback;
  if (text === "none") return [];
  const list = text.split(",").map((x) => Number(x.replace(/_/g, "")));
  if (list.some((n) => !Number.isInteger(n) || n < 1 || n > Math.min(100_000, MAX_TARGET_ADDRESSES))) cli.usage(`--${name} wants counts from 1 to 100000 (or none)`);
  return list;
}
const COUNTS = counts("targets", quick ? "10" : "1000,10000,100000");
const BOUNDED = counts("bounded", quick ? "10" : "10000,100000");
const WORST = int("worst", 10, 0, 10_000);
const PACKETS = int("packets", 10, 1, 1000);
const INTERVAL = int("interval", quick ? 3 : 30, 2, 3600);
const ITERATIONS = int("iterations", quick ? 2 : 3, 1, 100);
const SCRAPE_S = int("scrape-interval", quick ? 1 : 15, 1, 300);
const NB_PROC = int("nb-proc", nproc, 1, 64);
const RUNNER = cli.choice("runner", RUNNER_CHOICES, quick ? "bun" : "auto");
const PORT = 8000;
const PROM_PORT = 9090;

await rootUnderBenchLock("bench-cost", "network namespaces, raw packets", ["ip", "curl", "prometheus", "promtool", "sysctl", "timeout"]);
const ctx = startRun("bench-cost.ts", argv);
const log = (line: string) => process.stderr.write(`bench-cost: ${line}\n`);
const tmp = mkdtempSync(join(tmpdir(), "bench-cost-"));
let session: DaemonSession | null = null;
let prometheus: Subprocess | null = null;
cleanUpOnExit(() => {
  session?.kill();
  prometheus?.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** Whether this Prometheus takes `enable_compression: false` in a scrape config. */
function promHasEnableCompression(): boolean {
  const file = join(tmp, "probe-config.yml");
  writeFileSync(file, 'scrape_configs:\n  - job_name: plain\n    enable_compression: false\n    static_configs: [{targets: ["127.0.0.1:1"]}]\n');
  return Bun.spawnSync(["promtool", "check", "config", file], { stdout: "pipe", stderr: "pipe" }).exitCode === 0;
}
const promVersion = /version (\S+)/.exec(Bun.spawnSync(["prometheus", "--version"], { stdout: "pipe", stderr: "pipe" }).stdout.toString())?.[1] ?? "?";
const plainByPrometheus = promHasEnableCompression();

const runner: Runner = chooseRunner(RUNNER, tmp, log, cli.usage);
const pn: ProberNet = await proberNetOrExit("bench-cost");

// ---------------------------------------------------------------------------------------------
// Prometheus inside the prober's namespace

async function startPrometheus(dir: string): Promise<Subprocess> {
  const job = (name: string, extra: string) =>
    `  - job_name: ${name}\n    scrape_interval: ${SCRAPE_S}s\n    scrape_timeout: ${SCRAPE_S}s\n${extra}    static_configs: [{targets: ["127.0.0.1:${PORT}"]}]\n`;
  const config = `scrape_configs:\n${job("gzip", "")}${plainByPrometheus ? job("plain", "    enable_compression: false\n") : ""}`;
  writeFileSync(join(dir, "prometheus.yml"), config);
  const p = Bun.spawn(
    pn.inNs(pn.prober, [
      "prometheus",
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "prometheus-data")}`,
      `--web.listen-address=127.0.0.1:${PROM_PORT}`,
      "--storage.tsdb.retention.time=1d",
    ]),
    { stdin: "ignore", stdout: "ignore", stderr: "ignore" },
  );
  const deadline = performance.now() + 30_000;
  for (;;) {
    const r = Bun.spawnSync(pn.inNs(pn.prober, ["curl", "-sf", `http://127.0.0.1:${PROM_PORT}/-/ready`]), { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode === 0) break;
    if (p.exitCode !== null) throw new Error(`prometheus exited ${p.exitCode} before it was ready`);
    if (performance.now() > deadline) throw new Error("prometheus not ready after 30 s");
    await Bun.sleep(200);
  }
  // Its first scrape comes up to an interval after it starts: measuring begins once it has one.
  const scraping = performance.now() + (2 * SCRAPE_S + 30) * 1000;
  while (promSamples('up{job="gzip"}', 3600).length === 0) {
    if (performance.now() > scraping) throw new Error(`prometheus has not scraped the daemon within ${2 * SCRAPE_S + 30} s`);
    await Bun.sleep(200);
  }
  return p;
}

/** The samples of `expr` (an instant vector selector) over the last `seconds`, from Prometheus's API. */
function promSamples(expr: string, seconds: number): number[] {
  const r = Bun.spawnSync(
    pn.inNs(pn.prober, ["curl", "-sfG", `http://127.0.0.1:${PROM_PORT}/api/v1/query`, "--data-urlencode", `query=${expr}[${Math.max(1, Math.floor(seconds))}s]`]),
    { stdout: "pipe", stderr: "pipe" },
  );
  if (r.exitCode !== 0) throw new Error(`Prometheus query ${expr}: curl exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  const j = JSON.parse(r.stdout.toString()) as { data: { result: { values: [number, string][] }[] } };
  return j.data.result.flatMap((s) => s.values.map(([, v]) => Number(v)));
}

// ---------------------------------------------------------------------------------------------
// One count

interface Cost {
  targets: number;
  /** global.worst_targets with per_target_series false; null: every target's series. */
  worst: number | null;
  probes: number;
  checkS: number;
  checkPeakMb: number;
  toStartingS: number;
  toServingS: number;
  iterationS: number[];
  steadyRssMb: number;
  peakRssMb: number;
  cpuPerMillion: number;
  plainBytes: number;
  gzipBytes: number;
  /** Scrape latency, ms: by Prometheus (gzip, and plain when it can), by curl (plain otherwise). */
  gzipMs: number[];
  plainMs: number[];
  gzipDown: number;
  plainFailed: number;
  series: number;
  lost: number;
  vethOk: boolean | null;
  vethNote: string;
  error: string | null;
}

async function measure(targets: number, worst: number | null): Promise<Cost> {
  const c: Cost = {
    targets,
    worst,
    probes: targets * PACKETS,
    checkS: NaN,
    checkPeakMb: NaN,
    toStartingS: NaN,
    toServingS: NaN,
    iterationS: [],
    steadyRssMb: NaN,
    peakRssMb: NaN,
    cpuPerMillion: NaN,
    plainBytes: NaN,
    gzipBytes: NaN,
    gzipMs: [],
    plainMs: [],
    gzipDown: 0,
    plainFailed: 0,
    series: NaN,
    lost: NaN,
    vethOk: null,
    vethNote: "",
    error: null,
  };
  const dir = mkdtempSync(join(tmp, `t${targets}-`));
  const config = join(dir, "netprobify.yaml");
  const series = worst === null ? {} : { worstTargets: worst };
  writeFileSync(config, generatedConfig({ targets, packets: PACKETS, probeName: "cost", interval: INTERVAL, nbProc: NB_PROC, port: PORT, ...series }, targetFile));
  // Bounded, the per-target counters cover the worst targets only: the group's add up every one.
  const sentName = worst === null ? "tcpsyn_sent_total" : "tcpsyn_group_sent_total";
  const lossName = worst === null ? "tcpsyn_loss_total" : "tcpsyn_group_loss_total";

  const check = await runMeasured([...runner.argv, "check", config]);
  c.checkS = check.wallS;
  c.checkPeakMb = check.peakMb;
  if (check.exitCode !== 0) throw new Error(`check exited ${check.exitCode}: ${check.stderr.trim().split("\n")[0]}`);

  const s = new DaemonSession(pn.inNs(pn.prober, [...runner.argv, config]), dir);
  session = s;
  const rss: number[] = [];
  let sampling: ReturnType<typeof setInterval> | null = null;
  let plainLoop: Promise<void> | null = null;
  let steady = false;
  let done = false;
  try {
    await s.waitServing(performance.now() + 600_000);
    c.toStartingS = (s.startingAt - s.startedAt) / 1000;
    c.toServingS = (s.servingAt - s.startedAt) / 1000;
    prometheus = await startPrometheus(dir);
    if (!plainByPrometheus) {
      // Plain scrapes by curl on Prometheus's schedule (its 2.42 always asks for gzip).
      plainLoop = (async () => {
        while (!done) {
          const next = performance.now() + SCRAPE_S * 1000;
          try {
            const r = await curlScrape(pn.prober, `http://127.0.0.1:${PORT}/metrics`, false, false);
            if (steady) {
              if (r.status === 200) c.plainMs.push(r.ms);
              else c.plainFailed++;
            }
          } catch {
            if (steady) c.plainFailed++;
          }
          await Bun.sleep(Math.max(0, next - performance.now()));
        }
      })();
    }
    // The warm-up: the first iteration ending after Prometheus scrapes (at least the daemon's first).
    const base = s.ends.length + 1;
    await s.waitEnds(base, performance.now() + 3 * INTERVAL * 1000 + 300_000);
    const first = s.ends[base - 1]!;
    steady = true;
    const counters0 = pn.counters();
    const text0 = (await curlScrape(pn.prober, `http://127.0.0.1:${PORT}/metrics`, true)).text;
    sampling = setInterval(() => {
      try {
        rss.push(statusKb(s.pid, "VmRSS"));
      } catch {
        /* exited */
      }
    }, 1000);
    for (let k = base; k < base + ITERATIONS; k++) {
      const last = s.ends[k - 1]!;
      await s.waitEnds(k + 1, last.t + Math.max(INTERVAL * 1000, 3 * last.seconds * 1000) + 120_000);
    }
    const end = s.ends[base + ITERATIONS - 1]!;
    const counters1 = pn.counters();
    steady = false;
    clearInterval(sampling);
    sampling = null;
    c.iterationS = s.ends.slice(base, base + ITERATIONS).map((e) => e.seconds);
    c.steadyRssMb = median(rss) / 1024;
    c.peakRssMb = statusKb(s.pid, "VmHWM") / 1024;
    const windowS = (performance.now() - first.t) / 1000;
    c.gzipMs = promSamples('scrape_duration_seconds{job="gzip"}', windowS).map((x) => x * 1000);
    c.gzipDown = promSamples('up{job="gzip"}', windowS).filter((x) => x !== 1).length;
    if (plainByPrometheus) {
      c.plainMs = promSamples('scrape_duration_seconds{job="plain"}', windowS).map((x) => x * 1000);
      c.plainFailed = promSamples('up{job="plain"}', windowS).filter((x) => x !== 1).length;
    }
    const gz = await curlScrape(pn.prober, `http://127.0.0.1:${PORT}/metrics`, true);
    const plain = await curlScrape(pn.prober, `http://127.0.0.1:${PORT}/metrics`, false);
    c.gzipBytes = gz.bytes;
    c.plainBytes = plain.bytes;
    c.series = plain.text.split("\n").filter((l) => l && !l.startsWith("#")).length;
    const sent = sumMetric(plain.text, sentName).sum - sumMetric(text0, sentName).sum;
    c.lost = sumMetric(plain.text, lossName).sum - sumMetric(text0, lossName).sum;
    c.cpuPerMillion = ((end.cpu - first.cpu) / sent) * 1e6;
    const d = (f: (l: LinkCounters) => number, side: "host" | "prober") => f(counters1[side]) - f(counters0[side]);
    const hostRx = d((l) => l.rxPackets, "host");
    const hostTx = d((l) => l.txPackets, "host");
    const proberRx = d((l) => l.rxPackets, "prober");
    const drops = d((l) => l.rxDropped + l.txDropped, "host") + d((l) => l.rxDropped + l.txDropped, "prober");
    const expected = c.probes * ITERATIONS;
    c.vethOk = sent === expected && hostRx === sent && hostTx === sent && proberRx === sent && drops === 0;
    c.vethNote = `sent ${sent} of ${expected}, host rx ${hostRx}, host tx ${hostTx}, prober rx ${proberRx}, drops ${drops}`;
  } catch (e) {
    c.error = e instanceof Error ? e.message : String(e);
  } finally {
    done = true;
    if (sampling) clearInterval(sampling);
    if (plainLoop) await plainLoop;
    prometheus?.kill("SIGTERM");
    await prometheus?.exited;
    prometheus = null;
    await s.stop();
    session = null;
    rmSync(dir, { recursive: true, force: true });
  }
  return c;
}

// ---------------------------------------------------------------------------------------------

const costs: Cost[] = [];
const failures: string[] = [];
try {
  const runs = [...COUNTS.map((n) => ({ n, worst: null })), ...BOUNDED.map((n) => ({ n, worst: WORST }))];
  for (const { n, worst } of runs) {
    const what = `${n} targets${worst === null ? "" : ` (bounded: worst ${worst})`}`;
    log(`${what} x ${PACKETS} packets, interval ${INTERVAL} s, scrapes every ${SCRAPE_S} s, 1 + ${ITERATIONS} iterations`);
    try {
      const c = await measure(n, worst);
      costs.push(c);
      if (c.error) failures.push(`${what}: ${c.error}`);
      log(`${what}: ${c.error ? `FAILED: ${c.error}` : `peak RSS ${c.peakRssMb.toFixed(0)} MB, gzip scrape p50 ${median(c.gzipMs).toFixed(1)} ms`}`);
    } catch (e) {
      failures.push(`${what}: ${(e as Error).message}`);
    }
  }
} finally {
  await pn.teardown();
}

const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }) : "-");
const lat = (xs: number[]) => (xs.length ? `${fmt(median(xs), 1)} / ${fmt(Math.max(...xs), 1)} (${xs.length})` : "-");
const range = (xs: number[], d: number) => {
  if (!xs.length) return "-";
  const [a, b] = [fmt(Math.min(...xs), d), fmt(Math.max(...xs), d)];
  return a === b ? a : `${a}-${b}`;
};
const out: string[] = [...partialBanner(failures)];
if (quick) out.push("QUICK MODE: a functional run with tiny counts; its figures are no cost curve.", "");
out.push("Cost curve: the daemon at growing target counts, scraped by a real Prometheus", "", ...describeRun(ctx), "");
out.push(
  `Daemon: ${runner.description}. Targets from scripts/gen-targets.ts (TCPsyn to port 443, closed; description, state, alert_level ` +
    `and threshold set), ${PACKETS} packets each, interval ${INTERVAL} s, nb_proc ${NB_PROC}, max_probes_per_second default (100,000), ` +
    `timeout 1 s. Prometheus ${promVersion} (the machine's), started by the script in the prober's namespace, scrapes every ${SCRAPE_S} s ` +
    `(timeout ${SCRAPE_S} s) with gzip; plain scrapes are ${plainByPrometheus ? "Prometheus's too (a second job with enable_compression: false)" : `curl's time_total on the same schedule: this Prometheus has no enable_compression setting (promtool rejects it; Prometheus 2.49 added it)`}. ` +
    `Measured over ${ITERATIONS} iteration(s) after a warm-up one.`,
  "",
);
out.push(
  "| targets | mode | probes / iteration | check: s, peak MB | daemon start to config loaded / serving s | iteration s | steady RSS MB | peak RSS MB | CPU-s / 1M probes | series | /metrics bytes plain | /metrics bytes gzip | gzip scrape by Prometheus p50 / max ms (n) | " +
    `plain scrape by ${plainByPrometheus ? "Prometheus" : "curl"} p50 / max ms (n) | loss: daemon, veth counters |`,
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
);
for (const c of costs) {
  out.push(
    `| ${fmt(c.targets)} | ${c.worst === null ? "every target's" : `bounded: groups + worst ${c.worst}`} | ${fmt(c.probes)} | ${fmt(c.checkS, 2)} s, ${fmt(c.checkPeakMb)} MB | ${fmt(c.toStartingS, 2)} / ${fmt(c.toServingS, 2)} | ${range(c.iterationS, 2)} | ` +
      `${fmt(c.steadyRssMb)} | ${fmt(c.peakRssMb)} | ${fmt(c.cpuPerMillion, 1)} | ${fmt(c.series)} | ${fmt(c.plainBytes)} | ${fmt(c.gzipBytes)} | ` +
      `${lat(c.gzipMs)}${c.gzipDown ? `, ${c.gzipDown} failed` : ""} | ${lat(c.plainMs)}${c.plainFailed ? `, ${c.plainFailed} failed` : ""} | ` +
      `${fmt(c.lost)}, ${c.vethOk === null ? "-" : c.vethOk ? "0 (every probe and answer counted)" : `MISMATCH: ${c.vethNote}`} |` +
      (c.error ? ` FAILED: ${c.error}` : ""),
  );
}
out.push(
  "",
  "What this does not measure: Prometheus's scrape_duration_seconds includes its own parsing and appending to its database, on the " +
    "same 2 CPUs as the daemon; curl's time_total is the transfer alone. CPU-s per million probes counts the scrapes the daemon " +
    "served meanwhile. The host is the kernel's RST path on a veth, not a network.",
);
console.log(out.join("\n"));
if (failures.length) process.exit(EXIT_FAILURE);
