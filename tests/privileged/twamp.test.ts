/**
 * TWAMPlight end to end, in a test namespace: the engine probes `netprobify responder` (both
 * families) and an independent reflector written in plain Python from RFC 5357 4.2.1's layout
 * (tests/support/twamp_reflector.py), stateful and stateless, while tcpdump captures the sender's
 * side of the veth. Checked against that capture:
 *
 * - tshark decodes every packet as TWAMP-Test (`-d udp.port==862,twamp.test`, no control session
 *   tells it otherwise), and the decoded fields are the values sent: the sender's sequence number
 *   (the engine's identifier), timestamp and error estimate, echoed back by the reflector;
 * - the reflector's sequence numbers: a counter per flow from 0 for a stateful reflector, the
 *   sender's number for a stateless one (which the prober can tell: a random start per flow);
 * - T4 - T1 (the engine's RTT plus the reflector's hold it took off) equals the capture's probe to
 *   answer time within 1 us at p50 and p99 (figures printed).
 *
 * Needs root (namespaces, the engine's raw packets), tcpdump, tshark and python3.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { openProbeEngine } from "../../src/engine/pcap-network.ts";
import { SLOT_ANSWERED, type BatchResult, type ProbeEngine, type ProbeTarget } from "../../src/engine/probe-engine.ts";
import { percentile } from "../../src/engine/stats.ts";
import { SENDER_ERROR_ESTIMATE } from "../../src/probes/twamp-light.ts";
import { startResponderProcess, type ResponderProcess } from "../support/responder-process.ts";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";

const COUNT = 30;
const FLOWS = 3;
const BOUND_NS = 1_000;
const REFLECTOR = join(import.meta.dir, "..", "support", "twamp_reflector.py");

interface Reflector {
  name: string;
  port: number;
  stateful: boolean;
  family: 4 | 6;
}

const REFLECTORS: Reflector[] = [
  { name: "netprobify responder v4", port: 862, stateful: true, family: 4 },
  { name: "netprobify responder v6", port: 862, stateful: true, family: 6 },
  { name: "python stateful", port: 4862, stateful: true, family: 4 },
  { name: "python stateless", port: 4863, stateful: false, family: 4 },
];

/** One TWAMP-Test packet as tshark decoded it. */
interface Decoded {
  timeNs: bigint;
  srcPort: number;
  dstPort: number;
  seq: number;
  timestamp: string;
  errorEstimate: number;
  senderSeq: number | null;
  senderTimestamp: string | null;
  senderErrorEstimate: number | null;
  receiveTimestamp: string | null;
}

const FIELDS = [
  "frame.time_epoch",
  "udp.srcport",
  "udp.dstport",
  "twamp.test.seq_number",
  "twamp.test.timestamp",
  "twamp.test.error_estimate",
  "twamp.test.sender_seq_number",
  "twamp.test.sender_timestamp",
  "twamp.test.sender_error_estimate",
  "twamp.test.receive_timestamp",
];

function epochNs(text: string): bigint {
  const [s, f = ""] = text.split(".");
  return BigInt(s!) * 1_000_000_000n + BigInt(f.padEnd(9, "0").slice(0, 9));
}

async function tshark(file: string): Promise<Decoded[]> {
  const args = ["tshark", "-r", file, "-t", "e", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"];
  for (const p of new Set(REFLECTORS.map((r) => r.port))) args.push("-d", `udp.port==${p},twamp.test`);
  for (const f of FIELDS) args.push("-e", f);
  const p = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if ((await p.exited) !== 0) throw new Error(`tshark failed: ${err}`);
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const c = l.split("\t");
      const n = (i: number) => (c[i] ? Number(c[i]) : null);
      return {
        timeNs: epochNs(c[0]!),
        srcPort: Number(c[1]),
        dstPort: Number(c[2]),
        seq: Number(c[3]),
        timestamp: c[4]!,
        errorEstimate: Number(c[5]),
        senderSeq: n(6),
        senderTimestamp: c[7] || null,
        senderErrorEstimate: n(8),
        receiveTimestamp: c[9] || null,
      };
    });
}

