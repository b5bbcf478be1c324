import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseNetlink, type NetlinkMessage, type NetlinkRecord, type RouteInfo } from "../../src/native/netlink.ts";
import { createNamespaces, requireRoot, type BareNamespaces } from "../support/testnet.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/netlink");
const setup = JSON.parse(readFileSync(join(FIXTURES, "setup.json"), "utf8")) as { ifA: string; ifB: string };

/** The datagrams of a fixture (one hex line each; # lines say how it was captured). */
function datagrams(name: string): Uint8Array[] {
  return readFileSync(join(FIXTURES, `${name}.hex`), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => new Uint8Array(Buffer.from(l.trim(), "hex")));
}

function messages(name: string): NetlinkMessage[] {
  return datagrams(name).flatMap((d) => parseNetlink(d));
}

function only<K extends NetlinkRecord["kind"]>(ms: NetlinkMessage[], kind: K): Extract<NetlinkRecord, { kind: K }>[] {
  return ms.map((m) => m.record).filter((r): r is Extract<NetlinkRecord, { kind: K }> => r.kind === kind);
}

describe("parseNetlink on replies captured from the kernel", () => {
  test("route get behind a gateway", () => {
    const ms = messages("route-get-v4-gateway");
    expect(ms).toHaveLength(1);
    expect(ms[0]!.type).toBe(24); // RTM_NEWROUTE
    const [r] = only(ms, "route");
    expect(r!.route).toMatchObject({
      family: 4,
      type: "unicast",
      dst: "198.19.1.7",
      dstLen: 32,
      oif: 2,
      prefsrc: "198.18.1.1",
      gateway: "198.18.1.2",
      table: 254,
    });
  });

  test("route get to a local address is type local on lo", () => {
    const [r] = only(messages("route-get-v4-local"), "route");
    expect(r!.route).toMatchObject({ family: 4, type: "local", dst: "198.18.1.1", oif: 1, prefsrc: "198.18.1.1", gateway: null });
  });

  test("IPv6 route get to a connected peer, addresses in canonical form", () => {
    const [r] = only(messages("route-get-v6-connected"), "route");
    expect(r!.route).toMatchObject({ family: 6, type: "unicast", dst: "fd00:18:1::2", prefsrc: "fd00:18:1::1", gateway: null, oif: 2, priority: 256 });
  });

  test("no route: NLMSG_ERROR with ENETUNREACH, request header echoed (capped)", () => {
    const ms = messages("route-get-v4-unreachable");
    expect(ms).toHaveLength(1);
    expect(ms[0]!.type).toBe(2);
    expect(ms[0]!.flags & 0x100).toBe(0x100);
    expect(ms[0]!.record).toEqual({ kind: "error", errno: 101, message: null });
  });

  test("an error with the kernel's extended ack message", () => {
    const [e] = only(messages("neigh-get-invalid"), "error");
    expect(e).toEqual({ kind: "error", errno: 22, message: "Invalid values in header for neighbor get request" });
  });

  test("multipart link dump over two datagrams ends with NLMSG_DONE", () => {
    const ds = datagrams("link-dump");
    expect(ds.length).toBe(2);
    const ms = messages("link-dump");
    expect(ms.every((m) => m.flags & 0x2)).toBe(true); // NLM_F_MULTI
    expect(ms.at(-1)!.record).toEqual({ kind: "done", errno: 0 });
    const links = only(ms, "link").map((r) => r.link);
    expect(links).toHaveLength(2);
    expect(links[0]).toMatchObject({ ifindex: 1, ifname: "lo", loopback: true, up: true, arpHardwareType: 772, mtu: 65536, mac: "00:00:00:00:00:00" });
    expect(links[1]).toMatchObject({ ifindex: 2, ifname: setup.ifA, loopback: false, up: true, arpHardwareType: 1, mtu: 1400, mac: "02:00:5e:00:00:0a" });
    // All messages of one request share its sequence number.
    expect(new Set(ms.map((m) => m.seq)).size).toBe(1);
  });

  test("address dump: local addresses of both families with prefix length and scope", () => {
    const addrs = only(messages("addr-dump"), "address").map((r) => r.address);
    expect(addrs).toEqual([
      { ifindex: 1, family: 4, address: "127.0.0.1", prefixLength: 8, scope: 254 },
      { ifindex: 2, family: 4, address: "198.18.1.1", prefixLength: 24, scope: 0 },
      { ifindex: 1, family: 6, address: "::1", prefixLength: 128, scope: 254 },
      { ifindex: 2, family: 6, address: "fd00:18:1::1", prefixLength: 64, scope: 0 },
      { ifindex: 2, family: 6, address: "fe80::5eff:fe00:a", prefixLength: 64, scope: 253 },
    ]);
  });

  test("neighbour dump and get: the peer's MAC, REACHABLE and usable", () => {
    const neigh = only(messages("neigh-dump"), "neighbour").map((r) => r.neighbour);
    const peer4 = neigh.find((n) => n.address === "198.18.1.2");
    const peer6 = neigh.find((n) => n.address === "fd00:18:1::2");
    expect(peer4).toEqual({ ifindex: 2, family: 4, address: "198.18.1.2", mac: "02:00:5e:00:00:0b", state: 2, usable: true });
    expect(peer6).toMatchObject({ family: 6, mac: "02:00:5e:00:00:0b", usable: true });
    const [got] = only(messages("neigh-get-v4"), "neighbour");
    expect(got!.neighbour).toEqual(peer4!);
  });

  test("route dump holds the blackhole route with its type and no device", () => {
    const routes = only(messages("route-dump-v4"), "route").map((r) => r.route);
    expect(routes.find((r) => r.dst === "198.18.9.0")).toMatchObject({ type: "blackhole", dstLen: 24, oif: 0, table: 254 });
    expect(routes.find((r) => r.dst === "198.19.1.0")).toMatchObject({ type: "unicast", gateway: "198.18.1.2", dstLen: 24 });
    expect(routes.filter((r) => r.table === 255).map((r) => r.type)).toContain("broadcast");
  });

  test("a datagram cut short yields the whole messages before the cut and nothing invented", () => {
    const [d] = datagrams("link-dump");
    const whole = parseNetlink(d!);
    const first = new DataView(d!.buffer, d!.byteOffset).getUint32(0, true);
    expect(parseNetlink(d!.subarray(0, first + 10))).toHaveLength(1);
    expect(parseNetlink(d!.subarray(0, first + 10))[0]).toEqual(whole[0]!);
    expect(parseNetlink(new Uint8Array(7))).toEqual([]);
    // A header claiming more bytes than there are stops the parse.
    const bogus = new Uint8Array(d!);
    new DataView(bogus.buffer).setUint32(0, 0xffff, true);
    expect(parseNetlink(bogus)).toEqual([]);
  });

  test("an attribute whose length overruns its message is ignored, the rest is kept", () => {
    const [d] = datagrams("route-get-v4-gateway");
    const bytes = new Uint8Array(d!);
    const view = new DataView(bytes.buffer);
    // Find the last attribute and make it claim more than is left.
    let off = 16 + 12;
    let last = off;
    while (off + 4 <= bytes.byteLength) {
      last = off;
      off += (view.getUint16(off, true) + 3) & ~3;
    }
    view.setUint16(last, 0x400, true);
    const [r] = only(parseNetlink(bytes), "route");
    expect(r!.route.family).toBe(4);
    expect(r!.route.dst).toBe("198.19.1.7");
  });

  test("IPv6 addresses are written the RFC 5952 way", () => {
    // A synthetic RTM_NEWROUTE whose RTA_DST runs through the zero-compression cases.
    const cases: [number[], string][] = [
      [[0xfd00, 0, 0, 1, 0, 0, 0, 1], "fd00:0:0:1::1"],
      [[0xfd00, 0, 0, 0, 1, 0, 0, 1], "fd00::1:0:0:1"],
      [[0, 0, 0, 0, 0, 0, 0, 0], "::"],
      [[0xfd00, 0x18, 0xabc, 0, 0xffff, 1, 2, 3], "fd00:18:abc:0:ffff:1:2:3"],
      [[0xfe80, 0, 0, 0, 0, 0, 0, 0], "fe80::"],
    ];
    for (const [words, text] of cases) {
      const msg = new Uint8Array(16 + 12 + 20);
      const v = new DataView(msg.buffer);
      v.setUint32(0, msg.byteLength, true);
      v.setUint16(4, 24, true);
      v.setUint8(16, 10); // AF_INET6
      v.setUint8(17, 128);
      v.setUint8(16 + 7, 1);
      v.setUint16(28, 20, true);
      v.setUint16(30, 1, true); // RTA_DST
      words.forEach((w, i) => v.setUint16(32 + 2 * i, w, false));
      const [r] = only(parseNetlink(msg), "route");
      expect(r!.route.dst).toBe(text);
    }
  });
});

