/**
 * Daemon benchmark (issue 3, "Figures to reach"): the whole prober, started as a process on a
 * generated config, for 10, 100, 1,000 and 10,000 TCPsyn targets x 100 packets per iteration
 * (nb_proc 2, one group with source ports 65000-65099, timeout 1 s), against targets behind a
 * routed next hop as in a datacenter.
 *
 *   sudo node_modules/.bin/bun scripts/bench-daemon.ts [--quick] [--targets 10,1000]
 *        [--iterations 2] [--scrapes 10] [--interval S] [--port closed|open] [--runner auto|dist|bun] [--nb-proc 2]
 *
 * Root only. Takes /tmp/bench.lock (as bench-engine.ts does) so two measurements never share the
 * CPUs. The test host is a veth namespace from tests/support/testnet.ts (its sysctls lift ICMP
 * rate limits and tune syncookies and backlogs); a free /18 of 198.19.0.0/16 is made local on
 * the namespace's lo and routed to it from the root namespace via the namespace's veth address,
 * so the root's neighbour table holds one entry whatever the number of targets. Everything is
 * torn down at exit, on failure and on SIGINT/SIGTERM.
 *
 * The daemon (--runner auto): dist/netprobify when it is newer than every file under src/, else
 * the same binary built by build.ts from the working tree into the run's temp dir (dist/ is left
 * alone), else `bun src/main.ts`; the table says which. Intervals: 5 s up to 100 targets, 10 s up
 * to 1,000, 30 s above (--interval overrides): the plan spreads target starts over 90% of the
 * interval's slack, so the iteration time follows the interval by design.
 *
 * Per case: 1 warm-up iteration, then --iterations clean ones (iteration time, CPU, probes/s),
 * then --iterations ones during which /metrics is scraped --scrapes times spread over the
 * iteration, then every 50 ms from near its expected end until it ends (latency while an
 * iteration runs, including while the daemon publishes its results). Iteration ends are the
 * daemon's own DEBUG "iteration done" lines (DEBUG adds nothing per packet), whose `seconds` is
 * the value it sets app_iteration_time_seconds to. CPU is utime+stime (+ reaped
 * children) of the daemon process from /proc/PID/stat, which covers all of its threads (the
 * engine Workers included), sampled at each iteration end. Peak RSS is VmHWM. False loss is the
 * sum of tcpsyn_loss_total over every series after the last iteration (the path is lossless).
 *
 * BENCH_RSS_TRACE=DIR writes DIR/rss-N.tsv per case: the daemon's RSS, anonymous and
 * file-backed, every 20 ms, with its log lines and the scrapes interleaved as `# ms ...` lines,
 * to see which phase of an iteration sets the peak.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { EXIT_FAILURE } from "../src/cli/exit.ts";
import { freePort } from "../tests/support/daemon-process.ts";
import { createTestNet, type TestNet } from "../tests/support/testnet.ts";
import { cleanUpOnExit, rootUnderBenchLock } from "./bench-lock.ts";
import { scriptArgs, type ScriptArgs } from "./script-args.ts";
import { chooseRunner, pumpLines, RUNNER_CHOICES, type Runner } from "./daemon-runner.ts";
import { sumMetric } from "./daemon-session.ts";
import { cpuSeconds, kbOf, statusKb, threadCount, threadCpu } from "./proc-stats.ts";

const root = resolve(import.meta.dir, "..");
const cli: ScriptArgs = scriptArgs("bench-daemon", { values: ["targets", "iterations", "scrapes", "interval", "port", "runner", "nb-proc"], flags: ["quick"] });
const { argv, arg, quick } = cli;
const TARGET_COUNTS = (arg("targets") ?? (quick ? "10,100" : "10,100,1000,10000")).split(",").map((s) => Number(s.replace(/_/g, "")));
const ITERATIONS = Number(arg("iterations") ?? 2);
const SCRAPES_PER_ITERATION = Number(arg("scrapes") ?? 10);
const INTERVAL_OVERRIDE = arg("interval") === undefined ? null : Number(arg("interval"));
const PORT_KIND = arg("port") ?? "closed";
const RUNNER = cli.choice("runner", RUNNER_CHOICES, "auto");
const NB_PACKETS = 100;
/** Cap on the back-to-back scrapes at the end of each scraped iteration. */
const TAIL_SCRAPES_MAX = 80;
const NB_PROC = Number(arg("nb-proc") ?? 2);
const SRC_PORT_A = 65000;
const SRC_PORT_Z = 65099;

