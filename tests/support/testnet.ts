/**
 * Test hosts with real kernel stacks for end-to-end tests: one network namespace per host, joined
 * to the root namespace by a veth pair. Every host has an open TCP port, closed ports answered by
 * the kernel, a routed range behind it (the namespace answers for every address in it, as a host
 * behind a datacenter router would), and a blackhole address whose probes arrive and are dropped
 * silently.
 *
 * Addresses (X is a per-host subnet number in 100..199 chosen per run):
 *   root side  198.18.X.1/24   fd00:18:X::1/64        host side 198.18.X.2/24  fd00:18:X::2/64
 *   routed     198.19.X.0/24   fd00:19:X::/64   (root: via the host; host: local dev lo)
 *   blackhole  198.18.X.99     fd00:18:X::99    (root: via the host; host: blackhole)
 *
 * Names: a run prefix `np` + 4 hex digits; namespaces `<prefix>n<i>`, root-side veth
 * `<prefix>r<i>`, host-side veth `<prefix>h<i>`. Ownership of a prefix and of each subnet number
 * is recorded under STATE_DIR so that concurrent runs (two test files, two processes) never pick
 * the same subnet and sweepStale() only removes what a dead process left behind.
 *
 * Layer-3 hosts (addTunHost): a TUN device in the root namespace (no link header, DLT_RAW) driven
 * by tun-responder.ts, which answers for every address behind it as a host would. Y is claimed
 * from the same pool as X, so no prefix of one host overlaps another's:
 *   root side  198.18.Y.1/24   fd00:19:Y::1/64        "host"     198.18.Y.2   fd00:19:Y::2
 *   (any other address of the two prefixes answers too: the kernel routes it into the TUN)
 * Device `<prefix>t<i>`; the responder is a child process (killed at teardown, recorded so that
 * sweepStale() kills it after a SIGKILLed run: it lives in the root namespace, not in one of ours).
 *
 * Root-namespace routes a test needs (an unreachable or blackhole route for "no way out") are
 * added with addRoute() and removed at teardown, because routes without a device outlive links.
 */
import { spawn as spawnChild, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readPcapFile, type PcapRecord } from "./pcap-file.ts";

export const STATE_DIR = "/run/netprobify-testnet";
export const OPEN_PORT = 8443;
export const CLOSED_PORT = 33434;
/** Namespaces this helper creates: np + 4 hex (the run prefix) + n + host index. */
export const NAMESPACE_PATTERN = /^np[0-9a-f]{4}n\d+$/;
/** Root-side veth ends (r) and TUN devices (t). */
const ROOT_IF_PATTERN = /^np[0-9a-f]{4}[rt]\d+$/;
const SUBNET_MIN = 100;
const SUBNET_MAX = 199;
const LISTENER = join(import.meta.dir, "tcp-listener.ts");
const TUN_RESPONDER = join(import.meta.dir, "tun-responder.ts");

export interface HostAddresses {
  /** Root-side address on the veth (the prober's source). */
  root: string;
  /** Host-side address on the veth. */
  host: string;
  /** CIDR of the range routed to the host, answered by it for every address. */
  routedPrefix: string;
  routedExample: string;
  /** Routed to the host and dropped there silently. */
  blackhole: string;
}

export interface TestHost {
  index: number;
  /** The X of 198.18.X.0/24. */
  subnet: number;
  ns: string;
  rootIf: string;
  rootIfindex: number;
  hostIf: string;
  rootMac: string;
  hostMac: string;
  v4: HostAddresses;
  v6: HostAddresses;
  openPort: number;
  closedPort: number;
}

export interface TunHostOptions {
  /** The port answered with SYN-ACK (default OPEN_PORT); every other port gets RST-ACK. */
  openPort?: number;
  /** Fixed delay of every answer. */
  delayMs?: number;
  /** Seeded random loss ratio, 0..1. */
  loss?: number;
  seed?: number;
  /** Probes from these source ports are dropped (one ECMP path down). */
  dropSrcPorts?: number[];
}

export interface TunHost {
  kind: "tun";
  index: number;
  /** The Y of 198.18.Y.0/24 and fd00:19:Y::/64. */
  subnet: number;
  ifname: string;
  ifindex: number;
  /** root: the TUN's own address (the prober's source); host: an address answered behind it. */
  v4: { root: string; host: string };
  v6: { root: string; host: string };
  openPort: number;
  closedPort: number;
  /** The responder's process id. */
  pid: number;
  /** JSON lines, one per probe the responder saw. */
  logFile: string;
  /** The responder's decisions so far. */
  readLog(): TunLogEvent[];
}

/** One line of tun-responder.ts --log: what it received and what it did with it. */
export interface TunLogEvent {
  src: string;
  dst: string;
  /** IP protocol number of the probe (6, 17, 1 or 58). */
  proto: number;
  srcPort: number;
  /** TCP: the SYN's sequence number; ICMP: id << 16 | seq; UDP: IPv4 ID or IPv6 payload tag. */
  ident: number;
  action: "answer" | "drop";
  delayMs?: number;
}

