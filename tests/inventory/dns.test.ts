/**
 * The dns inventory (src/inventory/dns.ts) against a tiny DNS server on loopback
 * (tests/support/dns-server.ts) that answers what a test says, including what no real server
 * would: records of the wrong family, answers with the wrong ID, malformed messages, silence.
 * The inventory is started directly with a fake context (harness.ts), refreshing every 50 ms.
 * tests/privileged/dns-inventory.test.ts runs it against dnsmasq in a namespace, and in the daemon.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_DNS_ADDRESSES_PER_NAME } from "../../src/config/limits.ts";
import { InventoryListSchema, MAX_INVENTORY_TARGETS, type InventoryTarget } from "../../src/config/schema.ts";
import { validateValue } from "../../src/config/validate.ts";
import { systemServers } from "../../src/inventory/dns-client.ts";
import { dnsInventory, interfaceAddresses, type DnsTiming } from "../../src/inventory/dns.ts";
import {
  encodeMessage,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_SRV,
  type EncodeRecord,
  type Question,
} from "../../src/inventory/dns-wire.ts";
import { inventoryNames } from "../../src/inventory/merge.ts";
import { TestDnsServer, type Handler, type Reply } from "../support/dns-server.ts";
import { hostnames, run, waitFor, type Running } from "../fixtures/inventory/harness.ts";

let dir: string;
const servers: TestDnsServer[] = [];
const running: Running[] = [];
/** What the main server answers; tests replace it, also while the inventory runs. */
let handler: Handler;
let server: TestDnsServer;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "netprobify-dns-inventory-"));
  handler = () => ({ rcode: RCODE_NXDOMAIN });
  server = await serve(() => handler);
});

afterEach(async () => {
  for (const inventory of running.splice(0)) await inventory.stop();
  for (const s of servers.splice(0)) await s.stop();
  await rm(dir, { recursive: true, force: true });
});

async function serve(h: () => Handler, opts: { udpLimit?: number } = {}): Promise<TestDnsServer> {
  const s = await TestDnsServer.start(h, opts);
  servers.push(s);
  return s;
}

const a = (name: string, address: string): EncodeRecord => ({ name, type: TYPE_A, ttl: 30, data: { kind: "A", address } });
const aaaa = (name: string, address: string): EncodeRecord => ({ name, type: TYPE_AAAA, ttl: 30, data: { kind: "AAAA", address } });
const srv = (name: string, target: string, port: number, priority = 10, weight = 10): EncodeRecord => ({
  name,
  type: TYPE_SRV,
  data: { kind: "SRV", priority, weight, port, target },
});

/** A handler from a table: "name TYPE" -> records (NOERROR), or a Reply; anything else is NXDOMAIN. */
function zone(table: Record<string, readonly EncodeRecord[] | Reply>): Handler {
  return (q: Question) => {
    const entry = table[`${q.name.toLowerCase()} ${q.type === TYPE_A ? "A" : q.type === TYPE_AAAA ? "AAAA" : q.type === TYPE_SRV ? "SRV" : q.type}`];
    if (entry === undefined) return { rcode: RCODE_NXDOMAIN };
    return Array.isArray(entry) ? { answers: entry as EncodeRecord[] } : (entry as Reply);
  };
}

const FAST: Partial<DnsTiming> = { timeoutMs: 300, attempts: 1, ownAddresses: () => new Set(["198.18.0.99"]) };

function startWith(options: Record<string, unknown>, timing: Partial<DnsTiming> = {}): Running {
  const inventory = run(
    dnsInventory({ ...FAST, ...timing }),
    { type: "TCPsyn", port: 8443, names: ["mesh.test"], servers: [server.address], refresh_interval: 0.05, ...options },
    dir,
    "mesh",
  );
  running.push(inventory);
  return inventory;
}

const published = (inventory: Running, n: number) =>
  waitFor(() => inventory.published.length >= n, `list #${n} (have ${inventory.published.length})`);
