/**
 * The Resolver with a fake lookup and a fake clock: literals expand at once, hostnames resolve per
 * family on refresh() and again after dns_update_interval, failures disable the target until a
 * later success, change_total counts changes only, and a lookup that never answers neither blocks
 * anything beyond its timeout nor loses the last good address while it hangs.
 */
import { afterEach, describe, expect, jest, test } from "bun:test";
import { parseConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { Resolver, type LookupFn } from "../../src/daemon/resolver.ts";
import type { Logger } from "../../src/log.ts";
import type { Family } from "../../src/packet/address.ts";

interface LogLine {
  level: string;
  msg: string;
}

function recorder(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (msg: string) => void lines.push({ level, msg });
  return { lines, log: { debug: at("DEBUG"), info: at("INFO"), warning: at("WARNING"), error: at("ERROR"), critical: at("CRITICAL"), enabled: () => true } };
}

function config(targets: string, dnsUpdateInterval = 60): Config {
  const r = parseConfigText(
    `global: {probe_name: unit, interval: 10, nb_proc: 1, logging_level: INFO, prometheus_port: 9, dns_update_interval: ${dnsUpdateInterval}}
groups: {g: {}}
targets:
${targets}`,
    "resolver.yaml",
  );
  if (!r.ok) throw new Error(`test config invalid: ${r.issues.map((i) => i.message).join("; ")}`);
  return r.config;
}

/** A DNS whose answers the test sets; "hang" never answers, an Error rejects. */
class FakeDns {
  answers = new Map<string, string[] | Error | "hang">();
  calls: { host: string; family: Family }[] = [];
  lookup: LookupFn = (host, family) => {
    this.calls.push({ host, family });
    const a = this.answers.get(`${host}/${family}`);
    if (a === "hang") return new Promise<string[]>(() => {});
    if (a instanceof Error) return Promise.reject(a);
    if (!a) return Promise.reject(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" }));
    return Promise.resolve([...a]);
  };
}

class Clock {
  t = 1_000_000;
  now = () => this.t;
}

const byTarget = (r: Resolver) => Object.fromEntries(r.resolutions().map((x) => [x.target, { status: x.status, changes: x.changes, addresses: x.addresses, family: x.family }]));

afterEach(() => {
  jest.useRealTimers();
});

describe("Resolver", () => {
  test("literals, subnets and ranges resolve at sync, without a lookup: status 1, one change", () => {
    const dns = new FakeDns();
    const r = new Resolver(recorder().log, dns.lookup, new Clock().now);
    r.sync(config(`  ip4: {type: ICMPping, destination: 198.18.0.1}
  ip6: {type: ICMPping, destination: "fd00::1"}
  net: {type: ICMPping, destination: 198.18.1.0/30, is_subnet: true}
  range: {type: ICMPping, destination: 198.18.2.1-3, is_subnet: true}`));
    expect(dns.calls).toEqual([]);
    expect(byTarget(r)).toEqual({
      ip4: { status: 1, changes: 1, addresses: ["198.18.0.1"], family: 4 },
      ip6: { status: 1, changes: 1, addresses: ["fd00::1"], family: 6 },
      net: { status: 1, changes: 1, addresses: ["198.18.1.1", "198.18.1.2"], family: 4 },
      range: { status: 1, changes: 1, addresses: ["198.18.2.1", "198.18.2.2", "198.18.2.3"], family: 4 },
    });
  });

  test("a hostname resolves for its address family on refresh(); several answers give the lowest, whatever their order", async () => {
    const dns = new FakeDns();
    dns.answers.set("a.test/4", ["198.18.0.9", "198.18.0.3"]);
    dns.answers.set("a.test/6", ["fd00::5"]);
    const r = new Resolver(recorder().log, dns.lookup, new Clock().now);
    r.sync(config(`  v4: {type: ICMPping, destination: a.test}
  v6: {type: ICMPping, destination: a.test, address_family: ipv6}`));
    expect(r.addressesOf("v4")).toBeNull(); // not resolved yet: not probed
    expect(byTarget(r).v4!.status).toBe(0);
    await r.refresh();
    expect(dns.calls.sort((a, b) => a.family - b.family)).toEqual([
      { host: "a.test", family: 4 },
      { host: "a.test", family: 6 },
    ]);
    expect(r.addressesOf("v4")).toEqual(["198.18.0.3"]);
    expect(r.addressesOf("v6")).toEqual(["fd00::5"]);
    expect(byTarget(r).v4).toEqual({ status: 1, changes: 1, addresses: ["198.18.0.3"], family: 4 });
  });

  test("re-resolution waits for dns_update_interval (the target's own overrides the global); change_total grows on a change only", async () => {
    const dns = new FakeDns();
    const clock = new Clock();
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    dns.answers.set("b.test/4", ["198.18.0.2"]);
    const r = new Resolver(recorder().log, dns.lookup, clock.now);
    r.sync(config(`  a: {type: ICMPping, destination: a.test}
  b: {type: ICMPping, destination: b.test, dns_update_interval: 600}`, 60));
    await r.refresh();
    expect(dns.calls.length).toBe(2);
    clock.t += 59_000;
    await r.refresh();
    expect(dns.calls.length).toBe(2); // not due yet
    clock.t += 1_000;
    await r.refresh();
    expect(dns.calls.map((c) => c.host)).toEqual(["a.test", "b.test", "a.test"]); // a is due, b (600 s) is not
    expect(byTarget(r).a!.changes).toBe(1); // same answer: no change
    dns.answers.set("a.test/4", ["198.18.0.7"]);
    clock.t += 60_000;
    await r.refresh();
    expect(byTarget(r).a).toEqual({ status: 1, changes: 2, addresses: ["198.18.0.7"], family: 4 });
    // Same addresses in another order are no change either.
    dns.answers.set("a.test/4", ["198.18.0.7"]);
    clock.t += 60_000;
    await r.refresh();
    expect(byTarget(r).a!.changes).toBe(2);
  });

  test("dns_update_interval 0 resolves once", async () => {
    const dns = new FakeDns();
    const clock = new Clock();
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    const r = new Resolver(recorder().log, dns.lookup, clock.now);
    r.sync(config(`  a: {type: ICMPping, destination: a.test}`, 0));
    await r.refresh();
    clock.t += 10 * 86_400_000;
    await r.refresh();
    expect(dns.calls.length).toBe(1);
  });

  test("a failure sets status 0 and disables the target (no addresses), logged once; a later success brings it back", async () => {
    const dns = new FakeDns();
    const clock = new Clock();
    const { log, lines } = recorder();
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    const r = new Resolver(log, dns.lookup, clock.now);
    r.sync(config(`  a: {type: ICMPping, destination: a.test}`, 60));
    await r.refresh();
    dns.answers.delete("a.test/4");
    clock.t += 60_000;
    await r.refresh();
    expect(byTarget(r).a).toEqual({ status: 0, changes: 1, addresses: null, family: 4 });
    expect(r.addressesOf("a")).toBeNull();
    // Retried at the next refresh, not a whole interval later; still failing: logged once only.
    clock.t += 1_000;
    await r.refresh();
    expect(dns.calls.length).toBe(3);
    expect(lines.filter((l) => l.level === "WARNING").length).toBe(1);
    dns.answers.set("a.test/4", ["198.18.0.8"]);
    clock.t += 1_000;
    await r.refresh();
    expect(byTarget(r).a).toEqual({ status: 1, changes: 2, addresses: ["198.18.0.8"], family: 4 });
  });

  test("an outage that ends with the same address is no change: change_total stays", async () => {
    const dns = new FakeDns();
    const clock = new Clock();
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    const r = new Resolver(recorder().log, dns.lookup, clock.now);
    r.sync(config(`  a: {type: ICMPping, destination: a.test}`, 60));
    await r.refresh();
    dns.answers.set("a.test/4", new Error("SERVFAIL"));
    clock.t += 60_000;
    await r.refresh();
    expect(byTarget(r).a!.status).toBe(0);
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    clock.t += 1_000;
    await r.refresh();
    expect(byTarget(r).a).toEqual({ status: 1, changes: 1, addresses: ["198.18.0.1"], family: 4 });
  });

  test("a lookup that never answers: the last good address stays in use while it hangs, no second lookup starts, and refresh() settles at the lookup timeout", async () => {
    jest.useFakeTimers();
    const dns = new FakeDns();
    const clock = new Clock();
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    dns.answers.set("b.test/4", ["198.18.0.2"]);
    const r = new Resolver(recorder().log, dns.lookup, clock.now);
    r.sync(config(`  a: {type: ICMPping, destination: a.test}
  b: {type: ICMPping, destination: b.test}`, 60));
    await r.refresh();
    dns.answers.set("a.test/4", "hang");
    dns.answers.set("b.test/4", ["198.18.0.3"]);
    clock.t += 60_000;
    let settled = false;
    const pending = r.refresh().then(() => (settled = true));
    for (let i = 0; i < 20; i++) await Promise.resolve(); // let the answering lookup finish
    // b, which answers, is not held up by a.
    expect(r.addressesOf("b")).toEqual(["198.18.0.3"]);
    expect(r.addressesOf("a")).toEqual(["198.18.0.1"]);
    expect(byTarget(r).a!.status).toBe(1);
    // Another refresh while a's lookup is in flight does not pile up a second one.
    clock.t += 60_000;
    void r.refresh();
    expect(dns.calls.filter((c) => c.host === "a.test").length).toBe(2);
    expect(settled).toBe(false);
    jest.advanceTimersByTime(5_000);
    await pending;
    expect(settled).toBe(true);
    // A lookup that timed out is a failed resolution.
    expect(byTarget(r).a!.status).toBe(0);
  });

  test("sync follows the config: removed targets forgotten, changed destinations redone, unchanged ones keep their state", async () => {
    const dns = new FakeDns();
    const clock = new Clock();
    dns.answers.set("a.test/4", ["198.18.0.1"]);
    const r = new Resolver(recorder().log, dns.lookup, clock.now);
    r.sync(config(`  a: {type: ICMPping, destination: a.test}
  b: {type: ICMPping, destination: 198.18.0.2}
  c: {type: ICMPping, destination: 198.18.0.3}`));
    await r.refresh();
    r.sync(config(`  a: {type: ICMPping, destination: a.test}
  c: {type: ICMPping, destination: 198.18.0.4}`));
    expect(Object.keys(byTarget(r)).sort()).toEqual(["a", "c"]);
    expect(byTarget(r).a).toEqual({ status: 1, changes: 1, addresses: ["198.18.0.1"], family: 4 });
    expect(byTarget(r).c).toEqual({ status: 1, changes: 2, addresses: ["198.18.0.4"], family: 4 });
    await r.refresh();
    expect(dns.calls.length).toBe(1); // a kept its schedule
  });
});
