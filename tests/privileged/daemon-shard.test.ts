/**
 * Three daemons on one config, sharded 0/3, 1/3 (by --shard) and 2/3 (by NETPROBIFY_SHARD_COUNT
 * and a StatefulSet pod name in NETPROBIFY_SHARD_INDEX), probing a namespace test host: together
 * they probe every configured and file-inventory target exactly once (each target's
 * icmp_sent_total is on exactly one prober's /metrics), each as the hash says, with no loss; a
 * target posted to one prober's API is probed by that prober whatever the hash says. Needs root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shardOwner } from "../../src/daemon/shard.ts";
import { freePort, parseLogLine, startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { createTestNet, requireRoot, type TestNet } from "../support/testnet.ts";

const COUNT = 3;
const CONFIGURED = 30;
const FROM_FILE = 15;
const TOKEN = "shard-test-token-0123456789";

describe("three probers sharing one config", () => {
  let net: TestNet;
  let subnet: number;
  const daemons: DaemonProcess[] = [];
  const apiPorts: number[] = [];
  const configuredNames = Array.from({ length: CONFIGURED }, (_, i) => `t${String(i).padStart(2, "0")}`);
  const fileAddress = (i: number) => `198.19.${subnet}.${100 + i}`;
  const fileNames = () => Array.from({ length: FROM_FILE }, (_, i) => `hosts_${fileAddress(i)}`);

  const config = () => `global:
  probe_name: sharded
  interval: 1
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  g:
    src_port_a: 65220
    src_port_z: 65221
targets:
${configuredNames.map((n, i) => `  ${n}: {type: ICMPping, destination: 198.19.${subnet}.${10 + i}, nb_packets: 2, timeout: 0.5}\n`).join("")}inventories:
  file:
    hosts: {directory: targets.d}
`;

  const sentOf = (e: Exposition, name: string) => e.get("icmp_sent_total", { destination: name })[0]?.value;

  beforeAll(async () => {
    requireRoot();
    net = await createTestNet();
    subnet = net.hosts[0]!.subnet;
    const fileList = Array.from({ length: FROM_FILE }, (_, i) => `- {hostname: "${fileAddress(i)}", type: ICMPping, nb_packets: 2, timeout: 0.5}\n`).join("");
    for (let index = 0; index < COUNT; index++) apiPorts.push(await freePort());
    const started = await Promise.all(
      apiPorts.map((apiPort, index) => {
        const dir = mkdtempSync(join(tmpdir(), "netprobify-shard-"));
        mkdirSync(join(dir, "targets.d"));
        writeFileSync(join(dir, "targets.d", "hosts.yaml"), fileList);
        const byEnv = index === COUNT - 1;
        return startDaemon({
          dir,
          config: config(),
          files: { "api.yaml": `token: ${TOKEN}\nlisten_address: 127.0.0.1\nlisten_port: ${apiPort}\ngroups: [g]\nnb_packets: 2\n` },
          args: (path) => (byEnv ? [path] : [path, "--shard", `${index}/${COUNT}`]),
          env: byEnv ? { NETPROBIFY_SHARD_COUNT: String(COUNT), NETPROBIFY_SHARD_INDEX: `netprobify-${index}` } : {},
          readyTimeoutMs: 30_000,
        });
      }),
    );
    daemons.push(...started);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await net?.teardown();
  }, 30_000);

  test("every configured and file target is probed by exactly one prober, the one the hash names, with no loss", async () => {
    const all = [...configuredNames, ...fileNames()];
    const keptBy = (index: number) => all.filter((n) => shardOwner(n, COUNT) === index);
    // Each prober's own targets probed at least once, the file inventory's included.
    const scrapes = await Promise.all(
      daemons.map((d, index) =>
        d.waitFor(`prober ${index}'s share probed`, (e) => keptBy(index).every((n) => (sentOf(e, n) ?? 0) >= 2) && e, { timeoutMs: 20_000 }),
      ),
    );
    for (const name of all) {
      const probers = scrapes.flatMap((e, index) => (sentOf(e, name) === undefined ? [] : [index]));
      expect({ name, probers }).toEqual({ name, probers: [shardOwner(name, COUNT)] });
    }
    scrapes.forEach((e, index) => {
      expect(e.get("icmp_sent_total").length).toBe(keptBy(index).length);
      expect(e.get("icmp_loss_total").every((s) => s.value === 0)).toBe(true);
      expect(e.value("netprobify_shard_targets", { probe_name: "sharded" })).toBe(keptBy(index).length);
      expect(e.get("netprobify_shard_info").map((s) => s.labels)).toEqual([{ probe_name: "sharded", index: String(index), count: String(COUNT) }]);
      expect(e.value("netprobify_inventory_targets", { inventory: "hosts" })).toBe(fileNames().filter((n) => shardOwner(n, COUNT) === index).length);
    });
    expect(scrapes.reduce((n, e) => n + (e.value("netprobify_shard_targets") ?? 0), 0)).toBe(CONFIGURED + FROM_FILE);
  }, 40_000);

  test("each logged at start which shard it is, from where, and how many configured targets it keeps", () => {
    daemons.forEach((d, index) => {
      const line = d.logLines.map(parseLogLine).find((l) => l?.msg?.startsWith("sharded:"));
      expect(line).toMatchObject({
        level: "INFO",
        shard: `${index}/${COUNT}`,
        from: index === COUNT - 1 ? "environment" : "--shard",
        configured_targets: String(CONFIGURED),
        configured_kept: String(configuredNames.filter((n) => shardOwner(n, COUNT) === index).length),
      });
    });
  });

  test("a target posted to a prober's API is probed there, though the hash gives its name to another prober", async () => {
    const address = `198.19.${subnet}.250`;
    const name = `api_${address}`;
    const owner = shardOwner(name, COUNT);
    const poster = (owner + 1) % COUNT;
    const r = await fetch(`http://127.0.0.1:${apiPorts[poster]}/api/target`, {
      method: "POST",
      headers: { apikey: TOKEN, "content-type": "application/json" },
      body: JSON.stringify({ owner: "oncall", hostname: address, type: "ICMPping" }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(r.status).toBe(201);
    const e = await daemons[poster]!.waitFor(`${name} probed by prober ${poster}`, (x) => (sentOf(x, name) ?? 0) >= 2 && x, { timeoutMs: 20_000 });
    expect(e.value("icmp_loss_total", { destination: name })).toBe(0);
    expect(e.value("netprobify_inventory_targets", { inventory: "api" })).toBe(1);
    for (const [index, d] of daemons.entries()) if (index !== poster) expect(sentOf(await d.scrape(), name)).toBeUndefined();
  }, 30_000);

  test("--shard wins over the config's global.shard, through a reload too", async () => {
    const d = daemons[0]!;
    d.writeConfig(config().replace("probe_name: sharded", "probe_name: sharded-reloaded").replace("  dns_update_interval: 0\n", "  dns_update_interval: 0\n  shard: {index: 0, count: 1}\n"));
    d.signal("SIGHUP");
    const e = await d.waitFor("the reload installed", (x) => x.value("netprobify_shard_targets", { probe_name: "sharded-reloaded" }) !== undefined && x, { timeoutMs: 15_000 });
    expect(e.get("netprobify_shard_info").map((s) => s.labels)).toEqual([{ probe_name: "sharded-reloaded", index: "0", count: String(COUNT) }]);
    // The API target of the test before is on this prober when it was the one posted to.
    const posted = e.value("netprobify_inventory_targets", { inventory: "api" }) ?? 0;
    expect(e.value("netprobify_shard_targets")).toBe([...configuredNames, ...fileNames()].filter((n) => shardOwner(n, COUNT) === 0).length + posted);
  }, 20_000);
});