const reported = (inventory: Running, n = 1) => waitFor(() => inventory.errors.length >= n, `report #${n} (have ${inventory.errors.length})`);
const errorsOf = (inventory: Running) => inventory.errors.map((e) => e.message);
/** Waits for the server to see `n` more queries of `name`. */
const refreshes = async (name: string, n: number) => {
  const seen = server.count(name);
  await waitFor(() => server.count(name) >= seen + n, `${n} more queries of ${name}`);
};

function valid(list: unknown[]): InventoryTarget[] {
  const checked = validateValue(InventoryListSchema, list);
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.value;
}

describe("A and AAAA records", () => {
  test("each address is a target named by it, with the target fields, in address order, published once while unchanged", async () => {
    let turn = 0;
    const records = [a("mesh.test", "198.18.0.10"), a("mesh.test", "198.18.0.2"), a("mesh.test", "198.18.0.1")];
    // Servers rotate the order of the records: the list must not change for that.
    handler = (q) => (q.type === TYPE_A ? { answers: records.map((_, i) => records[(i + turn++) % 3]!) } : { rcode: RCODE_NXDOMAIN });
    const inventory = startWith({ groups: ["mesh"], nb_packets: 3, alert_level: "paging" });
    await published(inventory, 1);
    expect(inventory.last()).toEqual([
      { type: "TCPsyn", groups: ["mesh"], nb_packets: 3, alert_level: "paging", hostname: "198.18.0.1", address_family: "ipv4", dst_port: 8443 },
      { type: "TCPsyn", groups: ["mesh"], nb_packets: 3, alert_level: "paging", hostname: "198.18.0.2", address_family: "ipv4", dst_port: 8443 },
      { type: "TCPsyn", groups: ["mesh"], nb_packets: 3, alert_level: "paging", hostname: "198.18.0.10", address_family: "ipv4", dst_port: 8443 },
    ]);
    // What the prober makes of it: valid, and named like every dynamic target.
    expect(inventoryNames("mesh", valid(inventory.last()))).toEqual(["mesh_198.18.0.1", "mesh_198.18.0.2", "mesh_198.18.0.10"]);
    await refreshes("mesh.test", 5);
    expect(inventory.published.length).toBe(1);
    expect(inventory.errors).toEqual([]);
    expect(server.queries.every((q) => q.transport === "udp")).toBe(true);
  });

  test("records added and removed at run time: targets appear and vanish", async () => {
    let records = [a("mesh.test", "198.18.0.1")];
    handler = zone({ get "mesh.test A"() { return records; } });
    const inventory = startWith({});
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    records = [a("mesh.test", "198.18.0.1"), a("mesh.test", "198.18.0.2")];
    await published(inventory, 2);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1", "198.18.0.2"]);
    records = [a("mesh.test", "198.18.0.2")];
    await published(inventory, 3);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.2"]);
    expect(inventory.errors).toEqual([]);
  });

  test("AAAA: IPv6 targets; A records in the answer are a family not allowed, ignored and counted", async () => {
    handler = zone({
      "mesh.test AAAA": [aaaa("mesh.test", "fd00:18::2"), a("mesh.test", "198.18.0.1"), a("mesh.test", "198.18.0.2"), aaaa("mesh.test", "FD00:18:0::1")],
    });
    const inventory = startWith({ record_type: "AAAA", type: "ICMPping", port: undefined });
    await published(inventory, 1);
    expect(inventory.last()).toEqual([
      { type: "ICMPping", hostname: "fd00:18::1", address_family: "ipv6" },
      { type: "ICMPping", hostname: "fd00:18::2", address_family: "ipv6" },
    ]);
    expect(inventoryNames("mesh", valid(inventory.last()))).toEqual(["mesh_fd00_18__1", "mesh_fd00_18__2"]);
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toBe(
      "mesh.test: ignored 2 A records (a family not allowed: the targets are ipv6) in the answer to the AAAA query",
    );
    expect(inventory.errors[0]!.fields).toEqual({ problems: 1 });
  });

  test("address_family ipv6 alone asks for AAAA; AAAA records in an A answer are ignored and counted", async () => {
    handler = zone({ "mesh.test AAAA": [aaaa("mesh.test", "fd00:18::5")], "mesh.test A": [a("mesh.test", "198.18.0.5"), aaaa("mesh.test", "fd00:18::6")] });
    const v6 = startWith({ address_family: "ipv6" });
    await published(v6, 1);
    expect(v6.last()).toMatchObject([{ hostname: "fd00:18::5", address_family: "ipv6", dst_port: 8443 }]);
    const v4 = startWith({});
    await reported(v4);
    expect(hostnames(v4.last())).toEqual(["198.18.0.5"]);
    expect(errorsOf(v4)[0]).toBe("mesh.test: ignored 1 AAAA record (a family not allowed: the targets are ipv4) in the answer to the A query");
  });

  test("a CNAME chain in the answer is followed; records of other names are ignored and counted", async () => {
    handler = zone({
      "mesh.test A": [
        { name: "mesh.test", type: TYPE_CNAME, data: { kind: "CNAME", target: "pods.test" } },
        { name: "pods.test", type: TYPE_CNAME, data: { kind: "CNAME", target: "Real.Test" } },
        a("real.test", "198.18.0.7"),
        a("elsewhere.test", "198.18.0.8"),
      ],
    });
    const inventory = startWith({});
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.7"]);
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toBe("mesh.test: ignored 1 A record of other names in the answer to the A query");
  });

  test("the same address under two names is one target; names keep their own lists", async () => {
    handler = zone({ "a.test A": [a("a.test", "198.18.0.1"), a("a.test", "198.18.0.2")], "b.test A": [a("b.test", "198.18.0.2"), a("b.test", "198.18.0.3")] });
    const inventory = startWith({ names: ["b.test", "a.test"] });
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.2", "198.18.0.3", "198.18.0.1"]);
  });
});

