/**
 * Soak (issue 9, "run unattended"): the daemon left running under everything that changes while
 * it runs, then 1,000 engine Workers replaced on purpose in this process.
 *
 *   sudo node_modules/.bin/bun scripts/soak.ts [--minutes 30] [--warmup-minutes 3] [--reload-every 4]
 *        [--runner auto|dist|bun] [--replacements 1000] [--interval 5] [--churn-every 3] [--samples FILE]
 *
 * Root only; takes /tmp/bench.lock as the benchmarks do. The daemon (--runner auto): as
 * bench-daemon.ts, dist/netprobify when newer than src/, else a binary built from the working
 * tree for this run, else `bun src/main.ts` (scripts/daemon-runner.ts).
 *
 * The daemon soak, for --minutes from its first iteration:
 * - One veth test host (tests/support/testnet.ts). 200 configured targets, each a distinct
 *   address of the host's routed ranges (198.19.X.0/24 and fd00:19:X::/64), half IPv4 half IPv6,
 *   cycling TCPsyn to the open port, TCPsyn to a closed port, ICMPping and UDPunreachable; 10
 *   packets each, timeout 1 s, interval --interval, global timeout 60 s (no batch comes near it).
 * - A marker target (ICMPping to the host's veth address, 1 packet, alone in its own group): its
 *   icmp_sent_total counts the iterations whose results were published.
 * - Reloads every --reload-every seconds: the config is rewritten (atomically) and SIGHUP sent,
 *   alternating variant A (nb_proc 2, max_probes_per_second 100000) and B (nb_proc 1,
 *   max_probes_per_second 50000). Changed engine options replace every Worker
 *   (src/daemon/pool.ts resize), so every reload stops the live Workers and the next iteration
 *   starts new ones. Target names are the same in both, so counters run on. The next reload is
 *   sent once the previous one is installed (at once, or at the end of the iteration in flight),
 *   which tells which variant each iteration ran under.
 * - An inventory churning targets: a file inventory (inventories.file.churn) whose one file is
 *   rewritten every --churn-every seconds with a random subset of 20 to 60 of 100 more targets
 *   (same kinds, addresses of their own).
 * - Two scrapers reading /metrics every 250 ms each; a failed request or a status other than 200
 *   is counted.
 * - The daemon's $TMPDIR is a directory of this run: its entries are counted (a compiled binary
 *   extracts embedded files there; they must not pile up).
 * - logging_level DEBUG: the daemon then logs one "iteration done" line per iteration (nothing
 *   per packet), which is what iterations are counted by.
 *
 * Samples (RSS, open fds, threads, series in the exposition, $TMPDIR entries) are taken at the
 * end of an iteration run under variant A, at most one per 10 s: right after the daemon published
 * and collected its garbage, with its two Workers alive, so every sample is comparable (variant
 * B has one Worker fewer). None is taken within 2 s of a SIGHUP: the daemon loads the file in a
 * short-lived Worker, which shows as a thread, 2 fds and up to 15 MiB for a second or so
 * (--samples FILE writes every sample out). At the end of the soak the reloads and churn stop,
 * variant A is put back if needed, and the last sample is the next iteration's. The table shows
 * the first sample (the first iteration), the first one after --warmup-minutes, the last one,
 * and the slope per hour of a least-squares line through the samples from the warm-up one on.
 *
 * Every iteration published: after the last iteration, the marker's icmp_sent_total must equal
 * the number of "iteration done" lines (one more when the scrape landed between an iteration's
 * publishing and its log line), and every configured target's *_sent_total 10 times that.
 *
 * Worker replacements in the soak: the daemon logs none, and netprobify_worker_restarts_total counts
 * only Workers that died or overran. Counted here: Workers stopped by reloads, from the log (an
 * installed reload stops the Workers the last iteration ran, nb_proc of its variant, or none if no
 * iteration ran since the previous reload), plus netprobify_worker_restarts_total. Cross-check: distinct
 * threads named "Worker" seen in the daemon (/proc/PID/task polled every 200 ms) that lived 1 s
 * or more; this also counts the file inventory's Worker.
 *
 * Then --replacements rounds of tests/support/worker-replacement.ts (the loop of
 * tests/privileged/worker-replacement.test.ts): a WorkerPool in this process whose every batch
 * overruns a 30 ms limit, so each round stops a Worker and starts another; fds, RSS and $TMPDIR
 * entries of this process before and after 10 warm-up rounds and at the end (about 95 ms a round).
 *
 * Verdict (exit status 1 when any fails): RSS and open fds at the end at most 10% above the level
 * after warm-up (growth only: the kernel may drop clean pages of the mapped binary under memory
 * pressure, so RSS can fall by 15 MiB with no change in the anonymous part, shown beside it),
 * $TMPDIR entries not above it, every iteration published, no failed scrape, every
 * reload installed, no ERROR line, the daemon running to the end and exiting 0 on SIGTERM; for
 * the replacements: each counted once (restarts = timeouts = rounds, no batch completing), fds
 * and $TMPDIR entries not above the level after warm-up, RSS at most 10% above it, no "did not
 * release its handles". Everything (daemon, namespace, files) is torn down at exit, on failure and
 * on SIGINT/SIGTERM (sent to this process or to the one bench-lock.ts started it from); only the
 * daemon's log is kept, its path printed, when the verdict fails.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { FileSink, Subprocess } from "bun";
import { freePort, parseExposition, type Exposition } from "../tests/support/daemon-process.ts";
import { createTestNet, type TestHost, type TestNet } from "../tests/support/testnet.ts";
import { replaceWorkers, type ProcessLevel, type ReplacementReport } from "../tests/support/worker-replacement.ts";
import { cleanUpOnExit, rootUnderBenchLock } from "./bench-lock.ts";
import { scriptArgs, type ScriptArgs } from "./script-args.ts";
import { chooseRunner, pumpLines, RUNNER_CHOICES, type Runner } from "./daemon-runner.ts";
import { openFds, statusKb, threadCount, workerThreadIds } from "./proc-stats.ts";
import { mulberry32 } from "../tests/support/prng.ts";

const root = resolve(import.meta.dir, "..");
const cli: ScriptArgs = scriptArgs("soak", { values: ["minutes", "warmup-minutes", "interval", "reload-every", "churn-every", "samples", "replacements", "runner"] });
const { argv, arg } = cli;
const numberArg = (name: string, fallback: number) => {
  const v = arg(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) cli.usage(`--${name} wants a number >= 0, got ${v}`);
  return n;
};

const MINUTES = numberArg("minutes", 30);
const WARMUP_MINUTES = numberArg("warmup-minutes", 3);
const RELOAD_EVERY_S = numberArg("reload-every", 4);
const REPLACEMENTS = numberArg("replacements", 1000);
const INTERVAL_S = numberArg("interval", 5);
const CHURN_EVERY_S = numberArg("churn-every", 3);
const RUNNER = cli.choice("runner", RUNNER_CHOICES, "auto");
/** Every sample as tab-separated values, for a closer look. */
const SAMPLES_FILE = arg("samples");
if (MINUTES <= 0 || WARMUP_MINUTES >= MINUTES) cli.usage("--minutes must be above 0 and above --warmup-minutes");
if (RELOAD_EVERY_S < 1 || CHURN_EVERY_S < 1) cli.usage("--reload-every and --churn-every want at least 1 s");
if (!Number.isInteger(INTERVAL_S) || INTERVAL_S < 2) cli.usage("--interval wants whole seconds >= 2");
if (!Number.isInteger(REPLACEMENTS)) cli.usage("--replacements wants an integer");

