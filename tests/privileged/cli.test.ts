/**
 * `netprobify probe` end to end through runCli (the engine runs in its Worker, as in the binary):
 * the table's sent / lost set against a capture inside a veth test host, one row per source port
 * with --per-port, and the exit codes of the spec (0, 1 when nothing answers, 64 for bad
 * arguments with a one-line message). Needs root.
 */
import { probeTypeByName } from "../../src/probes/registry.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { runCli } from "../../src/cli/index.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";
import { canon, decodeCapture, isProbe, type WirePacket } from "./wire.ts";
import type { ProbeTarget } from "../../src/engine/probe-engine.ts";
import { MAIN } from "../support/daemon-process.ts";

interface CliRun {
  code: number;
  out: string[];
  err: string[];
  /** Probes of the command seen arriving in the host. */
  wire: WirePacket[];
  /** Everything the host's capture decoded. */
  all: WirePacket[];
}

/** Fast defaults for the tests: short gaps and timeout, so a run lasts well under a second. */
const FAST = ["--interval", "0.002", "--timeout", "1"];

async function probe(net: TestNet, h: TestHost, args: string[], kind: string, family: 4 | 6, dst: string, port: number): Promise<CliRun> {
  const cap = await net.capture(h, "ip or ip6");
  const out: string[] = [];
  const err: string[] = [];
  let code: number;
  try {
    code = await runCli(["probe", ...args], (l) => out.push(...l.split("\n")), (l) => err.push(l));
  } catch (e) {
    await cap.stop().catch(() => {});
    throw e;
  }
  const pkts = decodeCapture(await cap.stop(), cap.linktype!);
  const t = { type: probeTypeByName(kind)!.type, family, dst, dstPort: port } as ProbeTarget;
  return { code, out, err, wire: pkts.filter((p) => isProbe(p, t)), all: pkts };
}

/** The table rows of one destination, split in cells. */
function rows(out: string[], dst: string): string[][] {
  return out.filter((l) => l.startsWith(`${dst} `)).map((l) => l.trim().split(/\s+/));
}

