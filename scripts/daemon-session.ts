/**
 * One daemon under measurement, as bench-daemon.ts runs it but inside a network namespace (see
 * prober-net.ts): started with `ip netns exec` (which execs, so the pid is the daemon's), its log
 * read line by line for the ends of iterations (the DEBUG "iteration done" line, whose `seconds`
 * is the value of app_iteration_time_seconds) with the CPU and RSS of the process at each, and
 * scraped with curl inside the namespace. Shared by bench-capacity.ts and bench-cost.ts.
 */
import { readFileSync, rmSync } from "node:fs";
import type { Subprocess } from "bun";
import { cpuSeconds, statusKb } from "./proc-stats.ts";

export interface IterationEnd {
  /** performance.now() when the line arrived. */
  t: number;
  seconds: number;
  /** CPU seconds of the daemon process so far, and its RSS, when the line arrived. */
  cpu: number;
  rssKb: number;
}

/** Sums a metric family's samples (name followed by labels or a space). */
export function sumMetric(text: string, name: string): { sum: number; count: number } {
  let sum = 0;
  let count = 0;
  const re = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, "gm");
  for (let m = re.exec(text); m; m = re.exec(text)) {
    sum += Number(m[2]);
    count++;
  }
  return { sum, count };
}

export interface Scrape {
  status: number;
  /** Bytes on the wire (compressed for gzip). */
  bytes: number;
  /** curl's time_total. */
  ms: number;
  text: string;
}

/**
 * GET /metrics from inside namespace `ns` with curl: gzip as Prometheus asks for it (the bytes are
 * the compressed ones; the text is decoded) or plain (no Accept-Encoding).
 */
let scrapeFiles = 0;
export async function curlScrape(ns: string, url: string, gzip: boolean, keepText = true): Promise<Scrape> {
  const file = `/tmp/netprobify-scrape-${process.pid}-${scrapeFiles++}`;
  const argv = ["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "60", "-o", file, "-w", "%{http_code} %{size_download} %{time_total}", ...(gzip ? ["-H", "Accept-Encoding: gzip"] : []), url];
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    rmSync(file, { force: true });
    throw new Error(`curl ${url} in ${ns}: exit ${code}: ${stderr.trim()}`);
  }
  const [status, bytes, seconds] = stdout.trim().split(" ").map(Number) as [number, number, number];
  let text = "";
  if (keepText) {
    const raw = readFileSync(file);
    text = gzip ? new TextDecoder().decode(Bun.gunzipSync(raw)) : raw.toString();
  }
  rmSync(file, { force: true });
  return { status, bytes, ms: seconds * 1000, text };
}

export class DaemonSession {
  readonly ends: IterationEnd[] = [];
  /** Lines at WARNING and above, and anything that is not a log line. */
  readonly notable: string[] = [];
  readonly lines: string[] = [];
  readonly startedAt = performance.now();
  /** When the daemon logged "starting" (its config loaded) and "serving metrics". */
  startingAt = NaN;
  servingAt = NaN;
  readonly #proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly #pumps: Promise<void[]>;
  #wake: (() => void) | null = null;

  constructor(argv: string[], cwd: string) {
    this.#proc = Bun.spawn(argv, { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    this.#pumps = Promise.all([this.#pump(this.#proc.stdout), this.#pump(this.#proc.stderr)]);
    void this.#proc.exited.then(() => this.#notify());
  }

  get pid(): number {
    return this.#proc.pid;
  }

  get exited(): boolean {
    return this.#proc.exitCode !== null || this.#proc.signalCode !== null;
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #onLine(line: string): void {
    this.lines.push(line);
    if (line.includes('msg="iteration done"')) {
      const seconds = Number(/ seconds=([\d.]+)/.exec(line)?.[1] ?? NaN);
      let cpu = NaN;
      let rssKb = NaN;
      try {
        cpu = cpuSeconds(this.pid);
        rssKb = statusKb(this.pid, "VmRSS");
      } catch {
        /* exited meanwhile */
      }
      this.ends.push({ t: performance.now(), seconds, cpu, rssKb });
    } else if (/ msg="?starting"? /.test(line) && Number.isNaN(this.startingAt)) {
      this.startingAt = performance.now();
    } else if (line.includes('msg="serving metrics"')) {
      this.servingAt = performance.now();
    } else if (/level=(WARNING|ERROR|CRITICAL)/.test(line) || !line.startsWith("ts=")) {
      this.notable.push(line);
    }
    this.#notify();
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        this.#onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
    if (buf) this.#onLine(buf);
  }