const TARGETS = 200;
const CHURN_POOL = 100;
const CHURN_MIN = 20;
const CHURN_MAX = 60;
const NB_PACKETS = 10;
const SAMPLE_EVERY_MS = 10_000;
/** No sample this soon after a SIGHUP: the config is loaded in a short-lived Worker, whose memory,
 * threads and fds are still there (or not yet given back) for a second or two. */
const QUIET_AFTER_SIGHUP_MS = 2000;
const SCRAPE_EVERY_MS = 250;
const SCRAPERS = 2;
const PROBE_NAME = "soak";
/** Variant A (index 0) is the one sampled. */
const VARIANTS = [
  { nbProc: 2, maxProbesPerSecond: 100_000 },
  { nbProc: 1, maxProbesPerSecond: 50_000 },
] as const;

await rootUnderBenchLock("soak", "network namespaces, raw packets");

const log = (line: string) => process.stderr.write(`soak: ${line}\n`);
const tmp = mkdtempSync(join(tmpdir(), "netprobify-soak-"));
const daemonTmp = join(tmp, "daemon-tmp");
const churnDir = join(tmp, "churn.d");
const configPath = join(tmp, "netprobify.yaml");
const logPath = join(tmp, "daemon.log");
mkdirSync(daemonTmp);
mkdirSync(churnDir);

// ---------------------------------------------------------------------------------------------
// Targets and config

type Kind = "tcp-open" | "tcp-closed" | "icmp" | "udp";
const KINDS: Kind[] = ["tcp-open", "tcp-closed", "icmp", "udp"];

interface Target {
  name: string;
  kind: Kind;
  destination: string;
}

const SENT_FAMILY: Record<Kind, string> = {
  "tcp-open": "tcpsyn_sent_total",
  "tcp-closed": "tcpsyn_sent_total",
  icmp: "icmp_sent_total",
  udp: "udp_unreachable_sent_total",
};

/** Address n (from 1) of the host's routed ranges, IPv4 (n < 255) or IPv6. */
function routedAddress(host: TestHost, family: 4 | 6, n: number): string {
  if (family === 4) {
    if (n < 1 || n > 254) throw new Error(`no IPv4 address ${n} in ${host.v4.routedPrefix}`);
    return host.v4.routedPrefix.replace(/\.0\/24$/, `.${n}`);
  }
  return host.v6.routedPrefix.replace(/::\/64$/, `::${n.toString(16)}`);
}

/** Target i of a list: kinds cycle every 2 (v4, v6), addresses from `first` on in each family. */
function target(host: TestHost, name: string, i: number, first: number): Target {
  const family = i % 2 === 0 ? 4 : 6;
  return { name, kind: KINDS[Math.floor(i / 2) % KINDS.length]!, destination: routedAddress(host, family, first + Math.floor(i / 2)) };
}

/** The fields of a target in YAML flow style, without name or groups. */
function targetFields(t: Target, host: TestHost): string {
  const port = t.kind === "tcp-open" ? host.openPort : host.closedPort;
  const type = t.kind === "icmp" ? "ICMPping" : t.kind === "udp" ? "UDPunreachable" : "TCPsyn";
  return `type: ${type}, destination: "${t.destination}"${t.kind === "icmp" ? "" : `, dst_port: ${port}`}, nb_packets: ${NB_PACKETS}, timeout: 1`;
}