describe("failures", () => {
  test("SERVFAIL and REFUSED keep the last good list, reported at every refresh, until the server answers again", async () => {
    let reply: Reply | EncodeRecord[] = [a("mesh.test", "198.18.0.1")];
    handler = zone({ get "mesh.test A"() { return reply; } });
    const inventory = startWith({});
    await published(inventory, 1);
    reply = { rcode: RCODE_SERVFAIL };
    await reported(inventory, 2);
    expect(errorsOf(inventory)[0]).toBe(`mesh.test: ${server.address}: SERVFAIL; keeping its last 1 address`);
    reply = { rcode: RCODE_REFUSED };
    await waitFor(() => errorsOf(inventory).some((e) => e.includes("REFUSED")), "REFUSED reported");
    expect(inventory.published.length).toBe(1);
    reply = [a("mesh.test", "198.18.0.1"), a("mesh.test", "198.18.0.2")];
    await published(inventory, 2);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1", "198.18.0.2"]);
  });

  test("a server that does not answer is timed out, asked again in the next round, then the next server is asked", async () => {
    const silent = await serve(() => () => ({ drop: true }));
    handler = zone({ "mesh.test A": [a("mesh.test", "198.18.0.1")] });
    const inventory = startWith({ servers: [silent.address, server.address] }, { timeoutMs: 100, attempts: 2 });
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    expect(inventory.errors).toEqual([]);

    // Only the silent one: each round asks it once, and the last good list stays.
    const alone = startWith({ servers: [silent.address] }, { timeoutMs: 100, attempts: 2 });
    await reported(alone);
    expect(errorsOf(alone)[0]).toBe(`mesh.test: ${silent.address}: no answer within 0.1 s (2 rounds); keeping its last 0 addresses`);
    expect(alone.published).toEqual([]);
    expect(silent.count("mesh.test")).toBeGreaterThanOrEqual(2);
  });

  test("nothing listening: connection refused, and the next server is asked", async () => {
    const gone = await serve(() => () => ({ drop: true }));
    const address = gone.address;
    await gone.stop();
    handler = zone({ "mesh.test A": [a("mesh.test", "198.18.0.1")] });
    const inventory = startWith({ servers: [address, server.address] });
    await published(inventory, 1);
    const alone = startWith({ servers: [address] });
    await reported(alone);
    expect(errorsOf(alone)[0]).toBe(`mesh.test: ${address}: connection refused (nothing listens there); keeping its last 0 addresses`);
  });

  test("NXDOMAIN gives an empty list, reported; no records (NODATA) gives an empty list, logged once", async () => {
    const again = () => inventory.logs.filter((l) => l.message === "mesh.test: gives addresses again").map((l) => l.level);
    let reply: Reply | EncodeRecord[] = [a("mesh.test", "198.18.0.1")];
    handler = zone({ get "mesh.test A"() { return reply; } });
    const inventory = startWith({});
    await published(inventory, 1);
    reply = { rcode: RCODE_NXDOMAIN };
    await published(inventory, 2);
    expect(inventory.last()).toEqual([]);
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toBe(`mesh.test: does not exist (NXDOMAIN from ${server.address}): no targets from it`);

    reply = [a("mesh.test", "198.18.0.1")];
    await published(inventory, 3);
    const errors = inventory.errors.length;
    reply = [];
    await published(inventory, 4);
    expect(inventory.last()).toEqual([]);
    await refreshes("mesh.test", 4);
    expect(inventory.errors.length).toBe(errors);
    const notices = inventory.logs.filter((l) => l.message.includes("no A records"));
    expect(notices.map((l) => [l.level, l.message])).toEqual([["WARNING", `mesh.test: no A records (NOERROR from ${server.address}): no targets from it`]]);
    // From no records to NXDOMAIN: still nothing, so nothing "again"; then records: once.
    reply = { rcode: RCODE_NXDOMAIN };
    await refreshes("mesh.test", 3);
    expect(again()).toEqual([]);
    reply = [a("mesh.test", "198.18.0.3")];
    await published(inventory, 5);
    await refreshes("mesh.test", 2);
    expect(again()).toEqual([]);
  });

  test("the problems of one refresh are one report, the first five quoted", async () => {
    handler = zone({ "mesh.test A": [a("mesh.test", "198.18.0.1")] });
    const names = ["mesh.test", ...Array.from({ length: 7 }, (_, i) => `gone${i}.test`)];
    const inventory = startWith({ names });
    await reported(inventory);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    const line = errorsOf(inventory)[0]!;
    expect(line.split("; ").map((p) => p.split(":")[0])).toEqual(["gone0.test", "gone1.test", "gone2.test", "gone3.test", "gone4.test", "and 2 more problems"]);
    expect(inventory.errors[0]!.fields).toEqual({ problems: 7 });
  });

  test("a name that does not exist beside one that does: the other's targets stay", async () => {
    handler = zone({ "mesh.test A": [a("mesh.test", "198.18.0.1")] });
    const inventory = startWith({ names: ["nowhere.test", "mesh.test"] });
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toStartWith("nowhere.test: does not exist (NXDOMAIN");
  });
});

