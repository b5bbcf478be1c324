/**
 * A daemon left alone: periodic reloads of an unchanged file, a file changed while an iteration
 * is in flight, reloads that must fail without touching what runs (a listener port already taken,
 * a destination the planner cannot expand), durations at their schema maxima. Loopback targets.
 *
 * Needs root (the engine's raw packets).
 */
import { afterEach, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { freePort, startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { requireRoot } from "../support/testnet.ts";
import { bytes, exchange } from "../support/raw-http.ts";
import { MAX_DURATION_S, MAX_LIFETIME_S } from "../../src/config/limits.ts";

const running: DaemonProcess[] = [];
afterEach(async () => {
  for (const d of running.splice(0)) await d.stop();
});

async function daemon(config: string): Promise<DaemonProcess> {
  requireRoot();
  const d = await startDaemon({ config });
  running.push(d);
  return d;
}

const count = (d: DaemonProcess, needle: string) => d.logLines.filter((l) => l.includes(needle)).length;
const sent = (e: Exposition, destination: string) => e.value("icmp_sent_total", { destination });

/** One ICMP target whose iteration (10 packets 150 ms apart) outlasts reload_conf_interval. */
function slowConfig(port: string, extra = "", reloadEvery = 1): string {
  return `global:
  probe_name: nb-unattended
  interval: 1
  interval_packets: 0.15
  reload_conf_interval: ${reloadEvery}
  nb_proc: 1
  logging_level: INFO
  dns_update_interval: 300
  prometheus_port: ${port}
  prometheus_address: 127.0.0.1
groups:
  g1: {src_port_a: 65000, src_port_z: 65001}
targets:
  slow:
    type: ICMPping
    destination: 127.0.0.1
    nb_packets: 10
    timeout: 0.3
${extra}`;
}

test("reload_conf_interval shorter than an iteration: every iteration is published whole, an unchanged file is never reloaded, a changed one applies when the iteration in flight ends", async () => {
  const d = await daemon(slowConfig("__PORT__"));
  const sentSeen: number[] = [];
  const e = await d.waitFor("three iterations published", (x: Exposition) => {
    const n = sent(x, "slow");
    if (n !== undefined) sentSeen.push(n);
    return (n ?? 0) >= 30 ? x : undefined;
  }, { timeoutMs: 15_000 });
  // Whole iterations only: 10 probes each, never a partial or dropped one.
  expect(sentSeen.every((n) => n % 10 === 0)).toBe(true);
  expect(e.value("app_reload_conf_failed_status", { probe_name: "nb-unattended" })).toBe(0);
  expect(e.value("netprobify_worker_restarts_total", { probe_name: "nb-unattended" })).toBe(0);
  expect(count(d, "configuration reloaded")).toBe(0);

  // Iterations run back to back here (1.5 s for a 1 s interval): a change lands mid-iteration.
  d.writeConfig(slowConfig("__PORT__", `  added:
    type: ICMPping
    destination: 127.0.0.1
    nb_packets: 2
    timeout: 0.3
`));
  await d.waitFor("the added target's series", (x) => ((sent(x, "added") ?? 0) >= 2 ? x : undefined), { timeoutMs: 15_000 });
  expect(count(d, "applies when the iteration in flight ends")).toBeGreaterThanOrEqual(1);
  expect(count(d, "configuration reloaded")).toBe(1);
  const after = await d.scrape();
  expect(sent(after, "slow")! % 10).toBe(0);
  expect(d.stderr).not.toContain("    at ");
}, 40_000);

test("reloads that cannot be run keep the running config, its listener and its probing: a taken port, a destination of 2^64 addresses; status 1, one log line each, no stack trace", async () => {
  // Reloads on SIGHUP only here.
  const reload = (port: string, extra = "") => {
    d.writeConfig(slowConfig(port, extra, 0));
    d.signal("SIGHUP");
  };
  const d = await daemon(slowConfig("__PORT__", "", 0));
  await d.waitFor("a first iteration", (x) => ((sent(x, "slow") ?? 0) >= 10 ? x : undefined), { timeoutMs: 15_000 });

  const busy: Server = createServer();
  const busyPort = await freePort();
  await new Promise<void>((resolve) => busy.listen(busyPort, "127.0.0.1", resolve));
  try {
    reload(String(busyPort));
    await d.waitFor("the reload to fail", (x) =>
      x.value("app_reload_conf_failed_status", { probe_name: "nb-unattended" }) === 1 ? x : undefined, { timeoutMs: 10_000 });
    expect(count(d, "configuration reload failed")).toBe(1);
    expect(d.stderr).toContain(`127.0.0.1:${busyPort}`);
  } finally {
    busy.close();
  }
  const before = sent(await d.scrape(), "slow")!;
  await d.waitFor("probing to go on on the old listener", (x) => ((sent(x, "slow") ?? 0) > before ? x : undefined), { timeoutMs: 10_000 });

  reload("__PORT__", `  huge:
    type: ICMPping
    destination: "fd00:18:ffff::/64"
    nb_packets: 1
`);
  await d.waitFor("the second failure logged", () => (count(d, "configuration reload failed") === 2 ? true : undefined), { timeoutMs: 10_000 });
  const e = await d.scrape();
  expect(e.value("app_reload_conf_failed_status", { probe_name: "nb-unattended" })).toBe(1);
  expect(e.get("icmp_sent_total").map((s) => s.labels.destination)).toEqual(["slow"]);
  const later = sent(e, "slow")!;
  await d.waitFor("probing to go on", (x) => ((sent(x, "slow") ?? 0) > later ? x : undefined), { timeoutMs: 10_000 });

  // A free port: the listener moves, the old one closes.
  const newPort = await freePort();
  reload(String(newPort));
  // Bound when the file is accepted, the new listener serves the running config until the
  // iteration in flight ends; then the status goes back to 0 and the old listener closes.
  const installed = 'app_reload_conf_failed_status{probe_name="nb-unattended"} 0';
  const deadline = Date.now() + 10_000;
  let text = "";
  while (!text.includes(installed) && Date.now() < deadline) {
    text = await fetch(`http://127.0.0.1:${newPort}/metrics`).then((r) => r.text(), () => "");
    if (!text.includes(installed)) await Bun.sleep(100);
  }
  expect(text).toContain(installed);
  expect(await fetch(`${d.url}/metrics`).then(() => "answered", () => "closed")).toBe("closed");
  expect(d.alive).toBe(true);
  expect(d.stderr).not.toContain("    at ");
}, 60_000);

test("every duration at its largest accepted value (interval, reload_conf_interval, timeout, dns_update_interval, an http inventory's refresh_interval and timeout, the API's lifetimes): one iteration, then a quiet wait (no timer fires early)", async () => {
  requireRoot();
  const apiPort = await freePort();
  const d = await startDaemon({
    config: `global:
  probe_name: nb-long
  interval: ${MAX_DURATION_S}
  reload_conf_interval: ${MAX_DURATION_S}
  timeout: ${MAX_DURATION_S}
  nb_proc: 1
  logging_level: INFO
  dns_update_interval: ${MAX_DURATION_S}
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
groups:
  g1: {src_port_a: 65000, src_port_z: 65001}
targets:
  once:
    type: ICMPping
    destination: localhost
    address_family: ipv4
    nb_packets: 3
    timeout: 0.3
    dns_update_interval: ${MAX_DURATION_S}
inventories:
  http:
    slow: {url: "http://127.0.0.1:${apiPort}/api/targets", refresh_interval: ${MAX_DURATION_S}, timeout: ${MAX_DURATION_S}}
`,
    files: {
      "api.yaml": `token: "a-long-random-secret-for-the-test"
listen_address: 127.0.0.1
listen_port: ${apiPort}
groups: [g1]
target_lifetime: ${MAX_LIFETIME_S}
max_target_lifetime: ${MAX_LIFETIME_S}
`,
    },
  });
  running.push(d);
  await d.waitFor("the first iteration", (x) => ((sent(x, "once") ?? 0) >= 3 ? x : undefined), { timeoutMs: 10_000 });
  await Bun.sleep(3000);
  const e = await d.scrape();
  expect(sent(e, "once")).toBe(3);
  expect(d.stderr).not.toContain("TimeoutOverflowWarning");
  expect(e.value("app_host_resolution_status", { destination: "once" })).toBe(1);
  expect(count(d, "configuration reload")).toBe(0);
  expect(count(d, "overran the interval")).toBe(0);
  expect(d.stderr).not.toContain("    at ");
}, 30_000);

test("the metrics listener of a running daemon: HTTP/1.0 without Host is scraped, POST is 405, nothing internal leaks, no stack trace", async () => {
  const d = await daemon(slowConfig("__PORT__", "", 0));
  const old = await exchange(d.port, { pieces: [bytes("GET /metrics HTTP/1.0\r\n\r\n")], idleMs: 5000 });
  expect(old.responses[0]?.status).toBe(200);
  expect(new TextDecoder().decode(old.responses[0]!.body)).toContain("# TYPE app_reload_conf_failed_status gauge");
  const post = await exchange(d.port, { pieces: [bytes("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")], idleMs: 5000 });
  expect(post.responses[0]?.status).toBe(405);
  const bad = await exchange(d.port, { pieces: [bytes("GET /metrics HTTP/1.1\r\nHost: [::1\r\n\r\n")], idleMs: 5000 });
  expect(bad.responses[0]?.status).toBe(400);
  const bodies = [old, post, bad].map((x) => new TextDecoder().decode(x.responses[0]!.body)).join("\n");
  expect(bodies).not.toContain(process.cwd());
  expect(bodies).not.toContain("    at ");
  expect(d.stderr).not.toContain("    at ");
}, 30_000);
