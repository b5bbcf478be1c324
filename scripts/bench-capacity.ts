/**
 * Capacity benchmark: the largest number of targets the daemon sustains, and that load as a
 * ratio to the engine's closed loop measured in the same run.
 *
 *   sudo node_modules/.bin/bun scripts/bench-capacity.ts [--quick] [--start 2000] [--max 100000]
 *        [--steps 10] [--iterations 5] [--interval 30] [--packets 100] [--nb-proc N]
 *        [--engine-count 1000000] [--engine-reps 3] [--runner auto|dist|bun]
 *
 * Targets: scripts/gen-targets.ts's (TCPsyn to port 443, closed on the host: RST-ACK; description,
 * state, alert_level and threshold set), --packets each, under this script's global settings:
 * interval --interval, nb_proc --nb-proc (default: the machine's CPUs, nproc),
 * max_probes_per_second 10,000,000 (the schema's ceiling, far above the engine's rate, so the
 * daemon is never paced by it). The prober and the host are two namespaces (prober-net.ts).
 *
 * A count is sustained when, after one warm-up iteration, --iterations consecutive iterations
 * each: end inside the interval (app_iteration_time_seconds below it), send lag under 100 ms
 * (netprobify_send_lag_seconds), netprobify_iteration_degraded 0, every probe sent
 * (tcpsyn_sent_total grew by targets x packets), and lose nothing, checked three ways: the
 * daemon's tcpsyn_loss_total and capture drops did not grow, and the veth's counters (`ip -s
 * link` in both namespaces, where nothing but probes and answers crosses) show every probe
 * received by the host, every answer sent by it and received by the prober, and no drops. The
 * search doubles from --start until a count fails (or --max), then bisects between the last
 * count that held and the first that failed until they are within 5% (rounded to 100 targets),
 * at most --steps counts in all.
 *
 * Capacity = probes per iteration / interval at the largest count sustained. Its ratio is to the
 * engine's closed loop (closed-loop.ts: one target, one thread, unpaced) run inside the prober's
 * namespace against the same host, --engine-reps times before the search and as many after it;
 * the ratio uses their median. Goal: at least 80%.
 *
 * Root only; ip, curl. Takes /tmp/bench.lock (bench-lock.ts). A count that could not be judged
 * (a failure of the benchmark, not the daemon's) stops the search, is named under a PARTIAL RUN
 * banner, and the exit status is then 1.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXIT_FAILURE } from "../src/cli/exit.ts";
import { MAX_PROBES_PER_SECOND } from "../src/config/limits.ts";
import { describeRun, median, partialBanner, startRun } from "./bench-context.ts";
import { cleanUpOnExit, rootUnderBenchLock } from "./bench-lock.ts";
import { scriptArgs, type ScriptArgs } from "./script-args.ts";
import type { ClosedLoopFigures } from "./closed-loop.ts";
import { DaemonSession, curlScrape, generatedConfig, sumMetric } from "./daemon-session.ts";
import { chooseRunner, RUNNER_CHOICES, type Runner } from "./daemon-runner.ts";
import { targetFile } from "./gen-targets.ts";
import { statusKb } from "./proc-stats.ts";
import { MAX_TARGET_ADDRESSES, proberNetOrExit, type LinkCounters, type ProberNet } from "./prober-net.ts";

const root = resolve(import.meta.dir, "..");
const cli: ScriptArgs = scriptArgs("bench-capacity", { values: ["start", "max", "steps", "iterations", "interval", "packets", "nb-proc", "engine-count", "engine-reps", "runner"], flags: ["quick"] });
const { argv, int, quick } = cli;
const nproc = availableParallelism();
const START = int("start", quick ? 10 : 2000, 1, MAX_TARGET_ADDRESSES);
const MAX = int("max", quick ? 20 : 100_000, START, Math.min(100_000, MAX_TARGET_ADDRESSES));
const STEPS = int("steps", quick ? 2 : 10, 1, 30);
const ITERATIONS = int("iterations", quick ? 2 : 5, 1, 100);
const INTERVAL = int("interval", quick ? 3 : 30, 2, 3600);
const PACKETS = int("packets", quick ? 10 : 100, 1, 1000);
const NB_PROC = int("nb-proc", nproc, 1, 64);
const ENGINE_COUNT = int("engine-count", quick ? 20_000 : 1_000_000, 1000, 10_000_000);
const ENGINE_REPS = int("engine-reps", quick ? 1 : 3, 1, 20);
const RUNNER = cli.choice("runner", RUNNER_CHOICES, quick ? "bun" : "auto");
const MAX_LAG_S = 0.1;
const TOLERANCE = 0.05;
const GRAIN = quick ? 1 : 100;
const PORT = 8000;

await rootUnderBenchLock("bench-capacity", "network namespaces, raw packets", ["ip", "curl", "sysctl", "timeout"]);
const ctx = startRun("bench-capacity.ts", argv);
const log = (line: string) => process.stderr.write(`bench-capacity: ${line}\n`);
const tmp = mkdtempSync(join(tmpdir(), "bench-capacity-"));
let session: DaemonSession | null = null;
cleanUpOnExit(() => {
  session?.kill();
  rmSync(tmp, { recursive: true, force: true });
});

const runner: Runner = chooseRunner(RUNNER, tmp, log, cli.usage);
const pn: ProberNet = await proberNetOrExit("bench-capacity");

// ---------------------------------------------------------------------------------------------
// The engine's closed loop, inside the prober's namespace

function engineClosedLoop(): ClosedLoopFigures[] {
  const r = Bun.spawnSync(
    pn.inNs(pn.prober, [process.execPath, join(root, "scripts", "closed-loop.ts"), "--dst", "198.18.0.1", "--port", "443", "--count", String(ENGINE_COUNT), "--reps", String(ENGINE_REPS)]),
    { stdout: "pipe", stderr: "pipe" },
  );
  if (r.exitCode !== 0) throw new Error(`closed-loop.ts in ${pn.prober}: exit ${r.exitCode}: ${r.stderr.toString().trim().split("\n").pop()}`);
  return r.stdout
    .toString()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as ClosedLoopFigures);
}

// ---------------------------------------------------------------------------------------------
// One count

interface Snapshot {
  host: LinkCounters;
  prober: LinkCounters;
  sent: number;
  lost: number;
  captureDropped: number;
  sendErrors: number;
  lagS: number;
  degraded: number;
}

interface IterationCheck {
  seconds: number;
  lagS: number;
  degraded: number;
  sent: number;
  lost: number;
  hostRx: number;
  hostTx: number;
  proberRx: number;
  proberTx: number;
  drops: number;
  cpu: number;
  problems: string[];
}

interface Trial {
  targets: number;
  probes: number;
  /** "sustained", "not sustained" (the daemon's verdict), "error" (the benchmark's own failure). */
  verdict: "sustained" | "not sustained" | "error";
  reason: string;
  iterations: IterationCheck[];
  warmupS: number;
  startS: number;
  peakRssKb: number;
}