// ---------------------------------------------------------------------------------------------

type Outcome = { ok: unknown } | { error: { name: string; message: string } };

describe("against the kernel, in namespaces of our own", () => {
  let ns: BareNamespaces;
  let A = "";
  let B = "";
  let ifA = "";
  let ifB = "";
  let ifindexA = 0;
  let macA = "";
  let macB = "";
  const RUNNER = join(import.meta.dir, "netlink-runner.ts");

  async function sh(where: string, argv: string[]): Promise<string> {
    const r = await ns.exec(where, argv);
    if (r.code !== 0) throw new Error(`${argv.join(" ")} in ${where} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  /** Runs netlink.ts calls inside namespace A. */
  async function inA(...calls: [string, ...unknown[]][]): Promise<Outcome[]> {
    const out = await sh(A, [process.execPath, RUNNER, JSON.stringify(calls)]);
    return JSON.parse(out) as Outcome[];
  }

  async function one<T>(call: [string, ...unknown[]]): Promise<T> {
    const [r] = await inA(call);
    if (!r || !("ok" in r)) throw new Error(`${call[0]}(${JSON.stringify(call.slice(1))}) failed: ${JSON.stringify(r)}`);
    return r.ok as T;
  }

  async function ipRouteGet(args: string[]): Promise<Record<string, unknown>> {
    const [r] = JSON.parse(await sh(A, ["ip", "-j", "route", "get", ...args])) as Record<string, unknown>[];
    return r!;
  }

  beforeAll(async () => {
    requireRoot();
    ns = await createNamespaces(2);
    [A, B] = ns.namespaces as [string, string];
    ifA = `${ns.prefix}a`;
    ifB = `${ns.prefix}b`;
    for (const n of [A, B]) {
      await sh(n, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
      await sh(n, ["ip", "link", "set", "lo", "up"]);
    }
    await sh(A, ["ip", "link", "add", ifA, "mtu", "1400", "type", "veth", "peer", "name", ifB, "netns", B]);
    const cmds: [string, string[]][] = [
      [A, ["ip", "addr", "add", "198.18.1.1/24", "dev", ifA]],
      [A, ["ip", "addr", "add", "fd00:18:1::1/64", "dev", ifA, "nodad"]],
      [B, ["ip", "addr", "add", "198.18.1.2/24", "dev", ifB]],
      [B, ["ip", "addr", "add", "fd00:18:1::2/64", "dev", ifB, "nodad"]],
      [A, ["ip", "link", "set", ifA, "up"]],
      [B, ["ip", "link", "set", ifB, "up"]],
      [A, ["ip", "route", "add", "198.19.1.0/24", "via", "198.18.1.2"]],
      [A, ["ip", "-6", "route", "add", "fd00:19:1::/64", "via", "fd00:18:1::2"]],
      [A, ["ip", "route", "add", "blackhole", "198.18.1.99/32"]],
      [A, ["ip", "-6", "route", "add", "blackhole", "fd00:18:1::99/128"]],
      [A, ["ip", "route", "add", "unreachable", "198.18.7.0/24"]],
      [A, ["ip", "-6", "route", "add", "unreachable", "fd00:18:7::/64"]],
      [A, ["ip", "route", "add", "prohibit", "198.18.8.0/24"]],
      [A, ["ip", "-6", "route", "add", "prohibit", "fd00:18:8::/64"]],
    ];
    for (const [n, argv] of cmds) await sh(n, argv);
    const linkA = (JSON.parse(await sh(A, ["ip", "-j", "link", "show", ifA])) as { ifindex: number; address: string }[])[0]!;
    const linkB = (JSON.parse(await sh(B, ["ip", "-j", "link", "show", ifB])) as { address: string }[])[0]!;
    ifindexA = linkA.ifindex;
    macA = linkA.address;
    macB = linkB.address;
  }, 30_000);

  afterAll(async () => {
    await ns?.teardown();
  });

  test("runs as root (these tests must not pass by not running)", () => {
    requireRoot();
  });

  test("IPv4: connected peer, behind a gateway, local, with src and oif, all as ip route get says", async () => {
    const peer = await one<RouteInfo>(["getRoute", "198.18.1.2"]);
    expect(peer).toEqual({ family: 4, dst: "198.18.1.2", type: "unicast", ifindex: ifindexA, ifname: ifA, src: "198.18.1.1", gateway: null });
    expect(await ipRouteGet(["198.18.1.2"])).toMatchObject({ dst: "198.18.1.2", dev: ifA, prefsrc: "198.18.1.1" });

    const routed = await one<RouteInfo>(["getRoute", "198.19.1.7"]);
    expect(routed).toEqual({ family: 4, dst: "198.19.1.7", type: "unicast", ifindex: ifindexA, ifname: ifA, src: "198.18.1.1", gateway: "198.18.1.2" });
    expect(await ipRouteGet(["198.19.1.7"])).toMatchObject({ gateway: "198.18.1.2", dev: ifA, prefsrc: "198.18.1.1" });

    const local = await one<RouteInfo>(["getRoute", "198.18.1.1"]);
    expect(local).toMatchObject({ family: 4, type: "local", ifname: "lo", ifindex: 1, src: "198.18.1.1", gateway: null });
    expect(await ipRouteGet(["198.18.1.1"])).toMatchObject({ type: "local", dev: "lo" });

    const from = await one<RouteInfo>(["getRoute", "198.19.1.7", { src: "198.18.1.1" }]);
    expect(from).toMatchObject({ type: "unicast", ifname: ifA, gateway: "198.18.1.2" });
    expect(await ipRouteGet(["198.19.1.7", "from", "198.18.1.1"])).toMatchObject({ gateway: "198.18.1.2", dev: ifA });

    const viaOif = await one<RouteInfo>(["getRoute", "198.18.1.2", { oif: ifindexA }]);
    expect(viaOif).toMatchObject({ ifname: ifA, type: "unicast" });
  });

  test("IPv4: blackhole, unreachable and prohibit routes come back typed; no route throws NoRoute", async () => {
    // `ip route get` itself only prints the kernel's errno for these three.
    const [bh, unr, pro, none] = await inA(
      ["getRoute", "198.18.1.99"],
      ["getRoute", "198.18.7.1"],
      ["getRoute", "198.18.8.1"],
      ["getRoute", "198.18.250.1"],
    );
    expect(bh).toEqual({ ok: { family: 4, dst: "198.18.1.99", type: "blackhole", ifindex: 0, ifname: "", src: null, gateway: null } });
    expect(unr).toMatchObject({ ok: { type: "unreachable" } });
    expect(pro).toMatchObject({ ok: { type: "prohibit" } });
    expect(none).toEqual({ error: { name: "NoRoute", message: "no route to 198.18.250.1" } });
    const ip = await ns.exec(A, ["ip", "route", "get", "198.18.250.1"]);
    expect(ip.stderr).toContain("Network is unreachable");
  });

  test("IPv6: connected peer, behind a gateway, local, blackhole, unreachable, prohibit, no route", async () => {
    const [peer, routed, local, bh, unr, pro, none] = await inA(
      ["getRoute", "fd00:18:1::2"],
      ["getRoute", "fd00:19:1::7"],
      ["getRoute", "fd00:18:1::1"],
      ["getRoute", "fd00:18:1::99"],
      ["getRoute", "fd00:18:7::1"],
      ["getRoute", "fd00:18:8::1"],
      ["getRoute", "fd00:77::1"],
    );
    expect(peer).toEqual({ ok: { family: 6, dst: "fd00:18:1::2", type: "unicast", ifindex: ifindexA, ifname: ifA, src: "fd00:18:1::1", gateway: null } });
    expect(await ipRouteGet(["fd00:18:1::2"])).toMatchObject({ dst: "fd00:18:1::2", dev: ifA, prefsrc: "fd00:18:1::1" });
    expect(routed).toEqual({ ok: { family: 6, dst: "fd00:19:1::7", type: "unicast", ifindex: ifindexA, ifname: ifA, src: "fd00:18:1::1", gateway: "fd00:18:1::2" } });
    expect(await ipRouteGet(["fd00:19:1::7"])).toMatchObject({ gateway: "fd00:18:1::2", dev: ifA });
    expect(local).toMatchObject({ ok: { family: 6, type: "local", ifname: "lo", ifindex: 1 } });
    expect(await ipRouteGet(["fd00:18:1::1"])).toMatchObject({ type: "local", dev: "lo" });
    // IPv6 attaches reject routes to lo.
    expect(bh).toMatchObject({ ok: { family: 6, type: "blackhole", dst: "fd00:18:1::99", src: null, gateway: null } });
    expect(unr).toMatchObject({ ok: { type: "unreachable" } });
    expect(pro).toMatchObject({ ok: { type: "prohibit" } });
    expect(none).toEqual({ error: { name: "NoRoute", message: "no route to fd00:77::1" } });
  });

  test("bad input is refused before asking the kernel", async () => {
    const [bad, mixed] = await inA(["getRoute", "not-an-address"], ["getRoute", "198.18.1.2", { src: "fd00:18:1::1" }]);
    expect(bad).toMatchObject({ error: { name: "TypeError" } });
    expect(mixed).toMatchObject({ error: { name: "TypeError" } });
  });

  test("listLinks shows the veth with its MAC and MTU; getLink by name and by index agree", async () => {
    const [links, byName, byIndex, missing] = await inA(["listLinks"], ["getLink", ifA], ["getLink", ifindexA], ["getLink", "nope0"]);
    const list = (links as { ok: { ifname: string }[] }).ok;
    const veth = list.find((l) => l.ifname === ifA);
    expect(veth).toMatchObject({ ifindex: ifindexA, mac: macA, mtu: 1400, up: true, loopback: false, arpHardwareType: 1 });
    expect(list.find((l) => l.ifname === "lo")).toMatchObject({ loopback: true, arpHardwareType: 772, up: true });
    const ipLinks = JSON.parse(await sh(A, ["ip", "-j", "link", "show"])) as { ifname: string; ifindex: number; mtu: number; address: string }[];
    expect(list.map((l) => l.ifname).sort()).toEqual(ipLinks.map((l) => l.ifname).sort());
    expect(byName).toEqual({ ok: veth });
    expect(byIndex).toEqual({ ok: veth });
    expect(missing).toEqual({ error: { name: "NoSuchLink", message: 'no network interface named "nope0"' } });
  });

  test("listAddresses matches ip addr", async () => {
    const addrs = await one<{ ifindex: number; family: number; address: string; prefixLength: number }[]>(["listAddresses"]);
    const ip = JSON.parse(await sh(A, ["ip", "-j", "addr", "show"])) as { ifindex: number; addr_info: { family: string; local: string; prefixlen: number }[] }[];
    const expected = ip.flatMap((l) => l.addr_info.map((a) => `${l.ifindex} ${a.family === "inet" ? 4 : 6} ${a.local}/${a.prefixlen}`));
    expect(addrs.map((a) => `${a.ifindex} ${a.family} ${a.address}/${a.prefixLength}`).sort()).toEqual(expected.sort());
    expect(expected).toContain(`${ifindexA} 4 198.18.1.1/24`);
    expect(expected).toContain(`${ifindexA} 6 fd00:18:1::1/64`);
  });

  test("getNeighbour: nothing before contact, the peer's MAC after a ping (as ip neigh says)", async () => {
    const [before4, before6] = await inA(["getNeighbour", ifindexA, "198.18.1.2"], ["getNeighbour", ifindexA, "fd00:18:1::2"]);
    expect(before4).toEqual({ ok: null });
    expect(before6).toEqual({ ok: null });
    await sh(A, ["ping", "-c1", "-W2", "198.18.1.2"]);
    await sh(A, ["ping", "-6", "-c1", "-W2", "fd00:18:1::2"]);
    const [n4, n6, list4, list6, unknown] = await inA(
      ["getNeighbour", ifindexA, "198.18.1.2"],
      ["getNeighbour", ifindexA, "fd00:18:1::2"],
      ["listNeighbours", 4],
      ["listNeighbours", 6],
      ["getNeighbour", ifindexA, "198.18.1.3"],
    );
    expect(n4).toMatchObject({ ok: { mac: macB, usable: true } });
    expect(n6).toMatchObject({ ok: { mac: macB, usable: true } });
    const ipNeigh = JSON.parse(await sh(A, ["ip", "-j", "neigh", "show", "dev", ifA])) as { dst: string; lladdr?: string; state: string[] }[];
    expect(ipNeigh.find((e) => e.dst === "198.18.1.2")?.lladdr).toBe(macB);
    expect(ipNeigh.find((e) => e.dst === "fd00:18:1::2")?.lladdr).toBe(macB);
    const l4 = (list4 as { ok: { family: number; address: string; mac: string | null }[] }).ok;
    const l6 = (list6 as { ok: { family: number; address: string; mac: string | null }[] }).ok;
    expect(l4.find((e) => e.address === "198.18.1.2")?.mac).toBe(macB);
    expect(l4.every((e) => e.family === 4)).toBe(true);
    expect(l6.find((e) => e.address === "fd00:18:1::2")?.mac).toBe(macB);
    expect(l6.every((e) => e.family === 6)).toBe(true);
    expect(unknown).toEqual({ ok: null });
  });
});
