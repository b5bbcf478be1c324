/**
 * Scrape benchmark: bytes and latency of /metrics at N targets, plain and gzip (issue 10).
 *
 *   node_modules/.bin/bun scripts/bench-scrape.ts [--targets 10000] [--scrapes 20] [--iterations 3]
 *
 * No root and no network: the daemon's own Metrics and listener (makeHandler, serveMetrics) in this
 * process, fed iterations of bench-daemon.ts's config (TCPsyn targets, one group, default
 * percentiles and histogram buckets; the same 14 MB exposition at 10,000 targets) with seeded
 * RTTs. curl scrapes it from another process (`-o /dev/null`, its time_total and size_download),
 * so the client's work does not share the server's event loop:
 *
 * - plain: `Accept-Encoding: identity`;
 * - gzip: `Accept-Encoding: gzip`, the compressed bytes as they travel (curl does not decode them);
 *   the first scrape after each iteration's publish, which waits for the per-target text's
 *   compression, apart from the next ones, which reuse it;
 * - gzip decoded: `--compressed`, curl inflating as Prometheus does.
 *
 * Prints a markdown table.
 */
import { EXIT_UNAVAILABLE, EXIT_USAGE } from "../src/cli/exit.ts";
import { parseConfigText } from "../src/config/load.ts";
import { makeHandler, serveMetrics } from "../src/daemon/http.ts";
import { Metrics } from "../src/daemon/metrics.ts";
import { buildPlan } from "../src/daemon/plan.ts";
import { Resolver } from "../src/daemon/resolver.ts";
import type { SeriesSummary } from "../src/engine/stats.ts";
import { logger } from "../src/log.ts";
import { mulberry32 } from "../tests/support/prng.ts";

const argv = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench-scrape: --${name} wants a positive integer`);
    process.exit(EXIT_USAGE);
  }
  return v;
};
if (!Bun.which("curl")) {
  console.error("bench-scrape: cannot run: curl not found in PATH (scripts/setup.sh installs it)");
  process.exit(EXIT_UNAVAILABLE);
}
const TARGETS = arg("targets", 10_000);
const SCRAPES = arg("scrapes", 20);
const ITERATIONS = arg("iterations", 3);

const ipv4 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");

function configText(): string {
  const lines = [
    "global: {probe_name: bench-daemon, interval: 30, nb_proc: 2, logging_level: INFO, prometheus_port: 9, dns_update_interval: 0}",
    "groups: {bench: {src_port_a: 65000, src_port_z: 65099}}",
    "targets:",
  ];
  const base = (198 << 24) + (19 << 16) + 1;
  for (let i = 0; i < TARGETS; i++) {
    lines.push(`  t${String(i).padStart(5, "0")}: {type: TCPsyn, destination: ${ipv4(base + i)}, dst_port: 33434, nb_packets: 100, timeout: 1}`);
  }
  return `${lines.join("\n")}\n`;
}

const parsed = parseConfigText(configText(), "bench-scrape.yaml");
if (!parsed.ok) throw new Error(parsed.issues.map((i) => i.message).join("\n"));
const config = parsed.config;
const resolver = new Resolver(logger("dns"), async () => []);
resolver.sync(config);
const plan = buildPlan(config, (t) => resolver.addressesOf(t), config.global.nb_proc);
const buckets = config.global.histogram_buckets;
const rand = mulberry32(10);

/** One iteration's figures per series: 100 probes, RTTs around 50 us to a few ms. */
function results(): SeriesSummary[] {
  return plan.series.map(() => {
    const rtts = Array.from({ length: 100 }, () => 40e-6 + rand() ** 4 * 5e-3);
    const perBucket = new Array<number>(buckets.length + 1).fill(0);
    for (const r of rtts) {
      const k = buckets.findIndex((b) => r <= b);
      perBucket[k < 0 ? buckets.length : k]!++;
    }
    const sorted = [...rtts].sort((a, b) => a - b);
    return {
      sent: 100,
      lost: rand() < 0.01 ? 1 : 0,
      percentiles: config.global.percentile.map((p) => sorted[Math.min(99, Math.floor((p / 100) * 99))]!),
      buckets: perBucket,
      rttSum: rtts.reduce((a, b) => a + b, 0),
      rttCount: 100,
      worstPathLossRatio: 0,
      pathsDown: 0,
      matchFail: 0,
      portMismatch: 0,
      timeOutOfOrder: 0,
      unroutable: "",
      extra: [],
    };
  });
}

const metrics = new Metrics({ version: "bench", bun: Bun.version, libpcap: "-" });
metrics.setProbeName(config.global.probe_name);
const publish = () =>
  metrics.applyIteration({
    probeName: config.global.probe_name,
    series: plan.series,
    results: results(),
    percentiles: config.global.percentile,
    histogramBuckets: buckets,
    histogramPerDestination: false,
    targets: config.targets,
    resolutions: resolver.resolutions(),
    stats: [],
    iterationSeconds: 15,
    endedAt: Date.now() / 1000,
    degraded: false,
  });

const server = serveMetrics({ hostname: "127.0.0.1", port: 0, fetch: makeHandler(metrics, null) });
const url = `http://127.0.0.1:${server.port}/metrics`;

interface Scrape {
  ms: number;
  bytes: number;
}

async function curl(args: string[]): Promise<Scrape> {
  const p = Bun.spawn(["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", ...args, url], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`curl ${args.join(" ")} failed`);
  const [t, n] = out.trim().split(" ");
  return { ms: Number(t) * 1000, bytes: Number(n) };
}

const PLAIN = ["-H", "Accept-Encoding: identity"];
const GZIP = ["-H", "Accept-Encoding: gzip"];
const DECODED = ["--compressed"];

const runs = { plain: [] as Scrape[], gzipFirst: [] as Scrape[], gzip: [] as Scrape[], decoded: [] as Scrape[] };
for (let it = 0; it < ITERATIONS; it++) {
  await publish();
  Bun.gc(true);
  // The first gzip scrape after a publish compresses the new per-target text.
  runs.gzipFirst.push(await curl(GZIP));
  for (let i = 0; i < SCRAPES; i++) {
    runs.plain.push(await curl(PLAIN));
    runs.gzip.push(await curl(GZIP));
    runs.decoded.push(await curl(DECODED));
  }
}
server.stop(true);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))]!;
};
const fmt = (n: number, d = 1) => n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const row = (what: string, xs: Scrape[]) =>
  `| ${what} | ${fmt(xs[0]!.bytes, 0)} | ${fmt(quantile(xs.map((x) => x.ms), 0.5))} | ${fmt(Math.max(...xs.map((x) => x.ms)))} | ${xs.length} |`;

console.log(`${TARGETS.toLocaleString("en-US")} targets (${plan.series.length.toLocaleString("en-US")} series), ${ITERATIONS} iterations, Bun ${Bun.version}, curl from another process over loopback:\n`);
console.log("| scrape | bytes on the wire | p50 ms | max ms | n |");
console.log("|---|---|---|---|---|");
console.log(row("plain (`Accept-Encoding: identity`)", runs.plain));
console.log(row("gzip, first after a publish (compresses the per-target text)", runs.gzipFirst));
console.log(row("gzip, the next ones", runs.gzip));
console.log(row("gzip decoded by curl (`--compressed`)", runs.decoded));
console.log(`\nRatio: ${fmt(runs.plain[0]!.bytes / runs.gzip[0]!.bytes)}x smaller with gzip.`);
