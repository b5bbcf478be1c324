/**
 * Dynamic inventories in the compiled binary, against a veth test host: the API (targets added,
 * listed, deleted, expired, and back after a restart from the state file), a file inventory (a
 * file added then removed), an http inventory (a local server's list changing), the example
 * custom module in its child process, and a custom module that crashes over and over while
 * probing goes on. Each dynamic target must show in /metrics with loss 0 against the host, then
 * vanish when its inventory drops it.
 *
 * Needs root (test network, raw packets).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";

const REPO = join(import.meta.dir, "..", "..");
const TOKEN = "s3cret-token-for-tests";

/** The crashing module: publishes one target, then throws from a timer a second later, every run. */
const CRASHER = `
export function start(name, options, publish) {
  publish([{ hostname: options.host, type: "ICMPping", nb_packets: 2, timeout: 1 }]);
  setTimeout(() => { throw new Error("boom from the crasher module"); }, 1000);
}
`;

/** Pids of `BIN __inventory` processes still running. */
function inventoryProcesses(bin: string): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
        return argv[0] === bin && argv[1] === "__inventory";
      } catch {
        return false;
      }
    })
    .map(Number);
}

const sentOf = (e: Exposition, destination: string) =>
  ["tcpsyn", "icmp", "udp_unreachable"].flatMap((p) => e.get(`${p}_sent_total`, { probe_name: "inv", destination }))[0]?.value;
const lossOf = (e: Exposition, destination: string) =>
  ["tcpsyn", "icmp", "udp_unreachable"].flatMap((p) => e.get(`${p}_loss_ratio`, { probe_name: "inv", destination }))[0]?.value;