async function snapshot(): Promise<Snapshot> {
  // Counters first: read at the end of an iteration, before the scrape, while nothing crosses.
  const c = pn.counters();
  const s = await curlScrape(pn.prober, `http://127.0.0.1:${PORT}/metrics`, true);
  if (s.status !== 200) throw new Error(`/metrics answered ${s.status}`);
  const gauge = (name: string) => {
    const m = sumMetric(s.text, name);
    return m.count ? m.sum : NaN;
  };
  return {
    host: c.host,
    prober: c.prober,
    sent: gauge("tcpsyn_sent_total"),
    lost: gauge("tcpsyn_loss_total"),
    captureDropped: gauge("netprobify_capture_dropped_total"),
    sendErrors: gauge("netprobify_send_errors_total"),
    lagS: gauge("netprobify_send_lag_seconds"),
    degraded: gauge("netprobify_iteration_degraded"),
  };
}

function check(targets: number, a: Snapshot, b: Snapshot, seconds: number, cpu: number): IterationCheck {
  const drops = (l: LinkCounters) => l.rxDropped + l.txDropped + l.rxErrors + l.txErrors;
  const c: IterationCheck = {
    seconds,
    lagS: b.lagS,
    degraded: b.degraded,
    sent: b.sent - a.sent,
    lost: b.lost - a.lost,
    hostRx: b.host.rxPackets - a.host.rxPackets,
    hostTx: b.host.txPackets - a.host.txPackets,
    proberRx: b.prober.rxPackets - a.prober.rxPackets,
    proberTx: b.prober.txPackets - a.prober.txPackets,
    drops: drops(b.host) - drops(a.host) + drops(b.prober) - drops(a.prober),
    cpu,
    problems: [],
  };
  const expected = targets * PACKETS;
  const p = c.problems;
  if (!(seconds < INTERVAL)) p.push(`iteration took ${seconds.toFixed(2)} s of the ${INTERVAL} s interval`);
  if (!(c.lagS < MAX_LAG_S)) p.push(`send lag ${(c.lagS * 1000).toFixed(0)} ms`);
  if (c.degraded !== 0) p.push(`netprobify_iteration_degraded ${c.degraded}`);
  if (c.sent !== expected) p.push(`sent ${c.sent} of ${expected}`);
  if (c.lost !== 0) p.push(`the daemon counts ${c.lost} lost`);
  if (b.captureDropped - a.captureDropped !== 0) p.push(`${b.captureDropped - a.captureDropped} capture drops`);
  if (b.sendErrors - a.sendErrors !== 0) p.push(`${b.sendErrors - a.sendErrors} send errors`);
  if (c.proberTx !== c.sent) p.push(`the prober's veth sent ${c.proberTx} packets for ${c.sent} probes`);
  if (c.hostRx !== c.sent) p.push(`the host received ${c.hostRx} of ${c.sent} probes`);
  if (c.hostTx !== c.sent) p.push(`the host sent ${c.hostTx} answers to ${c.sent} probes`);
  if (c.proberRx !== c.sent) p.push(`the prober received ${c.proberRx} answers to ${c.sent} probes`);
  if (c.drops !== 0) p.push(`${c.drops} drops or errors on the veth`);
  return c;
}

