/**
 * `netprobify probe DEST --type TYPE ...`: a one-shot measurement printed as a table,
 * the way a network engineer uses hping or mtr during an investigation.
 */
import { lookup } from "node:dns/promises";
import { defineCommand } from "citty";
import { EngineClient } from "../engine/engine-client.ts";
import { REPLY_NAMES, type BatchResult, type ProbeTarget } from "../engine/probe-engine.ts";
import { paths, pathHealth, percentile, summarize } from "../engine/stats.ts";
import { type Family } from "../packet/address.ts";
import type { ProbeType } from "../probes/probe-type.ts";
import { PROBE_TYPE_LIST, probeTypeByName, probeTypeNames } from "../probes/registry.ts";
import { DestinationError, destinationForm, expandDestination } from "../targets/destinations.ts";
import { EXIT_NO_ANSWER, EXIT_NOHOST, EXIT_OK, EXIT_USAGE, ExitError } from "./exit.ts";
import { requireRawPacketPrivilege } from "./privilege.ts";


export interface ProbeOptions {
  destination: string;
  type: ProbeType;
  family: Family | null;
  port: number;
  count: number;
  intervalMs: number;
  timeoutMs: number;
  srcPortA: number;
  srcPortZ: number;
  src: string | null;
  dscp: number;
  size: number | null;
  dontFragment: boolean;
  perPort: boolean;
  l3RawSocket: boolean;
  rate: number;
}

function usage(message: string): never {
  throw new ExitError(EXIT_USAGE, message, true);
}

function integer(name: string, text: string | undefined, min: number, max: number, fallback?: number): number {
  if (text === undefined || text === "") {
    if (fallback === undefined) usage(`--${name} is required`);
    return fallback;
  }
  if (!/^\d+$/.test(text)) usage(`--${name} must be an integer from ${min} to ${max}, not "${text}"`);
  const n = Number(text);
  if (n < min || n > max) usage(`--${name} must be an integer from ${min} to ${max}, not ${n}`);
  return n;
}

/** Seconds on the command line, milliseconds inside. */
function seconds(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback * 1000;
  const n = Number(text);
  if (text === "" || !Number.isFinite(n) || n < 0 || n > 3600) usage(`--${name} must be a number of seconds from 0 to 3600, not "${text}"`);
  return n * 1000;
}

/** Validates the command's arguments; every problem is an ExitError(64) naming the option. */
export function parseProbeArgs(args: Record<string, string | boolean | string[] | undefined>): ProbeOptions {
  const destination = typeof args.destination === "string" ? args.destination : "";
  if (!destination) usage("a destination is required (address, subnet, range or hostname)");
  const typeText = typeof args.type === "string" ? args.type.toLowerCase() : "";
  if (!typeText) usage(`--type is required (${probeTypeNames()})`);
  const type = probeTypeByName(typeText);
  if (!type) usage(`--type must be ${probeTypeNames()}, not "${args.type}"`);
  const str = (k: string) => (typeof args[k] === "string" ? (args[k] as string) : undefined);
  const rule = type.port;
  const port =
    rule.use === "none"
      ? 0
      : integer("port", str("port"), 1, 65535, rule.use === "default" ? rule.value : rule.cliDefault);
  const range = str("src-ports") ?? "65000-65015";
  const m = /^(\d+)(?:-(\d+))?$/.exec(range);
  if (!m) usage(`--src-ports must be a port or a range such as 65000-65015, not "${range}"`);
  const srcPortA = integer("src-ports", m[1], 1, 65535);
  const srcPortZ = integer("src-ports", m[2] ?? m[1], 1, 65535);
  if (srcPortA > srcPortZ) usage(`--src-ports: ${srcPortA} is above ${srcPortZ}`);
  const size = str("size") === undefined ? null : integer("size", str("size"), type.headerBytes, 1400);
  if (args["6"] && args["4"]) usage("-4 and -6 exclude each other");
  return {
    destination,
    type,
    family: args["6"] ? 6 : args["4"] ? 4 : null,
    port,
    count: integer("count", str("count"), 1, 1000000, 10),
    intervalMs: seconds("interval", str("interval"), 0.05),
    timeoutMs: seconds("timeout", str("timeout"), 1),
    srcPortA,
    srcPortZ,
    src: str("src") ?? null,
    dscp: integer("dscp", str("dscp"), 0, 63, 0),
    size,
    dontFragment: args["no-df"] !== true,
    perPort: args["per-port"] === true,
    l3RawSocket: args["l3-raw-socket"] === true,
    rate: integer("rate", str("rate"), 1, 10000000, 100000),
  };
}