if (TARGET_COUNTS.some((n) => !Number.isInteger(n) || n < 1 || n > 16000)) cli.usage(`--targets wants counts from 1 to 16000, got ${arg("targets")}`);
if (!Number.isInteger(ITERATIONS) || ITERATIONS < 1) cli.usage("--iterations wants an integer >= 1");
if (!Number.isInteger(NB_PROC) || NB_PROC < 1 || NB_PROC > 16) cli.usage("--nb-proc wants an integer from 1 to 16");
if (!Number.isInteger(SCRAPES_PER_ITERATION) || SCRAPES_PER_ITERATION < 1) cli.usage("--scrapes wants an integer >= 1");
if (INTERVAL_OVERRIDE !== null && (!Number.isInteger(INTERVAL_OVERRIDE) || INTERVAL_OVERRIDE < 2)) cli.usage("--interval wants whole seconds >= 2");
if (PORT_KIND !== "closed" && PORT_KIND !== "open") cli.usage("--port is closed or open");

await rootUnderBenchLock("bench-daemon", "network namespaces, raw packets", ["ip", "ping"]);

/** Interval per case: long enough for the case to finish (the plan spreads target starts over
 * (interval - longest target) / 2, so the iteration time follows the interval by design). */
function intervalFor(targets: number): number {
  if (INTERVAL_OVERRIDE !== null) return INTERVAL_OVERRIDE;
  if (targets <= 100) return 5;
  if (targets <= 1000) return 10;
  return 30;
}

function sh(cmd: string[], check = true): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (check && r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

const log = (line: string) => process.stderr.write(`bench-daemon: ${line}\n`);
const tmp = mkdtempSync(join(tmpdir(), "bench-daemon-"));

// ---------------------------------------------------------------------------------------------
// The test network: one veth host, a routed /18 answered by it

interface Bench {
  net: TestNet;
  /** First address of the routed range, as a 32-bit number. */
  base: number;
  range: string;
  nextHop: string;
  dstPort: number;
}

const ipv4 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
const ipv4Num = (s: string) => s.split(".").reduce((a, p) => a * 256 + Number(p), 0);

/** IPv4 prefixes of the root namespace's addresses and routes (all tables), as [first, last]. */
function ipv4InUse(): [number, number][] {
  const out: [number, number][] = [];
  const add = (cidr: string) => {
    const [a, l] = cidr.split("/") as [string, string | undefined];
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(a)) return;
    const len = l === undefined ? 32 : Number(l);
    if (len < 16) return; // a default or a /8 is less specific than ours: not a conflict
    const size = 2 ** (32 - len);
    const first = Math.floor(ipv4Num(a) / size) * size;
    out.push([first, first + size - 1]);
  };
  for (const link of JSON.parse(sh(["ip", "-j", "-4", "addr", "show"])) as { addr_info?: { local?: string; prefixlen?: number }[] }[]) {
    for (const a of link.addr_info ?? []) if (a.local) add(`${a.local}/${a.prefixlen ?? 32}`);
  }
  for (const r of JSON.parse(sh(["ip", "-j", "-4", "route", "show", "table", "all"])) as { dst?: string }[]) {
    if (r.dst && r.dst !== "default") add(r.dst);
  }
  return out;
}

async function setUpNetwork(): Promise<Bench> {
  const net = await createTestNet({ hosts: 1 });
  try {
    return routeRange(net);
  } catch (e) {
    await net.teardown();
    throw e;
  }
}

