/**
 * The network of the capacity and cost benchmarks: the prober and the test host in two namespaces
 * of their own (tests/support/testnet.ts's createNamespaces: per-run prefix, always torn down),
 * joined by one veth, so that the generated targets (scripts/gen-targets.ts: consecutive addresses
 * of 198.18.0.0/15 from 198.18.0.1) can be routed whole without meeting the root namespace's
 * routes, nor the test hosts other runs make there (198.18.100-199.0/24 and 198.19.100-199.0/24).
 *
 *   prober namespace                         host namespace
 *   198.19.255.1/30  <----- veth ----->      198.19.255.2/30
 *   198.18.0.0/15 via 198.19.255.2           198.18.0.0/16, 198.19.0.0/17 and 198.19.128.0/18
 *                                            local on lo: it answers for every target address
 *
 * Nothing else crosses the veth: IPv6 is off on both ends and each end's neighbour entry for the
 * other is static, so the interface counters (`ip -s link`) count probes and answers only, and the
 * benchmarks compare them with the daemon's own counts exactly. Everything that runs in the
 * prober's namespace (the daemon, Prometheus, curl) talks over that namespace's loopback, where
 * every port is free.
 */
import { EXIT_FAILURE } from "../src/cli/exit.ts";
import { createNamespaces, type BareNamespaces } from "../tests/support/testnet.ts";

export const PROBER_ADDRESS = "198.19.255.1";
export const HOST_ADDRESS = "198.19.255.2";
/** Targets the host answers for: 198.18.0.1 up to 198.19.191.255 (local routes below). */
export const MAX_TARGET_ADDRESSES = (1 << 16) + (1 << 15) + (1 << 14) - 1;
const LOCAL_ROUTES = ["198.18.0.0/16", "198.19.0.0/17", "198.19.128.0/18"];

/** Settings of the host that make its answers deterministic under load (as testnet.ts's hosts). */
const HOST_SYSCTLS = [
  "net.ipv4.icmp_ratelimit=0",
  "net.ipv4.icmp_msgs_per_sec=1000000000",
  "net.ipv4.icmp_msgs_burst=1000000000",
  "net.ipv4.tcp_syncookies=1",
  "net.core.somaxconn=65535",
  "net.ipv4.tcp_max_syn_backlog=65535",
  "net.ipv4.conf.all.rp_filter=0",
  "net.ipv4.conf.default.rp_filter=0",
  // A new namespace inherits the root's ip_forward: the host answers, it does not route.
  "net.ipv4.ip_forward=0",
];

export interface LinkCounters {
  rxPackets: number;
  txPackets: number;
  rxDropped: number;
  txDropped: number;
  rxErrors: number;
  txErrors: number;
}

export interface ProberNet {
  readonly prober: string;
  readonly host: string;
  readonly proberIf: string;
  readonly hostIf: string;
  /** argv run inside namespace `ns`. */
  inNs(ns: string, argv: string[]): string[];
  /** Runs argv in `ns` and returns its stdout; throws with its stderr on a non-zero exit. */
  run(ns: string, argv: string[]): string;
  /** The veth counters on the host's end and on the prober's end. */
  counters(): { host: LinkCounters; prober: LinkCounters };
  teardown(): Promise<void>;
}

function sh(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

function linkCounters(ns: string, ifname: string): LinkCounters {
  const [link] = JSON.parse(sh(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname])) as {
    stats64?: { rx: Record<string, number>; tx: Record<string, number> };
  }[];
  const s = link?.stats64;
  if (!s) throw new Error(`ip -s link in ${ns} shows no counters for ${ifname}`);
  return {
    rxPackets: s.rx.packets ?? NaN,
    txPackets: s.tx.packets ?? NaN,
    rxDropped: s.rx.dropped ?? NaN,
    txDropped: s.tx.dropped ?? NaN,
    rxErrors: s.rx.errors ?? NaN,
    txErrors: s.tx.errors ?? NaN,
  };
}

/** createProberNet(), or the script's one-line refusal (exit 1) when the network cannot be built. */
export async function proberNetOrExit(script: string): Promise<ProberNet> {
  try {
    return await createProberNet();
  } catch (e) {
    console.error(`${script}: cannot run: the test network could not be built: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    process.exit(EXIT_FAILURE);
  }
}

export async function createProberNet(): Promise<ProberNet> {
  const net: BareNamespaces = await createNamespaces(2);
  try {
    const [prober, host] = net.namespaces as [string, string];
    const proberIf = `${net.prefix}p0`;
    const hostIf = `${net.prefix}h0`;
    const P = ["ip", "-n", prober];
    const H = ["ip", "-n", host];
    sh(["ip", "netns", "exec", host, "sysctl", "-qw", ...HOST_SYSCTLS]);
    sh([...P, "link", "add", proberIf, "type", "veth", "peer", "name", hostIf, "netns", host]);
    sh(["ip", "netns", "exec", prober, "sysctl", "-qw", `net.ipv6.conf.${proberIf}.disable_ipv6=1`]);
    sh(["ip", "netns", "exec", host, "sysctl", "-qw", `net.ipv6.conf.${hostIf}.disable_ipv6=1`]);
    sh([...P, "link", "set", "lo", "up"]);
    sh([...H, "link", "set", "lo", "up"]);
    sh([...P, "addr", "add", `${PROBER_ADDRESS}/30`, "dev", proberIf]);
    sh([...H, "addr", "add", `${HOST_ADDRESS}/30`, "dev", hostIf]);
    const mac = (ns: string, ifname: string) => (JSON.parse(sh(["ip", "-n", ns, "-j", "link", "show", "dev", ifname])) as { address: string }[])[0]!.address;
    sh([...P, "neigh", "replace", HOST_ADDRESS, "lladdr", mac(host, hostIf), "nud", "permanent", "dev", proberIf]);
    sh([...H, "neigh", "replace", PROBER_ADDRESS, "lladdr", mac(prober, proberIf), "nud", "permanent", "dev", hostIf]);
    sh([...P, "link", "set", proberIf, "up"]);
    sh([...H, "link", "set", hostIf, "up"]);
    sh([...P, "route", "add", "198.18.0.0/15", "via", HOST_ADDRESS, "dev", proberIf]);
    for (const r of LOCAL_ROUTES) sh([...H, "route", "add", "local", r, "dev", "lo"]);
    const inNs = (ns: string, argv: string[]) => ["ip", "netns", "exec", ns, ...argv];
    const pn: ProberNet = {
      prober,
      host,
      proberIf,
      hostIf,
      inNs,
      run: (ns, argv) => sh(inNs(ns, argv)),
      counters: () => ({ host: linkCounters(host, hostIf), prober: linkCounters(prober, proberIf) }),
      teardown: () => net.teardown(),
    };
    // The path works: a connection to a target address is refused (the host's RST).
    const probe = Bun.spawnSync(inNs(prober, ["timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/198.18.0.1/443"]), { stdout: "pipe", stderr: "pipe" });
    if (!/refused/i.test(probe.stderr.toString())) throw new Error(`the host does not answer 198.18.0.1:443 with a RST: ${probe.stderr.toString().trim() || `exit ${probe.exitCode}`}`);
    return pn;
  } catch (e) {
    await net.teardown().catch(() => undefined);
    throw e;
  }
}
