/**
 * global.per_target_series in a running daemon (loopback targets): with false, the per-group
 * families and worst_targets targets' series per group; a SIGHUP to true brings every target's
 * series back and the group families go. What each family holds is tests/daemon/metrics-bounded.test.ts's.
 *
 * Needs root (the engine's raw packets).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startDaemon, type DaemonProcess } from "../support/daemon-process.ts";
import { requireRoot } from "../support/testnet.ts";

const config = (perTargetSeries: boolean) => `global:
  probe_name: nb-bounded
  interval: 1
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
  per_target_series: ${perTargetSeries}
  worst_targets: 2
groups:
  g1: {src_port_a: 65020, src_port_z: 65021}
targets:
${[33434, 33435, 33436, 33437, 33438].map((port, i) => `  t${i}: {type: TCPsyn, destination: 127.0.0.1, dst_port: ${port}, nb_packets: 2, timeout: 0.3}`).join("\n")}
`;

const group = { probe_name: "nb-bounded", group: "g1", address_family: "ipv4" };
let d: DaemonProcess;

beforeAll(async () => {
  requireRoot();
  d = await startDaemon({ config: config(false) });
}, 30_000);

afterAll(async () => {
  await d?.stop();
});

test("per_target_series: false, then true by SIGHUP: the group families and 2 targets' series, then every target's series and no group family", async () => {
  const bounded = await d.waitFor("two iterations in the group families", (x) => ((x.value("tcpsyn_group_sent_total", group) ?? 0) >= 20 ? x : undefined));
  expect(bounded.value("tcpsyn_group_targets", group)).toBe(5);
  expect(bounded.get("tcpsyn_sent_total").length).toBe(2);
  expect(bounded.get("tcpsyn_round_trip_seconds").length).toBe(2 * 2);
  expect(bounded.get("tcpsyn_round_trip_duration_seconds_count", group).length).toBe(1);

  d.writeConfig(config(true));
  d.signal("SIGHUP");
  const all = await d.waitFor("every target's series", (x) => (x.get("tcpsyn_sent_total").length === 5 ? x : undefined));
  expect([...all.families.keys()].filter((n) => n.includes("_group_"))).toEqual([]);
  expect(all.text).not.toContain("tcpsyn_group_");
}, 40_000);
