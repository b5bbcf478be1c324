/**
 * The daemon as its users run it: a separate process (`bun src/main.ts ARGS`) with its own
 * working directory, scraped over HTTP. Starts it with a config written into a fresh temp
 * directory and a free metrics port, waits for /metrics to answer, parses the exposition text
 * strictly (every sample under a TYPE, no duplicate series), sends signals, keeps its stdout and
 * stderr, and always kills it: stop() in afterAll, and an exit handler for a test run that ends
 * without it.
 *
 * Config text may hold `__PORT__`, replaced by the metrics port the helper picked.
 */
import { type Subprocess } from "bun";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REPO = join(import.meta.dir, "..", "..");
export const MAIN = join(REPO, "src", "main.ts");

// ---------------------------------------------------------------------------------------------
// Exposition text

export interface Sample {
  /** The sample's own name (histograms: x_bucket, x_sum, x_count). */
  name: string;
  /** The family it belongs to: the name of its TYPE line. */
  family: string;
  labels: Record<string, string>;
  value: number;
}

export interface FamilyInfo {
  name: string;
  type: string;
  help: string | null;
}

export class Exposition {
  constructor(
    readonly text: string,
    readonly families: Map<string, FamilyInfo>,
    readonly samples: Sample[],
  ) {}

  /** Samples named `name` whose labels include every pair of `match`. */
  get(name: string, match: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  }

  /** The value of the single sample named `name` matching `match`; undefined when there is none; throws when several match. */
  value(name: string, match: Record<string, string> = {}): number | undefined {
    const found = this.get(name, match);
    if (found.length > 1) throw new Error(`${name} ${JSON.stringify(match)} matches ${found.length} series`);
    return found[0]?.value;
  }

  /** Samples of a family (for a histogram: its _bucket, _sum and _count). */
  ofFamily(family: string): Sample[] {
    return this.samples.filter((s) => s.family === family);
  }

  /** Every sample carrying label `name` with value `value`. */
  withLabel(name: string, value: string): Sample[] {
    return this.samples.filter((s) => s.labels[name] === value);
  }
}

function parseValue(text: string, line: string): number {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`bad sample value "${text}" in: ${line}`);
  return Number(text);
}

/** `{a="x",b="y\"z"}` from position i of line; returns the labels and the index after `}`. */
function parseLabels(line: string, i: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  i++; // {
  for (;;) {
    while (line[i] === " ") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!m) throw new Error(`bad label name at column ${i + 1} in: ${line}`);
    const name = m[0];
    i += name.length;
    if (line[i] !== "=" || line[i + 1] !== '"') throw new Error(`expected ="..." after label ${name} in: ${line}`);
    i += 2;
    let value = "";
    for (;;) {
      const c = line[i];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === "\\") {
        const n = line[i + 1];
        if (n === "n") value += "\n";
        else if (n === "\\" || n === '"') value += n;
        else throw new Error(`bad escape \\${n} in: ${line}`);
        i += 2;
        continue;
      }
      if (c === '"') {
        i++;
        break;
      }
      value += c;
      i++;
    }
    if (name in labels) throw new Error(`label ${name} repeated in: ${line}`);
    labels[name] = value;
    if (line[i] === ",") i++;
    else if (line[i] !== "}") throw new Error(`expected , or } after label ${name} in: ${line}`);
  }
}

const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"] as const;

/**
 * Parses Prometheus text exposition (format 0.0.4) strictly: a malformed line, a sample before
 * or without its family's TYPE line, a TYPE or HELP given twice, or the same series twice throws.
 * Comment lines other than HELP and TYPE are ignored, as are blank lines.
 */