describe("dynamic inventories in the compiled binary", () => {
  let buildDir = "";
  let workDir = "";
  let bin = "";
  let net: TestNet;
  let h: TestHost;
  let d: DaemonProcess | null = null;
  let apiPort = 0;
  let sdList: unknown[] = [];
  let sdRequests = 0;
  let sdServer: ReturnType<typeof Bun.serve> | null = null;

  const config = (fileInventories = "files: {directory: targets.d}") => `
global:
  probe_name: inv
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
targets:
  static_icmp:
    type: ICMPping
    destination: ${h.v4.host}
    nb_packets: 2
    timeout: 1
inventories:
  file:
    ${fileInventories}
  http:
    sd: {url: "http://127.0.0.1:${sdServer!.port}/targets", refresh_interval: 1, timeout: 1}
  modules:
    hostlist: {path: hosts.txt, refresh_interval: 0.5, type: UDPunreachable, dst_port: ${h.closedPort}, nb_packets: 2, timeout: 1, groups: [lan]}
    crasher: {host: "${h.v6.host}"}
`;

  const api = (method: string, path: string, body?: unknown, token = TOKEN) =>
    fetch(`http://127.0.0.1:${apiPort}${path}`, {
      method,
      headers: { apikey: token, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });

  async function start(): Promise<DaemonProcess> {
    d = await startDaemon({ bin, dir: workDir, config: config(), readyTimeoutMs: 30_000 });
    return d;
  }

  beforeAll(async () => {
    requireRoot();
    buildDir = mkdtempSync(join(tmpdir(), "netprobify-build-"));
    const build = Bun.spawnSync([process.execPath, "run", "build.ts", "--outfile", join(buildDir, "netprobify")], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    if (build.exitCode !== 0) throw new Error(`build.ts failed (exit ${build.exitCode}): ${build.stderr.toString()}${build.stdout.toString()}`);
    bin = join(buildDir, "netprobify");
    chmodSync(bin, 0o755);
    net = await createTestNet();
    h = net.hosts[0]!;
    sdServer = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => {
        sdRequests++;
        return new URL(req.url).pathname === "/targets" ? Response.json(sdList) : new Response("no", { status: 404 });
      },
    });
    apiPort = await freePort();
    workDir = mkdtempSync(join(tmpdir(), "netprobify-inv-"));
    mkdirSync(join(workDir, "targets.d"));
    mkdirSync(join(workDir, "dynamic_inventories"));
    copyFileSync(join(REPO, "src", "inventory", "example-module.ts"), join(workDir, "dynamic_inventories", "hostlist.ts"));
    writeFileSync(join(workDir, "dynamic_inventories", "crasher.js"), CRASHER);
    writeFileSync(join(workDir, "hosts.txt"), `# the test host\n${h.v4.host}\n`);
    writeFileSync(
      join(workDir, "api.yaml"),
      `token: ${TOKEN}\nlisten_address: 127.0.0.1\nlisten_port: ${apiPort}\ngroups: [lan]\nnb_packets: 2\nmax_targets: 5\n`,
    );
    await start();
  }, 300_000);

  afterAll(async () => {
    await d?.stop();
    sdServer?.stop(true);
    await net?.teardown();
    for (const dir of [buildDir, workDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  test("the example custom module's target is probed with loss 0; netprobify_inventory_targets counts it", async () => {
    const name = `hostlist_${h.v4.host}`;
    const e = await d!.waitFor(`${name} probed`, (x) => (sentOf(x, name) ?? 0) >= 4 && x);
    expect(lossOf(e, name)).toBe(0);
    expect(e.get("udp_unreachable_sent_total", { destination: name })[0]?.labels.group).toBe("lan");
    expect(e.value("netprobify_inventory_targets", { inventory: "hostlist" })).toBe(1);
  }, 60_000);

  test("a file inventory: a file's target appears with loss 0, and vanishes when the file is removed", async () => {
    const name = `files_${h.v4.host}`;
    const file = join(workDir, "targets.d", "web.yaml");
    writeFileSync(file, `- hostname: "${h.v4.host}"\n  type: TCPsyn\n  dst_port: ${h.openPort}\n  nb_packets: 2\n  timeout: 1\n`);
    const e = await d!.waitFor(`${name} probed`, (x) => (sentOf(x, name) ?? 0) >= 4 && x, { timeoutMs: 30_000 });
    expect(lossOf(e, name)).toBe(0);
    unlinkSync(file);
    await d!.waitFor(`${name} gone`, (x) => sentOf(x, name) === undefined && x.value("netprobify_inventory_targets", { inventory: "files" }) === 0, {
      timeoutMs: 30_000,
    });
  }, 90_000);

  test("an http inventory: the server's list is probed, and a target it drops vanishes", async () => {
    const name = `sd_${h.v6.host.replaceAll(":", "_")}`;
    sdList = [{ hostname: h.v6.host, type: "TCPsyn", dst_port: h.openPort, nb_packets: 2, timeout: 1 }];
    const e = await d!.waitFor(`${name} probed`, (x) => (sentOf(x, name) ?? 0) >= 4 && x, { timeoutMs: 30_000 });
    expect(lossOf(e, name)).toBe(0);
    expect(e.get("tcpsyn_sent_total", { destination: name })[0]?.labels.address_family).toBe("ipv6");
    sdList = [];
    await d!.waitFor(`${name} gone`, (x) => sentOf(x, name) === undefined, { timeoutMs: 30_000 });
    expect(sdRequests).toBeGreaterThan(1);
  }, 90_000);

  test("the API: a wrong token is 401 and changes nothing; POST adds a target that is probed; GET lists it", async () => {
    const bad = await api("POST", "/api/target", { owner: "t", hostname: h.v4.host }, "wrong");
    expect(bad.status).toBe(401);
    const r = await api("POST", "/api/target", { owner: "oncall", hostname: h.v4.host, type: "ICMPping" });
    expect(r.status).toBe(201);
    const again = await api("POST", "/api/target", { owner: "oncall", hostname: h.v4.host, type: "ICMPping" });
    expect(again.status).toBe(409);
    const name = `api_${h.v4.host}`;
    const e = await d!.waitFor(`${name} probed`, (x) => (sentOf(x, name) ?? 0) >= 4 && x, { timeoutMs: 30_000 });
    expect(lossOf(e, name)).toBe(0);
    const list = (await (await api("GET", "/api/targets?owner=oncall")).json()) as { hostname: string }[];
    expect(list.map((t) => t.hostname)).toEqual([h.v4.host]);
  }, 60_000);

  test("the API's OpenAPI document and interactive page are served from the binary, with nothing to fetch elsewhere", async () => {
    const doc = (await (await fetch(`http://127.0.0.1:${apiPort}/api/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual(["/api/openapi.json", "/api/target", "/api/targets", "/api/ui/"]);
    const page = await fetch(`http://127.0.0.1:${apiPort}/api/ui/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    const html = await page.text();
    expect(html).toContain("openapi.json");
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
  }, 30_000);

  test("the API's targets are back after a restart (state file), then DELETE removes one", async () => {
    const name = `api_${h.v4.host}`;
    expect(inventoryProcesses(bin).length).toBeGreaterThan(0);
    d!.signal("SIGTERM");
    expect(await d!.waitExit(10_000)).toEqual({ code: 0, signal: null });
    // No inventory process outlives the prober.
    const deadline = Date.now() + 5_000;
    while (inventoryProcesses(bin).length > 0 && Date.now() < deadline) await Bun.sleep(50);
    expect(inventoryProcesses(bin)).toEqual([]);
    expect(readFileSync(join(workDir, "api-targets.json"), "utf8")).toContain(h.v4.host);
    await start();
    await d!.waitFor(`${name} probed again after the restart`, (x) => (sentOf(x, name) ?? 0) >= 2 && x, { timeoutMs: 30_000 });
    const del = await api("DELETE", "/api/target", { owner: "oncall", hostname: h.v4.host, type: "ICMPping" });
    expect(del.status).toBeLessThan(300);
    await d!.waitFor(`${name} gone after DELETE`, (x) => sentOf(x, name) === undefined, { timeoutMs: 30_000 });
    expect(await (await api("GET", "/api/targets")).json()).toEqual([]);
  }, 90_000);

  test("an API target with a lifetime of 3 s is probed, then expires and vanishes", async () => {
    const name = `api_${h.v6.host.replaceAll(":", "_")}`;
    const r = await api("POST", "/api/target", { owner: "oncall", hostname: h.v6.host, address_family: "ipv6", lifetime: "3s" });
    expect(r.status).toBe(201);
    await d!.waitFor(`${name} probed`, (x) => (sentOf(x, name) ?? 0) >= 2 && x, { timeoutMs: 20_000 });
    await d!.waitFor(`${name} expired`, (x) => sentOf(x, name) === undefined, { timeoutMs: 30_000 });
  }, 60_000);

  test("a custom module that crashes again and again is counted and restarted; probing goes on, its last list stays", async () => {
    const before = await d!.scrape();
    const staticBefore = sentOf(before, "static_icmp") ?? 0;
    const errorsBefore = before.value("netprobify_inventory_errors_total", { inventory: "crasher" }) ?? 0;
    const crasherName = `crasher_${h.v6.host.replaceAll(":", "_")}`;
    const e = await d!.waitFor(
      "the crasher to fail twice more while the static target keeps being probed",
      (x) =>
        (x.value("netprobify_inventory_errors_total", { inventory: "crasher" }) ?? 0) >= errorsBefore + 2 &&
        (sentOf(x, "static_icmp") ?? 0) > staticBefore &&
        x,
      { timeoutMs: 40_000 },
    );
    expect(d!.alive).toBe(true);
    expect(lossOf(e, crasherName)).toBe(0);
    expect(d!.logLines.some((l) => l.includes("boom from the crasher module"))).toBe(true);
    expect(d!.logLines.filter((l) => l.includes("level=CRITICAL")).length).toBe(0);
  }, 60_000);

  test("reload: a new file inventory starts, a removed one stops and its series go; a bad api.yaml keeps the running API", async () => {
    mkdirSync(join(workDir, "more.d"));
    writeFileSync(join(workDir, "more.d", "a.json"), JSON.stringify([{ hostname: h.v4.host, type: "ICMPping", nb_packets: 2, timeout: 1 }]));
    d!.writeConfig(config("more: {directory: more.d}"));
    d!.signal("SIGHUP");
    const name = `more_${h.v4.host}`;
    const e = await d!.waitFor(`${name} probed after the reload`, (x) => (sentOf(x, name) ?? 0) >= 2 && x, { timeoutMs: 30_000 });
    expect(e.value("netprobify_inventory_targets", { inventory: "more" })).toBe(1);
    expect(e.value("netprobify_inventory_targets", { inventory: "files" })).toBeUndefined();
    expect(e.value("app_reload_conf_failed_status")).toBe(0);

    const apiYaml = readFileSync(join(workDir, "api.yaml"), "utf8");
    writeFileSync(join(workDir, "api.yaml"), `${apiYaml}listen_port_typo: 1\n`);
    d!.signal("SIGHUP");
    await d!.waitFor("the reload to fail on api.yaml", (x) => x.value("app_reload_conf_failed_status") === 1, { timeoutMs: 15_000 });
    expect(d!.logLines.some((l) => l.includes("api.yaml:") && l.includes("listen_port_typo: unknown field"))).toBe(true);
    expect((await api("GET", "/api/targets")).status).toBe(200);
    writeFileSync(join(workDir, "api.yaml"), apiYaml);
  }, 60_000);
});