/** Failures that are the daemon's verdict on a count, not the benchmark's own. */
const DAEMON_VERDICT = /the daemon exited|no end of iteration|did not serve/;

async function trial(targets: number): Promise<Trial> {
  const t: Trial = { targets, probes: targets * PACKETS, verdict: "sustained", reason: "", iterations: [], warmupS: NaN, startS: NaN, peakRssKb: NaN };
  const dir = mkdtempSync(join(tmp, `t${targets}-`));
  const config = join(dir, "netprobify.yaml");
  writeFileSync(
    config,
    generatedConfig(
      { targets, packets: PACKETS, probeName: "capacity", interval: INTERVAL, nbProc: NB_PROC, port: PORT, maxProbesPerSecond: MAX_PROBES_PER_SECOND },
      targetFile,
    ),
  );
  const s = new DaemonSession(pn.inNs(pn.prober, [...runner.argv, config]), dir);
  session = s;
  try {
    await s.waitServing(performance.now() + 600_000);
    t.startS = (s.servingAt - s.startedAt) / 1000;
    await s.waitEnds(1, s.servingAt + 3 * INTERVAL * 1000 + 120_000);
    t.warmupS = s.ends[0]!.seconds;
    let prev = await snapshot();
    for (let k = 1; k <= ITERATIONS; k++) {
      const last = s.ends[k - 1]!;
      await s.waitEnds(k + 1, last.t + Math.max(INTERVAL * 1000, 3 * last.seconds * 1000) + 60_000);
      const cur = await snapshot();
      const end = s.ends[k]!;
      const c = check(targets, prev, cur, end.seconds, end.cpu - last.cpu);
      t.iterations.push(c);
      prev = cur;
      log(`${targets} targets, iteration ${k}: ${end.seconds.toFixed(2)} s, lag ${(c.lagS * 1000).toFixed(1)} ms, ${c.problems.length ? c.problems.join("; ") : "ok"}`);
      if (c.problems.length) {
        t.verdict = "not sustained";
        t.reason = `iteration ${k}: ${c.problems.join("; ")}`;
        break;
      }
    }
    t.peakRssKb = statusKb(s.pid, "VmHWM");
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    t.verdict = DAEMON_VERDICT.test(message) ? "not sustained" : "error";
    t.reason = message;
  } finally {
    const stopped = await s.stop();
    session = null;
    if (stopped.killed) t.reason += `${t.reason ? "; " : ""}the daemon did not exit within 10 s of SIGTERM`;
    if (t.verdict !== "sustained" && s.notable.length) t.reason += `; the daemon logged: ${s.notable.slice(0, 3).join(" | ")}`;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// The search

const failures: string[] = [];
const trials: Trial[] = [];
let before: ClosedLoopFigures[] = [];
let after: ClosedLoopFigures[] = [];
try {
  log(`engine closed loop in ${pn.prober}: ${ENGINE_COUNT} probes x ${ENGINE_REPS}`);
  try {
    before = engineClosedLoop();
  } catch (e) {
    failures.push(`engine closed loop before the search: ${(e as Error).message}`);
  }
  let lo: number | null = null;
  let hi: number | null = null;
  let n = START;
  for (let step = 0; step < STEPS; step++) {
    log(`step ${step + 1} of at most ${STEPS}: ${n} targets x ${PACKETS} packets, interval ${INTERVAL} s, nb_proc ${NB_PROC}`);
    const t = await trial(n);
    trials.push(t);
    log(`${n} targets: ${t.verdict}${t.reason ? ` (${t.reason})` : ""}`);
    if (t.verdict === "error") {
      failures.push(`${n} targets could not be judged: ${t.reason}`);
      break;
    }
    if (t.verdict === "sustained") lo = n;
    else hi = n;
    let next: number;
    if (hi === null) {
      if (n >= MAX) break; // sustained at the ceiling of the search
      next = Math.min(MAX, n * 2);
    } else if (lo === null) {
      next = Math.floor(hi / 2 / GRAIN) * GRAIN;
      if (next < 1) break;
    } else {
      if (hi - lo <= Math.max(GRAIN, lo * TOLERANCE)) break;
      next = Math.round((lo + hi) / 2 / GRAIN) * GRAIN;
      if (next <= lo || next >= hi) break;
    }
    n = next;
  }
  log(`engine closed loop again: ${ENGINE_COUNT} probes x ${ENGINE_REPS}`);
  try {
    after = engineClosedLoop();
  } catch (e) {
    failures.push(`engine closed loop after the search: ${(e as Error).message}`);
  }
} finally {
  await pn.teardown();
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }) : "-");
const range = (xs: number[], d = 0) => {
  if (!xs.length) return "-";
  const [a, b] = [fmt(Math.min(...xs), d), fmt(Math.max(...xs), d)];
  return a === b ? a : `${a}-${b}`;
};
const engineRates = [...before, ...after].map((f) => f.rate);
const engineRate = median(engineRates);
const best = trials.filter((t) => t.verdict === "sustained").sort((a, b) => b.targets - a.targets)[0];
const firstFail = trials.filter((t) => t.verdict === "not sustained").sort((a, b) => a.targets - b.targets)[0];
const capacity = best ? best.probes / INTERVAL : NaN;
const out: string[] = [...partialBanner(failures)];
if (quick) out.push("QUICK MODE: a functional run with tiny counts; its figures are no capacity.", "");
out.push("Capacity: the largest number of targets the daemon sustains", "", ...describeRun(ctx), "");
out.push(
  `Daemon: ${runner.description}. Targets from scripts/gen-targets.ts (TCPsyn to port 443, closed: RST-ACK; description, state, ` +
    `alert_level and threshold set), ${PACKETS} packets each, interval ${INTERVAL} s, nb_proc ${NB_PROC} (nproc ${nproc}), ` +
    `max_probes_per_second ${fmt(MAX_PROBES_PER_SECOND)}, timeout 1 s, interval_packets 0, one group with source ports 65000-65099. ` +
    "Prober and host in two namespaces joined by one veth that carries nothing but probes and answers. " +
    `Sustained: after a warm-up iteration, ${ITERATIONS} consecutive iterations each inside the interval, send lag under ` +
    `${MAX_LAG_S * 1000} ms, netprobify_iteration_degraded 0, every probe sent, nothing lost by the daemon's count nor by the veth's ` +
    "(`ip -s link` in each namespace: probes received by the host = answers it sent = answers the prober received = probes sent, no drops).",
  "",
);
out.push(
  "| step | targets | probes / iteration | verdict | iteration s | send lag ms (max) | CPU-s / iteration | sent = host rx = host tx = prober rx | peak RSS MB | start to serving s | why not |",
  "|---|---|---|---|---|---|---|---|---|---|---|",
);
trials.forEach((t, i) => {
  const it = t.iterations;
  const counted = it.length ? (it.every((c) => c.sent === c.hostRx && c.sent === c.hostTx && c.sent === c.proberRx && c.drops === 0) ? `yes (${fmt(it.reduce((a, c) => a + c.sent, 0))} probes)` : "no") : "-";
  out.push(
    `| ${i + 1} | ${fmt(t.targets)} | ${fmt(t.probes)} | ${t.verdict} | ${range(it.map((c) => c.seconds), 2)} | ${it.length ? fmt(Math.max(...it.map((c) => c.lagS)) * 1000, 1) : "-"} | ` +
      `${range(it.map((c) => c.cpu), 1)} | ${counted} | ${fmt(t.peakRssKb / 1024)} | ${fmt(t.startS, 1)} | ${t.reason || "-"} |`,
  );
});
out.push("");
out.push(
  `Engine closed loop (closed-loop.ts in the prober's namespace, one target 198.18.0.1:443, ${fmt(ENGINE_COUNT)} probes unpaced, one thread), ` +
    `probes/s: before the search ${before.map((f) => fmt(f.rate)).join(", ") || "-"}; after it ${after.map((f) => fmt(f.rate)).join(", ") || "-"}; ` +
    `median ${fmt(engineRate)}; unanswered ${fmt([...before, ...after].reduce((a, f) => a + f.lost, 0))}, capture drops ${fmt([...before, ...after].reduce((a, f) => a + f.dropped, 0))}.`,
  "",
);
if (best) {
  const ratio = capacity / engineRate;
  out.push(
    `Capacity: ${fmt(best.targets)} targets x ${PACKETS} packets per ${INTERVAL} s = ${fmt(capacity)} probes/s sustained, ` +
      `${Number.isFinite(ratio) ? `${(ratio * 100).toFixed(0)}%` : "-"} of the engine's closed loop (goal: at least 80%: ${ratio >= 0.8 ? "met" : "NOT met"}). ` +
      (firstFail ? `The smallest count not sustained: ${fmt(firstFail.targets)} (${firstFail.reason}).` : `No count up to ${fmt(best.targets)} failed (--max ${fmt(MAX)}).`),
  );
} else {
  out.push(`Capacity: no count was sustained (the smallest tried: ${fmt(Math.min(...trials.map((t) => t.targets)))}).`);
}
out.push(
  "",
  "What the ratio compares: the daemon (nb_proc Workers; the planner spreads target starts over 90% of the interval's slack, " +
    `(${INTERVAL} s - 1 s timeout) x 0.9, so an iteration's probes leave within that window and probes per iteration / interval is at ` +
    "most about 0.87 of the rate the daemon sends at) with one engine thread sending one target's probes back to back. What it does not " +
    "measure: a real network (the host is the kernel's RST path on a veth, on the same CPUs as the prober), other probe types, or " +
    "many groups and source ports per target.",
);
console.log(out.join("\n"));
if (failures.length) process.exit(EXIT_FAILURE);