export interface ExecResult {
  code: number;
  /** Set when the process was ended by a signal (code is then 128 + its number, or -1). */
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface CaptureOptions {
  /** Capture on the host's side of the veth (default) or on the root side. */
  side?: "host" | "root";
  /**
   * "any": every interface of that side's namespace (Linux cooked frames) instead of the veth
   * end alone; such a capture outlives the veth, for tests that delete it while capturing.
   */
  device?: "veth" | "any";
}

export interface StopOptions {
  /**
   * Before stopping, wait until the capture file has not grown for this long (default 50 ms), so
   * packets already on the wire are written: tcpdump discards what is still in its ring at SIGINT.
   */
  settleMs?: number;
}

export interface Capture {
  readonly host: TestHost | TunHost;
  readonly iface: string;
  readonly filter: string;
  /** The pcap file tcpdump writes (kept until teardown, for debugging). */
  readonly file: string;
  /** From tcpdump's exit summary; null until stop() returns. */
  readonly droppedByKernel: number | null;
  readonly capturedCount: number | null;
  /** LINKTYPE of the file; null until stop() returns. */
  readonly linktype: number | null;
  /** Stops tcpdump and returns the packets; throws if the kernel dropped any. Idempotent. */
  stop(opts?: StopOptions): Promise<PcapRecord[]>;
}

export interface TestNet {
  readonly prefix: string;
  readonly hosts: TestHost[];
  /** Runs argv inside ns (null: the root namespace). Never throws on a non-zero exit. */
  exec(ns: string | null, argv: string[], opts?: { timeoutMs?: number }): Promise<ExecResult>;
  /**
   * Starts tcpdump and resolves once it is capturing: on the host's veth (TestHost), or on the
   * TUN device in the root namespace (TunHost: linktype 101, raw IP; `side` does not apply).
   */
  capture(host: TestHost | TunHost, bpfFilter: string, opts?: CaptureOptions): Promise<Capture>;
  /** Creates a layer-3 host: a TUN device answered by tun-responder.ts (see the file comment). */
  addTunHost(opts?: TunHostOptions): Promise<TunHost>;
  /**
   * Adds a root-namespace route (`ip route add ARGS`; `ip -6` when an argument holds a colon)
   * and removes it at teardown. Use only prefixes of this net's own subnets.
   */
  addRoute(args: string[]): void;
  /** Removes every namespace, interface, route and process of this net. Idempotent. */
  teardown(): Promise<void>;
}

export interface CreateOptions {
  hosts?: number;
}

/** Fails the calling test loudly when not root: these tests must never pass by not running. */
export function requireRoot(): void {
  const uid = process.getuid?.();
  if (uid !== 0) {
    throw new Error(
      `this test needs root (uid 0) to create network namespaces, veth pairs and captures; running as uid ${uid ?? "unknown"}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`\`${argv.join(" ")}\` ${code === null ? "did not run" : `exited ${code}`}: ${stderr.trim() || "(no stderr)"}`);
    this.name = "CommandError";
  }
}

/** Runs a setup or cleanup command synchronously: setup is a few dozen short `ip` calls. */
function run(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 20_000 });
  if (r.error) throw new CommandError(argv, null, r.error.message);
  if (r.status !== 0) throw new CommandError(argv, r.status, r.stderr);
  return r.stdout;
}

/** Like run() but for cleanup: returns the error text instead of throwing. */
function tryRun(argv: string[]): string | null {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 20_000 });
  if (r.error) return r.error.message;
  return r.status === 0 ? null : r.stderr.trim() || `exit ${r.status}`;
}

function inNs(ns: string | null, argv: string[]): string[] {
  return ns === null ? argv : ["ip", "netns", "exec", ns, ...argv];
}

// ---------------------------------------------------------------------------------------------
// Ownership records

interface OwnerRecord {
  prefix: string;
  pid: number;
  /** /proc/PID/stat start time: tells a live owner from a new process that reused its pid. */
  pidStart: string;
  created: number;
  namespaces: string[];
  rootIfs: string[];
  subnets: number[];
  /** Processes outside our namespaces (TUN responders): pid and /proc start time. */
  pids?: { pid: number; start: string }[];
  /** Root-namespace routes added with addRoute(): the `ip route` arguments after "add". */
  routes?: string[][];
  /** The run's scratch directory (captures, responder logs). */
  tmpDir?: string;
}

function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime), counted after the parenthesised command name which may hold spaces.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function ownerAlive(r: OwnerRecord): boolean {
  return procStart(r.pid) === r.pidStart;
}

function recordPath(prefix: string): string {
  return join(STATE_DIR, `${prefix}.json`);
}

function claimPath(subnet: number): string {
  return join(STATE_DIR, `subnet-${subnet}`);
}

function writeRecord(r: OwnerRecord): void {
  writeFileSync(recordPath(r.prefix), JSON.stringify(r));
}

function readRecords(): OwnerRecord[] {
  if (!existsSync(STATE_DIR)) return [];
  const out: OwnerRecord[] = [];
  for (const f of readdirSync(STATE_DIR)) {
    if (!f.endsWith(".json")) continue;
    try {
      out.push(JSON.parse(readFileSync(join(STATE_DIR, f), "utf8")) as OwnerRecord);
    } catch {
      /* half-written by a run that died: its resources are found by name below */
    }
  }
  return out;
}