describe("answers that are not what was asked", () => {
  /** Bytes of a response to `q` with `id`, `answers` and overrides. */
  const response = (id: number, q: Question, answers: EncodeRecord[], over: Partial<Parameters<typeof encodeMessage>[0]> = {}) =>
    encodeMessage({ id, qr: true, questions: [q], answers, ...over });

  test("datagrams with another ID, another question or no QR bit are ignored; the answer after them is taken", async () => {
    handler = (q, _t, id) => ({
      raw: [
        response((id + 1) & 0xffff, q, [a("mesh.test", "198.18.0.66")]),
        response(id, { ...q, name: "other.test" }, [a("other.test", "198.18.0.67")]),
        response(id, { ...q, type: TYPE_AAAA }, [a("mesh.test", "198.18.0.68")]),
        response(id, q, [a("mesh.test", "198.18.0.69")], { qr: false }),
        response(id, q, [a("mesh.test", "198.18.0.1")]),
      ],
    });
    const inventory = startWith({});
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    expect(inventory.errors).toEqual([]);
  });

  test("only answers that do not match: the wait ends in a timeout that says so", async () => {
    handler = (q, _t, id) => ({ raw: response((id + 1) & 0xffff, q, [a("mesh.test", "198.18.0.66")]) });
    const inventory = startWith({});
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toBe(
      `mesh.test: ${server.address}: no answer within 0.3 s (1 datagram that did not answer the query ignored); keeping its last 0 addresses`,
    );
  });

  test("malformed answers with the query's ID: reported, the last good list kept, the inventory still runs", async () => {
    let bad: ((id: number, q: Question) => Uint8Array) | undefined;
    handler = (q, _t, id) => (bad ? { raw: bad(id, q) } : { answers: [a("mesh.test", "198.18.0.1")] });
    const inventory = startWith({});
    await published(inventory, 1);
    const good = response(0, { name: "mesh.test", type: TYPE_A, class: 1 }, [a("mesh.test", "198.18.0.1"), a("mesh.test", "198.18.0.2")]);
    const withId = (id: number, bytes: Uint8Array) => {
      const copy = new Uint8Array(bytes);
      copy[0] = id >> 8;
      copy[1] = id & 0xff;
      return copy;
    };
    const cases: [string, (id: number) => Uint8Array][] = [
      // The second record's data runs past the end.
      ["the data of answer 2 runs past the end", (id) => withId(id, good.subarray(0, good.length - 2))],
      // ANCOUNT says 65,535.
      ["answer 3 of 65535 runs past the end", (id) => withId(id, Uint8Array.from([...good.subarray(0, 6), 0xff, 0xff, ...good.subarray(8)]))],
      // The first answer's owner is a pointer to itself.
      ["points forward", (id) => withId(id, Uint8Array.from([...good.subarray(0, 27), 0xc0, 27, ...good.subarray(29)]))],
    ];
    for (const [expected, bytes] of cases) {
      bad = (id) => bytes(id);
      await waitFor(() => errorsOf(inventory).some((e) => e.includes(expected)), expected);
    }
    expect(errorsOf(inventory)[0]).toStartWith(`mesh.test: ${server.address}: malformed answer: `);
    expect(errorsOf(inventory)[0]).toEndWith("; keeping its last 1 address");
    expect(inventory.published.length).toBe(1);
    bad = undefined;
    await refreshes("mesh.test", 2);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
  });

  test("a record whose data does not fit its type is ignored and counted; the others are targets", async () => {
    handler = zone({
      "mesh.test A": [a("mesh.test", "198.18.0.1"), { name: "mesh.test", type: TYPE_A, data: { kind: "raw", bytes: Uint8Array.from([1, 2, 3]) } }],
    });
    const inventory = startWith({});
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toBe("mesh.test: ignored 1 malformed A record (A data of 3 bytes, not 4) in the answer to the A query");
  });

  test("every query has a fresh random ID", async () => {
    const ids: number[] = [];
    handler = (q, _t, id) => {
      ids.push(id);
      return { answers: [a("mesh.test", "198.18.0.1")] };
    };
    startWith({ names: Array.from({ length: 40 }, (_, i) => `n${i}.test`) });
    await waitFor(() => ids.length >= 40, "40 queries");
    expect(new Set(ids).size).toBeGreaterThan(35);
  });
});

