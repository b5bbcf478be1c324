import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync, readdirSync } from "node:fs";
import { connect } from "node:net";
import type { PcapRecord } from "./pcap-file.ts";
import { createTestNet, processAlive, requireRoot, STATE_DIR, sweepStale, type TestHost, type TestNet } from "./testnet.ts";

function ipJson<T>(args: string[]): T {
  const r = spawnSync("ip", ["-j", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip -j ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function namespaces(): string[] {
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
}

function links(): string[] {
  return ipJson<{ ifname: string }[]>(["link", "show"]).map((l) => l.ifname);
}

/** TCP connect from the root namespace: "connected" or the error code (ECONNREFUSED, ...). */
function tcpConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve("timeout");
    }, 3000);
    s.once("connect", () => {
      clearTimeout(timer);
      s.destroy();
      resolve("connected");
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
}

interface IcmpSeen {
  family: 4 | 6;
  src: string;
  dst: string;
  type: number;
  code: number;
}

/** ICMP / ICMPv6 messages in Ethernet frames (no IPv6 extension headers in these tests). */
function icmpOf(records: PcapRecord[]): IcmpSeen[] {
  const out: IcmpSeen[] = [];
  for (const r of records) {
    const d = r.data;
    const ethertype = (d[12]! << 8) | d[13]!;
    if (ethertype === 0x0800 && d[14 + 9] === 1) {
      const ihl = (d[14]! & 0x0f) * 4;
      out.push({ family: 4, src: d.subarray(26, 30).join("."), dst: d.subarray(30, 34).join("."), type: d[14 + ihl]!, code: d[15 + ihl]! });
    } else if (ethertype === 0x86dd && d[14 + 6] === 58) {
      const v6 = (o: number) => {
        const w: string[] = [];
        for (let i = 0; i < 16; i += 2) w.push(((d[o + i]! << 8) | d[o + i + 1]!).toString(16));
        return w.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:{3,}/, "::");
      };
      out.push({ family: 6, src: v6(22), dst: v6(38), type: d[54]!, code: d[55]! });
    }
  }
  return out;
}

/**
 * One socket per datagram: on a reused socket the port unreachable of one datagram turns the
 * next send into ECONNREFUSED.
 */
async function sendUdp(family: 4 | 6, host: string, port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const s = createSocket(family === 4 ? "udp4" : "udp6");
    await new Promise<void>((resolve, reject) => s.send(Buffer.from([i & 0xff]), port, host, (e) => (e ? reject(e) : resolve())));
    s.close();
  }
}