function configYaml(variant: number, port: number, host: TestHost, targets: Target[]): string {
  const v = VARIANTS[variant]!;
  const lines = [
    "global:",
    `  probe_name: ${PROBE_NAME}`,
    `  interval: ${INTERVAL_S}`,
    `  nb_proc: ${v.nbProc}`,
    `  max_probes_per_second: ${v.maxProbesPerSecond}`,
    "  timeout: 60",
    // DEBUG adds one line per iteration ("iteration done") and per inventory publish, nothing per packet.
    "  logging_level: DEBUG",
    `  prometheus_port: ${port}`,
    "  prometheus_address: 127.0.0.1",
    "  dns_update_interval: 0",
    "groups:",
    "  main: {src_port_a: 65000, src_port_z: 65063}",
    "  marker: {src_port_a: 65100, src_port_z: 65100, permit_target_auto_register: false}",
    "inventories:",
    "  file:",
    `    churn: {directory: "${churnDir}"}`,
    "targets:",
    `  marker: {type: ICMPping, destination: "${host.v4.host}", nb_packets: 1, timeout: 1, auto_register_to_groups: false, explicit_groups: {register_to: [marker], exclude_from: [main]}}`,
    ...targets.map((t) => `  ${t.name}: {${targetFields(t, host)}}`),
  ];
  return `${lines.join("\n")}\n`;
}

/** Writes a file whole: the daemon and the inventory never read half of one. */
function writeAtomically(path: string, text: string): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const temp = join(dir, `.${path.slice(dir.length + 1)}.tmp`); // a dotfile: the inventory skips it
  writeFileSync(temp, text);
  renameSync(temp, path);
}

function churnJson(pool: Target[], host: TestHost, random: () => number): { text: string; count: number } {
  const count = CHURN_MIN + Math.floor(random() * (CHURN_MAX - CHURN_MIN + 1));
  const order = pool.map((t) => ({ t, k: random() })).sort((a, b) => a.k - b.k);
  const chosen = order.slice(0, count).map(({ t }) => t);
  const list = chosen.map((t) => {
    const port = t.kind === "tcp-open" ? host.openPort : host.closedPort;
    return {
      hostname: t.name,
      destination: t.destination,
      type: t.kind === "icmp" ? "ICMPping" : t.kind === "udp" ? "UDPunreachable" : "TCPsyn",
      ...(t.kind === "icmp" ? {} : { dst_port: port }),
      nb_packets: NB_PACKETS,
      timeout: 1,
      groups: ["main"],
    };
  });
  return { text: `${JSON.stringify(list, null, 1)}\n`, count };
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Sample {
  /** Seconds since the first iteration ended. */
  t: number;
  iterations: number;
  rssKb: number;
  /** RssAnon: the heaps, without the mapped binary and files. */
  anonKb: number;
  fds: number;
  threads: number;
  /** Samples in the exposition (filled by a scrape just after the /proc readings). */
  series: number;
  tmpEntries: number;
  /** Seconds since the last SIGHUP (the config is loaded in a short-lived Worker). */
  sinceReload: number;
}

function countEntries(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    n++;
    if (e.isDirectory()) n += countEntries(join(dir, e.name));
  }
  return n;
}

/** Lines of the exposition that are samples. */
function seriesIn(text: string): number {
  let n = 0;
  for (const line of text.split("\n")) if (line !== "" && !line.startsWith("#")) n++;
  return n;
}

