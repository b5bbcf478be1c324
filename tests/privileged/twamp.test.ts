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
 * Then against the network simulator's TWAMP-light reflector (tests/support/tun-responder.ts) on a
 * TUN host, with seeded loss each way: the forward and reverse loss the engine's fold reports
 * are exactly the simulator's logged drops, split by the fold's rule (losses after a flow's last
 * answer, or before its first, have an unknown direction), and forward + reverse + unknown = loss.
 * The reflector's hold (T3 - T2) is set beside the TUN capture's view of it: the probe's arrival
 * and the reflection's departure on the host's interface.
 *
 * Needs root (namespaces, the engine's raw packets), tcpdump, tshark and python3.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { openProbeEngine } from "../../src/engine/pcap-network.ts";
import { SLOT_ANSWERED, type BatchResult, type ProbeEngine, type ProbeTarget } from "../../src/engine/probe-engine.ts";
import { percentile, summarizeSeries } from "../../src/engine/stats.ts";
import { SENDER_ERROR_ESTIMATE } from "../../src/probes/twamp-light.ts";
import { startResponderProcess, type ResponderProcess } from "../support/responder-process.ts";
import { createNamespaces, createTestNet, requireRoot, type BareNamespaces, type TestHost, type TestNet, type TunHost } from "../support/testnet.ts";
import { control, decisionKey, readDecisions, type SimConfig, type TunDecision } from "../support/tun-responder.ts";
import type { PcapRecord } from "../support/pcap-file.ts";
import { canon } from "./wire.ts";

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

/** TWAMP-Test packets on the TUN device (raw IP): time, the reflector's address, which way, the sender's sequence number. */
function twampOnTun(records: PcapRecord[]): { t: bigint; host: string; toReflector: boolean; senderSeq: number }[] {
  const out = [];
  for (const r of records) {
    const d = r.data;
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const v4 = d[0]! >> 4 === 4;
    const ip = v4 ? (d[0]! & 0x0f) * 4 : 40;
    if ((v4 ? d[9] : d[6]) !== 17 || d.length < ip + 8 + 28) continue;
    const text = (o: number, n: number) => (n === 4 ? [...d.subarray(o, o + 4)].join(".") : canon(Array.from({ length: 8 }, (_, k) => v.getUint16(o + 2 * k).toString(16)).join(":")));
    const src = v4 ? text(12, 4) : text(8, 16);
    const dst = v4 ? text(16, 4) : text(24, 16);
    const sport = v.getUint16(ip);
    const dport = v.getUint16(ip + 2);
    const t = BigInt(r.tsSec) * 1_000_000_000n + BigInt(r.tsNsec);
    if (dport === 862) out.push({ t, host: dst, toReflector: true, senderSeq: v.getUint32(ip + 8) });
    else if (sport === 862) out.push({ t, host: src, toReflector: false, senderSeq: v.getUint32(ip + 8 + 24) });
  }
  return out;
}

/**
 * The capture brackets the reflector's clock reads: the kernel stamps the probe as it queues it
 * on the TUN device, before the simulator reads it and takes T2 (a user-space clock read, no
 * kernel receive timestamp on a TUN read), and stamps the reflection as the write hands it back,
 * after T3. So capture - (T3 - T2) is never negative (within the NTP fractions' truncation, under
 * 1 ns each) and is the time the probe waited in the device's queue plus the write: tens of us
 * at p50 here (33 us measured); its tail is the simulator's event loop stalling (GC, log writes),
 * up to a millisecond on this 2-core machine, printed but not bounded. 250 us at p50 leaves room
 * for a loaded CI machine while still failing a T2 or T3 taken at the wrong moment (the 1 ms hold).
 */
const HOLD_P50_BOUND_NS = 250_000;

describe("TWAMPlight against the simulator's reflector: loss by direction, the reflector's hold", () => {
  let net: BareNamespaces;
  let tun: TunHost;
  let engine: ProbeEngine;
  const SIM_COUNT = 240;
  const SIM_FLOWS = 4;
  /** The simulator's hold of every reflection (its answer delay, between T2 and T3). */
  const HOLD_MS = 1;

  beforeAll(async () => {
    requireRoot();
    net = await createNamespaces(1);
    tun = await net.addTunHost();
    engine = openProbeEngine({ captureBufferBytes: 8 << 20, l3RawSocket: false, maxProbesPerSecond: 100_000, identBase: 0x7000_0000 });
  }, 60_000);

  afterAll(async () => {
    engine?.close();
    await net?.teardown();
  }, 60_000);

  const simTarget = (family: 4 | 6, host: number): ProbeTarget => ({
    type: "TWAMPlight",
    family,
    dst: family === 4 ? `198.18.${tun.subnet}.${host}` : `fd00:19:${tun.subnet}::${host.toString(16)}`,
    dstPort: 862,
    srcAddresses: null,
    srcPortA: 65200,
    srcPortZ: 65200 + SIM_FLOWS - 1,
    dscp: 0,
    dontFragment: true,
    ipPayloadSize: null,
    count: SIM_COUNT,
    intervalMs: 2,
    startMs: 0,
    timeoutMs: 300,
  });

  test("forward and reverse loss are exactly the simulator's seeded drops each way; forward + reverse + unknown = loss; T3 - T2 beside the TUN capture", async () => {
    const targets = [simTarget(4, 20), simTarget(6, 21)];
    const config: SimConfig = { seed: 13, default: { delayMs: HOLD_MS }, rules: targets.map((t) => ({ dst: t.dst, loss: 0.1, reverseLoss: 0.1 })) };
    await control(tun.v4.host, { op: "configure", config });
    const offset = (await control(tun.v4.host, { op: "sync" })).decisions;
    const cap = await net.capture(tun, "udp");
    let r: BatchResult;
    try {
      r = engine.run(targets);
    } finally {
      await cap.stop();
    }
    expect(cap.droppedByKernel).toBe(0);
    // Copied at once: the result's arrays are views into the engine's buffers.
    const w = r.valueWidth;
    const status = r.status.slice();
    const ident = r.ident.slice();
    const srcPort = r.srcPort.slice();
    const values = r.values.slice();
    const targetStart = r.targetStart.slice();
    const series = summarizeSeries(r, [0, 1], 2, [50, 99], []);
    await control(tun.v4.host, { op: "sync" });
    const log = readDecisions(tun.logFile).slice(offset);
    const byKey = new Map<string, TunDecision[]>();
    for (const e of log) {
      const k = decisionKey(e.dst, e.proto, e.srcPort, e.ident);
      byKey.set(k, [...(byKey.get(k) ?? []), e]);
    }
    const holdNs: number[] = [];
    const wireHoldNs: number[] = [];
    const pkts = twampOnTun(await cap.stop());

    targets.forEach((t, i) => {
      const dst = canon(t.dst); // RFC 5952 text: how the log writes it
      const expected = { forward: 0, reverse: 0, unknown: 0 };
      const wrong: unknown[] = [];
      const drops = { forward: 0, reverse: 0 };
      const flows = new Map<number, { answered: boolean; way: "forward" | "reverse" | null }[]>();
      for (let s = targetStart[i]!; s < targetStart[i + 1]!; s++) {
        const ds = byKey.get(decisionKey(dst, 17, srcPort[s]!, ident[s]!)) ?? [];
        if (ds.length !== 1) {
          wrong.push({ slot: s, decisions: ds.length });
          continue;
        }
        const d = ds[0]!;
        const way = d.action !== "drop" ? null : d.reason === "reverse-loss" ? "reverse" : "forward";
        if (way) drops[way]++;
        const answered = status[s] === SLOT_ANSWERED;
        if (answered !== (way === null)) wrong.push({ slot: s, answered, log: d.action, reason: d.reason });
        if (answered && values[s * w + 1] !== d.reflectorSeq) wrong.push({ slot: s, engineReflectorSeq: values[s * w + 1], logged: d.reflectorSeq });
        flows.set(srcPort[s]!, [...(flows.get(srcPort[s]!) ?? []), { answered, way }]);
      }
      expect({ target: t.dst, wrong }).toEqual({ target: t.dst, wrong: [] });
      // The fold's rule, from the log: between two answers of a flow the direction is known;
      // before its first answer or after its last, it is not.
      for (const slots of flows.values()) {
        const firstAnswer = slots.findIndex((x) => x.answered);
        const lastAnswer = slots.findLastIndex((x) => x.answered);
        slots.forEach((x, k) => {
          if (!x.way) return;
          if (firstAnswer < 0 || k < firstAnswer || k > lastAnswer) expected.unknown++;
          else expected[x.way]++;
        });
      }
      const sr = series[i]!;
      const got = { forward: sr.extra[0]![0], reverse: sr.extra[1]![0], unknown: sr.extra[2]![0] };
      console.log(`simulator reflector ${t.dst}: sent ${sr.sent}, lost ${sr.lost}; logged drops forward ${drops.forward}, reverse ${drops.reverse}; engine forward ${got.forward}, reverse ${got.reverse}, unknown ${got.unknown}`);
      expect({ target: t.dst, ...got }).toEqual({ target: t.dst, ...expected });
      expect(got.forward! + got.reverse! + got.unknown!).toBe(sr.lost);
      expect(sr.lost).toBe(drops.forward + drops.reverse);
      // Seeded at 10% each way over 240 probes: both directions are exercised.
      expect(Math.min(expected.forward, expected.reverse)).toBeGreaterThan(5);

      // The reflector's hold beside the TUN capture: the probe read from the device, its reflection written to it.
      const probeAt = new Map<number, bigint>();
      const backAt = new Map<number, bigint>();
      for (const p of pkts) {
        if (p.toReflector && p.host === canon(t.dst)) probeAt.set(p.senderSeq, p.t);
        else if (!p.toReflector && p.host === canon(t.dst)) backAt.set(p.senderSeq, p.t);
      }
      for (let s = targetStart[i]!; s < targetStart[i + 1]!; s++) {
        if (status[s] !== SLOT_ANSWERED) continue;
        const a = probeAt.get(ident[s]!);
        const b = backAt.get(ident[s]!);
        if (a === undefined || b === undefined) continue;
        holdNs.push(values[s * w]!);
        wireHoldNs.push(Number(b - a));
      }
    });
    const answered = targets.reduce((n, _, i) => n + series[i]!.sent - series[i]!.lost, 0);
    expect(holdNs.length).toBe(answered);
    const diff = holdNs.map((h, k) => wireHoldNs[k]! - h).sort((a, b) => a - b);
    const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
    const [h, g] = [sorted(holdNs), sorted(wireHoldNs)];
    console.log(
      `simulator reflector hold T3 - T2: p50 ${percentile(h, 50)} ns, p99 ${percentile(h, 99)} ns; TUN capture (probe in to reflection out): p50 ${percentile(g, 50)} ns, p99 ${percentile(g, 99)} ns; ` +
        `capture - reflector per probe: min ${diff[0]} ns, p50 ${percentile(diff, 50)} ns, p99 ${percentile(diff, 99)} ns, max ${diff[diff.length - 1]} ns`,
    );
    expect(percentile(h, 50)).toBeGreaterThanOrEqual(HOLD_MS * 1e6);
    expect(diff[0]!).toBeGreaterThanOrEqual(-2);
    expect(percentile(diff, 50)).toBeLessThanOrEqual(HOLD_P50_BOUND_NS);
  }, 60_000);
});
