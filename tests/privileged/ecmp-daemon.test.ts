/**
 * ECMP path visibility in the daemon (issue 5, item 3): one broken member of an ECMP bundle, a
 * path that drops every probe from one source port of 16, shows in the metrics without a series
 * per port: *_paths_down = 1, *_path_loss_ratio_max = 1, and the loss ratio exactly 1/16.
 *
 * The daemon runs as users run it (its own process, scraped over HTTP) against a TUN host driven
 * by the simulator (tests/support/tun-responder.ts): the "broken" addresses drop every probe from
 * source port 65007, the "healthy" ones nothing. The simulator's log is the truth of the loss:
 * the daemon's loss counters must equal its drops, all of them from that one port.
 *
 * Needs root (TUN device, the daemon's captures): without it every test here fails, loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { createNamespaces, requireRoot, type BareNamespaces, type TunHost } from "../support/testnet.ts";
import { control, readDecisions, type TunDecision } from "../support/tun-responder.ts";

const PROBE_NAME = "nb-ecmp";
const GROUP = "ecmp";
const PORT_A = 65000;
const PORT_Z = 65015;
const BROKEN_PORT = 65007;
const NB_PACKETS = 64;

interface TargetSpec {
  name: string;
  type: "TCPsyn" | "UDPunreachable";
  family: 4 | 6;
  address: string;
  broken: boolean;
}

describe("daemon: one ECMP path of 16 down shows in *_paths_down and *_path_loss_ratio_max", () => {
  let net: BareNamespaces;
  let tun: TunHost;
  let daemon: DaemonProcess | null = null;
  let targets: TargetSpec[] = [];
  /** The scrape after the first iteration, and the simulator's log at that time. */
  let metrics: Exposition;
  let log: TunDecision[];

  beforeAll(async () => {
    requireRoot();
    net = await createNamespaces(1);
    tun = await net.addTunHost();
    const y = tun.subnet;
    const addr = (family: 4 | 6, n: number) => (family === 4 ? `198.18.${y}.${n}` : `fd00:19:${y}::${n.toString(16)}`);
    targets = [];
    for (const broken of [true, false]) {
      for (const type of ["TCPsyn", "UDPunreachable"] as const) {
        for (const family of [4, 6] as const) {
          const n = 10 + targets.length;
          targets.push({ name: `${broken ? "broken" : "healthy"}_${type === "TCPsyn" ? "tcp" : "udp"}_v${family}`, type, family, address: addr(family, n), broken });
        }
      }
    }
    await control(tun.v4.host, { op: "configure", config: { rules: targets.filter((t) => t.broken).map((t) => ({ dst: t.address, dropSrcPorts: [BROKEN_PORT] })) } });
    const config = [
      "global:",
      `  probe_name: ${PROBE_NAME}`,
      // The daemon spreads target starts over 90% of the slack of the interval: the first
      // iteration ends about 5.5 s in, the second starts at 6 s. The test looks at the first only.
      "  interval: 6",
      "  interval_packets: 0.004",
      "  nb_proc: 1",
      "  logging_level: INFO",
      "  dns_update_interval: 300",
      "  prometheus_port: __PORT__",
      "  prometheus_address: 127.0.0.1",
      "groups:",
      `  ${GROUP}:`,
      `    src_port_a: ${PORT_A}`,
      `    src_port_z: ${PORT_Z}`,
      "targets:",
      ...targets.flatMap((t) => [
        `  ${t.name}:`,
        `    type: ${t.type}`,
        `    destination: "${t.address}"`,
        `    dst_port: ${t.type === "TCPsyn" ? tun.openPort : tun.closedPort}`,
        `    nb_packets: ${NB_PACKETS}`,
        "    timeout: 1",
      ]),
    ].join("\n");
    daemon = await startDaemon({ config });
    metrics = await daemon.waitFor(
      "the first iteration of every target",
      (e) => targets.every((t) => e.value(`${prefix(t)}_sent_total`, labels(t)) === NB_PACKETS) && e,
      { timeoutMs: 30_000 },
    );
    await control(tun.v4.host, { op: "sync" });
    log = readDecisions(tun.logFile);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await net?.teardown();
  }, 60_000);

  const prefix = (t: TargetSpec) => (t.type === "TCPsyn" ? "tcpsyn" : "udp_unreachable");
  const labels = (t: TargetSpec) => ({ probe_name: PROBE_NAME, destination: t.name, address_family: `ipv${t.family}`, group: GROUP });
  const figures = (t: TargetSpec) => {
    const p = prefix(t);
    const v = (name: string) => metrics.value(`${p}_${name}`, labels(t));
    return {
      target: t.name,
      sent: v("sent_total"),
      lost: v("loss_total"),
      lossRatio: v("loss_ratio"),
      pathLossRatioMax: v("path_loss_ratio_max"),
      pathsDown: v("paths_down"),
    };
  };

  test("runs as root (these tests must not pass by not running)", () => {
    requireRoot();
  });

  test("the iteration was clean: nothing dropped by the prober's own capture, nothing unsent, no send lag worth a mark", () => {
    expect(metrics.value("netprobify_iteration_degraded", { probe_name: PROBE_NAME })).toBe(0);
    expect(metrics.value("netprobify_capture_dropped_total", { probe_name: PROBE_NAME })).toBe(0);
    expect(metrics.value("netprobify_send_errors_total", { probe_name: PROBE_NAME })).toBe(0);
  });

  test("TCPsyn and UDPunreachable behind the broken member (v4, v6): paths_down 1, path_loss_ratio_max 1, loss ratio exactly 1/16", () => {
    for (const t of targets.filter((x) => x.broken)) {
      expect(figures(t)).toEqual({ target: t.name, sent: NB_PACKETS, lost: NB_PACKETS / 16, lossRatio: 1 / 16, pathLossRatioMax: 1, pathsDown: 1 });
    }
  });

  test("the same probe types with nothing dropped: paths_down 0, path_loss_ratio_max 0, no loss", () => {
    for (const t of targets.filter((x) => !x.broken)) {
      expect(figures(t)).toEqual({ target: t.name, sent: NB_PACKETS, lost: 0, lossRatio: 0, pathLossRatioMax: 0, pathsDown: 0 });
    }
  });

  test("the daemon's loss is the simulator's: as many drops per target as its loss counter, every one from the broken port, every probe decided once", () => {
    for (const t of targets) {
      const proto = t.type === "TCPsyn" ? 6 : 17;
      // The first iteration's probes come first in the log (a second may have begun meanwhile).
      const mine = log.filter((e) => e.dst === t.address && e.proto === proto).slice(0, NB_PACKETS);
      const drops = mine.filter((e) => e.action === "drop");
      const perPort = new Map<number, number>();
      for (const e of mine) perPort.set(e.srcPort, (perPort.get(e.srcPort) ?? 0) + 1);
      expect({
        target: t.name,
        decisions: mine.length,
        drops: drops.length,
        dropPorts: [...new Set(drops.map((e) => e.srcPort))],
        ports: perPort.size,
        probesPerPort: [...new Set(perPort.values())],
      }).toEqual({
        target: t.name,
        decisions: NB_PACKETS,
        drops: figures(t).lost!,
        dropPorts: t.broken ? [BROKEN_PORT] : [],
        ports: 16,
        probesPerPort: [NB_PACKETS / 16],
      });
    }
  });
});