  /** Waits until `n` iterations have ended; throws when the daemon exits or `deadline` passes. */
  async waitEnds(n: number, deadline: number): Promise<void> {
    while (this.ends.length < n) {
      if (this.exited) throw new Error(`the daemon exited (${this.#proc.exitCode ?? this.#proc.signalCode}) after ${this.ends.length} iterations: ${this.notable.slice(-3).join(" | ")}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no end of iteration ${n} within the deadline (${this.ends.length} ended)`);
      await Promise.race([new Promise<void>((res) => (this.#wake = res)), Bun.sleep(Math.min(left, 1000))]);
    }
  }

  /** Waits until the daemon logs that it serves /metrics. */
  async waitServing(deadline: number): Promise<void> {
    while (Number.isNaN(this.servingAt)) {
      if (this.exited) throw new Error(`the daemon exited (${this.#proc.exitCode ?? this.#proc.signalCode}) before serving: ${this.notable.slice(-3).join(" | ")}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("the daemon did not serve /metrics within the deadline");
      await Promise.race([new Promise<void>((res) => (this.#wake = res)), Bun.sleep(Math.min(left, 1000))]);
    }
  }

  /** SIGTERM, then SIGKILL after 10 s; returns the exit code and how long it took. */
  async stop(): Promise<{ code: number | null; seconds: number; killed: boolean }> {
    const t0 = performance.now();
    if (this.exited) return { code: this.#proc.exitCode, seconds: 0, killed: false };
    this.#proc.kill("SIGTERM");
    const ended = await Promise.race([this.#proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!ended) {
      this.#proc.kill("SIGKILL");
      await this.#proc.exited;
    }
    await Promise.race([this.#pumps, Bun.sleep(2000)]);
    return { code: this.#proc.exitCode, seconds: (performance.now() - t0) / 1000, killed: !ended };
  }

  /** For a process 'exit' handler: no waiting. */
  kill(): void {
    if (!this.exited) this.#proc.kill("SIGKILL");
  }
}

export interface GeneratedConfigOptions {
  targets: number;
  packets: number;
  probeName: string;
  interval: number;
  nbProc: number;
  port: number;
  /** Unset: the default (100,000). */
  maxProbesPerSecond?: number;
  /** Set: global.per_target_series false with this global.worst_targets (the bounded series). */
  worstTargets?: number;
}

/**
 * A config from scripts/gen-targets.ts's targets (its bytes after `targets:`, unchanged) under
 * the benchmark's own global settings and group: DEBUG logging (one line per iteration, nothing
 * per packet), the metrics port on the namespace's loopback, no DNS refresh.
 */
export function generatedConfig(o: GeneratedConfigOptions, targetFile: (opts: { targets: number; packets: number }) => string): string {
  const generated = targetFile({ targets: o.targets, packets: o.packets });
  const at = generated.indexOf("\ntargets:\n");
  if (at < 0) throw new Error("gen-targets.ts wrote no `targets:` line");
  const head = [
    "global:",
    `  probe_name: ${o.probeName}`,
    `  interval: ${o.interval}`,
    `  nb_proc: ${o.nbProc}`,
    ...(o.maxProbesPerSecond === undefined ? [] : [`  max_probes_per_second: ${o.maxProbesPerSecond}`]),
    ...(o.worstTargets === undefined ? [] : ["  per_target_series: false", `  worst_targets: ${o.worstTargets}`]),
    "  logging_level: DEBUG",
    `  prometheus_port: ${o.port}`,
    "  prometheus_address: 127.0.0.1",
    "  dns_update_interval: 0",
    "groups:",
    "  dc:",
    "    src_port_a: 65000",
    "    src_port_z: 65099",
  ];
  return `${head.join("\n")}${generated.slice(at)}`;
}
