/**
 * Worker entry that owns a ProbeEngine: packets never touch the thread that asked for them.
 * One message in per batch, one message out per batch, whatever the number of probes.
 */
import { closeLibpcap, libpcapVersion } from "../native/libpcap.ts";
import { closeFd, closeLibc, openEventFd } from "../native/libc.ts";
import { closeNetlink } from "../native/netlink.ts";
import { openProbeEngine } from "./pcap-network.ts";
import type { ProbeEngine } from "./probe-engine.ts";
import { summarizeSeries } from "./stats.ts";
import type { EngineReply, EngineRequest } from "./engine-client.ts";

declare const self: Worker;

let engine: ProbeEngine | null = null;

function reply(message: EngineReply): void {
  self.postMessage(message);
}

function fail(id: number | undefined, e: unknown): void {
  const err = e instanceof Error ? e : new Error(String(e));
  reply({ type: "error", id, name: err.name, message: err.message });
}

self.onmessage = async (event: MessageEvent<EngineRequest>) => {
  const msg = event.data;
  try {
    if (msg.type === "open") {
      // Opened here, closed by the client once this Worker is gone (it may be terminated).
      const wakeFd = openEventFd();
      try {
        engine = openProbeEngine({ ...msg.options, wakeFd }, (message) => reply({ type: "log", message }));
      } catch (e) {
        closeFd(wakeFd);
        throw e;
      }
      reply({ type: "opened", libpcap: libpcapVersion().version, wakeFd });
    } else if (msg.type === "run") {
      if (!engine) throw new Error("engine is not open");
      const r = engine.run(msg.targets);
      // Copies: the result's arrays are views into buffers the engine reuses, and structured
      // clone would otherwise copy those buffers whole.
      reply({
        type: "result",
        id: msg.id,
        result: {
          ...r,
          status: r.status.slice(),
          reply: r.reply.slice(),
          rttNs: r.rttNs.slice(),
          srcPort: r.srcPort.slice(),
          srcIndex: r.srcIndex.slice(),
        },
      });
    } else if (msg.type === "series") {
      if (!engine) throw new Error("engine is not open");
      const r = engine.run(msg.targets);
      const q = msg.request;
      reply({
        type: "series",
        id: msg.id,
        result: { series: summarizeSeries(r, q.seriesOf, q.seriesCount, q.percentiles, q.buckets), stats: r.stats },
      });
      // Collect the batch's garbage now, while the Worker waits for the next one, rather than
      // carrying it into the next batch's peak.
      Bun.gc(true);
    } else {
      // Everything native this thread opened goes before the Worker is terminated: terminate()
      // ends the JavaScript, not the capture ring's mapping nor the sockets.
      engine?.close();
      engine = null;
      closeNetlink();
      // Last: nothing in this thread calls native code after these (the client terminates it).
      closeLibpcap();
      closeLibc();
      reply({ type: "closed" });
    }
  } catch (e) {
    fail(msg.type === "run" || msg.type === "series" ? msg.id : undefined, e);
  }
};