/** Atomically claims subnet X for prefix (O_EXCL create); false when another run holds it. */
function claimSubnet(subnet: number, prefix: string): boolean {
  try {
    writeFileSync(claimPath(subnet), prefix, { flag: "wx" });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
}

function releaseSubnet(subnet: number, prefix: string): void {
  try {
    if (readFileSync(claimPath(subnet), "utf8") === prefix) unlinkSync(claimPath(subnet));
  } catch {
    /* already gone */
  }
}

// ---------------------------------------------------------------------------------------------
// Subnet choice

function ipToBigInt(text: string): { family: 4 | 6; value: bigint } | null {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text)) {
    return { family: 4, value: text.split(".").reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n) };
  }
  if (!text.includes(":")) return null;
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const words = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  if (words.length !== 8 || words.some((w) => w.includes("."))) return null;
  return { family: 6, value: words.reduce((acc, w) => (acc << 16n) | BigInt(parseInt(w, 16)), 0n) };
}

function overlaps(a: string, aLen: number, b: string, bLen: number): boolean {
  const x = ipToBigInt(a);
  const y = ipToBigInt(b);
  if (!x || !y || x.family !== y.family) return false;
  const bits = x.family === 4 ? 32 : 128;
  const len = BigInt(Math.min(aLen, bLen));
  const shift = BigInt(bits) - len;
  return x.value >> shift === y.value >> shift;
}

interface IpJsonAddr {
  ifname?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}
interface IpJsonRoute {
  dst?: string;
}

/** Prefixes already in use in the root namespace (addresses and routes), as [addr, len]. */
function prefixesInUse(): [string, number][] {
  const out: [string, number][] = [];
  for (const link of JSON.parse(run(["ip", "-j", "addr", "show"])) as IpJsonAddr[]) {
    for (const a of link.addr_info ?? []) if (a.local && a.prefixlen !== undefined) out.push([a.local, a.prefixlen]);
  }
  for (const fam of ["-4", "-6"]) {
    for (const r of JSON.parse(run(["ip", "-j", fam, "route", "show", "table", "all"])) as IpJsonRoute[]) {
      if (!r.dst || r.dst === "default") continue;
      const [addr, len] = r.dst.split("/") as [string, string | undefined];
      out.push([addr, len === undefined ? (addr.includes(":") ? 128 : 32) : Number(len)]);
    }
  }
  return out;
}

function subnetFree(x: number, inUse: [string, number][]): boolean {
  const ours: [string, number][] = [
    [`198.18.${x}.0`, 24],
    [`198.19.${x}.0`, 24],
    [`fd00:18:${x}::`, 64],
    [`fd00:19:${x}::`, 64],
  ];
  // Broad routes (a default, a /8) are not conflicts: ours are more specific and win.
  return !inUse.some(([a, l]) => l >= (a.includes(":") ? 32 : 16) && ours.some(([b, m]) => overlaps(a, l, b, m)));
}

function pickSubnets(count: number, prefix: string): number[] {
  const chosen: number[] = [];
  const inUse = prefixesInUse();
  const candidates = Array.from({ length: SUBNET_MAX - SUBNET_MIN + 1 }, (_, i) => SUBNET_MIN + i);
  // Random order, so two runs rarely even race for the same claim.
  for (let i = candidates.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
  }
  for (const x of candidates) {
    if (chosen.length === count) break;
    if (!subnetFree(x, inUse)) continue;
    if (claimSubnet(x, prefix)) chosen.push(x);
  }
  if (chosen.length < count) {
    for (const x of chosen) releaseSubnet(x, prefix);
    throw new Error(`no free subnet in 198.18.${SUBNET_MIN}-${SUBNET_MAX}.0/24 for ${count} host(s) (claims in ${STATE_DIR})`);
  }
  return chosen;
}

// ---------------------------------------------------------------------------------------------
// Cleanup (synchronous, so it can run from a process 'exit' handler)

function pidsInNamespace(ns: string): number[] {
  const r = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" });
  if (r.status !== 0) return [];
  return r.stdout
    .split("\n")
    .map((l) => Number(l.trim()))
    .filter((p) => Number.isInteger(p) && p > 0);
}

/** Running, i.e. neither gone nor a zombie (our own children stay zombies until reaped). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function killAndWait(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + 3000;
  while (pids.some(processAlive) && Date.now() < deadline) Bun.sleepSync(5);
}

function namespaceExists(ns: string): boolean {
  return existsSync(`/run/netns/${ns}`);
}

function linkExists(ifname: string): boolean {
  return existsSync(`/sys/class/net/${ifname}`);
}

/**
 * Deletes namespaces and root-side links: processes inside a namespace first (a namespace with a
 * process in it outlives `ip netns del`, and so does its veth), then the root end of the veth
 * (which takes the host end and the routes through it along, synchronously), then the namespace.
 * Returns the failures.
 */
