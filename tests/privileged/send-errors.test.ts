/**
 * A probe that did not leave is the prober's failure, not the network's loss (issue 9, defect 11):
 * it is counted as a send error and is neither sent nor lost. Evidence from the wire: the egress
 * interface is deleted in the middle of a batch while a capture inside the host (on its "any"
 * device, which outlives the veth) counts the probes that arrived; the engine's sent count must be
 * exactly that (but for a probe the kernel accepted as the veth was being torn down, see below),
 * its loss exactly the sent probes left unanswered, and every other planned probe a send error.
 *
 * Needs root (namespaces, veth, captures): without it every test fails, loudly.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { openProbeEngine } from "../../src/engine/pcap-network.ts";
import { SLOT_LOST, SLOT_UNSENT, type BatchResult, type EngineOptions, type ProbeTarget } from "../../src/engine/probe-engine.ts";
import { summarize, summarizeSeries } from "../../src/engine/stats.ts";
import { createTestNet, requireRoot, warmNeighbours, type TestNet } from "../support/testnet.ts";
import { checkTarget, decodeCapture } from "./wire.ts";

const COUNT = 100;
const INTERVAL_MS = 2;
/** Frames the root side must have sent before its veth is deleted: about a third of the batch. */
const DELETE_AFTER_FRAMES = 120;

function target(kind: ProbeTarget["type"], family: 4 | 6, dst: string, dstPort: number): ProbeTarget {
  return {
    type: kind,
    family,
    dst,
    dstPort: kind === "ICMPping" ? 0 : dstPort,
    srcAddresses: null,
    srcPortA: 65000,
    srcPortZ: 65015,
    dscp: 10,
    dontFragment: true,
    ipPayloadSize: null,
    count: COUNT,
    intervalMs: INTERVAL_MS,
    startMs: 0,
    timeoutMs: 500,
  };
}

function txFrames(ifname: string): number {
  return Number(readFileSync(`/sys/class/net/${ifname}/statistics/tx_packets`, "utf8"));
}

