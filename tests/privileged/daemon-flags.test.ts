/**
 * The daemon's ecosystem flags end to end (`bun src/main.ts ...` in its own process):
 * --config.file, two --web.listen-address (IPv4 and IPv6) that replace the config's address and
 * port and stay through a reload that moves them (one warning), --log.level overriding the
 * config's logging_level, and --log.format json for every line, the start line naming the
 * listeners, TLS and auth. Probes loopback only. Needs root (raw packets).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePort, startDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { requireRoot } from "../support/testnet.ts";

function config(probeName: string, port: number): string {
  return `global:
  probe_name: ${probeName}
  interval: 1
  nb_proc: 1
  logging_level: WARNING
  prometheus_port: ${port}
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  g:
    src_port_a: 65210
    src_port_z: 65211
targets:
  lo_icmp:
    type: ICMPping
    destination: 127.0.0.1
    nb_packets: 2
    timeout: 0.3
`;
}

/** Whether something answers HTTP there. */
async function serves(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).status === 200;
  } catch {
    return false;
  }
}

describe("--config.file, --web.listen-address (twice), --log.level debug, --log.format json", () => {
  let d: DaemonProcess;
  let ports: { config: number; v4: number; v6: number; moved: number };
  const json = () => d.logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const listenerWarnings = () => json().filter((l) => l.level === "WARNING" && String(l.msg).includes("--web.listen-address"));
  /** Waits until the scrape shows probe_name `name` (the reload installed). */
  const reloadedTo = (name: string) =>
    d.waitFor(`probe_name ${name}`, (e) => e.get("app_reload_conf_failed_status")[0]?.labels.probe_name === name, { timeoutMs: 15_000 });

  beforeAll(async () => {
    requireRoot();
    ports = { config: await freePort(), v4: await freePort(), v6: await freePort("::1"), moved: await freePort() };
    d = await startDaemon({
      config: config("nb-flags", ports.config),
      port: ports.v4,
      args: (path) => [
        "--config.file",
        path,
        "--web.listen-address",
        `127.0.0.1:${ports.v4}`,
        "--web.listen-address",
        `[::1]:${ports.v6}`,
        "--log.level",
        "debug",
        "--log.format",
        "json",
      ],
    });
    await d.waitFor("the first iteration", (e) => e.get("icmp_sent_total").length > 0);
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
  });

  test("metrics on both flag addresses, not on the config's port", async () => {
    expect(await serves(`http://127.0.0.1:${ports.v4}/metrics`)).toBe(true);
    expect(await serves(`http://[::1]:${ports.v6}/metrics`)).toBe(true);
    expect(await serves(`http://127.0.0.1:${ports.config}/metrics`)).toBe(false);
  });

  test("every log line is one JSON object; the start line names both listeners, tls and auth; DEBUG lines despite the config's WARNING", () => {
    const lines = json();
    expect(lines.every((l) => typeof l.ts === "string" && typeof l.level === "string" && typeof l.module === "string" && typeof l.msg === "string")).toBe(true);
    expect(lines[0]).toMatchObject({ level: "INFO", module: "daemon", msg: "starting", probe_name: "nb-flags", listen: `127.0.0.1:${ports.v4},[::1]:${ports.v6}`, tls: false, auth: "none" });
    expect(lines.filter((l) => l.msg === "serving metrics").map((l) => [l.address, l.port])).toEqual([
      ["127.0.0.1", ports.v4],
      ["::1", ports.v6],
    ]);
    expect(lines.some((l) => l.level === "DEBUG" && l.msg === "iteration done")).toBe(true);
    expect(d.stdout).toBe("");
  });

  test("a reload that moves the config's port: one warning, the flag's listeners stay, the new port is not opened; a later reload warns no more", async () => {
    d.writeConfig(config("nb-flags-moved", ports.moved));
    d.signal("SIGHUP");
    await reloadedTo("nb-flags-moved");
    expect(listenerWarnings()).toEqual([
      expect.objectContaining({ module: "daemon", config_listen: `127.0.0.1:${ports.moved}`, listen: `127.0.0.1:${ports.v4},[::1]:${ports.v6}` }),
    ]);
    expect(await serves(`http://127.0.0.1:${ports.v4}/metrics`)).toBe(true);
    expect(await serves(`http://[::1]:${ports.v6}/metrics`)).toBe(true);
    expect(await serves(`http://127.0.0.1:${ports.moved}/metrics`)).toBe(false);

    // Same address and port as the running config: nothing to warn about.
    d.writeConfig(config("nb-flags-again", ports.moved));
    d.signal("SIGHUP");
    await reloadedTo("nb-flags-again");
    expect(listenerWarnings().length).toBe(1);
  }, 40_000);
});