function removeResources(namespaces: string[], rootIfs: string[]): string[] {
  const errors: string[] = [];
  for (const ns of namespaces) if (namespaceExists(ns)) killAndWait(pidsInNamespace(ns));
  for (const ifname of rootIfs) {
    if (!linkExists(ifname)) continue;
    const err = tryRun(["ip", "link", "del", ifname]);
    if (err && linkExists(ifname)) errors.push(`ip link del ${ifname}: ${err}`);
  }
  for (const ns of namespaces) {
    if (!namespaceExists(ns)) continue;
    const err = tryRun(["ip", "netns", "del", ns]);
    if (err && namespaceExists(ns)) errors.push(`ip netns del ${ns}: ${err}`);
  }
  return errors;
}

function routeArgv(verb: "add" | "del", args: string[]): string[] {
  return ["ip", ...(args.some((a) => a.includes(":")) ? ["-6"] : []), "route", verb, ...args];
}

/** Deletes routes added by addRoute(); one already gone is not an error. */
function removeRoutes(routes: string[][]): string[] {
  const errors: string[] = [];
  for (const r of routes) {
    const err = tryRun(routeArgv("del", r));
    if (err && !/No such process|No such file|not found/i.test(err)) errors.push(`${routeArgv("del", r).join(" ")}: ${err}`);
  }
  return errors;
}

/** Kills recorded processes that are still the ones recorded (same start time: pid not reused). */
function killRecorded(pids: { pid: number; start: string }[]): void {
  killAndWait(pids.filter((p) => procStart(p.pid) === p.start).map((p) => p.pid));
}

export interface SweepResult {
  namespaces: string[];
  links: string[];
  errors: string[];
}

/**
 * Deletes what earlier runs of this helper left behind after a crash: everything recorded by an
 * owner process that is gone, and namespaces / root-side links matching the helper's naming
 * scheme that no live run owns and that are older than maxAgeMs (resources whose record was lost).
 * Never touches a live run's resources.
 */
