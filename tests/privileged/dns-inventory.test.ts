/**
 * The dns inventory against a real DNS server: Debian's dnsmasq, started by the test in a
 * namespace test host and bound to its 198.18.X.2:53, answering from a hosts file the test
 * rewrites (SIGHUP makes dnsmasq read it again) and from --srv-host records. First the inventory
 * alone (records added and removed, AAAA, SRV, a name that does not exist, a 64 KiB answer that
 * dnsmasq truncates over UDP and serves whole over TCP, the prober's own address), then the daemon
 * with a dns inventory probing the namespace host's addresses and showing them in /metrics, while
 * records change and then while the server is stopped.
 *
 * Needs root (namespaces) and dnsmasq (`apt-get install dnsmasq-base`, scripts/setup.sh).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { query } from "../../src/inventory/dns-client.ts";
import { dnsInventory } from "../../src/inventory/dns.ts";
import { TYPE_A } from "../../src/inventory/dns-wire.ts";
import { startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";
import { hostnames, run, waitFor, type Running } from "../fixtures/inventory/harness.ts";

const DNSMASQ = "dnsmasq";
/** Records in the 64 KiB answer: 4,090 A records of 16 bytes, 65,466 bytes with header and question. */
const BIG = 4090;

let net: TestNet;
let h: TestHost;
let dir: string;
let hostsFile: string;
let dnsmasq: ChildProcess | null = null;
let dnsmasqLog = "";
let server = "";
const running: Running[] = [];

/** The N-th address of the host's routed range, which it answers for: 198.19.X.N, fd00:19:X::N. */
const v4 = (n: number) => h.v4.routedPrefix.replace(/\.0\/24$/, `.${n}`);
const v6 = (n: number) => h.v6.routedPrefix.replace(/::\/64$/, `::${n.toString(16)}`);
/** 4,090 distinct addresses for big.test, in 198.18.0.0/20 (never probed: only looked up). */
const bigAddress = (k: number) => `198.18.${k >> 8}.${k & 255}`;

/** Replaces the hosts file dnsmasq answers from (atomically: it never reads half a file) and tells it to read it again. */
/** Times dnsmasq has said it read the hosts file (at start, and after each SIGHUP). */
const hostsReads = () => dnsmasqLog.split(`read ${hostsFile}`).length - 1;

/**
 * Replaces the records and waits until dnsmasq has re-read them: it does so some time after
 * SIGHUP, and a query before that gets the old records (CI runs did).
 */
async function setHosts(lines: string[]): Promise<void> {
  const tmp = `${hostsFile}.tmp`;
  writeFileSync(tmp, `${lines.join("\n")}\n`, { mode: 0o644 });
  renameSync(tmp, hostsFile);
  if (!dnsmasq) return;
  const before = hostsReads();
  dnsmasq.kill("SIGHUP");
  await waitFor(() => hostsReads() > before, "dnsmasq re-reading its hosts file");
}