describe("an egress interface deleted in the middle of a batch", () => {
  let net: TestNet;

  beforeAll(async () => {
    requireRoot();
    net = await createTestNet({ hosts: 2 });
    for (const h of net.hosts) {
      await warmNeighbours(net, h);
      // Once the veth's own routes go with it, the host's addresses must not follow the default
      // route out of the machine (l3RawSocket lets the kernel route): nowhere to go instead.
      net.addRoute(["unreachable", `198.18.${h.subnet}.0/24`, "metric", "4000"]);
      net.addRoute(["unreachable", `fd00:18:${h.subnet}::/64`, "metric", "4000"]);
    }
  }, 60_000);

  afterAll(async () => {
    await net?.teardown();
  }, 60_000);

  for (const [mode, hostIndex, l3RawSocket] of [
    ["frames injected on the interface", 0, false],
    ["l3RawSocket: the kernel routes", 1, true],
  ] as const) {
    test(`${mode}: sent = probes seen arriving, lost = sent - answered, send errors = planned - sent, no unsent probe counted as lost`, async () => {
      const h = net.hosts[hostIndex]!;
      const opts: EngineOptions = { captureBufferBytes: 16 << 20, l3RawSocket, maxProbesPerSecond: 100_000, identBase: 0x3000_0000 + hostIndex * 0x1000_0000 };
      const engine = openProbeEngine(opts);
      // Three answered targets, and one whose probes arrive and are dropped: real loss, which the
      // probes that never left must not add to.
      const targets = [
        target("TCPsyn", 4, h.v4.host, h.openPort),
        target("ICMPping", 6, h.v6.host, 0),
        target("UDPunreachable", 4, h.v4.host, h.closedPort),
        target("ICMPping", 4, h.v4.blackhole, 0),
      ];
      const planned = targets.length * COUNT;
      const cap = await net.capture(h, "ip or ip6", { device: "any" });
      // The engine blocks this thread for the whole batch: the deletion comes from a child process,
      // once the root side has sent DELETE_AFTER_FRAMES frames of the batch.
      const stats = `/sys/class/net/${h.rootIf}/statistics/tx_packets`;
      const threshold = txFrames(h.rootIf) + DELETE_AFTER_FRAMES;
      const deleter = Bun.spawn(["sh", "-c", `while [ "$(cat ${stats})" -lt ${threshold} ]; do sleep 0.001; done; exec ip link del ${h.rootIf}`], {
        stdout: "ignore",
        stderr: "pipe",
      });
      let r: BatchResult;
      try {
        r = engine.run(targets);
      } finally {
        engine.close();
        const t = setTimeout(() => deleter.kill(), 5000);
        await deleter.exited;
        clearTimeout(t);
      }
      expect({ deleted: deleter.exitCode, stderr: await new Response(deleter.stderr).text() }).toEqual({ deleted: 0, stderr: "" });
      const pkts = decodeCapture(await cap.stop(), cap.linktype!);

      let wireProbes = 0;
      let unsentSlots = 0;
      let inTeardown = 0;
      const rows = targets.map((t, i) => {
        const from = r.targetStart[i]!;
        const to = r.targetStart[i + 1]!;
        const c = checkTarget(r, i, t, pkts, `${t.type} v${t.family}`);
        const s = summarize(r, from, to);
        wireProbes += c.wire.probes;
        const statuses = [...r.status.subarray(from, to)];
        const unsent = statuses.filter((x) => x === SLOT_UNSENT).length;
        unsentSlots += unsent;
        // Probes leave in slot order and the interface does not come back: the unsent ones are
        // the target's last, after every one that left.
        const firstUnsent = statuses.indexOf(SLOT_UNSENT);
        // The kernel accepts a probe while the veth is being torn down (its peer already gone),
        // the engine even sees it leave, and the veth drops it: the prober cannot tell that from
        // loss on the path. Only the target's last probe before its first failed send can be one.
        const lastSent = firstUnsent < 0 ? -1 : firstUnsent - 1;
        const dropped = s.sent - c.wire.probes;
        if (dropped === 1 && lastSent >= 0 && statuses[lastSent] !== SLOT_UNSENT) inTeardown++;
        return {
          target: c.label,
          sent: s.sent,
          lost: s.lost,
          answered: s.answered,
          wire: { probes: c.wire.probes, duplicates: c.wire.duplicates },
          droppedInTeardown: dropped === 1 ? { slot: lastSent, status: statuses[lastSent] } : dropped,
          unsentAtTheEnd: firstUnsent < 0 || statuses.slice(firstUnsent).every((x) => x === SLOT_UNSENT),
          // Answers seen leaving the host include ones the root side never received (its veth gone).
          answeredWithinWire: s.answered <= c.wire.answers,
          reason: unsent > 0 ? r.unroutable[i]! : "",
        };
      });
      console.log(`${mode}: planned ${planned}, sent ${r.stats.sent}, send errors ${r.stats.sendErrors}, answered ${r.stats.answered}, reset errors ${r.stats.resetErrors}; per target:`, JSON.stringify(rows));
      for (const row of rows) {
        const dropped = row.droppedInTeardown;
        expect(row).toEqual({
          ...row,
          // Every sent probe arrived, but for at most the one accepted as the veth went: lost.
          sent: row.wire.probes + (dropped === 0 ? 0 : 1),
          lost: row.sent - row.answered,
          droppedInTeardown: dropped === 0 ? 0 : { slot: row.sent - 1, status: SLOT_LOST },
          wire: { probes: row.wire.probes, duplicates: 0 },
          unsentAtTheEnd: true,
          answeredWithinWire: true,
        });
        // A target whose probes stopped leaving says why, naming the interface.
        if (row.reason !== "") expect(row.reason).toContain(l3RawSocket ? "raw socket" : h.rootIf);
      }
      // Mid-batch: some probes left, some did not; the blackholed ones that left were lost.
      expect(rows[3]!.lost).toBeGreaterThan(0);
      expect(r.stats.sent).toBeGreaterThan(0);
      expect(r.stats.sendErrors).toBeGreaterThan(0);
      expect({
        sent: r.stats.sent,
        sendErrors: r.stats.sendErrors,
        unsentSlots,
        unroutable: r.stats.unroutable,
      }).toEqual({ sent: wireProbes + inTeardown, sendErrors: planned - r.stats.sent, unsentSlots: planned - r.stats.sent, unroutable: 0 });
      // What the daemon publishes: the series summaries add up to the same.
      const series = summarizeSeries(r, [0, 1, 2, 3], 4, [50], []);
      expect({ sent: series.reduce((n, x) => n + x.sent, 0), lost: series.reduce((n, x) => n + x.lost, 0) }).toEqual({
        sent: r.stats.sent,
        lost: r.stats.sent - r.stats.answered,
      });
    }, 60_000);
  }
});