describe("netprobify probe (runCli)", () => {
  let net: TestNet;
  let h: TestHost;

  beforeAll(async () => {
    requireRoot();
    net = await createTestNet();
    h = net.hosts[0]!;
  }, 60_000);

  afterAll(async () => {
    await net?.teardown();
  }, 60_000);

  for (const [name, kind, family, port] of [
    ["tcpsyn to the open port, IPv4", "tcpsyn", 4, "open"],
    ["tcpsyn to a closed port, IPv6", "tcpsyn", 6, "closed"],
    ["icmp, IPv6", "icmp", 6, "none"],
    ["udp, IPv4", "udp", 4, "closed"],
  ] as const) {
    test(`${name}: exit 0, the table's sent is what the host saw arrive, lost 0`, async () => {
      const dst = family === 4 ? h.v4.host : h.v6.host;
      const dstPort = port === "open" ? h.openPort : port === "closed" ? h.closedPort : 0;
      const args = [dst, "--type", kind, ...(kind === "icmp" ? [] : ["--port", String(dstPort)]), "--count", "20", ...FAST];
      const r = await probe(net, h, args, kind, family, dst, dstPort);
      expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: [] });
      expect(r.out[0]).toContain(dst);
      expect(r.out.filter((l) => /^destination\s+sent\s+lost\s+loss%\s+min\(ms\)\s+p50\(ms\)\s+p95\(ms\)\s+p99\(ms\)\s+max\(ms\)$/.test(l)).length).toBe(1);
      const [row, ...more] = rows(r.out, dst);
      expect(more).toEqual([]);
      expect(r.wire.length).toBe(20);
      expect(row!.slice(0, 4)).toEqual([dst, String(r.wire.length), "0", "0.0"]);
      // min, p50, p95, p99, max: each a number of ms, in order.
      const rtts = row!.slice(4);
      expect(rtts.length).toBe(5);
      const values = rtts.map(Number);
      expect(values.every((v) => Number.isFinite(v) && v > 0)).toBe(true);
      expect([...values].sort((a, b) => a - b)).toEqual(values);
      const answer = { tcpsyn: port === "open" ? "syn-ack" : "rst-ack", icmp: "echo-reply", udp: "port-unreachable" }[kind];
      expect(r.out).toContain(`answers: 20 ${answer}`);
      expect(r.out.join("\n")).not.toContain("warning");
    }, 60_000);
  }

  test("--per-port: one row per source port, each with its share of the probes", async () => {
    const dst = h.v4.host;
    const args = [dst, "--type", "tcpsyn", "--port", String(h.closedPort), "--count", "12", "--src-ports", "65000-65003", "--per-port", ...FAST];
    const r = await probe(net, h, args, "tcpsyn", 4, dst, h.closedPort);
    expect(r.code).toBe(0);
    expect(r.out.some((l) => /^destination\s+src port\s+sent\s+lost/.test(l))).toBe(true);
    const table = rows(r.out, dst).map((cells) => cells.slice(0, 5));
    expect(table).toEqual([65000, 65001, 65002, 65003].map((p) => [dst, String(p), "3", "0", "0.0"]));
    const onWire = new Map<number, number>();
    for (const p of r.wire) onWire.set(p.sport, (onWire.get(p.sport) ?? 0) + 1);
    expect([...onWire].sort((a, b) => a[0] - b[0])).toEqual([65000, 65001, 65002, 65003].map((p) => [p, 3]));
  }, 60_000);

  test("--json --per-port: one JSON document; per destination and per source port, sent is what arrived", async () => {
    const dst = h.v6.host;
    const args = [dst, "--type", "udp", "--port", String(h.closedPort), "--count", "8", "--src-ports", "65000-65001", "--per-port", "--json", ...FAST];
    const r = await probe(net, h, args, "udp", 6, dst, h.closedPort);
    expect({ code: r.code, err: r.err, lines: r.out.length }).toEqual({ code: 0, err: [], lines: 1 });
    const doc = JSON.parse(r.out[0]!) as { interrupted: boolean; destinations: { address: string; sent: number; lost: number; answers: Record<string, number>; ports: { src_port: number; sent: number; lost: number }[] }[] };
    expect(doc.interrupted).toBe(false);
    expect(doc.destinations.map((d) => [d.address, d.sent, d.lost, d.answers])).toEqual([[dst, r.wire.length, 0, { "port-unreachable": 8 }]]);
    const onWire = (port: number) => r.wire.filter((p) => p.sport === port).length;
    expect(doc.destinations[0]!.ports.map((p) => [p.src_port, p.sent, p.lost])).toEqual([
      [65000, onWire(65000), 0],
      [65001, onWire(65001), 0],
    ]);
  }, 60_000);

  test("Ctrl-C (SIGINT) mid-run: the summary of what was sent, the rest not counted, exit 0 as the finished run", async () => {
    const dst = h.v4.host;
    const count = 1000;
    const cap = await net.capture(h, "icmp");
    // A process of its own, as a user runs it: the signal goes to it, not to the test runner.
    const proc = Bun.spawn([process.execPath, MAIN, "probe", dst, "--type", "icmp", "--count", String(count), "--interval", "0.01"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    let stdout = "";
    const reader = (async () => {
      for await (const chunk of proc.stdout) stdout += new TextDecoder().decode(chunk);
    })();
    // The heading is printed just before the batch starts: from then on probes are leaving.
    while (!stdout.includes("\n") && proc.exitCode === null) await Bun.sleep(20);
    await Bun.sleep(300);
    proc.kill("SIGINT");
    const code = await proc.exited;
    clearTimeout(killer);
    await reader;
    const stderr = await new Response(proc.stderr).text();
    const wire = decodeCapture(await cap.stop(), cap.linktype!).filter((p) => isProbe(p, { type: "ICMPping", family: 4, dst, dstPort: 0 } as ProbeTarget));
    expect({ code, signal: proc.signalCode, stderr: stderr.split("\n").filter((l) => l && !l.includes("resolved next hop")) }).toEqual({ code: 0, signal: null, stderr: [] });
    const out = stdout.split("\n");
    const [row, ...more] = rows(out, dst);
    expect(more).toEqual([]);
    const sent = Number(row![1]);
    // Some probes left and some did not: the interruption came mid-run.
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(count);
    expect(sent).toBe(wire.length);
    // Answered but for, at most, the one in flight as the run was cut.
    expect(Number(row![2])).toBeLessThanOrEqual(1);
    expect(out).toContain(`interrupted: the ${count - sent} of ${count} probe(s) not sent yet are not counted`);
  }, 60_000);

  test("nothing answers (the host's blackhole address): exit 1, 100% loss, and the probes did leave", async () => {
    for (const [family, dst] of [[4, h.v4.blackhole], [6, h.v6.blackhole]] as const) {
      const r = await probe(net, h, [dst, "--type", "icmp", "--count", "5", "--interval", "0.002", "--timeout", "0.3"], "icmp", family, dst, 0);
      expect({ dst, code: r.code }).toEqual({ dst, code: 1 });
      expect(rows(r.out, canon(dst)).map((c) => c.slice(0, 4))).toEqual([[dst, "5", "5", "100.0"]]);
      expect(r.wire.length).toBe(5);
    }
  }, 60_000);

  for (const [what, args, mentions] of [
    ["a bad --type", ["--type", "bogus"], "--type"],
    ["port 70000", ["--type", "tcpsyn", "--port", "70000"], "--port"],
    ["an unknown option", ["--type", "icmp", "--bogus-option"], "--bogus-option"],
    ["--src-ports 9-3", ["--type", "udp", "--src-ports", "9-3"], "--src-ports"],
    ["no --type", [], "--type"],
    ["tcpsyn without --port", ["--type", "tcpsyn"], "--port"],
  ] as const) {
    test(`${what}: exit 64 with a one-line message naming it, and nothing is sent`, async () => {
      const dst = h.v4.host;
      const r = await probe(net, h, [dst, ...args], "icmp", 4, dst, 0);
      expect(r.code).toBe(64);
      const first = r.err[0] ?? "";
      expect(first).toMatch(/^netprobify: \S/);
      expect(first).not.toContain("\n");
      expect(first).toContain(mentions);
      expect(r.out).toEqual([]);
      // No probe of any kind reached the host.
      expect(r.all.filter((p) => p.proto === 6 || p.proto === 17 || p.icmpType === 8 || p.icmpType === 128)).toEqual([]);
    }, 60_000);
  }
});