/** The addresses to probe: a literal, subnet or range expands; a hostname resolves. */
export async function resolveDestination(text: string, family: Family | null): Promise<{ family: Family; addresses: string[] }> {
  try {
    if (destinationForm(text) !== "hostname") {
      const d = expandDestination(text);
      if (family !== null && d.family !== family) usage(`${text} is an IPv${d.family} destination, but -${family} was given`);
      return d;
    }
  } catch (e) {
    if (e instanceof DestinationError) usage(e.message);
    throw e;
  }
  const fam: Family = family ?? 4;
  try {
    const found = await lookup(text, { family: fam, all: true });
    if (found.length === 0) throw new Error("no address");
    return { family: fam, addresses: [...new Set(found.map((a) => a.address))] };
  } catch {
    throw new ExitError(EXIT_NOHOST, `${text} does not resolve to an IPv${fam} address`);
  }
}

/** "tcpsyn: required; udp: 33434" */
function portHelp(): string {
  return PROBE_TYPE_LIST.flatMap((t) => {
    const r = t.port;
    if (r.use === "none") return [];
    const value = r.use === "default" ? r.value : r.cliDefault;
    return [`${t.name}: ${value === undefined ? "required" : value}`];
  }).join("; ");
}

export function buildTargets(o: ProbeOptions, family: Family, addresses: string[]): ProbeTarget[] {
  return addresses.map((dst) => ({
    type: o.type.type,
    family,
    dst,
    dstPort: o.port,
    srcAddresses: o.src ? [o.src] : null,
    srcPortA: o.srcPortA,
    srcPortZ: o.srcPortZ,
    dscp: o.dscp,
    dontFragment: o.dontFragment,
    ipPayloadSize: o.size,
    count: o.count,
    intervalMs: o.intervalMs,
    startMs: 0,
    timeoutMs: o.timeoutMs,
  }));
}

/** RTT in a unit an engineer reads at a glance: microseconds below 1 ms. */
export function formatRtt(seconds: number): string {
  if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(1)} us`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(3)} ms`;
  return `${seconds.toFixed(3)} s`;
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
}