describe("truncation", () => {
  test("a truncated UDP answer is asked again over TCP: 300 records", async () => {
    const records = Array.from({ length: 300 }, (_, i) => a("mesh.test", `198.18.1.${i % 256}`)).map((r, i) =>
      i < 256 ? r : a("mesh.test", `198.18.2.${i - 256}`),
    );
    handler = zone({ "mesh.test A": records });
    const inventory = startWith({ refresh_interval: 60 });
    await published(inventory, 1);
    expect(inventory.last()).toHaveLength(300);
    expect(server.queries.map((q) => q.transport)).toEqual(["udp", "tcp"]);
  });

  test("a truncated answer and then nothing over TCP is a failure that says so", async () => {
    handler = (_q, transport) => (transport === "udp" ? { tc: true } : { drop: true });
    const inventory = startWith({});
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toMatch(/^mesh\.test: 127\.0\.0\.1:\d+: truncated over UDP, and no whole answer over TCP within 0\.\d s; keeping/);
  });
});

describe("SRV records", () => {
  test("each record's port is its targets' dst_port; targets are looked up with A; '.' is skipped", async () => {
    handler = zone({
      "_p._tcp.mesh.test SRV": [
        srv("_p._tcp.mesh.test", "node-1.test", 8443),
        srv("_p._tcp.mesh.test", "node-2.test", 9443),
        srv("_p._tcp.mesh.test", "node-2.test", 443),
        srv("_p._tcp.mesh.test", "", 1),
      ],
      "node-1.test A": [a("node-1.test", "198.18.0.1"), a("node-1.test", "198.18.0.11")],
      "node-2.test A": [a("node-2.test", "198.18.0.2")],
    });
    const inventory = startWith({ record_type: "SRV", names: ["_p._tcp.mesh.test"], port: undefined, groups: ["mesh"] });
    await published(inventory, 1);
    expect(inventory.last()).toEqual([
      { type: "TCPsyn", groups: ["mesh"], hostname: "198.18.0.1", address_family: "ipv4", dst_port: 8443 },
      { type: "TCPsyn", groups: ["mesh"], hostname: "198.18.0.2", address_family: "ipv4", dst_port: 443 },
      { type: "TCPsyn", groups: ["mesh"], hostname: "198.18.0.2", address_family: "ipv4", dst_port: 9443 },
      { type: "TCPsyn", groups: ["mesh"], hostname: "198.18.0.11", address_family: "ipv4", dst_port: 8443 },
    ]);
    // One address on two ports: two targets, told apart by their port.
    expect(inventoryNames("mesh", valid(inventory.last()))).toEqual([
      "mesh_198.18.0.1",
      "mesh_198.18.0.2_tcpsyn_443",
      "mesh_198.18.0.2_tcpsyn_9443",
      "mesh_198.18.0.11",
    ]);
    expect(inventory.errors).toEqual([]);
  });

  test("address_family ipv6: the SRV targets are looked up with AAAA", async () => {
    handler = zone({
      "_p._udp.test SRV": [srv("_p._udp.test", "node.test", 33434)],
      "node.test A": [a("node.test", "198.18.0.1")],
      "node.test AAAA": [aaaa("node.test", "fd00:18::1")],
    });
    const inventory = startWith({ record_type: "SRV", names: ["_p._udp.test"], port: undefined, type: "UDPunreachable", address_family: "ipv6" });
    await published(inventory, 1);
    expect(inventory.last()).toEqual([{ type: "UDPunreachable", address_family: "ipv6", hostname: "fd00:18::1", dst_port: 33434 }]);
    expect(server.queries.some((q) => q.name === "node.test" && q.type === TYPE_A)).toBe(false);
  });

  test("an SRV target that does not exist is counted; one whose server fails keeps the name's last good list", async () => {
    let node2: Reply | EncodeRecord[] = [a("node-2.test", "198.18.0.2")];
    handler = zone({
      "_p._tcp.test SRV": [srv("_p._tcp.test", "node-1.test", 80), srv("_p._tcp.test", "node-2.test", 80), srv("_p._tcp.test", "gone.test", 80)],
      "node-1.test A": [a("node-1.test", "198.18.0.1")],
      get "node-2.test A"() {
        return node2;
      },
    });
    const inventory = startWith({ record_type: "SRV", names: ["_p._tcp.test"], port: undefined });
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1", "198.18.0.2"]);
    await reported(inventory);
    expect(errorsOf(inventory)[0]).toBe("_p._tcp.test: 1 SRV target does not exist (NXDOMAIN): gone.test");
    node2 = { rcode: RCODE_SERVFAIL };
    await waitFor(() => errorsOf(inventory).some((e) => e.includes("SERVFAIL")), "the SERVFAIL report");
    expect(errorsOf(inventory).find((e) => e.includes("SERVFAIL"))).toBe(
      `_p._tcp.test: SRV target node-2.test: ${server.address}: SERVFAIL; keeping its last 2 addresses`,
    );
    expect(inventory.published.length).toBe(1);
  });
});