describe("TWAMPlight against netprobify responder and an independent Python reflector", () => {
  let net: TestNet;
  let host: TestHost;
  let engine: ProbeEngine;
  let responder: ResponderProcess | null = null;
  const pythons: Subprocess[] = [];
  const targets: ProbeTarget[] = [];
  let r: BatchResult;
  let decoded: Decoded[] = [];

  beforeAll(async () => {
    requireRoot();
    for (const tool of ["tshark", "tcpdump", "python3"]) if (Bun.which(tool) === null) throw new Error(`${tool} is not installed`);
    net = await createTestNet({ hosts: 1 });
    host = net.hosts[0]!;
    responder = await startResponderProcess(["--listen", "[::]:862"], ["ip", "netns", "exec", host.ns]);
    for (const x of REFLECTORS.filter((x) => x.name.startsWith("python"))) {
      const p = Bun.spawn(["ip", "netns", "exec", host.ns, "python3", REFLECTOR, "::", String(x.port), x.stateful ? "stateful" : "stateless"], { stdout: "pipe", stderr: "pipe" });
      pythons.push(p);
      const line = (await p.stdout.getReader().read()).value;
      if (!line || !new TextDecoder().decode(line).startsWith("listening")) throw new Error(`the Python reflector did not start: ${await new Response(p.stderr).text()}`);
    }
    for (const x of REFLECTORS) {
      targets.push({
        type: "TWAMPlight",
        family: x.family,
        dst: x.family === 4 ? host.v4.host : host.v6.host,
        dstPort: x.port,
        srcAddresses: null,
        srcPortA: 65100,
        srcPortZ: 65100 + FLOWS - 1,
        dscp: 0,
        dontFragment: true,
        ipPayloadSize: 100,
        count: COUNT,
        intervalMs: 5,
        startMs: 0,
        timeoutMs: 500,
      });
    }
    engine = openProbeEngine({ captureBufferBytes: 8 << 20, l3RawSocket: false, maxProbesPerSecond: 100_000, identBase: 0x6000_0000 });
    const cap = await net.capture(host, "udp", { side: "root" });
    try {
      r = engine.run(targets);
    } finally {
      await cap.stop();
    }
    expect(cap.droppedByKernel).toBe(0);
    decoded = await tshark(cap.file);
  }, 60_000);

  afterAll(async () => {
    engine?.close();
    await responder?.stop();
    for (const p of pythons) p.kill("SIGKILL");
    await net?.teardown();
  });

  REFLECTORS.forEach((x, t) => {
    const slots = () => {
      const out: number[] = [];
      for (let s = r.targetStart[t]!; s < r.targetStart[t + 1]!; s++) out.push(s);
      return out;
    };
    // tshark reads both directions with the reflector's layout (a sender packet's padding as
    // zeroed reflector fields): the direction tells them apart.
    const ours = (seq: number | null) => slots().some((s) => r.ident[s] === seq);
    const sent = () => decoded.filter((d) => d.dstPort === x.port && ours(d.seq));
    const reflected = () => decoded.filter((d) => d.srcPort === x.port && ours(d.senderSeq));

    test(`${x.name}: every probe answered; tshark decodes the sender packets as sent and the reflected ones as echoing them`, () => {
      expect(slots().map((s) => r.status[s])).toEqual(new Array(COUNT).fill(SLOT_ANSWERED));
      const out = sent();
      const back = reflected();
      expect([out.length, back.length]).toEqual([COUNT, COUNT]);
      const bySeq = new Map(out.map((d) => [d.seq, d]));
      for (const d of out) expect(d.errorEstimate).toBe(SENDER_ERROR_ESTIMATE);
      for (const b of back) {
        const o = bySeq.get(b.senderSeq!)!;
        expect({ ts: b.senderTimestamp, ee: b.senderErrorEstimate }).toEqual({ ts: o.timestamp, ee: o.errorEstimate });
        expect(b.receiveTimestamp).toMatch(/^\w{3} [ \d]\d, 20\d\d /);
      }
    });

    test(`${x.name}: the reflector's sequence numbers ${x.stateful ? "count per flow from 0" : "echo the sender's"}`, () => {
      const w = r.valueWidth;
      const byFlow = new Map<number, number[]>();
      for (const s of slots()) byFlow.set(r.srcPort[s]!, [...(byFlow.get(r.srcPort[s]!) ?? []), r.values[s * w + 1]!]);
      if (x.stateful) {
        expect([...byFlow.values()]).toEqual(new Array(FLOWS).fill([...Array(COUNT / FLOWS).keys()]));
      } else {
        expect(slots().map((s) => r.values[s * w + 1])).toEqual(slots().map((s) => r.ident[s]));
      }
    });

    test(`${x.name}: T4 - T1 (RTT plus the reflector's hold) equals the sender-side capture within 1 us at p50 and p99`, () => {
      const w = r.valueWidth;
      const out = new Map(sent().map((d) => [d.seq, d.timeNs]));
      const back = new Map(reflected().map((d) => [d.senderSeq!, d.timeNs]));
      const engineNs: number[] = [];
      const wireNs: number[] = [];
      for (const s of slots()) {
        engineNs.push(r.rttNs[s]! + r.values[s * w]!);
        wireNs.push(Number(back.get(r.ident[s]!)! - out.get(r.ident[s]!)!));
      }
      const sort = (v: number[]) => v.sort((a, b) => a - b);
      const [e, g] = [sort(engineNs), sort(wireNs)];
      const diff = [50, 99].map((p) => Math.abs(percentile(e, p) - percentile(g, p)));
      console.log(`${x.name}: T4-T1 p50 ${percentile(e, 50)} ns (wire ${percentile(g, 50)}), p99 ${percentile(e, 99)} ns (wire ${percentile(g, 99)}); reflector hold p50 ${percentile(sort(slots().map((s) => r.values[s * w]!)), 50)} ns`);
      expect(diff.every((d) => d <= BOUND_NS)).toBe(true);
    });
  });
});