export function parseExposition(text: string): Exposition {
  const families = new Map<string, FamilyInfo>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const helps = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$/.exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest = ""] = m as unknown as [string, string, string, string?];
      if (kind === "TYPE") {
        if (families.get(name)?.type) throw new Error(`TYPE of ${name} given twice`);
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) throw new Error(`bad TYPE in: ${line}`);
        families.set(name, { name, type: rest, help: families.get(name)?.help ?? null });
      } else {
        if (helps.has(name)) throw new Error(`HELP of ${name} given twice`);
        helps.add(name);
        const f = families.get(name);
        if (f) f.help = rest;
        else families.set(name, { name, type: "", help: rest });
      }
      continue;
    }
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const name = m[0];
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === "{") ({ labels, end: i } = parseLabels(line, i));
    if (line[i] !== " ") throw new Error(`expected a space before the value in: ${line}`);
    const parts = line.slice(i + 1).trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2) throw new Error(`bad value/timestamp in: ${line}`);
    const value = parseValue(parts[0]!, line);
    let family = families.get(name)?.type ? name : undefined;
    if (!family) {
      for (const suffix of HISTOGRAM_SUFFIXES) {
        if (!name.endsWith(suffix)) continue;
        const base = name.slice(0, -suffix.length);
        const t = families.get(base)?.type;
        if (t === "histogram" || (t === "summary" && suffix !== "_bucket")) family = base;
      }
    }
    if (!family) throw new Error(`sample ${name} has no TYPE line before it`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))}`;
    if (seen.has(key)) throw new Error(`series given twice: ${line}`);
    seen.add(key);
    samples.push({ name, family, labels, value });
  }
  for (const f of families.values()) if (!f.type) throw new Error(`HELP of ${f.name} without a TYPE`);
  return new Exposition(text, families, samples);
}

/** Stable text of a label set, for comparing sets of series. */
export function labelKey(labels: Record<string, string>, omit: string[] = []): string {
  return Object.keys(labels)
    .filter((k) => !omit.includes(k))
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(",");
}

// ---------------------------------------------------------------------------------------------
// Processes

/** A TCP port nobody listens on right now (bound to port 0 by the kernel, then released). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/** The environment a daemon gets: ours without the metrics credentials, plus `extra`. */
function daemonEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "PROM_USER" && k !== "PROM_PASSWORD") env[k] = v;
  return { ...env, ...extra };
}

export interface RunResult {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs `bun src/main.ts ARGS` to completion (check, bad configs): exit code and output. */
/**
 * One line of src/log.ts's format (`ts=... level=ERROR module=config msg="..." key=value`) as its
 * fields, values unquoted; null for a line of any other form.
 */
export function parseLogLine(line: string): Record<string, string> | null {
  const fields: Record<string, string> = {};
  const re = /\s*([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)/y;
  let at = 0;
  while (at < line.length) {
    re.lastIndex = at;
    const m = re.exec(line);
    if (!m) return null;
    fields[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
    at = re.lastIndex;
  }
  return fields.ts && fields.level && fields.module && "msg" in fields ? fields : null;
}

export async function runNetprobify(args: string[], opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult> {
  const proc = Bun.spawn([process.execPath, MAIN, ...args], {
    cwd: opts.cwd,
    env: daemonEnv(opts.env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc);
  installExitHandler();
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  clearTimeout(timer);
  live.delete(proc);
  return { code, signal: proc.signalCode === null ? null : String(proc.signalCode), stdout, stderr };
}

export interface StartOptions {
  /** YAML written to DIR/configName before the start (`__PORT__` replaced); null: no file. */
  config?: string | null;
  /** Default netprobify.yaml. */
  configName?: string;
  /** Other files to write into the working directory (`__PORT__` replaced too). */
  files?: Record<string, string>;
  /** Command-line arguments; default: the config file's path. A function gets that path. */
  args?: string[] | ((configPath: string) => string[]);
  env?: Record<string, string>;
  /** The metrics port to put in the config and scrape; default a free one. */
  port?: number;
  /** Where to scrape from; default 127.0.0.1. */
  metricsHost?: string;
  /** Run this executable (the compiled binary) instead of `bun src/main.ts`. */
  bin?: string;
  /** Use this directory as the working directory (kept files, e.g. a restart); default a fresh one. */
  dir?: string;
  /** Run inside this network namespace (`ip netns exec NS`, which execs: the pid is the daemon's). */
  netns?: string;
  /** Run as this user and group, no supplementary groups (`setpriv`, which execs: the pid is the daemon's). */
  user?: { uid: number; gid: number };
  /** Run under this command, which execs the rest (e.g. setpriv with a capability set): the pid is the daemon's. */
  wrap?: string[];
  /** Wait for /metrics to answer (any status) before returning; default true. */
  waitReady?: boolean;
  readyTimeoutMs?: number;
}

export interface ScrapeOptions {
  /** Basic credentials, "user:password". */
  auth?: string;
  timeoutMs?: number;
}

export class DaemonProcess {
  #stdout = "";
  #stderr = "";
  #exit: { code: number; signal: string | null } | null = null;
  readonly #exited: Promise<{ code: number; signal: string | null }>;

  constructor(
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
    readonly dir: string,
    readonly configPath: string,
    readonly port: number,
    readonly metricsHost: string,
  ) {
    const drain = async (stream: ReadableStream<Uint8Array>, into: "out" | "err") => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        const t = dec.decode(chunk, { stream: true });
        if (into === "out") this.#stdout += t;
        else this.#stderr += t;
      }
    };
    const drained = Promise.all([drain(proc.stdout, "out"), drain(proc.stderr, "err")]).catch(() => {});
    this.#exited = proc.exited.then(async (code) => {
      await drained;
      this.#exit = { code, signal: proc.signalCode === null ? null : String(proc.signalCode) };
      live.delete(proc);
      return this.#exit;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The complete log lines written so far (stderr). */
  get logLines(): string[] {
    const lines = this.#stderr.split("\n");
    return lines.slice(0, -1);
  }

  /** Null while it runs. */
  get exit(): { code: number; signal: string | null } | null {
    return this.#exit;
  }

  /** Whether the process still runs (not a zombie either). */
  get alive(): boolean {
    return this.#exit === null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get url(): string {
    const host = this.metricsHost.includes(":") ? `[${this.metricsHost}]` : this.metricsHost;
    return `http://${host}:${this.port}`;
  }

  /** A plain request to the metrics listener. */
  async fetch(path = "/metrics", init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> {
    const { timeoutMs = 10_000, ...rest } = init;
    return fetch(`${this.url}${path}`, { ...rest, signal: AbortSignal.timeout(timeoutMs) });
  }

  /** GET /metrics, which must answer 200, parsed. */
  async scrape(opts: ScrapeOptions = {}): Promise<Exposition> {
    const headers: Record<string, string> = {};
    if (opts.auth) headers.authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`;
    const res = await this.fetch("/metrics", { headers, timeoutMs: opts.timeoutMs });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${text.slice(0, 200)}`);
    return parseExposition(text);
  }

  /**
   * Scrapes every `everyMs` until `check` returns something other than undefined/false, and
   * returns that. Fails with `what`, the last scrape's relevant lines and the log when the
   * daemon exits or `timeoutMs` passes.
   */
  async waitFor<T>(
    what: string,
    check: (e: Exposition) => T | undefined | false | null,
    opts: { timeoutMs?: number; everyMs?: number; auth?: string } = {},
  ): Promise<T> {
    const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
    let last: Exposition | null = null;
    let lastError = "";
    for (;;) {
      if (!this.alive) throw new Error(`daemon exited (${JSON.stringify(this.#exit)}) while waiting for ${what}; log:\n${this.#stderr}`);
      try {
        last = await this.scrape({ auth: opts.auth });
        const r = check(last);
        if (r !== undefined && r !== false && r !== null) return r;
      } catch (e) {
        lastError = e instanceof Error ? e.message : String(e);
      }
      if (Date.now() > deadline) {
        const series = last ? last.text.split("\n").filter((l) => !l.startsWith("#") && !l.startsWith("process_")).join("\n") : "(no scrape)";
        throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError})` : ""}\nlast scrape:\n${series}\nlog:\n${this.#stderr}`);
      }
      await Bun.sleep(opts.everyMs ?? 100);
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  /** Waits for the exit; null when it has not exited within timeoutMs. */
  async waitExit(timeoutMs: number): Promise<{ code: number; signal: string | null } | null> {
    return Promise.race([this.#exited, Bun.sleep(timeoutMs).then(() => null)]);
  }

  /** Replaces the config file atomically (a reload never reads half a file); `__PORT__` replaced. */
  writeConfig(text: string, path = this.configPath): void {
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, text.replaceAll("__PORT__", String(this.port)));
    renameSync(tmp, path);
  }

  /** SIGKILLs it if it still runs, waits for it, removes its directory (unless `keepDir`). Idempotent. */
  async stop(opts: { keepDir?: boolean } = {}): Promise<void> {
    if (this.alive) this.proc.kill("SIGKILL");
    await this.waitExit(10_000);
    if (!opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts the daemon in a fresh temporary working directory. */
export async function startDaemon(opts: StartOptions = {}): Promise<DaemonProcess> {
  const port = opts.port ?? (await freePort());
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "netprobify-daemon-"));
  const configPath = join(dir, opts.configName ?? "netprobify.yaml");
  const sub = (t: string) => t.replaceAll("__PORT__", String(port));
  if (opts.config !== undefined && opts.config !== null) writeFileSync(configPath, sub(opts.config));
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), sub(text));
  const args = typeof opts.args === "function" ? opts.args(configPath) : (opts.args ?? [configPath]);
  const command = opts.bin ? [opts.bin] : [process.execPath, MAIN];
  const asUser = opts.user ? ["setpriv", `--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, "--clear-groups"] : [];
  const argv = [...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []), ...asUser, ...(opts.wrap ?? []), ...command, ...args];
  const proc = Bun.spawn(argv, { cwd: dir, env: daemonEnv(opts.env), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  live.add(proc);
  installExitHandler();
  const d = new DaemonProcess(proc, dir, configPath, port, opts.metricsHost ?? "127.0.0.1");
  if (opts.waitReady ?? true) {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
    for (;;) {
      if (!d.alive) {
        await d.waitExit(2000);
        const exit = d.exit;
        await d.stop();
        throw new Error(`daemon exited (${JSON.stringify(exit)}) before /metrics answered; stderr:\n${d.stderr}`);
      }
      try {
        await d.fetch("/", { timeoutMs: 1000 });
        break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        await d.stop();
        throw new Error(`/metrics on ${d.url} did not answer within ${opts.readyTimeoutMs ?? 20_000} ms; stderr:\n${d.stderr}`);
      }
      await Bun.sleep(50);
    }
  }
  return d;
}

// Every process started here dies with the test process, whatever way it ends.
const live = new Set<Subprocess>();
let handlerInstalled = false;

function installExitHandler(): void {
  if (handlerInstalled) return;
  handlerInstalled = true;
  process.on("exit", () => {
    for (const p of live) {
      try {
        p.kill("SIGKILL");
      } catch {
        /* gone */
      }
    }
  });
}