/** Least-squares slope of y against t (seconds), per hour. */
function slopePerHour(points: { t: number; y: number }[]): number {
  const ok = points.filter((p) => Number.isFinite(p.y));
  if (ok.length < 2) return NaN;
  const mt = ok.reduce((a, p) => a + p.t, 0) / ok.length;
  const my = ok.reduce((a, p) => a + p.y, 0) / ok.length;
  let num = 0;
  let den = 0;
  for (const p of ok) {
    num += (p.t - mt) * (p.y - my);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? NaN : (num / den) * 3600;
}

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

// ---------------------------------------------------------------------------------------------
// The daemon soak

interface SoakResult {
  runner: Runner;
  host: TestHost;
  samples: Sample[];
  warmIndex: number;
  iterations: number;
  iterationSeconds: number[];
  /** Minutes from the first iteration to the last sample. */
  minutes: number;
  markerSent: number;
  /** "iteration done" lines before and after the final scrape. */
  donesAtScrape: [number, number];
  /** Configured targets whose *_sent_total is not NB_PACKETS x the marker's count. */
  sentMismatches: string[];
  staticLoss: number;
  staticSent: number;
  workerRestarts: number;
  timedOut: number;
  reloadFailedStatus: number;
  reloadsSent: number;
  reloadsInstalled: number;
  reloadsDeferred: number;
  reloadsFailed: number;
  reloadsUnanswered: number;
  workersStoppedByReloads: number;
  workersStarted: number;
  workerThreadsSeen: number;
  churnWrites: number;
  inventoryPublishes: number;
  inventoryTargetsAtEnd: number;
  lastChurnCount: number;
  scrapes: { ok: number; non200: number; failed: number; ms: number[]; firstFailure: string };
  warnings: string[];
  warningCount: number;
  errors: string[];
  errorCount: number;
  exitCode: number | null;
  stopSeconds: number;
  problem: string | null;
}

let daemon: Subprocess | null = null;

async function soak(runner: Runner, net: TestNet): Promise<SoakResult> {
  const host = net.hosts[0]!;
  const targets = Array.from({ length: TARGETS }, (_, i) => target(host, `s${String(i).padStart(3, "0")}_${KINDS[Math.floor(i / 2) % 4]!.replace("-", "")}_v${i % 2 === 0 ? 4 : 6}`, i, 1));
  // The churn's addresses come after the configured ones in each family.
  const pool = Array.from({ length: CHURN_POOL }, (_, i) => target(host, `c${String(i).padStart(3, "0")}`, i, 1 + TARGETS / 2));
  const port = await freePort();
  const random = mulberry32(9);
  const r: SoakResult = {
    runner,
    host,
    samples: [],
    warmIndex: -1,
    iterations: 0,
    iterationSeconds: [],
    minutes: NaN,
    markerSent: NaN,
    donesAtScrape: [NaN, NaN],
    sentMismatches: [],
    staticLoss: NaN,
    staticSent: NaN,
    workerRestarts: NaN,
    timedOut: NaN,
    reloadFailedStatus: NaN,
    reloadsSent: 0,
    reloadsInstalled: 0,
    reloadsDeferred: 0,
    reloadsFailed: 0,
    reloadsUnanswered: 0,
    workersStoppedByReloads: 0,
    workersStarted: 1, // the pool's first Worker, started with the daemon
    workerThreadsSeen: 0,
    churnWrites: 0,
    inventoryPublishes: 0,
    inventoryTargetsAtEnd: NaN,
    lastChurnCount: 0,
    scrapes: { ok: 0, non200: 0, failed: 0, ms: [], firstFailure: "" },
    warnings: [],
    warningCount: 0,
    errors: [],
    errorCount: 0,
    exitCode: null,
    stopSeconds: NaN,
    problem: null,
  };

  const churn = () => {
    const c = churnJson(pool, host, random);
    writeAtomically(join(churnDir, "targets.json"), c.text);
    r.churnWrites++;
    r.lastChurnCount = c.count;
  };
  churn();
  let variantWritten = 0;
  writeAtomically(configPath, configYaml(0, port, host, targets));

  // Neighbour entries for the next hop, fresh (the engine would solicit them otherwise).
  Bun.spawnSync(["ping", "-c", "1", "-W", "1", "-q", host.v4.host]);
  Bun.spawnSync(["ping", "-6", "-c", "1", "-W", "1", "-q", host.v6.host]);

  const logFile: FileSink = Bun.file(logPath).writer();
  const proc = Bun.spawn([...runner.argv, configPath], {
    cwd: tmp,
    env: { ...process.env, TMPDIR: daemonTmp },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  daemon = proc;
  const pid = proc.pid;

  // What the log says, as it arrives.
  let variantInForce = 0;
  let workersAlive = 1;
  let t0 = NaN;
  let lastSampleAt = -Infinity;
  let forceSample = false;
  let lastSighupAt = -Infinity;
  /** From a SIGHUP until the daemon says what it made of it. */
  let reloadLoading = false;
  const seriesScrapes: Promise<void>[] = [];
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };

  const takeSample = () => {
    const now = performance.now();
    let s: Sample;
    try {
      s = {
        t: (now - t0) / 1000,
        iterations: r.iterations,
        rssKb: statusKb(pid, "VmRSS"),
        anonKb: statusKb(pid, "RssAnon"),
        fds: openFds(pid),
        threads: threadCount(pid),
        series: NaN,
        tmpEntries: countEntries(daemonTmp),
        sinceReload: (now - lastSighupAt) / 1000,
      };
    } catch {
      return; // exited meanwhile
    }
    lastSampleAt = now;
    forceSample = false;
    r.samples.push(s);
    seriesScrapes.push(
      fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })
        .then((res) => res.text())
        .then((text) => void (s.series = seriesIn(text)))
        .catch(() => {}),
    );
  };

  const onLine = (line: string) => {
    logFile.write(`${line}\n`);
    if (line.includes('msg="iteration done"')) {
      r.iterations++;
      r.iterationSeconds.push(Number(/ seconds=([\d.]+)/.exec(line)?.[1] ?? NaN));
      // Every job of an iteration has targets here, so it ran nb_proc Workers.
      const n = VARIANTS[variantInForce]!.nbProc;
      if (workersAlive < n) r.workersStarted += n - workersAlive;
      workersAlive = n;
      if (r.iterations === 1) t0 = performance.now();
      const quiet = !reloadLoading && performance.now() - lastSighupAt >= QUIET_AFTER_SIGHUP_MS;
      if (variantInForce === 0 && quiet && (forceSample || performance.now() - lastSampleAt >= SAMPLE_EVERY_MS)) takeSample();
    } else if (line.includes('msg="configuration reloaded"')) {
      r.reloadsInstalled++;
      reloadLoading = false;
      // The engine options changed: every live Worker is stopped (the next iteration starts new ones).
      r.workersStoppedByReloads += workersAlive;
      workersAlive = 0;
      variantInForce = variantWritten;
    } else if (line.includes('msg="configuration accepted')) {
      r.reloadsDeferred++;
      reloadLoading = false;
    } else if (line.includes('msg="configuration reload failed"')) {
      r.reloadsFailed++;
      reloadLoading = false;
    } else if (line.includes('msg="inventory published its targets"')) {
      r.inventoryPublishes++;
    }
    if (/ level=(ERROR|CRITICAL) /.test(line) || !line.startsWith("ts=")) {
      r.errorCount++;
      if (r.errors.length < 10) r.errors.push(line);
    } else if (line.includes(" level=WARNING ")) {
      r.warningCount++;
      if (r.warnings.length < 10) r.warnings.push(line);
    }
    notify();
  };
  const pumps = Promise.all([pumpLines(proc.stdout, onLine), pumpLines(proc.stderr, onLine)]);
  void proc.exited.then(notify);

  /** Waits until `done()` holds; throws when the daemon exits or `ms` pass. */
  const waitFor = async (what: string, done: () => boolean, ms: number) => {
    const deadline = performance.now() + ms;
    while (!done()) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the daemon exited (${proc.exitCode ?? proc.signalCode}) while waiting for ${what}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no ${what} within ${(ms / 1000).toFixed(0)} s`);
      await Promise.race([new Promise<void>((res) => (wake = res)), Bun.sleep(Math.min(left, 1000))]);
    }
  };

  // Worker threads of the daemon, by thread id: first and last seen.
  const workerThreads = new Map<number, [number, number]>();
  const poller = setInterval(() => {
    try {
      const now = performance.now();
      for (const tid of workerThreadIds(pid)) {
        const seen = workerThreads.get(tid);
        if (seen) seen[1] = now;
        else workerThreads.set(tid, [now, now]);
      }
    } catch {
      // exited
    }
  }, 200);

  let ending = false;
  const loops: Promise<void>[] = [];
  const sleepUnlessEnding = async (ms: number) => {
    const until = performance.now() + ms;
    while (!ending && performance.now() < until) await Bun.sleep(Math.min(250, until - performance.now()));
  };

  /** Rewrites the config as `variant`, sends SIGHUP and waits for the reload to be installed. */
  const reloadTo = async (variant: number) => {
    writeAtomically(configPath, configYaml(variant, port, host, targets));
    variantWritten = variant;
    const installed = r.reloadsInstalled;
    const failed = r.reloadsFailed;
    reloadLoading = true;
    proc.kill("SIGHUP");
    lastSighupAt = performance.now();
    r.reloadsSent++;
    try {
      // Installed at once, or when the iteration in flight ends.
      await waitFor("reload installed", () => r.reloadsInstalled > installed || r.reloadsFailed > failed, Math.max(30_000, 3 * INTERVAL_S * 1000));
    } catch (e) {
      r.reloadsUnanswered++;
      throw e;
    }
  };

  try {
    await waitFor("first iteration", () => r.iterations >= 1, 120_000);
    log(`first iteration done (${r.iterationSeconds[0]?.toFixed(2)} s); soaking for ${MINUTES} min`);
    const endAt = t0 + MINUTES * 60_000;

    for (let k = 0; k < SCRAPERS; k++) {
      loops.push(
        (async () => {
          await Bun.sleep((k * SCRAPE_EVERY_MS) / SCRAPERS);
          while (!ending) {
            const started = performance.now();
            try {
              const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
              await res.arrayBuffer();
              if (res.status === 200) {
                r.scrapes.ok++;
                r.scrapes.ms.push(performance.now() - started);
              } else {
                r.scrapes.non200++;
                r.scrapes.firstFailure ||= `status ${res.status} at minute ${((performance.now() - t0) / 60_000).toFixed(2)}`;
              }
            } catch (e) {
              r.scrapes.failed++;
              r.scrapes.firstFailure ||= `${e instanceof Error ? e.message : String(e)} at minute ${((performance.now() - t0) / 60_000).toFixed(2)}`;
            }
            await Bun.sleep(Math.max(0, SCRAPE_EVERY_MS - (performance.now() - started)));
          }
        })(),
      );
    }
    loops.push(
      (async () => {
        while (!ending) {
          await sleepUnlessEnding(CHURN_EVERY_S * 1000);
          if (!ending) churn();
        }
      })(),
    );
    const reloads = (async () => {
      while (!ending) {
        const sent = performance.now();
        await reloadTo(1 - variantWritten);
        await sleepUnlessEnding(RELOAD_EVERY_S * 1000 - (performance.now() - sent));
      }
    })();
    loops.push(reloads);

    // The soak proper: watch the iterations go on (a stall is a failure) until the end.
    let nextProgress = t0 + 60_000;
    const stallMs = Math.max(60_000, 3 * INTERVAL_S * 1000);
    let failure: unknown = null;
    void reloads.catch((e) => (failure ??= e));
    while (performance.now() < endAt && failure === null) {
      const seen = r.iterations;
      await waitFor("iteration for a while", () => r.iterations > seen || failure !== null, stallMs);
      if (r.warmIndex < 0 && (performance.now() - t0) / 60_000 >= WARMUP_MINUTES && r.samples.length && r.samples[r.samples.length - 1]!.t >= WARMUP_MINUTES * 60) {
        r.warmIndex = r.samples.length - 1;
        log(`warm-up over at minute ${(r.samples[r.warmIndex]!.t / 60).toFixed(2)}`);
      }
      if (performance.now() >= nextProgress) {
        nextProgress += 60_000;
        const s = r.samples.findLast((x) => Number.isFinite(x.series));
        log(
          `minute ${((performance.now() - t0) / 60_000).toFixed(1)}: ${r.iterations} iterations, ${r.reloadsInstalled} reloads, ` +
            `${r.scrapes.ok} scrapes ok / ${r.scrapes.non200 + r.scrapes.failed} failed` +
            (s ? `; RSS ${(s.rssKb / 1024).toFixed(1)} MiB, ${s.fds} fds, ${s.threads} threads, ${s.series} series, ${s.tmpEntries} in $TMPDIR` : ""),
        );
      }
    }
    if (failure !== null) throw failure;

    // The end: stop changing things, put variant A back, sample the next iteration.
    ending = true;
    await reloads;
    if (variantInForce !== 0) await reloadTo(0);
    forceSample = true;
    const before = r.samples.length;
    await waitFor("final iteration under variant A", () => r.samples.length > before, Math.max(60_000, 3 * INTERVAL_S * 1000));
    if (r.warmIndex < 0) r.warmIndex = r.samples.length - 1; // a run too short for its warm-up
    const dones0 = r.iterations;
    const text = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((res) => res.text());
    r.donesAtScrape = [dones0, r.iterations];
    const e: Exposition = parseExposition(text);
    r.markerSent = e.value("icmp_sent_total", { destination: "marker" }) ?? NaN;
    let sent = 0;
    let lost = 0;
    for (const t of targets) {
      const s = e.value(SENT_FAMILY[t.kind], { destination: t.name }) ?? NaN;
      sent += s;
      lost += e.value(SENT_FAMILY[t.kind].replace("_sent_total", "_loss_total"), { destination: t.name }) ?? NaN;
      if (s !== NB_PACKETS * r.markerSent) r.sentMismatches.push(`${t.name}: ${s}`);
    }
    r.staticSent = sent;
    r.staticLoss = lost;
    r.workerRestarts = e.value("netprobify_worker_restarts_total", { probe_name: PROBE_NAME }) ?? 0;
    r.timedOut = e.value("app_process_timed_out_total", { probe_name: PROBE_NAME }) ?? 0;
    r.reloadFailedStatus = e.value("app_reload_conf_failed_status", { probe_name: PROBE_NAME }) ?? NaN;
    r.inventoryTargetsAtEnd = e.value("netprobify_inventory_targets", { probe_name: PROBE_NAME, inventory: "churn" }) ?? NaN;
    r.minutes = r.samples[r.samples.length - 1]!.t / 60;
  } catch (e) {
    r.problem = e instanceof Error ? e.message : String(e);
  } finally {
    ending = true;
    await Promise.race([Promise.allSettled(loops), Bun.sleep(60_000)]);
    await Promise.race([Promise.allSettled(seriesScrapes), Bun.sleep(10_000)]);
    clearInterval(poller);
    const stopAt = performance.now();
    proc.kill("SIGTERM");
    const ended = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!ended) {
      r.problem ??= "the daemon did not exit within 10 s of SIGTERM: SIGKILLed";
      proc.kill("SIGKILL");
      await proc.exited;
    } else {
      r.stopSeconds = (performance.now() - stopAt) / 1000;
    }
    r.exitCode = proc.exitCode;
    daemon = null;
    await Promise.race([pumps, Bun.sleep(2000)]);
    await logFile.end();
    r.workerThreadsSeen = [...workerThreads.values()].filter(([a, b]) => b - a >= 1000).length;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }) : "-");
const signed = (n: number, d = 0) => (Number.isFinite(n) ? `${n >= 0 ? "+" : ""}${fmt(n, d)}` : "-");
const mib = (kb: number) => kb / 1024;
/** Growth only: a fall (the kernel dropping clean pages of the mapped binary) is no leak. */
const notAbove = (end: number, base: number, ratio: number) => end <= base * (1 + ratio);

interface Check {
  ok: boolean;
  text: string;
}

function soakReport(r: SoakResult, checks: Check[]): void {
  if (SAMPLES_FILE) {
    const rows = r.samples.map((x) =>
      [x.t.toFixed(1), x.iterations, x.rssKb, x.anonKb, x.fds, x.threads, x.series, x.tmpEntries, x.sinceReload.toFixed(2)].join("\t"),
    );
    writeFileSync(SAMPLES_FILE, `s\titerations\trss_kb\tanon_kb\tfds\tthreads\tseries\ttmp_entries\ts_since_sighup\n${rows.join("\n")}\n`);
  }
  const first = r.samples[0];
  const warm = r.samples[r.warmIndex];
  const last = r.samples[r.samples.length - 1];
  const after = r.samples.slice(Math.max(0, r.warmIndex));
  const slope = (pick: (s: Sample) => number) => slopePerHour(after.map((s) => ({ t: s.t, y: pick(s) })));
  console.log(
    `Daemon soak: ${TARGETS} targets (TCPsyn open and closed port, ICMPping, UDPunreachable; IPv4 and IPv6; ${NB_PACKETS} packets, ` +
      `interval ${INTERVAL_S} s) and a marker on a veth test host (${r.host.ns}); a reload every ${RELOAD_EVERY_S} s alternating ` +
      `nb_proc 2 / max_probes_per_second 100000 and nb_proc 1 / 50000 (both replace every Worker); a file inventory rewritten every ` +
      `${CHURN_EVERY_S} s with ${CHURN_MIN}-${CHURN_MAX} of ${CHURN_POOL} more targets; ${SCRAPERS} scrapers every ${SCRAPE_EVERY_MS} ms. ` +
      `Samples at the end of iterations with 2 Workers, at most one per ${SAMPLE_EVERY_MS / 1000} s, none within ${QUIET_AFTER_SIGHUP_MS / 1000} s of a SIGHUP (${r.samples.length} taken).`,
  );
  console.log("");
  console.log("| | minute | iterations | RSS MiB | of which anonymous MiB | open fds | threads | series | $TMPDIR entries |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  const row = (label: string, s: Sample | undefined) =>
    s
      ? console.log(`| ${label} | ${fmt(s.t / 60, 1)} | ${fmt(s.iterations)} | ${fmt(mib(s.rssKb), 1)} | ${fmt(mib(s.anonKb), 1)} | ${s.fds} | ${s.threads} | ${fmt(s.series)} | ${s.tmpEntries} |`)
      : console.log(`| ${label} | - | - | - | - | - | - | - | - |`);
  row("start (first iteration)", first);
  row("after warm-up", warm);
  row("end", last);
  console.log(
    `| slope per hour, after warm-up (least squares, ${after.length} samples) | | | ${signed(slope((s) => mib(s.rssKb)), 1)} | ${signed(slope((s) => mib(s.anonKb)), 1)} | ${signed(slope((s) => s.fds), 1)} | ` +
      `${signed(slope((s) => s.threads), 1)} | ${signed(slope((s) => s.series), 0)} | ${signed(slope((s) => s.tmpEntries), 1)} |`,
  );
  console.log("");
  const expected = r.minutes * 60 / INTERVAL_S;
  const ms = r.scrapes.ms;
  console.log(`- Iterations: ${fmt(r.iterations)} "iteration done" lines in ${fmt(r.minutes, 1)} min (about ${fmt(expected + 1)} at one per ${INTERVAL_S} s); ` +
    `the marker's icmp_sent_total ${fmt(r.markerSent)} (${fmt(r.donesAtScrape[0])} lines before the final scrape, ${fmt(r.donesAtScrape[1])} after); ` +
    `configured targets whose *_sent_total is not ${NB_PACKETS} x that: ${r.sentMismatches.length}${r.sentMismatches.length ? ` (${r.sentMismatches.slice(0, 5).join(", ")})` : ""}; ` +
    `iteration time p50 / max ${fmt(percentile(r.iterationSeconds, 50), 2)} / ${fmt(Math.max(...r.iterationSeconds), 2)} s.`);
  console.log(`- Loss on the configured targets: ${fmt(r.staticLoss)} of ${fmt(r.staticSent)} probes (the path is lossless).`);
  console.log(
    `- Reloads: ${r.reloadsSent} sent, ${r.reloadsInstalled} installed (${r.reloadsDeferred} of them at the end of the iteration in flight), ` +
      `${r.reloadsFailed} failed, ${r.reloadsUnanswered} not installed in time; app_reload_conf_failed_status ${fmt(r.reloadFailedStatus)}.`,
  );
  console.log(
    `- Worker replacements: ${fmt(r.workersStoppedByReloads)} Workers stopped by reloads (from the log) + netprobify_worker_restarts_total ${fmt(r.workerRestarts)} ` +
      `(app_process_timed_out_total ${fmt(r.timedOut)}); Workers started ${fmt(r.workersStarted)} (from the log); ` +
      `threads named Worker seen living 1 s or more: ${fmt(r.workerThreadsSeen)} (the file inventory's included).`,
  );
  console.log(
    `- Inventory: ${r.churnWrites} rewrites, ${r.inventoryPublishes} publishes logged; netprobify_inventory_targets ${fmt(r.inventoryTargetsAtEnd)} at the end (last file: ${r.lastChurnCount}).`,
  );
  console.log(
    `- Scrapes: ${fmt(r.scrapes.ok)} answered 200, ${r.scrapes.non200} other statuses, ${r.scrapes.failed} failed${r.scrapes.firstFailure ? ` (first: ${r.scrapes.firstFailure})` : ""}; ` +
      `p50 / p99 / max ${fmt(percentile(ms, 50), 1)} / ${fmt(percentile(ms, 99), 1)} / ${fmt(ms.length ? Math.max(...ms) : NaN, 1)} ms.`,
  );
  console.log(`- Log: ${r.warningCount} WARNING and ${r.errorCount} ERROR or other lines; SIGTERM to exit ${fmt(r.stopSeconds, 2)} s, exit code ${r.exitCode ?? "-"}.`);
  for (const l of [...r.errors, ...r.warnings].slice(0, 10)) console.log(`  - ${l}`);
  if (r.problem) console.log(`- FAILED: ${r.problem}`);

  const endRss = last?.rssKb ?? NaN;
  const warmRss = warm?.rssKb ?? NaN;
  const iterationsPublished =
    r.donesAtScrape[0] <= r.markerSent && r.markerSent <= r.donesAtScrape[1] + 1 && r.sentMismatches.length === 0;
  checks.push(
    { ok: r.problem === null, text: `the soak ran to the end${r.problem ? ` (${r.problem})` : ""}` },
    { ok: notAbove(endRss, warmRss, 0.1), text: `RSS at the end ${fmt(mib(endRss), 1)} MiB, at most 10% above ${fmt(mib(warmRss), 1)} after warm-up` },
    { ok: !!last && !!warm && notAbove(last.fds, warm.fds, 0.1), text: `open fds at the end ${last?.fds ?? "-"}, at most 10% above ${warm?.fds ?? "-"} after warm-up` },
    { ok: !!last && !!warm && last.tmpEntries <= warm.tmpEntries, text: `$TMPDIR entries at the end ${last?.tmpEntries ?? "-"}, not above ${warm?.tmpEntries ?? "-"} after warm-up` },
    { ok: iterationsPublished, text: `every iteration published: marker ${fmt(r.markerSent)} for ${fmt(r.donesAtScrape[0])}-${fmt(r.donesAtScrape[1])} iterations logged, ${r.sentMismatches.length} targets off` },
    { ok: r.scrapes.non200 + r.scrapes.failed === 0 && r.scrapes.ok > 0, text: `${r.scrapes.non200 + r.scrapes.failed} failed scrapes of ${fmt(r.scrapes.ok + r.scrapes.non200 + r.scrapes.failed)}` },
    { ok: r.reloadsFailed + r.reloadsUnanswered === 0 && r.reloadsInstalled === r.reloadsSent, text: `${r.reloadsInstalled} of ${r.reloadsSent} reloads installed` },
    { ok: r.errorCount === 0, text: `${r.errorCount} ERROR lines` },
    { ok: r.exitCode === 0, text: `daemon exit code ${r.exitCode ?? "-"} on SIGTERM` },
  );
}