describe("bounds", () => {
  /** Big answers take the test server a while to encode: no timeout on a loaded machine. */
  const SLOW_OK: Partial<DnsTiming> = { timeoutMs: 10_000 };

  test("400,000 addresses behind one SRV name: 10,000 published, the rest counted, most SRV targets never looked up", async () => {
    const targets = 1000;
    const perTarget = 400;
    const records = Array.from({ length: targets }, (_, i) => srv("_big._tcp.test", `t${i}.test`, 1000 + i));
    // Target i's addresses: 198.18.0.0/15 from i x 400 on, so that all 400,000 are distinct.
    const addresses = (i: number) =>
      Array.from({ length: perTarget }, (_, j) => {
        const k = (i * perTarget + j) % 131_072;
        return a(`t${i}.test`, `198.${18 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`);
      });
    handler = (q) => {
      if (q.type === TYPE_SRV) return { answers: records };
      const m = /^t(\d+)\.test$/.exec(q.name);
      return m && q.type === TYPE_A ? { answers: addresses(Number(m[1])) } : { rcode: RCODE_NXDOMAIN };
    };
    const inventory = startWith({ record_type: "SRV", names: ["_big._tcp.test"], port: undefined, refresh_interval: 60, exclude_self: false }, SLOW_OK);
    await published(inventory, 1);
    expect(inventory.last()).toHaveLength(MAX_DNS_ADDRESSES_PER_NAME);
    // SRV targets are looked up 8 at a time: 4 batches reach 12,800 addresses, past the limit.
    const lookedUp = 32;
    expect(new Set(server.queries.filter((q) => q.type === TYPE_A).map((q) => q.name)).size).toBe(lookedUp);
    await reported(inventory);
    expect(errorsOf(inventory)).toEqual([
      `_big._tcp.test: ${(targets - lookedUp).toLocaleString("en-US")} SRV records not looked up: the name already gives 10,000 addresses, the limit per name; ` +
        `_big._tcp.test: ${(lookedUp * perTarget).toLocaleString("en-US")} addresses, over the limit of 10,000 per name: ${(lookedUp * perTarget - 10_000).toLocaleString("en-US")} left out`,
    ]);
  });

  test("104,000 addresses from 26 names of 4,000 records each, 64 KB answers over TCP: 100,000 targets, 4,000 counted", async () => {
    const names = Array.from({ length: 26 }, (_, i) => `n${i}.test`);
    // Encoded once: only the ID changes from one answer to the next.
    const encoded = names.map((name, i) =>
      encodeMessage({
        id: 0,
        qr: true,
        questions: [{ name, type: TYPE_A, class: 1 }],
        answers: Array.from({ length: 4000 }, (_, j) => {
          const k = i * 4000 + j;
          return a(name, `198.${18 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`);
        }),
      }),
    );
    expect(encoded[0]!.length).toBeGreaterThan(64_000);
    handler = (q, transport, id) => {
      const m = /^n(\d+)\.test$/.exec(q.name);
      if (!m) return { rcode: RCODE_NXDOMAIN };
      if (transport === "udp") return { tc: true };
      const bytes = new Uint8Array(encoded[Number(m[1])]!);
      bytes[0] = id >> 8;
      bytes[1] = id & 0xff;
      return { raw: bytes };
    };
    const inventory = startWith({ names, refresh_interval: 60, exclude_self: false }, SLOW_OK);
    await published(inventory, 1);
    expect(inventory.last()).toHaveLength(MAX_INVENTORY_TARGETS);
    expect(server.queries.filter((q) => q.transport === "tcp")).toHaveLength(26);
    await reported(inventory);
    expect(errorsOf(inventory)).toEqual(["the names give 104,000 targets, over the limit of 100,000: 4,000 left out"]);
    expect(inventory.last().at(-1)).toMatchObject({ hostname: "198.19.134.159" });
  }, 20_000);
});