function routeRange(net: TestNet): Bench {
  const host = net.hosts[0]!;
  // testnet.ts claims 198.19.100-199.0/24 per host: these /18s stay clear of its pool.
  const inUse = ipv4InUse();
  const range = ["198.19.0.0/18", "198.19.192.0/18"].find((cidr) => {
    const first = ipv4Num(cidr.split("/")[0]!);
    const last = first + 2 ** 14 - 1;
    return !inUse.some(([a, b]) => a <= last && first <= b);
  });
  if (!range) throw new Error("198.19.0.0/18 and 198.19.192.0/18 are both in use in the root namespace");
  // Inside: a local route on lo, so the namespace answers for every address of the range.
  sh(["ip", "-n", host.ns, "route", "add", "local", range, "dev", "lo"]);
  // Root: one route via the namespace's veth address, so one neighbour entry for all targets.
  // It goes with the veth at teardown (and with a sweep after a SIGKILL).
  sh(["ip", "route", "add", range, "via", host.v4.host, "dev", host.rootIf]);
  const base = ipv4Num(range.split("/")[0]!) + 1;
  const probe = sh(["ip", "route", "get", ipv4(base + 9999)]);
  if (!probe.includes(`via ${host.v4.host}`)) throw new Error(`route to ${ipv4(base + 9999)} is not via ${host.v4.host}: ${probe.trim()}`);
  return { net, base, range, nextHop: host.v4.host, dstPort: PORT_KIND === "open" ? host.openPort : host.closedPort };
}

// ---------------------------------------------------------------------------------------------
// One case

function configYaml(targets: number, interval: number, port: number, b: Bench): string {
  const lines = [
    "global:",
    "  probe_name: bench-daemon",
    `  interval: ${interval}`,
    `  nb_proc: ${NB_PROC}`,
    // DEBUG adds one line per iteration ("iteration done"), nothing per packet.
    "  logging_level: DEBUG",
    `  prometheus_port: ${port}`,
    "  prometheus_address: 127.0.0.1",
    "  dns_update_interval: 0",
    "groups:",
    "  bench:",
    `    src_port_a: ${SRC_PORT_A}`,
    `    src_port_z: ${SRC_PORT_Z}`,
    "targets:",
  ];
  for (let i = 0; i < targets; i++) {
    lines.push(
      `  t${String(i).padStart(5, "0")}:`,
      "    type: TCPsyn",
      `    destination: ${ipv4(b.base + i)}`,
      `    dst_port: ${b.dstPort}`,
      `    nb_packets: ${NB_PACKETS}`,
      "    timeout: 1",
    );
  }
  return `${lines.join("\n")}\n`;
}

interface Done {
  /** performance.now() when the line arrived. */
  t: number;
  seconds: number;
  cpu: number;
  threads: { main: number; workers: number; other: number };
  rssKb: number;
}

interface Scrape {
  ms: number;
  bytes: number;
  status: number;
  during: boolean;
}

interface CaseResult {
  targets: number;
  probes: number;
  interval: number;
  dones: Done[];
  clean: Done[];
  scraped: Done[];
  cleanCpu: number[];
  scrapedCpu: number[];
  /** Mean over the clean iterations, per kind of thread. */
  cleanThreadCpu: { main: number; workers: number; other: number };
  scrapes: Scrape[];
  /** Scrapes 50 ms apart from about the expected end of the iteration until its end was logged. */
  tailScrapes: Scrape[];
  idleScrapes: Scrape[];
  /** VmHWM once the clean iterations are done (before any scrape). */
  cleanPeakRssKb: number;
  endAnonKb: number;
  endFileKb: number;
  matchFail: number;
  peakRssKb: number;
  threads: number;
  startupS: number;
  sent: number;
  lost: number;
  seriesCount: number;
  gaugeIterationS: number;
  captureDropped: number;
  sendErrors: number;
  sendLagS: number;
  degraded: number;
  timedOut: number;
  restarts: number;
  rttP50: number[];
  stopS: number;
  exitCode: number | null;
  notable: string[];
  error: string | null;
}


function rttP50s(text: string): number[] {
  const out: number[] = [];
  const re = /^tcpsyn_round_trip_seconds\{[^}]*percentile="50"[^}]*\} (\S+)$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(Number(m[1]));
  return out;
}