describe("testnet", () => {
  let net: TestNet;
  let h: TestHost;

  beforeAll(async () => {
    requireRoot();
    net = await createTestNet({ hosts: 2 });
    h = net.hosts[0]!;
  }, 60_000);

  afterAll(async () => {
    await net?.teardown();
  });

  test("runs as root (these tests must not pass by not running)", () => {
    requireRoot();
  });

  test("hosts get their own names, subnets and the documented addresses", () => {
    const [a, b] = net.hosts as [TestHost, TestHost];
    expect(a.subnet).not.toBe(b.subnet);
    for (const x of [a, b]) {
      expect(x.subnet).toBeGreaterThanOrEqual(100);
      expect(x.subnet).toBeLessThanOrEqual(199);
      expect(x.ns.startsWith(net.prefix)).toBe(true);
      expect(x.rootIf.length).toBeLessThanOrEqual(15);
      expect(x.v4).toEqual({
        root: `198.18.${x.subnet}.1`,
        host: `198.18.${x.subnet}.2`,
        routedPrefix: `198.19.${x.subnet}.0/24`,
        routedExample: `198.19.${x.subnet}.7`,
        blackhole: `198.18.${x.subnet}.99`,
      });
      expect(x.v6.host).toBe(`fd00:18:${x.subnet}::2`);
      expect(x.v6.routedPrefix).toBe(`fd00:19:${x.subnet}::/64`);
    }
    const rootLink = ipJson<{ address: string; ifindex: number }[]>(["link", "show", h.rootIf])[0]!;
    expect(h.rootMac).toBe(rootLink.address);
    expect(h.rootIfindex).toBe(rootLink.ifindex);
    const hostLink = ipJson<{ address: string }[]>(["-n", h.ns, "link", "show", h.hostIf])[0]!;
    expect(h.hostMac).toBe(hostLink.address);
  });

  test("the host answers ping on IPv4 and IPv6, and so does its routed range", async () => {
    for (const addr of [h.v4.host, h.v6.host, h.v4.routedExample, h.v6.routedExample, `198.19.${h.subnet}.200`, `fd00:19:${h.subnet}::abcd`]) {
      const r = await net.exec(null, ["ping", "-c1", "-W2", addr]);
      expect({ addr, code: r.code, out: r.code === 0 ? "" : r.stdout + r.stderr }).toEqual({ addr, code: 0, out: "" });
    }
  });

  test("the open port accepts on IPv4 and IPv6; a closed port refuses", async () => {
    expect(await tcpConnect(h.v4.host, h.openPort)).toBe("connected");
    expect(await tcpConnect(h.v6.host, h.openPort)).toBe("connected");
    expect(await tcpConnect(h.v4.routedExample, h.openPort)).toBe("connected");
    expect(await tcpConnect(h.v4.host, h.closedPort)).toBe("ECONNREFUSED");
    expect(await tcpConnect(h.v6.host, h.closedPort)).toBe("ECONNREFUSED");
  });

  test("the blackhole address: probes arrive in the namespace, nothing answers, no ICMP error", async () => {
    const cap = await net.capture(h, "icmp or icmp6");
    const [r4, r6] = await Promise.all([
      net.exec(null, ["ping", "-c3", "-i0.2", "-W1", h.v4.blackhole]),
      net.exec(null, ["ping", "-c3", "-i0.2", "-W1", h.v6.blackhole]),
    ]);
    expect(r4.code).not.toBe(0);
    expect(r6.code).not.toBe(0);
    const seen = icmpOf(await cap.stop());
    expect(cap.droppedByKernel).toBe(0);
    expect(cap.linktype).toBe(1);
    expect(seen.filter((m) => m.family === 4 && m.type === 8 && m.dst === h.v4.blackhole)).toHaveLength(3);
    expect(seen.filter((m) => m.family === 6 && m.type === 128 && m.dst === h.v6.blackhole)).toHaveLength(3);
    // Nothing comes back: no echo reply, no destination unreachable (v4 type 3, v6 type 1).
    const fromHost = seen.filter((m) => m.src === h.v4.host || m.src === h.v6.host || m.src === h.v4.blackhole || m.src === h.v6.blackhole);
    expect(fromHost.filter((m) => m.type === 0 || m.type === 3 || (m.family === 6 && (m.type === 1 || m.type === 129)))).toEqual([]);
  });

  test("closed UDP ports answer port unreachable for every probe: ICMP rate limits are off", async () => {
    const cap = await net.capture(h, "(icmp and icmp[icmptype] == 3) or (icmp6 and ip6[40] == 1)", { side: "root" });
    const n = 300; // far beyond the default burst of 50 and 1 per second per destination
    await sendUdp(4, h.v4.host, h.closedPort, n);
    await sendUdp(6, h.v6.host, h.closedPort, n);
    const seen = icmpOf(await cap.stop({ settleMs: 100 }));
    expect(seen.filter((m) => m.family === 4 && m.type === 3 && m.code === 3 && m.src === h.v4.host)).toHaveLength(n);
    expect(seen.filter((m) => m.family === 6 && m.type === 1 && m.code === 4 && m.src === h.v6.host)).toHaveLength(n);
  });

  test("captures keep nanosecond kernel timestamps in order", async () => {
    const cap = await net.capture(h, `icmp and host ${h.v4.host}`);
    await net.exec(null, ["ping", "-c2", "-i0.2", "-W1", h.v4.host]);
    const recs = await cap.stop();
    expect(recs.length).toBe(4);
    for (let i = 1; i < recs.length; i++) {
      const a = recs[i - 1]!;
      const b = recs[i]!;
      expect(b.tsSec * 1e9 + b.tsNsec).toBeGreaterThanOrEqual(a.tsSec * 1e9 + a.tsNsec);
    }
    expect(Math.abs(recs[0]!.tsSec - Date.now() / 1000)).toBeLessThan(60);
  });

  test("two nets can live side by side (different prefixes and subnets)", async () => {
    const [n1, n2] = await Promise.all([createTestNet(), createTestNet()]);
    try {
      expect(n1.prefix).not.toBe(n2.prefix);
      const used = new Set([...net.hosts, ...n1.hosts, ...n2.hosts].map((x) => x.subnet));
      expect(used.size).toBe(4);
      const r = await n2.exec(null, ["ping", "-c1", "-W2", n2.hosts[0]!.v4.host]);
      expect(r.code).toBe(0);
    } finally {
      await n1.teardown();
      await n2.teardown();
    }
  }, 60_000);

  test("teardown removes every namespace, interface, route, claim and process, and is idempotent", async () => {
    const other = await createTestNet({ hosts: 2 });
    const nss = other.hosts.map((x) => x.ns);
    const ifs = other.hosts.map((x) => x.rootIf);
    const subnets = other.hosts.map((x) => x.subnet);
    const pids = nss.flatMap((ns) => spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean).map(Number));
    expect(pids.length).toBe(2); // the listeners
    await other.capture(other.hosts[0]!, "icmp"); // left running on purpose
    await other.teardown();
    await other.teardown();
    expect(namespaces().filter((n) => nss.includes(n))).toEqual([]);
    expect(links().filter((l) => ifs.includes(l) || l.startsWith(other.prefix))).toEqual([]);
    for (const x of subnets) {
      expect(ipJson<unknown[]>(["route", "show", `198.19.${x}.0/24`])).toEqual([]);
      expect(ipJson<unknown[]>(["-6", "route", "show", `fd00:19:${x}::/64`])).toEqual([]);
      expect(existsSync(`${STATE_DIR}/subnet-${x}`)).toBe(false);
    }
    expect(pids.filter(processAlive)).toEqual([]);
    expect(readdirSync(STATE_DIR).filter((f) => f.startsWith(other.prefix))).toEqual([]);
  }, 60_000);

  /** Starts a child bun that builds a net and then ends in the given way; returns its net's names. */
  async function childNet(ending: string): Promise<{ prefix: string; ns: string; rootIf: string; code: number | null }> {
    const code = `
      const { createTestNet } = await import(${JSON.stringify(`${import.meta.dir}/testnet.ts`)});
      const net = await createTestNet();
      const h = net.hosts[0];
      process.stdout.write(JSON.stringify({ prefix: net.prefix, ns: h.ns, rootIf: h.rootIf }) + "\\n");
      ${ending}
    `;
    const child = Bun.spawn([process.execPath, "-e", code], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(child.stdout).text();
    const exit = await child.exited;
    const line = out.trim().split("\n")[0];
    if (!line) throw new Error(`child printed nothing; stderr: ${await new Response(child.stderr).text()}`);
    return { ...(JSON.parse(line) as { prefix: string; ns: string; rootIf: string }), code: exit };
  }

  test("a process that exits without teardown still cleans up (exit handler)", async () => {
    const c = await childNet("process.exit(0);");
    expect(c.code).toBe(0);
    expect(namespaces()).not.toContain(c.ns);
    expect(links()).not.toContain(c.rootIf);
  }, 30_000);

  test("SIGTERM cleans up too", async () => {
    const c = await childNet("process.kill(process.pid, 'SIGTERM'); await Bun.sleep(5000);");
    expect(c.code).toBe(128 + 15);
    expect(namespaces()).not.toContain(c.ns);
    expect(links()).not.toContain(c.rootIf);
  }, 30_000);

  test("sweepStale removes what a SIGKILLed run left, and leaves live runs alone", async () => {
    const c = await childNet("process.kill(process.pid, 'SIGKILL');");
    expect(c.code).not.toBe(0);
    // Not asserted: that our call is the one that sweeps. A test run in another process sweeps
    // dead runs too when it creates a net, so only the end state is certain.
    const swept = sweepStale();
    expect(swept.errors).toEqual([]);
    expect(namespaces()).not.toContain(c.ns);
    expect(links()).not.toContain(c.rootIf);
    expect(existsSync(`${STATE_DIR}/${c.prefix}.json`)).toBe(false);
    // Our own net belongs to a live process: untouched.
    expect(namespaces()).toContain(h.ns);
    expect(links()).toContain(h.rootIf);
    expect((await net.exec(null, ["ping", "-c1", "-W2", h.v4.host])).code).toBe(0);
  }, 30_000);
});