describe("the prober's own addresses", () => {
  test("skipped by default, kept with exclude_self: false", async () => {
    handler = zone({ "mesh.test A": [a("mesh.test", "198.18.0.99"), a("mesh.test", "198.18.0.1")] });
    const inventory = startWith({});
    await published(inventory, 1);
    expect(hostnames(inventory.last())).toEqual(["198.18.0.1"]);
    expect(inventory.logs.find((l) => l.message === "publishing targets")?.fields).toEqual({ names: 1, targets: 1, own_addresses_skipped: 1 });
    const all = startWith({ exclude_self: false });
    await published(all, 1);
    expect(hostnames(all.last())).toEqual(["198.18.0.1", "198.18.0.99"]);
  });

  test("read from the host's interfaces: loopback is among them, in canonical form", () => {
    const own = interfaceAddresses();
    expect(own.has("127.0.0.1")).toBe(true);
    expect([...own].every((address) => !address.includes("%"))).toBe(true);
  });
});

describe("the system's resolvers", () => {
  test("nameserver lines of resolv.conf, in order; comments and junk skipped", async () => {
    const path = join(dir, "resolv.conf");
    await writeFile(path, "# generated\nsearch example.test\nnameserver 198.18.0.53\n; nameserver 198.18.0.54\nnameserver fd00::53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n");
    expect(await systemServers(path, 16)).toEqual({
      servers: [
        { address: "198.18.0.53", port: 53, family: "ipv4" },
        { address: "fd00::53", port: 53, family: "ipv6" },
        { address: "fe80::1%eth0", port: 53, family: "ipv6" },
      ],
    });
    expect((await systemServers(path, 1)).servers).toHaveLength(1);
  });

  test("none, or no file: 127.0.0.1:53, and why", async () => {
    const path = join(dir, "resolv.conf");
    await writeFile(path, "search example.test\n");
    expect(await systemServers(path, 16)).toEqual({
      servers: [{ address: "127.0.0.1", port: 53, family: "ipv4" }],
      problem: `no nameserver in ${path}; asking 127.0.0.1:53`,
    });
    expect((await systemServers(join(dir, "missing"), 16)).problem).toStartWith(`cannot read ${join(dir, "missing")}`);
  });

  test("without servers, resolv.conf is read; when it cannot be, that is logged once and 127.0.0.1:53 asked", async () => {
    const inventory = run(
      dnsInventory({ ...FAST, resolvConf: join(dir, "missing") }),
      { type: "ICMPping", names: ["mesh.test"], refresh_interval: 0.05 },
      dir,
      "mesh",
    );
    running.push(inventory);
    await waitFor(() => inventory.logs.some((l) => l.message.startsWith("cannot read")), "the warning");
    expect(inventory.logs.filter((l) => l.message.startsWith("cannot read"))).toHaveLength(1);
  });
});

test("options the schema would refuse make start() fail, so that the supervisor restarts it and says why", async () => {
  const inventory = run(dnsInventory(FAST), { type: "TCPsyn", names: [] }, dir);
  expect(inventory.done).rejects.toThrow("the dns inventory's names must be a non-empty list of DNS names");
  const bad = run(dnsInventory(FAST), { type: "TCPsyn", names: ["a.test"], servers: ["nowhere"] }, dir);
  expect(bad.done).rejects.toThrow('the dns inventory\'s server "nowhere" is not ADDRESS:PORT');
});