function replacementReport(x: ReplacementReport, checks: Check[]): void {
  console.log("");
  console.log(
    `Worker replacements on purpose (tests/support/worker-replacement.ts, this process): ${fmt(x.rounds)} rounds after ${x.warmUp} warm-up ones, ` +
      `each a batch cut at 30 ms, its Worker stopped and a new one started at the next; ${fmt(x.seconds, 0)} s.`,
  );
  console.log("");
  console.log("| | replacements | RSS MiB | open fds | $TMPDIR entries |");
  console.log("|---|---|---|---|---|");
  const row = (label: string, n: string, l: ProcessLevel) => console.log(`| ${label} | ${n} | ${fmt(l.rssBytes / 2 ** 20, 1)} | ${l.fds} | ${l.tmpFiles} |`);
  row("before warm-up (one Worker running)", "0", x.start);
  row("after warm-up", String(x.warmUp), x.afterWarmUp);
  row("end", fmt(x.warmUp + x.rounds), x.end);
  const per1000 = (pick: (l: ProcessLevel) => number) => slopePerHour(x.samples.map((s) => ({ t: s.round, y: pick(s.level) }))) / 3.6;
  console.log(
    `| slope per 1,000 replacements, after warm-up (${x.samples.length} samples) | | ${signed(per1000((l) => l.rssBytes / 2 ** 20), 1)} | ${signed(per1000((l) => l.fds), 1)} | ${signed(per1000((l) => l.tmpFiles), 1)} |`,
  );
  console.log("");
  console.log(
    `- Counted: ${x.restarts} restarts, ${x.timeouts} timeouts, ${x.completedBatches} batches that completed, ${x.unreleased.length} Workers that did not release their handles.`,
  );
  checks.push(
    { ok: x.restarts === x.rounds && x.timeouts === x.rounds && x.completedBatches === 0, text: `replacements counted once each: ${x.restarts} restarts, ${x.timeouts} timeouts for ${x.rounds} rounds` },
    { ok: x.end.fds <= x.afterWarmUp.fds && x.end.tmpFiles <= x.afterWarmUp.tmpFiles, text: `replacements: fds ${x.afterWarmUp.fds} -> ${x.end.fds}, $TMPDIR ${x.afterWarmUp.tmpFiles} -> ${x.end.tmpFiles}` },
    { ok: notAbove(x.end.rssBytes, x.afterWarmUp.rssBytes, 0.1), text: `replacements: RSS ${fmt(x.afterWarmUp.rssBytes / 2 ** 20, 1)} -> ${fmt(x.end.rssBytes / 2 ** 20, 1)} MiB, at most 10% above` },
    { ok: x.unreleased.length === 0, text: `replacements: ${x.unreleased.length} Workers did not release their handles` },
  );
}