async function scrape(port: number): Promise<Scrape & { text: string }> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  return { ms: performance.now() - t0, bytes: Buffer.byteLength(text), status: res.status, during: false, text };
}

const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const k = (s.length - 1) / 2;
  return (s[Math.floor(k)]! + s[Math.ceil(k)]!) / 2;
};
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

let current: Subprocess | null = null;

async function runCase(targets: number, runner: Runner, b: Bench): Promise<CaseResult> {
  const interval = intervalFor(targets);
  const dir = mkdtempSync(join(tmp, `t${targets}-`));
  const port = await freePort();
  const configPath = join(dir, "netprobify.yaml");
  writeFileSync(configPath, configYaml(targets, interval, port, b));
  // The root's neighbour entry for the next hop, fresh (the engine would solicit it otherwise).
  sh(["ping", "-c", "1", "-W", "1", "-q", b.nextHop], false);

  const r: CaseResult = {
    targets,
    probes: targets * NB_PACKETS,
    interval,
    dones: [],
    clean: [],
    scraped: [],
    cleanCpu: [],
    scrapedCpu: [],
    cleanThreadCpu: { main: NaN, workers: NaN, other: NaN },
    scrapes: [],
    tailScrapes: [],
    idleScrapes: [],
    cleanPeakRssKb: NaN,
    endAnonKb: NaN,
    endFileKb: NaN,
    matchFail: NaN,
    peakRssKb: NaN,
    threads: 0,
    startupS: NaN,
    sent: NaN,
    lost: NaN,
    seriesCount: 0,
    gaugeIterationS: NaN,
    captureDropped: NaN,
    sendErrors: NaN,
    sendLagS: NaN,
    degraded: NaN,
    timedOut: NaN,
    restarts: NaN,
    rttP50: [],
    stopS: NaN,
    exitCode: null,
    notable: [],
    error: null,
  };
  const logPath = join(dir, "daemon.log");
  const logLines: string[] = [];
  const t0 = performance.now();
  const proc = Bun.spawn([...runner.argv, configPath], { cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  current = proc;
  const pid = proc.pid;
  let servingAt = NaN;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  // BENCH_RSS_TRACE=DIR: the daemon's RSS (anon + file-backed) every 20 ms and the log lines, to
  // see which phase of an iteration sets the peak.
  const traceDir = process.env.BENCH_RSS_TRACE;
  const trace: string[] = [];
  const onLine = (line: string) => {
    logLines.push(line);
    if (traceDir) trace.push(`# ${(performance.now() - t0).toFixed(0)} ${line}`);
    if (line.includes('msg="iteration done"')) {
      const seconds = Number(/ seconds=([\d.]+)/.exec(line)?.[1] ?? NaN);
      let cpu = NaN;
      let rssKb = NaN;
      let threads = { main: NaN, workers: NaN, other: NaN };
      try {
        cpu = cpuSeconds(pid);
        threads = threadCpu(pid);
        rssKb = statusKb(pid, "VmRSS");
      } catch {
        /* exited meanwhile */
      }
      r.dones.push({ t: performance.now(), seconds, cpu, threads, rssKb });
      if (process.env.BENCH_DEBUG) log(`done ${JSON.stringify(r.dones[r.dones.length - 1])} ${readFileSync(`/proc/${pid}/stat`, "utf8")}`);
    } else if (line.includes('msg="serving metrics"')) {
      servingAt = performance.now();
    } else if (/level=(WARNING|ERROR|CRITICAL)/.test(line) || !line.startsWith("ts=")) {
      r.notable.push(line);
    }
    notify();
  };
  const pumps = Promise.all([pumpLines(proc.stdout, onLine), pumpLines(proc.stderr, onLine)]);
  const tracer = traceDir
    ? setInterval(() => {
        try {
          const st = readFileSync(`/proc/${pid}/status`, "utf8");
          const kb = (f: string) => kbOf(st, f);
          trace.push(`${(performance.now() - t0).toFixed(0)}\t${kb("VmRSS")}\t${kb("RssAnon")}\t${kb("RssFile")}\t${kb("VmHWM")}\t${r.dones.length}`);
        } catch {
          /* exited */
        }
      }, 20)
    : null;
  void proc.exited.then(notify);

  /** Waits until n iterations are done, the daemon exits, or the deadline passes. */
  const waitDones = async (n: number, deadline: number) => {
    while (r.dones.length < n) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`daemon exited (${proc.exitCode ?? proc.signalCode}) after ${r.dones.length} iterations`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no iteration ${n} within the deadline (${r.dones.length} done)`);
      await Promise.race([new Promise<void>((res) => (wake = res)), Bun.sleep(Math.min(left, 1000))]);
    }
  };
  const nextDeadline = () => {
    const last = r.dones[r.dones.length - 1];
    return last ? last.t + Math.max(interval * 1000, 3 * last.seconds * 1000) + 60_000 : t0 + 3 * interval * 1000 + 60_000;
  };

  try {
    await waitDones(1, nextDeadline());
    r.startupS = (servingAt - t0) / 1000;
    for (let i = 0; i < ITERATIONS; i++) await waitDones(r.dones.length + 1, nextDeadline());
    r.cleanPeakRssKb = statusKb(pid, "VmHWM");
    // Scraped iterations: SCRAPES_PER_ITERATION scrapes spread over each, one after the other.
    for (let k = 0; k < ITERATIONS; k++) {
      const idx = r.dones.length;
      const prev = r.dones[idx - 1]!;
      const start = Math.max(prev.t, prev.t - prev.seconds * 1000 + interval * 1000);
      const expected = prev.seconds * 1000;
      for (let j = 0; j < SCRAPES_PER_ITERATION; j++) {
        const at = start + expected * (0.03 + (0.85 * j) / SCRAPES_PER_ITERATION);
        const wait = at - performance.now();
        if (wait > 0) await Bun.sleep(wait);
        if (r.dones.length !== idx) break; // the iteration already ended
        const s = await scrape(port);
        r.scrapes.push({ ms: s.ms, bytes: s.bytes, status: s.status, during: true });
        if (traceDir) trace.push(`# ${(performance.now() - t0).toFixed(0)} scrape ${s.ms.toFixed(1)} ms`);
      }
      // Then scrapes 50 ms apart until the iteration's end is logged, so some land while the
      // daemon folds the Workers' results into the metrics and renders them (the end of
      // iteration, when the main thread is busiest).
      const tailAt = start + Math.max(0.9 * expected, expected - 1500);
      if (tailAt > performance.now()) await Bun.sleep(tailAt - performance.now());
      for (let j = 0; j < TAIL_SCRAPES_MAX && r.dones.length === idx; j++) {
        const s = await scrape(port);
        r.tailScrapes.push({ ms: s.ms, bytes: s.bytes, status: s.status, during: true });
        if (traceDir) trace.push(`# ${(performance.now() - t0).toFixed(0)} tail scrape ${s.ms.toFixed(1)} ms`);
        await Bun.sleep(50);
      }
      await waitDones(idx + 1, nextDeadline());
    }
    // After the last iteration: idle scrapes, the last one read for the counters.
    let text = "";
    for (let j = 0; j < 3; j++) {
      const s = await scrape(port);
      r.idleScrapes.push({ ms: s.ms, bytes: s.bytes, status: s.status, during: false });
      text = s.text;
    }
    const sent = sumMetric(text, "tcpsyn_sent_total");
    r.sent = sent.sum;
    r.seriesCount = sent.count;
    r.lost = sumMetric(text, "tcpsyn_loss_total").sum;
    r.gaugeIterationS = sumMetric(text, "app_iteration_time_seconds").sum;
    r.captureDropped = sumMetric(text, "netprobify_capture_dropped_total").sum;
    r.sendErrors = sumMetric(text, "netprobify_send_errors_total").sum;
    r.sendLagS = sumMetric(text, "netprobify_send_lag_seconds").sum;
    r.degraded = sumMetric(text, "netprobify_iteration_degraded").sum;
    r.timedOut = sumMetric(text, "app_process_timed_out_total").sum;
    r.restarts = sumMetric(text, "netprobify_worker_restarts_total").sum;
    r.rttP50 = rttP50s(text);
    r.matchFail = sumMetric(text, "tcpsyn_match_ack_fail_count").sum + sumMetric(text, "tcpsyn_port_mismatch_count").sum;
    r.peakRssKb = statusKb(pid, "VmHWM");
    r.endAnonKb = statusKb(pid, "RssAnon");
    r.endFileKb = statusKb(pid, "RssFile");
    r.threads = threadCount(pid);
  } catch (e) {
    r.error = e instanceof Error ? e.message : String(e);
    try {
      r.peakRssKb = statusKb(pid, "VmHWM");
    } catch {
      /* gone */
    }
  } finally {
    const stopAt = performance.now();
    proc.kill("SIGTERM");
    const ended = await Promise.race([proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!ended) {
      r.notable.push("bench: the daemon did not exit within 5 s of SIGTERM: SIGKILLed");
      proc.kill("SIGKILL");
      await proc.exited;
    } else {
      r.stopS = (performance.now() - stopAt) / 1000;
    }
    r.exitCode = proc.exitCode;
    current = null;
    await Promise.race([pumps, Bun.sleep(2000)]);
    writeFileSync(logPath, `${logLines.join("\n")}\n`);
    if (tracer) clearInterval(tracer);
    if (traceDir) {
      writeFileSync(join(traceDir, `rss-${targets}.tsv`), `ms\trss_kb\tanon_kb\tfile_kb\thwm_kb\tdones\n${trace.join("\n")}\n`);
    }
  }
  // Iteration k's CPU: from the end of iteration k-1 to the end of k (its idle wait included).
  const cpuOf = (i: number) => r.dones[i]!.cpu - r.dones[i - 1]!.cpu;
  for (let i = 1; i < r.dones.length; i++) {
    if (i <= ITERATIONS) {
      r.clean.push(r.dones[i]!);
      r.cleanCpu.push(cpuOf(i));
    } else {
      r.scraped.push(r.dones[i]!);
      r.scrapedCpu.push(cpuOf(i));
    }
  }
  if (r.clean.length) {
    const first = r.dones[0]!.threads;
    const last = r.clean[r.clean.length - 1]!.threads;
    const n = r.clean.length;
    const main = (last.main - first.main) / n;
    const workers = (last.workers - first.workers) / n;
    // The rest from the process total, which also counts threads that ended meanwhile.
    const total = (r.clean[r.clean.length - 1]!.cpu - r.dones[0]!.cpu) / n;
    r.cleanThreadCpu = { main, workers, other: total - main - workers };
  }
  if (r.error) r.notable.push(`bench: ${r.error}; daemon log: ${logPath}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }) : "-");
const list = (xs: number[], d: number) => (xs.length ? xs.map((x) => fmt(x, d)).join(" / ") : "-");

/** The original's figures at nb_proc 2 (../shared/reference/netprobify-baseline-figures.md, table A). */
const ORIGINAL: Record<number, { iteration: string; cpu: string; rate: string; rss: string; loss: string }> = {
  10: { iteration: "3.82 / 2.98", cpu: "5.91 / 5.14", rate: "262 / 336", rss: "75 (tree PSS 135)", loss: "0" },
  100: { iteration: "21.5 / 31.1", cpu: "38.2 / 57.1", rate: "464 / 322", rss: "129 (tree PSS 195 / 199)", loss: "0" },
  1000: { iteration: "345.5", cpu: "617.7", rate: "289", rss: "659 (tree PSS 1783)", loss: "226 of 200,000" },
};

function printTables(results: CaseResult[], runner: Runner, b: Bench, startLoad: string): void {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?";
  const memGb = Number(/MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0) / 1024 / 1024;
  const commit = sh(["git", "-C", root, "rev-parse", "--short", "HEAD"], false).trim();
  const dirty = sh(["git", "-C", root, "status", "--porcelain", "src"], false).trim() ? " + uncommitted changes under src/" : "";
  const cmd = `sudo node_modules/.bin/bun scripts/bench-daemon.ts${argv.length ? ` ${argv.join(" ")}` : ""}`;
  const failed = results.filter((r) => r.error);
  if (failed.length) {
    console.log(`PARTIAL RUN: ${failed.length} case(s) failed, their rows are incomplete (marked FAILED):`);
    for (const r of failed) console.log(`- ${r.targets} targets: ${r.error}`);
    console.log("");
  }
  console.log(`Daemon benchmark: \`${cmd}\``);
  console.log("");
  console.log(
    `Machine: ${sh(["nproc"]).trim()} vCPU ${cpuModel}, ${memGb.toFixed(0)} GB, kernel ${sh(["uname", "-r"]).trim()}, ` +
      `${new Date().toISOString().slice(0, 10)}, load average at start ${startLoad}, at end ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} ` +
      "(other work on the machine is not under the bench lock: a load above about 1 means it shared the CPUs). " +
      `Daemon: ${runner.description}, commit ${commit}${dirty}.`,
  );
  console.log("");
  console.log(
    `TCPsyn IPv4 to ${PORT_KIND === "closed" ? `a closed port (${b.dstPort}, RST-ACK)` : `an open port (${b.dstPort}, SYN-ACK)`}, ` +
      `${NB_PACKETS} packets per target, nb_proc ${NB_PROC}, one group with source ports ${SRC_PORT_A}-${SRC_PORT_Z}, timeout 1 s, ` +
      `interval_packets 0, max_probes_per_second default (100,000). Targets: consecutive addresses of ${b.range}, ` +
      `local on the test host's lo and routed from the root namespace via ${b.nextHop} (one neighbour entry). ` +
      `Per case: 1 warm-up iteration, ${ITERATIONS} clean (iteration time, CPU, probes/s), then ${ITERATIONS} scraped: ` +
      `${SCRAPES_PER_ITERATION} /metrics scrapes spread over each, then scrapes 50 ms apart from near its expected end until ` +
      "it ends (\"at the iteration's end\": when the daemon folds the Workers' results into the metrics). " +
      "Figures a / b are per iteration. The original's figures (Python netprobify 1.0.7, nb_proc 2, interval 1 s) are " +
      "from ../shared/reference/netprobify-baseline-figures.md, table A, as figures only: not re-measured here.",
  );
  console.log("");
  console.log(
    "| targets | probes / iteration | interval s | iteration s (clean) | iteration s (scraped) | CPU-s / iteration | CPU-s / 1,000 probes | probes/s | peak RSS MB | false loss | /metrics while an iteration runs: p50 / max ms (n) | of which at the iteration's end: p50 / max ms (n) | original iteration s | original tree CPU-s / iteration | original probes/s | original RSS MB | original false loss |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    const o = ORIGINAL[r.targets];
    const ok = (xs: Scrape[]) => xs.filter((s) => s.during && s.status === 200);
    const during = [...ok(r.scrapes), ...ok(r.tailScrapes)];
    const tail = ok(r.tailScrapes);
    const stats = (xs: Scrape[]) =>
      xs.length ? `${fmt(median(xs.map((x) => x.ms)), 1)} / ${fmt(Math.max(...xs.map((x) => x.ms)), 1)} (${xs.length})` : "-";
    const cpu = mean(r.cleanCpu);
    const secs = r.clean.map((d) => d.seconds);
    const loss = Number.isFinite(r.lost) ? `${fmt(r.lost)} of ${fmt(r.sent)}` : "-";
    const row = [
      fmt(r.targets),
      fmt(r.probes),
      String(r.interval),
      list(secs, 2),
      list(r.scraped.map((d) => d.seconds), 2),
      list(r.cleanCpu, 2),
      fmt((cpu / r.probes) * 1000, 3),
      list(secs.map((s) => r.probes / s), 0),
      fmt(r.peakRssKb / 1024, 0),
      loss,
      stats(during),
      stats(tail),
      o?.iteration ?? "-",
      o?.cpu ?? "-",
      o?.rate ?? "-",
      o?.rss ?? "-",
      o?.loss ?? "-",
    ];
    if (r.error) row[3] = `FAILED: ${r.error}; ${row[3]}`;
    console.log(`| ${row.join(" | ")} |`);
  }
  console.log("");
  console.log("Self-checks and details (from the last scrape and the process):");
  console.log("");
  console.log(
    "| targets | sent (all iterations) / expected | series | warm-up iteration s | CPU-s / iteration: main thread / Workers / other threads | CPU-s / iteration with scrapes | capture drops | send errors | send lag s (last) | degraded (last) | timeouts / restarts | match-fail + port-mismatch | RTT p50 median of targets us | /metrics idle p50 ms | /metrics bytes | peak RSS before any scrape MB | RSS at end MB: anon + file-backed | threads | start to serving s | SIGTERM to exit s (code) |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    const expected = r.probes * r.dones.length;
    const idle = r.idleScrapes.filter((s) => s.status === 200);
    console.log(
      `| ${[
        fmt(r.targets),
        `${fmt(r.sent)} / ${fmt(expected)}`,
        fmt(r.seriesCount),
        r.dones[0] ? fmt(r.dones[0].seconds, 2) : "-",
        `${fmt(r.cleanThreadCpu.main, 2)} / ${fmt(r.cleanThreadCpu.workers, 2)} / ${fmt(r.cleanThreadCpu.other, 2)}`,
        list(r.scrapedCpu, 2),
        fmt(r.captureDropped),
        fmt(r.sendErrors),
        fmt(r.sendLagS, 3),
        fmt(r.degraded),
        `${fmt(r.timedOut)} / ${fmt(r.restarts)}`,
        fmt(r.matchFail),
        fmt(median(r.rttP50) * 1e6, 1),
        fmt(median(idle.map((s) => s.ms)), 1),
        fmt(idle[idle.length - 1]?.bytes ?? NaN),
        fmt(r.cleanPeakRssKb / 1024, 0),
        `${fmt(r.endAnonKb / 1024, 0)} + ${fmt(r.endFileKb / 1024, 0)}`,
        String(r.threads || "-"),
        fmt(r.startupS, 2),
        `${fmt(r.stopS, 2)} (${r.exitCode ?? "-"})`,
      ].join(" | ")} |`,
    );
  }
  const notes = results.flatMap((r) => [...new Set(r.notable.map((l) => l.replace(/^ts=\S+ /, "")))].slice(0, 10).map((l) => `- ${fmt(r.targets)} targets: ${l}`));
  const lost = results.filter((r) => r.lost > 0);
  if (lost.length) notes.push(`- FALSE LOSS: ${lost.map((r) => `${fmt(r.targets)} targets: ${fmt(r.lost)} of ${fmt(r.sent)}`).join("; ")} (the path is lossless).`);
  if (notes.length) {
    console.log("");
    console.log("Log lines at WARNING and above, and problems:");
    console.log("");
    for (const n of notes) console.log(n);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

let bench: Bench | null = null;
const cleanup = () => {
  if (current && current.exitCode === null) current.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
};
cleanUpOnExit(cleanup);

const startLoad = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const runner: Runner = chooseRunner(RUNNER, tmp, log, cli.usage);
log(`daemon: ${runner.description}`);
const results: CaseResult[] = [];
try {
  bench = await setUpNetwork();
  log(`test host ${bench.net.hosts[0]!.ns}, targets in ${bench.range} via ${bench.nextHop}`);
  for (const n of TARGET_COUNTS) {
    log(`${n} targets, interval ${intervalFor(n)} s, ${1 + 2 * ITERATIONS} iterations...`);
    const r = await runCase(n, runner, bench);
    results.push(r);
    log(
      `${n} targets: iterations ${r.dones.map((d) => d.seconds.toFixed(2)).join(", ")} s; ` +
        `loss ${r.lost} of ${r.sent}; peak RSS ${(r.peakRssKb / 1024).toFixed(0)} MB${r.error ? `; FAILED: ${r.error}` : ""}`,
    );
  }
} finally {
  await bench?.net.teardown();
}
printTables(results, runner, bench!, startLoad);
if (results.some((r) => r.error)) process.exit(EXIT_FAILURE);