/** The measurement table; also returns whether anything answered. */
export function renderTable(o: ProbeOptions, targets: ProbeTarget[], r: BatchResult): { text: string; answered: number } {
  const header = ["destination", ...(o.perPort ? ["src port"] : []), "sent", "lost", "loss", "min", "p50", "p95", "p99", "max"];
  const rows: string[][] = [];
  let answered = 0;
  const notes: string[] = [];
  const replies = new Map<string, number>();
  for (let t = 0; t < targets.length; t++) {
    const from = r.targetStart[t]!;
    const to = r.targetStart[t + 1]!;
    const pathList = paths(r, from, to);
    const groups = o.perPort ? pathList.map((p) => p.srcPort) : [null];
    for (const port of groups) {
      const s = summarize(r, from, to, port === null ? undefined : (slot) => r.srcPort[slot] === port);
      answered += s.answered;
      const rt = s.rtts;
      const fmt = (v: number) => (rt.length === 0 ? "-" : formatRtt(v));
      rows.push([
        targets[t]!.dst,
        ...(port === null ? [] : [String(port)]),
        String(s.sent),
        String(s.lost),
        `${(s.lossRatio * 100).toFixed(1)}%`,
        fmt(rt[0] ?? 0),
        fmt(percentile(rt, 50)),
        fmt(percentile(rt, 95)),
        fmt(percentile(rt, 99)),
        fmt(rt[rt.length - 1] ?? 0),
      ]);
    }
    for (let s = from; s < to; s++) {
      const name = REPLY_NAMES[r.reply[s]!] ?? "none";
      if (name !== "none") replies.set(name, (replies.get(name) ?? 0) + 1);
    }
    if (r.unroutable[t]) notes.push(`${targets[t]!.dst}: ${r.unroutable[t]}`);
    const health = pathHealth(pathList);
    if (!o.perPort && health.pathsDown > 0 && health.pathsDown < pathList.length) {
      notes.push(`${targets[t]!.dst}: ${health.pathsDown} source port(s) lost every probe (see --per-port)`);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  const lines = [row(header, widths), ...rows.map((x) => row(x, widths))];
  const st = r.stats;
  const answers = [...replies].map(([k, v]) => `${v} ${k}`).join(", ") || "none";
  lines.push("", `answers: ${answers}`);
  if (st.captureDropped > 0 || st.txMissing > 0) {
    lines.push(`warning: the prober itself may have lost answers (capture dropped ${st.captureDropped}, untimed answers ${st.txMissing})`);
  }
  if (st.sendErrors > 0) {
    lines.push(`warning: ${st.sendErrors} probe(s) could not be sent: not counted as sent or lost`);
  }
  lines.push(...notes);
  return { text: lines.join("\n"), answered };
}

export async function runProbe(o: ProbeOptions, out: (line: string) => void): Promise<number> {
  const { family, addresses } = await resolveDestination(o.destination, o.family);
  requireRawPacketPrivilege();
  const targets = buildTargets(o, family, addresses);
  const { client } = await EngineClient.start(
    { captureBufferBytes: 64 << 20, l3RawSocket: o.l3RawSocket, maxProbesPerSecond: o.rate, identBase: (Math.random() * 2 ** 32) >>> 0 },
    (message) => process.stderr.write(`netprobify: ${message}\n`),
  );
  try {
    const port = o.type.port.use === "none" ? "" : ` port ${o.port}`;
    const ports = o.type.rotatesPorts ? `, source ports ${o.srcPortA}-${o.srcPortZ}` : "";
    const dests = addresses.length === 1 ? addresses[0] : `${o.destination} (${addresses.length} addresses)`;
    out(`${o.type.title} to ${dests}${port}: ${o.count} probe(s) each${ports}, dscp ${o.dscp}`);
    const r = await client.run(targets);
    const { text, answered } = renderTable(o, targets, r);
    out(text);
    return answered > 0 ? EXIT_OK : EXIT_NO_ANSWER;
  } finally {
    await client.close();
  }
}

export const probeCommand = defineCommand({
  meta: { name: "probe", description: "Probe a destination once and print loss and RTT percentiles" },
  args: {
    destination: { type: "positional", description: "address, CIDR subnet, range (198.18.*.1-5) or hostname", required: false },
    type: { type: "string", description: probeTypeNames() },
    port: { type: "string", description: `destination port (${portHelp()})` },
    count: { type: "string", description: "probes per destination address (10)" },
    interval: { type: "string", description: "seconds between two probes of one address (0.05)" },
    timeout: { type: "string", description: "seconds to wait for answers after the last probe (1)" },
    "src-ports": { type: "string", description: "source port range rotated over, A-Z (65000-65015)" },
    src: { type: "string", description: "source address (the kernel's choice by default)" },
    dscp: { type: "string", description: "DSCP of every packet, 0-63 (0)" },
    size: { type: "string", description: "IP payload size: L4 header + data" },
    "no-df": { type: "boolean", description: "clear the IPv4 don't-fragment bit" },
    "per-port": { type: "boolean", description: "one row per source port (per ECMP path)" },
    "l3-raw-socket": { type: "boolean", description: "send through a raw IP socket; the kernel routes" },
    rate: { type: "string", description: "cap on probes per second (100000)" },
    "4": { type: "boolean", description: "IPv4 (resolve hostnames to A records)" },
    "6": { type: "boolean", description: "IPv6 (resolve hostnames to AAAA records)" },
  },
});