export function sweepStale(prefixPattern: RegExp = NAMESPACE_PATTERN, opts: { maxAgeMs?: number } = {}): SweepResult {
  const maxAgeMs = opts.maxAgeMs ?? 5 * 60_000;
  const result: SweepResult = { namespaces: [], links: [], errors: [] };
  const liveNs = new Set<string>();
  const liveIfs = new Set<string>();
  const livePrefixes = new Set<string>();
  for (const r of readRecords()) {
    if (ownerAlive(r)) {
      r.namespaces.forEach((n) => liveNs.add(n));
      r.rootIfs.forEach((n) => liveIfs.add(n));
      livePrefixes.add(r.prefix);
      continue;
    }
    killRecorded(r.pids ?? []);
    // Only a directory this helper named for that run.
    if (r.tmpDir && r.tmpDir.startsWith(join(tmpdir(), `${r.prefix}-`))) rmSync(r.tmpDir, { recursive: true, force: true });
    const nss = r.namespaces.filter(namespaceExists);
    const ifs = r.rootIfs.filter(linkExists);
    result.errors.push(...removeResources(nss, ifs));
    result.errors.push(...removeRoutes(r.routes ?? []));
    result.namespaces.push(...nss);
    result.links.push(...ifs);
    for (const x of r.subnets) releaseSubnet(x, r.prefix);
    rmSync(recordPath(r.prefix), { force: true });
  }
  const now = Date.now();
  const old = (path: string) => {
    try {
      return now - statSync(path).mtimeMs > maxAgeMs;
    } catch {
      return false;
    }
  };
  const owned = (name: string) => livePrefixes.has(name.slice(0, 6));
  const orphanNs = (existsSync("/run/netns") ? readdirSync("/run/netns") : []).filter(
    (n) => prefixPattern.test(n) && !liveNs.has(n) && !owned(n) && old(`/run/netns/${n}`),
  );
  // A root-side link has no creation time in sysfs; the mtime of its sysfs directory is when it
  // was registered.
  const orphanIfs = readdirSync("/sys/class/net").filter((n) => ROOT_IF_PATTERN.test(n) && !liveIfs.has(n) && !owned(n) && old(`/sys/class/net/${n}`));
  result.errors.push(...removeResources(orphanNs, orphanIfs));
  result.namespaces.push(...orphanNs);
  result.links.push(...orphanIfs);
  // Subnet claims of prefixes that have no record at all (the run died between claim and record).
  if (existsSync(STATE_DIR)) {
    for (const f of readdirSync(STATE_DIR)) {
      if (!f.startsWith("subnet-")) continue;
      const path = join(STATE_DIR, f);
      const holder = readFileSync(path, "utf8");
      if (!livePrefixes.has(holder) && !existsSync(recordPath(holder)) && old(path)) rmSync(path, { force: true });
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Process-wide registry: every live net is torn down when the process exits or is interrupted.

const live = new Set<TestNetImpl>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const cleanAll = () => {
    for (const net of [...live]) {
      const errors = net.teardownSync();
      if (errors.length) process.stderr.write(`testnet ${net.prefix}: teardown left: ${errors.join("; ")}\n`);
    }
  };
  process.on("exit", cleanAll);
  for (const [sig, num] of [
    ["SIGINT", 2],
    ["SIGTERM", 15],
    ["SIGHUP", 1],
  ] as const) {
    process.on(sig, () => {
      cleanAll();
      process.exit(128 + num);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The net

interface Resources {
  namespaces: string[];
  rootIfs: string[];
  routes: string[][];
  processes: ChildProcess[];
  captures: CaptureImpl[];
  tmpDir: string;
}

class CaptureImpl implements Capture {
  droppedByKernel: number | null = null;
  capturedCount: number | null = null;
  linktype: number | null = null;
  #stderr = "";
  #records: PcapRecord[] | null = null;
  #exited: Promise<number | null>;

  constructor(
    readonly host: TestHost | TunHost,
    readonly iface: string,
    readonly filter: string,
    readonly file: string,
    readonly proc: ChildProcess,
  ) {
    proc.stderr!.setEncoding("utf8");
    proc.stderr!.on("data", (chunk: string) => (this.#stderr += chunk));
    this.#exited = new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Resolves once tcpdump says it is listening; rejects if it exits or hangs first. */
  async started(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!/listening on/.test(this.#stderr)) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`tcpdump on ${this.iface} (${"ns" in this.host ? this.host.ns : "root namespace"}) exited before capturing: ${this.#stderr.trim()}`);
      }
      if (Date.now() > deadline) {
        this.proc.kill("SIGKILL");
        throw new Error(`tcpdump on ${this.iface} (${"ns" in this.host ? this.host.ns : "root namespace"}) not capturing after ${timeoutMs} ms: ${this.#stderr.trim()}`);
      }
      await Bun.sleep(5);
    }
  }

  async stop(opts: StopOptions = {}): Promise<PcapRecord[]> {
    if (this.#records) return this.#records;
    const settleMs = opts.settleMs ?? 50;
    let size = -1;
    for (let i = 0; i < 100; i++) {
      const now = existsSync(this.file) ? statSync(this.file).size : 0;
      if (now === size) break;
      size = now;
      await Bun.sleep(settleMs);
    }
    this.proc.kill("SIGINT");
    const code = await Promise.race([this.#exited, Bun.sleep(5000).then(() => "timeout" as const)]);
    if (code === "timeout") {
      this.proc.kill("SIGKILL");
      throw new Error(`tcpdump on ${this.iface} did not exit within 5 s of SIGINT: ${this.#stderr.trim()}`);
    }
    if (code !== 0) throw new Error(`tcpdump on ${this.iface} exited ${code}: ${this.#stderr.trim()}`);
    const dropped = /(\d+) packets? dropped by kernel/.exec(this.#stderr);
    const captured = /(\d+) packets? captured/.exec(this.#stderr);
    if (!dropped) throw new Error(`tcpdump on ${this.iface} printed no drop count: ${this.#stderr.trim()}`);
    this.droppedByKernel = Number(dropped[1]);
    this.capturedCount = captured ? Number(captured[1]) : null;
    const pcap = readPcapFile(this.file);
    this.linktype = pcap.linktype;
    if (this.droppedByKernel > 0) {
      throw new Error(`tcpdump on ${this.iface} reports ${this.droppedByKernel} packets dropped by kernel: the capture is incomplete`);
    }
    if (this.capturedCount !== null && this.capturedCount !== pcap.records.length) {
      throw new Error(`tcpdump on ${this.iface} says ${this.capturedCount} packets captured but ${this.file} holds ${pcap.records.length}`);
    }
    this.#records = pcap.records;
    return pcap.records;
  }
}

class TestNetImpl implements TestNet {
  readonly hosts: TestHost[] = [];
  #tornDown = false;
  #tunCount = 0;

  constructor(
    readonly prefix: string,
    readonly record: OwnerRecord,
    readonly res: Resources,
  ) {}

  async exec(ns: string | null, argv: string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const full = inNs(ns, argv);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const proc = Bun.spawn(full, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutMs);
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    clearTimeout(timer);
    if (timedOut) throw new Error(`\`${full.join(" ")}\` did not finish within ${timeoutMs} ms; stderr: ${stderr.trim()}`);
    const sig = proc.signalCode;
    return { code, signal: sig === null ? null : String(sig), stdout, stderr };
  }

  async capture(host: TestHost | TunHost, bpfFilter: string, opts: CaptureOptions = {}): Promise<Capture> {
    if (this.#tornDown) throw new Error(`testnet ${this.prefix} is torn down`);
    const side = opts.side ?? "host";
    const tun = "kind" in host && host.kind === "tun";
    const veth = "ifname" in host ? host.ifname : side === "host" ? host.hostIf : host.rootIf;
    const iface = opts.device === "any" && !tun ? "any" : veth;
    const ns = "ns" in host && side === "host" ? host.ns : null;
    const file = join(this.res.tmpDir, `${veth}${iface === veth ? "" : `-${iface}`}-${this.res.captures.length}.pcap`);
    if (tun && !linkExists(iface)) throw new Error(`TUN device ${iface} is gone (its responder exited?)`);
    // --immediate-mode: without it tcpdump hands packets over up to a second late.
    // -U: each packet is flushed to the file at once (stop() watches the file settle).
    // -Z root: Debian's tcpdump otherwise drops to user tcpdump, which cannot write in tmpDir.
    const argv = inNs(ns, [
      "tcpdump", "-i", iface, "-nn", "-U", "--immediate-mode", "--time-stamp-precision=nano",
      "-B", "65536", "-Z", "root", "-w", file, bpfFilter,
    ]); // prettier-ignore
    const proc = spawnChild(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    const cap = new CaptureImpl(host, iface, bpfFilter, file, proc);
    this.res.captures.push(cap);
    this.res.processes.push(proc);
    await cap.started(10_000);
    return cap;
  }

  addRoute(args: string[]): void {
    if (this.#tornDown) throw new Error(`testnet ${this.prefix} is torn down`);
    // Recorded before it exists, like everything else; forgotten again if it could not be added
    // (a route that was there before is not ours to delete).
    this.res.routes.push(args);
    this.record.routes = this.res.routes;
    writeRecord(this.record);
    try {
      run(routeArgv("add", args));
    } catch (e) {
      this.res.routes.pop();
      writeRecord(this.record);
      throw e;
    }
  }

  async addTunHost(opts: TunHostOptions = {}): Promise<TunHost> {
    if (this.#tornDown) throw new Error(`testnet ${this.prefix} is torn down`);
    const index = this.#tunCount++;
    const ifname = `${this.prefix}t${index}`;
    const [y] = pickSubnets(1, this.prefix) as [number];
    this.record.subnets.push(y);
    this.record.rootIfs.push(ifname);
    this.res.rootIfs.push(ifname);
    writeRecord(this.record);
    const openPort = opts.openPort ?? OPEN_PORT;
    const logFile = join(this.res.tmpDir, `${ifname}.log`);
    writeFileSync(logFile, "");
    const argv = [process.execPath, TUN_RESPONDER, "--ifname", ifname, "--log", logFile, "--open-port", String(openPort)];
    if (opts.delayMs !== undefined) argv.push("--delay-ms", String(opts.delayMs));
    if (opts.loss !== undefined) argv.push("--loss", String(opts.loss));
    if (opts.seed !== undefined) argv.push("--seed", String(opts.seed));
    if (opts.dropSrcPorts?.length) argv.push("--drop-src-ports", opts.dropSrcPorts.join(","));
    const proc = spawnChild(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    this.res.processes.push(proc);
    if (proc.pid !== undefined) {
      (this.record.pids ??= []).push({ pid: proc.pid, start: procStart(proc.pid) ?? "" });
      writeRecord(this.record);
    }
    let out = "";
    let err = "";
    proc.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
    proc.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
    const deadline = Date.now() + 15_000;
    while (!out.includes(`ready ${ifname}`)) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`tun-responder ${ifname} exited ${proc.exitCode ?? proc.signalCode}: ${err.trim()}`);
      if (Date.now() > deadline) throw new Error(`tun-responder ${ifname} not ready after 15 s: ${err.trim()}`);
      await Bun.sleep(10);
    }
    const v4 = { root: `198.18.${y}.1`, host: `198.18.${y}.2` };
    const v6 = { root: `fd00:19:${y}::1`, host: `fd00:19:${y}::2` };
    // Before the link goes up: no DAD delay, no router solicitations in the responder's input.
    run(["sysctl", "-qw", `net.ipv6.conf.${ifname}.accept_dad=0`, `net.ipv6.conf.${ifname}.accept_ra=0`, `net.ipv6.conf.${ifname}.router_solicitations=0`]);
    run(["ip", "addr", "add", `${v4.root}/24`, "dev", ifname]);
    run(["ip", "-6", "addr", "add", `${v6.root}/64`, "dev", ifname, "nodad"]);
    run(["ip", "link", "set", ifname, "up"]);
    const [link] = JSON.parse(run(["ip", "-j", "link", "show", "dev", ifname])) as { ifindex?: number }[];
    return {
      kind: "tun",
      index,
      subnet: y,
      ifname,
      ifindex: link?.ifindex ?? 0,
      v4,
      v6,
      openPort,
      closedPort: CLOSED_PORT,
      pid: proc.pid ?? 0,
      logFile,
      readLog: () =>
        readFileSync(logFile, "utf8")
          .split("\n")
          .slice(0, -1) // the last piece is "" or a line still being written
          .map((l) => JSON.parse(l) as TunLogEvent),
    };
  }

  /** Returns the cleanup failures (empty when everything is gone). */
  teardownSync(): string[] {
    if (this.#tornDown) return [];
    this.#tornDown = true;
    live.delete(this);
    const pids = this.res.processes.map((p) => p.pid).filter((p): p is number => p !== undefined && processAlive(p));
    killAndWait(pids);
    const errors = removeResources(this.res.namespaces, this.res.rootIfs);
    errors.push(...removeRoutes(this.res.routes));
    for (const x of this.record.subnets) releaseSubnet(x, this.prefix);
    if (errors.length === 0) rmSync(recordPath(this.prefix), { force: true });
    rmSync(this.res.tmpDir, { recursive: true, force: true });
    return errors;
  }

  async teardown(): Promise<void> {
    const errors = this.teardownSync();
    if (errors.length) throw new Error(`testnet ${this.prefix} teardown incomplete: ${errors.join("; ")}`);
  }
}

function macOf(ns: string | null, ifname: string): { mac: string; ifindex: number } {
  const [link] = JSON.parse(run([...(ns ? ["ip", "-n", ns] : ["ip"]), "-j", "link", "show", "dev", ifname])) as {
    address?: string;
    ifindex?: number;
  }[];
  if (!link?.address || link.ifindex === undefined) throw new Error(`ip -j link show ${ifname}${ns ? ` in ${ns}` : ""} has no address`);
  return { mac: link.address, ifindex: link.ifindex };
}

/** Settings of a host namespace that make its answers deterministic under probing load. */
const HOST_SYSCTLS = [
  // Every probe gets its answer: no ICMP rate limiting of any kind.
  "net.ipv4.icmp_ratelimit=0",
  "net.ipv4.icmp_msgs_per_sec=1000000000",
  "net.ipv4.icmp_msgs_burst=1000000000",
  "net.ipv6.icmp.ratelimit=0",
  // SYNs beyond the listener's backlog are still answered.
  "net.ipv4.tcp_syncookies=1",
  "net.core.somaxconn=65535",
  "net.ipv4.tcp_max_syn_backlog=65535",
  // Probes may come from any test source address.
  "net.ipv4.conf.all.rp_filter=0",
  "net.ipv4.conf.default.rp_filter=0",
  // Addresses usable at once, and no router solicitations in the captures.
  "net.ipv6.conf.all.accept_dad=0",
  "net.ipv6.conf.default.accept_dad=0",
  "net.ipv6.conf.default.router_solicitations=0",
];

async function startListener(ns: string, port: number, res: Resources): Promise<void> {
  const proc = spawnChild("ip", ["netns", "exec", ns, process.execPath, LISTENER, String(port)], { stdio: ["pipe", "pipe", "pipe"] });
  res.processes.push(proc);
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  proc.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
  const deadline = Date.now() + 15_000;
  while (!out.includes("ready")) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`tcp-listener in ${ns} exited ${proc.exitCode ?? proc.signalCode}: ${err.trim()}`);
    if (Date.now() > deadline) throw new Error(`tcp-listener in ${ns} not ready after 15 s: ${err.trim()}`);
    await Bun.sleep(10);
  }
}

async function buildVethHost(index: number, x: number, prefix: string, res: Resources): Promise<TestHost> {
  const ns = `${prefix}n${index}`;
  const rootIf = `${prefix}r${index}`;
  const hostIf = `${prefix}h${index}`;
  const v4: HostAddresses = {
    root: `198.18.${x}.1`,
    host: `198.18.${x}.2`,
    routedPrefix: `198.19.${x}.0/24`,
    routedExample: `198.19.${x}.7`,
    blackhole: `198.18.${x}.99`,
  };
  const v6: HostAddresses = {
    root: `fd00:18:${x}::1`,
    host: `fd00:18:${x}::2`,
    routedPrefix: `fd00:19:${x}::/64`,
    routedExample: `fd00:19:${x}::7`,
    blackhole: `fd00:18:${x}::99`,
  };
  const N = ["ip", "-n", ns];

  res.namespaces.push(ns);
  run(["ip", "netns", "add", ns]);
  run(["ip", "netns", "exec", ns, "sysctl", "-qw", ...HOST_SYSCTLS]);
  res.rootIfs.push(rootIf);
  run(["ip", "link", "add", rootIf, "type", "veth", "peer", "name", hostIf, "netns", ns]);
  // Before the link goes up: DAD on the link-local would otherwise delay NDP by a second or so.
  run(["sysctl", "-qw", `net.ipv6.conf.${rootIf}.accept_dad=0`, `net.ipv6.conf.${rootIf}.accept_ra=0`, `net.ipv6.conf.${rootIf}.router_solicitations=0`]);
  run(["ip", "addr", "add", `${v4.root}/24`, "dev", rootIf]);
  run(["ip", "addr", "add", `${v6.root}/64`, "dev", rootIf, "nodad"]);
  run(["ip", "link", "set", rootIf, "up"]);

  run([...N, "link", "set", "lo", "up"]);
  run([...N, "addr", "add", `${v4.host}/24`, "dev", hostIf]);
  run([...N, "addr", "add", `${v6.host}/64`, "dev", hostIf, "nodad"]);
  run([...N, "link", "set", hostIf, "up"]);
  // Answers to any test source go back to the root namespace, and nowhere else: no default route.
  run([...N, "route", "add", "198.18.0.0/15", "via", v4.root]);
  run([...N, "-6", "route", "add", "fd00::/8", "via", v6.root]);
  // The routed range: a local route makes the namespace answer for every address in it.
  run([...N, "route", "add", "local", v4.routedPrefix, "dev", "lo"]);
  run([...N, "-6", "route", "add", "local", v6.routedPrefix, "dev", "lo"]);
  // blackhole drops silently; prohibit / unreachable would answer with ICMP errors.
  run([...N, "route", "add", "blackhole", `${v4.blackhole}/32`]);
  run([...N, "-6", "route", "add", "blackhole", `${v6.blackhole}/128`]);

  run(["ip", "route", "add", v4.routedPrefix, "via", v4.host, "dev", rootIf]);
  run(["ip", "-6", "route", "add", v6.routedPrefix, "via", v6.host, "dev", rootIf]);
  run(["ip", "route", "add", `${v4.blackhole}/32`, "via", v4.host, "dev", rootIf]);
  run(["ip", "-6", "route", "add", `${v6.blackhole}/128`, "via", v6.host, "dev", rootIf]);

  const root = macOf(null, rootIf);
  const host = macOf(ns, hostIf);
  await startListener(ns, OPEN_PORT, res);
  return {
    index,
    subnet: x,
    ns,
    rootIf,
    rootIfindex: root.ifindex,
    hostIf,
    rootMac: root.mac,
    hostMac: host.mac,
    v4,
    v6,
    openPort: OPEN_PORT,
    closedPort: CLOSED_PORT,
  };
}

/** Claims a fresh run prefix and records it before anything is created. */
function startRun(namespaces: (prefix: string) => string[], rootIfs: (prefix: string) => string[]): TestNetImpl {
  requireRoot();
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  sweepStale();
  let prefix = "";
  for (;;) {
    prefix = `np${randomBytes(2).toString("hex")}`;
    if (!existsSync(recordPath(prefix)) && !readdirSync("/sys/class/net").some((n) => n.startsWith(prefix))) break;
  }
  const record: OwnerRecord = {
    prefix,
    pid: process.pid,
    pidStart: procStart(process.pid) ?? "",
    created: Date.now(),
    namespaces: namespaces(prefix),
    rootIfs: rootIfs(prefix),
    subnets: [],
  };
  // Recorded before anything exists, so a crash at any later point leaves a record to sweep.
  writeRecord(record);
  const res: Resources = { namespaces: [], rootIfs: [], routes: [], processes: [], captures: [], tmpDir: mkdtempSync(join(tmpdir(), `${prefix}-`)) };
  record.tmpDir = res.tmpDir;
  writeRecord(record);
  const net = new TestNetImpl(prefix, record, res);
  live.add(net);
  installExitHandlers();
  return net;
}

/**
 * Has the root namespace's kernel resolve the host's MAC in both families, so that a test of
 * probing does not depend on the engine's own ARP / neighbour solicitation (tested on its own).
 */
export async function warmNeighbours(net: TestNet, h: TestHost): Promise<void> {
  for (const addr of [h.v4.host, h.v6.host]) {
    const r = await net.exec(null, ["ping", "-c1", "-W2", addr]);
    if (r.code !== 0) throw new Error(`ping ${addr} failed: ${r.stdout}${r.stderr}`);
  }
}

/**
 * Builds the test network. Call teardown() in afterAll; a process that exits or is interrupted
 * without it still cleans up (exit handlers), and one that is killed is cleaned by the next run's
 * sweepStale().
 */
export async function createTestNet(opts: CreateOptions = {}): Promise<TestNet> {
  const count = opts.hosts ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 20) throw new RangeError(`hosts must be 1..20, got ${count}`);
  const indexes = Array.from({ length: count }, (_, i) => i);
  const net = startRun(
    (p) => indexes.map((i) => `${p}n${i}`),
    (p) => indexes.map((i) => `${p}r${i}`),
  );
  try {
    net.record.subnets = pickSubnets(count, net.prefix);
    writeRecord(net.record);
    for (const i of indexes) net.hosts.push(await buildVethHost(i, net.record.subnets[i]!, net.prefix, net.res));
  } catch (e) {
    const errors = net.teardownSync();
    if (errors.length && e instanceof Error) e.message += ` (and cleanup failed: ${errors.join("; ")})`;
    throw e;
  }
  return net;
}

export interface BareNamespaces extends TestNet {
  /** `<prefix>n0`, `<prefix>n1`, ...: created empty (only lo, down), owned and cleaned like a TestNet. */
  readonly namespaces: string[];
}

/**
 * Empty namespaces for tests that build their own topology inside them (links between two
 * namespaces never touch the root namespace). Interfaces created inside them go away with them;
 * name them with the prefix all the same.
 */
export async function createNamespaces(count: number): Promise<BareNamespaces> {
  if (!Number.isInteger(count) || count < 1 || count > 20) throw new RangeError(`count must be 1..20, got ${count}`);
  const net = startRun(
    (p) => Array.from({ length: count }, (_, i) => `${p}n${i}`),
    () => [],
  );
  try {
    for (const ns of net.record.namespaces) {
      net.res.namespaces.push(ns);
      run(["ip", "netns", "add", ns]);
    }
  } catch (e) {
    net.teardownSync();
    throw e;
  }
  return Object.assign(net, { namespaces: [...net.record.namespaces] });
}