async function startDnsmasq(): Promise<void> {
  const args = [
    "netns", "exec", h.ns, DNSMASQ,
    "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
    "--no-resolv", "--no-hosts", `--addn-hosts=${hostsFile}`,
    // Names under test. are answered from the records alone: NXDOMAIN for the others, never forwarded.
    "--local=/test/",
    `--listen-address=${h.v4.host}`, "--bind-interfaces", "--port=53",
    "--srv-host=_probe._tcp.mesh.test,node-a.mesh.test,8443",
    "--srv-host=_probe._tcp.mesh.test,node-b.mesh.test,9443",
  ];
  const proc = spawn("ip", args, { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout?.on("data", (d: Buffer) => (dnsmasqLog += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (dnsmasqLog += d.toString()));
  dnsmasq = proc;
  // Ready once it answers.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await query([{ address: h.v4.host, port: 53, family: "ipv4" }], "mesh.test", TYPE_A, { timeoutMs: 200, attempts: 1 }, new AbortController().signal);
    if (r.ok) return;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`dnsmasq did not start (${r.problem}): ${dnsmasqLog}`);
    await Bun.sleep(50);
  }
}

async function stopDnsmasq(): Promise<void> {
  const proc = dnsmasq;
  dnsmasq = null;
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((done) => proc.once("exit", done));
  proc.kill("SIGTERM");
  await exited;
}

beforeAll(async () => {
  requireRoot();
  const found = spawnSync(DNSMASQ, ["--version"], { encoding: "utf8" });
  if (found.status !== 0) throw new Error("dnsmasq is not installed: apt-get install -y --no-install-recommends dnsmasq-base (scripts/setup.sh)");
  net = await createTestNet({ hosts: 1 });
  h = net.hosts[0]!;
  // dnsmasq reads the file again as the user it switched to: the directory must let it in.
  dir = mkdtempSync(join(tmpdir(), "netprobify-dnsmasq-"));
  chmodSync(dir, 0o755);
  hostsFile = join(dir, "hosts");
  await setHosts([`${v4(5)} mesh.test`, `${v4(6)} mesh.test`]);
  await startDnsmasq();
  server = `${h.v4.host}:53`;
}, 30_000);

afterAll(async () => {
  for (const inventory of running.splice(0)) await inventory.stop();
  await stopDnsmasq();
  await net?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

function startInventory(options: Record<string, unknown>): Running {
  const inventory = run(
    dnsInventory({ timeoutMs: 1_000, attempts: 1 }),
    { type: "ICMPping", names: ["mesh.test"], servers: [server], refresh_interval: 0.1, ...options },
    dir,
    "mesh",
  );
  running.push(inventory);
  return inventory;
}

describe("the inventory against dnsmasq", () => {
  test("records added and removed at run time: targets appear and vanish; the prober's own address is skipped", async () => {
    // h.v4.root is this namespace's end of the veth: one of the prober's own addresses.
    await setHosts([`${v4(5)} mesh.test`, `${v4(6)} mesh.test`, `${h.v4.root} mesh.test`]);
    const inventory = startInventory({});
    await waitFor(() => inventory.published.length >= 1, "the first list");
    expect(hostnames(inventory.last())).toEqual([v4(5), v4(6)]);
    expect(inventory.logs.find((l) => l.message === "publishing targets")?.fields).toMatchObject({ own_addresses_skipped: 1 });

    await setHosts([`${v4(5)} mesh.test`, `${v4(6)} mesh.test`, `${v4(7)} mesh.test`]);
    await waitFor(() => hostnames(inventory.last()).length === 3, "198.19.X.7 to appear");
    expect(hostnames(inventory.last())).toEqual([v4(5), v4(6), v4(7)]);

    await setHosts([`${v4(7)} mesh.test`]);
    await waitFor(() => hostnames(inventory.last()).length === 1, "5 and 6 to vanish");
    expect(hostnames(inventory.last())).toEqual([v4(7)]);
    expect(inventory.errors).toEqual([]);
  }, 20_000);

  test("AAAA records, and a name that does not exist: NXDOMAIN reported, the other name's targets kept", async () => {
    await setHosts([`${v4(5)} mesh.test`, `${v6(5)} mesh.test`, `${v6(6)} mesh.test`]);
    const inventory = startInventory({ record_type: "AAAA", names: ["nowhere.test", "mesh.test"] });
    await waitFor(() => inventory.published.length >= 1 && inventory.errors.length >= 1, "the list and the report");
    expect(hostnames(inventory.last())).toEqual([v6(5), v6(6)]);
    expect(inventory.errors[0]!.message).toBe(`nowhere.test: does not exist (NXDOMAIN from ${server}): no targets from it`);
  }, 20_000);

  test("SRV records set dst_port; their targets are looked up", async () => {
    await setHosts([`${v4(10)} node-a.mesh.test`, `${v4(11)} node-b.mesh.test`, `${v4(12)} node-b.mesh.test`]);
    const inventory = startInventory({ type: "TCPsyn", record_type: "SRV", names: ["_probe._tcp.mesh.test"] });
    await waitFor(() => inventory.published.length >= 1, "the list");
    expect(inventory.last()).toEqual([
      { type: "TCPsyn", hostname: v4(10), address_family: "ipv4", dst_port: 8443 },
      { type: "TCPsyn", hostname: v4(11), address_family: "ipv4", dst_port: 9443 },
      { type: "TCPsyn", hostname: v4(12), address_family: "ipv4", dst_port: 9443 },
    ]);
    expect(inventory.errors).toEqual([]);
  }, 20_000);

  test("a 64 KiB answer: dnsmasq truncates it over UDP, the inventory gets it whole over TCP", async () => {
    await setHosts(Array.from({ length: BIG }, (_, k) => `${bigAddress(k)} big.test`));
    // What the wire says: over UDP the answer came truncated, over TCP whole.
    const answer = await query([{ address: h.v4.host, port: 53, family: "ipv4" }], "big.test", TYPE_A, { timeoutMs: 2_000, attempts: 1 }, new AbortController().signal);
    if (!answer.ok) throw new Error(answer.problem);
    expect(answer.overTcp).toBe(true);
    expect(answer.message.answers).toHaveLength(BIG);
    expect(answer.message.header.tc).toBe(false);
    const inventory = startInventory({ names: ["big.test"], refresh_interval: 60 });
    await waitFor(() => inventory.published.length >= 1, "the list");
    expect(inventory.last()).toHaveLength(BIG);
    expect(new Set(hostnames(inventory.last())).size).toBe(BIG);
    expect(inventory.errors).toEqual([]);
  }, 20_000);
});

describe("the daemon with a dns inventory", () => {
  let d: DaemonProcess | null = null;
  afterAll(async () => {
    await d?.stop();
  });

  const sent = (e: Exposition, destination: string) => e.value("icmp_sent_total", { probe_name: "dns", destination });
  const loss = (e: Exposition, destination: string) => e.value("icmp_loss_ratio", { probe_name: "dns", destination });
  const errors = (e: Exposition) => e.value("netprobify_inventory_errors_total", { inventory: "mesh" }) ?? 0;

  test("probes the namespace host's addresses, follows the records, and keeps them while the server is down", async () => {
    await setHosts([`${v4(5)} mesh.test`, `${v4(6)} mesh.test`, `${h.v4.root} mesh.test`]);
    d = await startDaemon({
      config: `global:
  probe_name: dns
  interval: 1
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  lan:
    src_port_a: 50000
    src_port_z: 50003
inventories:
  dns:
    mesh:
      type: ICMPping
      names: [mesh.test]
      servers: ["${server}"]
      refresh_interval: 1
      groups: [lan]
      nb_packets: 2
      timeout: 1
`,
      readyTimeoutMs: 30_000,
    });
    const [five, six, seven, self] = [`mesh_${v4(5)}`, `mesh_${v4(6)}`, `mesh_${v4(7)}`, `mesh_${h.v4.root}`];
    const first = await d.waitFor("both addresses probed", (e) => (sent(e, five) ?? 0) >= 4 && (sent(e, six) ?? 0) >= 4 && e, { timeoutMs: 30_000 });
    expect(loss(first, five)).toBe(0);
    expect(loss(first, six)).toBe(0);
    expect(first.get("icmp_sent_total", { destination: five })[0]?.labels.group).toBe("lan");
    expect(first.value("netprobify_inventory_targets", { inventory: "mesh" })).toBe(2);
    // The prober's own address is in the records but not probed.
    expect(first.withLabel("destination", self)).toEqual([]);

    await setHosts([`${v4(5)} mesh.test`, `${v4(7)} mesh.test`]);
    await d.waitFor("7 in, 6 out", (e) => (sent(e, seven) ?? 0) >= 2 && sent(e, six) === undefined && e, { timeoutMs: 30_000 });

    // The server stops: the last good list stays probed, and each failed refresh is counted.
    const before = errors(await d.scrape());
    await stopDnsmasq();
    const down = await d.waitFor("failed refreshes counted", (e) => errors(e) >= before + 2 && e, { timeoutMs: 30_000 });
    const probed = sent(down, seven) ?? 0;
    await d.waitFor("7 still probed", (e) => (sent(e, seven) ?? 0) >= probed + 2 && e, { timeoutMs: 30_000 });
    expect(sent(await d.scrape(), five)).toBeGreaterThan(0);
    expect(d.logLines.some((l) => l.includes(`mesh.test: ${server}: connection refused`) && l.includes("keeping its last 2 addresses"))).toBe(true);
    expect(d.alive).toBe(true);
  }, 90_000);
});