// ---------------------------------------------------------------------------------------------
// Main

/** Set when the verdict fails: the daemon's log stays (its path is printed), nothing else. */
let keepLog = false;
const cleanup = () => {
  if (daemon && daemon.exitCode === null) daemon.kill("SIGKILL");
  try {
    if (keepLog) for (const e of readdirSync(tmp)) if (e !== "daemon.log") rmSync(join(tmp, e), { recursive: true, force: true });
    if (!keepLog) rmSync(tmp, { recursive: true, force: true });
  } catch {
    // removed already
  }
};
cleanUpOnExit(cleanup);

const startLoad = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const runner: Runner = chooseRunner(RUNNER, tmp, log, cli.usage);
log(`daemon: ${runner.description}`);

const checks: Check[] = [];
let soakResult: SoakResult | null = null;
let net: TestNet | null = null;
try {
  net = await createTestNet({ hosts: 1 });
  soakResult = await soak(runner, net);
} finally {
  await net?.teardown();
}
let replacement: ReplacementReport | null = null;
if (REPLACEMENTS > 0) {
  log(`${REPLACEMENTS} Worker replacements in this process...`);
  const replacementTmp = join(tmp, "replacement-tmp");
  mkdirSync(replacementTmp);
  replacement = await replaceWorkers({
    rounds: REPLACEMENTS,
    tmpDir: replacementTmp,
    onSample: (round, l) => {
      if (round % 250 === 0) log(`replacement ${round}: RSS ${(l.rssBytes / 2 ** 20).toFixed(1)} MiB, ${l.fds} fds, ${l.tmpFiles} in $TMPDIR`);
    },
  });
}

const commit = Bun.spawnSync(["git", "-C", root, "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const dirty = Bun.spawnSync(["git", "-C", root, "status", "--porcelain", "src"]).stdout.toString().trim() ? " + uncommitted changes under src/" : "";
console.log(`Soak: \`sudo node_modules/.bin/bun scripts/soak.ts${argv.length ? ` ${argv.join(" ")}` : ""}\``);
console.log("");
console.log(
  `Machine: ${Bun.spawnSync(["nproc"]).stdout.toString().trim()} vCPU, kernel ${Bun.spawnSync(["uname", "-r"]).stdout.toString().trim()}, ` +
    `${new Date().toISOString().slice(0, 10)}, load average at start ${startLoad}, at end ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}. ` +
    `Daemon: ${runner.description}, commit ${commit}${dirty}.`,
);
console.log("");
soakReport(soakResult, checks);
if (replacement) replacementReport(replacement, checks);
console.log("");
const failed = checks.filter((c) => !c.ok);
console.log(`Verdict: ${failed.length === 0 ? "PASS" : "FAIL"}`);
for (const c of checks) console.log(`- ${c.ok ? "ok" : "FAILED"}: ${c.text}`);
if (failed.length) {
  keepLog = true;
  console.log("");
  console.log(`The daemon's log is kept: ${logPath}`);
}
process.exit(failed.length ? 1 : 0);
