/**
 * `netprobify probe DEST --type TYPE ...`: a one-shot measurement printed as a table (or, with
 * --json, one JSON document), the way a network engineer uses hping or mtr during an
 * investigation. Ctrl-C ends it early and prints what was measured, as ping does.
 */
import { lookup } from "node:dns/promises";
import { defineCommand } from "citty";
import { EngineClient } from "../engine/engine-client.ts";
import { REPLY_NAMES, SLOT_UNSENT, type BatchResult, type BatchStats, type ProbeTarget } from "../engine/probe-engine.ts";
import { paths, pathHealth, percentile, summarize, type RangeSummary } from "../engine/stats.ts";
import { type Family } from "../packet/address.ts";
import type { ProbeType } from "../probes/probe-type.ts";
import { PROBE_TYPE_LIST, probeTypeByName, probeTypeNames } from "../probes/registry.ts";
import { DestinationError, destinationForm, expandDestination } from "../targets/destinations.ts";
import { logger } from "../log.ts";
import { stringOption, type ParsedCommandLine } from "./args.ts";
import { EXIT_NO_ANSWER, EXIT_NOHOST, EXIT_OK, EXIT_USAGE, ExitError } from "./exit.ts";
import { requireRawPacketPrivilege } from "./privilege.ts";
import { ProgressLine, runSchedule } from "./progress.ts";


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
  /** One JSON document on stdout instead of the heading and the table. */
  json: boolean;
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
export function parseProbeArgs(parsed: ParsedCommandLine): ProbeOptions {
  const [destination, ...extra] = parsed.positionals;
  if (!destination) usage("a destination is required (address, subnet, range or hostname)");
  if (extra.length > 0) usage(`one destination at most, not ${parsed.positionals.join(" ")}`);
  const args = parsed.options;
  const str = (k: string) => stringOption(parsed, k);
  const typeText = str("type")?.toLowerCase() ?? "";
  if (!typeText) usage(`--type is required (${probeTypeNames()})`);
  const type = probeTypeByName(typeText);
  if (!type) usage(`--type must be ${probeTypeNames()}, not "${str("type")}"`);
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
    json: args.json === true,
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

/** RTT figures of one row, in seconds. */
export interface RttFigures {
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Loss and RTT of a set of probes (a destination, or one source port of it). */
export interface Figures {
  sent: number;
  lost: number;
  lossRatio: number;
  /** null when no answer was timed. */
  rtt: RttFigures | null;
}

export interface DestinationReport extends Figures {
  address: string;
  /** With --per-port: one entry per source port (per ECMP path), in port order. */
  ports: (Figures & { srcPort: number })[] | null;
  /** Answers by kind (syn-ack, echo-reply...). */
  answers: Record<string, number>;
  /** Why its probes could not leave, or null. */
  unroutable: string | null;
  /** Source ports that lost every probe while others did not (a broken ECMP path). */
  pathsDown: number;
  paths: number;
}

/** What a run measured: the table and the JSON document are two writings of it. */
export interface ProbeReport {
  destinations: DestinationReport[];
  stats: BatchStats;
  /** Ctrl-C ended the run before its end. */
  interrupted: boolean;
  /** Probes the run was to send: count x destinations. */
  planned: number;
  /** Probes an interrupted run never reached: in no figure. */
  notSent: number;
  /** Destinations that answered at least once. */
  answered: number;
}

function figures(s: RangeSummary): Figures {
  const rt = s.rtts;
  return {
    sent: s.sent,
    lost: s.lost,
    lossRatio: s.lossRatio,
    rtt:
      rt.length === 0
        ? null
        : { min: rt[0]!, p50: percentile(rt, 50), p95: percentile(rt, 95), p99: percentile(rt, 99), max: rt[rt.length - 1]! },
  };
}

/** Reduces a batch's slots to the report's figures. */
export function buildReport(o: ProbeOptions, targets: ProbeTarget[], r: BatchResult, interrupted: boolean): ProbeReport {
  const destinations: DestinationReport[] = [];
  let answered = 0;
  for (let t = 0; t < targets.length; t++) {
    const from = r.targetStart[t]!;
    const to = r.targetStart[t + 1]!;
    const pathList = paths(r, from, to);
    const whole = summarize(r, from, to);
    if (whole.answered > 0) answered++;
    const answers: Record<string, number> = {};
    for (let s = from; s < to; s++) {
      const name = REPLY_NAMES[r.reply[s]!] ?? "none";
      if (name !== "none") answers[name] = (answers[name] ?? 0) + 1;
    }
    const health = pathHealth(pathList);
    destinations.push({
      address: targets[t]!.dst,
      ...figures(whole),
      ports: o.perPort
        ? pathList.map((p) => ({ srcPort: p.srcPort, ...figures(summarize(r, from, to, (slot) => r.srcPort[slot] === p.srcPort)) }))
        : null,
      answers,
      unroutable: r.unroutable[t] || null,
      pathsDown: health.pathsDown,
      paths: pathList.length,
    });
  }
  // SLOT_UNSENT is a probe that failed to leave (counted in sendErrors) or one an abort kept
  // from being tried: the latter are the rest.
  let unsent = 0;
  for (let s = 0; s < r.status.length; s++) if (r.status[s] === SLOT_UNSENT) unsent++;
  const notSent = unsent - r.stats.sendErrors;
  return { destinations, stats: r.stats, interrupted, planned: targets.reduce((n, t) => n + t.count, 0), notSent, answered };
}

/** Milliseconds with microsecond resolution: every RTT column is in ms (its header says so). */
function ms(seconds: number): string {
  return (seconds * 1e3).toFixed(3);
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
}

/** The measurement table, then the answers and anything that weakens the figures. One unit per column, in its header. */
export function renderTable(o: ProbeOptions, report: ProbeReport): string {
  const header = ["destination", ...(o.perPort ? ["src port"] : []), "sent", "lost", "loss%", "min(ms)", "p50(ms)", "p95(ms)", "p99(ms)", "max(ms)"];
  const cells = (f: Figures): string[] => {
    const rtt = f.rtt;
    return [
      String(f.sent),
      String(f.lost),
      (f.lossRatio * 100).toFixed(1),
      ...(rtt ? [rtt.min, rtt.p50, rtt.p95, rtt.p99, rtt.max].map(ms) : ["-", "-", "-", "-", "-"]),
    ];
  };
  const rows: string[][] = [];
  const notes: string[] = [];
  const answers = new Map<string, number>();
  for (const d of report.destinations) {
    if (d.ports) for (const p of d.ports) rows.push([d.address, String(p.srcPort), ...cells(p)]);
    else rows.push([d.address, ...cells(d)]);
    for (const [k, v] of Object.entries(d.answers)) answers.set(k, (answers.get(k) ?? 0) + v);
    if (d.unroutable) notes.push(`${d.address}: ${d.unroutable}`);
    if (!o.perPort && d.pathsDown > 0 && d.pathsDown < d.paths) {
      notes.push(`${d.address}: ${d.pathsDown} source port(s) lost every probe (see --per-port)`);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  const lines = [row(header, widths), ...rows.map((x) => row(x, widths))];
  const st = report.stats;
  lines.push("", `answers: ${[...answers].map(([k, v]) => `${v} ${k}`).join(", ") || "none"}`);
  if (report.interrupted) {
    lines.push(
      report.notSent > 0
        ? `interrupted: the ${report.notSent} of ${report.planned} probe(s) not sent yet are not counted`
        : "interrupted while waiting for the last answers: the probes not answered yet count as lost",
    );
  }
  if (st.captureDropped > 0 || st.txMissing > 0) {
    lines.push(`warning: the prober itself may have lost answers (capture dropped ${st.captureDropped}, untimed answers ${st.txMissing})`);
  }
  if (st.sendErrors > 0) {
    lines.push(`warning: ${st.sendErrors} probe(s) could not be sent: not counted as sent or lost`);
  }
  lines.push(...notes);
  return lines.join("\n");
}

/** The JSON document of --json: the run's settings, then the figures per destination (and per source port). Times in seconds. */
export function renderJson(o: ProbeOptions, report: ProbeReport): string {
  // Kernel timestamps are in ns: more digits than that would be interpolation noise.
  const ns = (v: number) => Math.round(v * 1e9) / 1e9;
  const rtt = (r: RttFigures | null) => r && { min: ns(r.min), p50: ns(r.p50), p95: ns(r.p95), p99: ns(r.p99), max: ns(r.max) };
  const fig = (f: Figures) => ({ sent: f.sent, lost: f.lost, loss_ratio: f.lossRatio, rtt_seconds: rtt(f.rtt) });
  const st = report.stats;
  return JSON.stringify({
    type: o.type.name,
    destination: o.destination,
    port: o.type.port.use === "none" ? null : o.port,
    count: o.count,
    interval_seconds: o.intervalMs / 1000,
    timeout_seconds: o.timeoutMs / 1000,
    src_ports: { first: o.srcPortA, last: o.srcPortZ },
    dscp: o.dscp,
    interrupted: report.interrupted,
    probes_planned: report.planned,
    probes_not_sent: report.notSent,
    send_errors: st.sendErrors,
    capture_dropped: st.captureDropped,
    untimed_answers: st.txMissing,
    destinations: report.destinations.map((d) => ({
      address: d.address,
      ...fig(d),
      answers: d.answers,
      unroutable: d.unroutable,
      paths_down: d.pathsDown,
      ...(d.ports ? { ports: d.ports.map((p) => ({ src_port: p.srcPort, ...fig(p) })) } : {}),
    })),
  });
}

/**
 * Runs the measurement. Ctrl-C (SIGINT) during the run ends the batch at once and prints what
 * was measured, exiting as the finished run would; a second Ctrl-C ends the process as usual.
 */
export async function runProbe(o: ProbeOptions, out: (line: string) => void): Promise<number> {
  const { family, addresses } = await resolveDestination(o.destination, o.family);
  requireRawPacketPrivilege();
  const targets = buildTargets(o, family, addresses);
  const engineLog = logger("engine");
  const { client } = await EngineClient.start(
    { captureBufferBytes: 64 << 20, l3RawSocket: o.l3RawSocket, maxProbesPerSecond: o.rate, identBase: (Math.random() * 2 ** 32) >>> 0 },
    (message) => engineLog.info(message),
  );
  let interrupted = false;
  const onInterrupt = () => {
    if (interrupted) {
      // The second Ctrl-C: the default action, as if no handler were there.
      process.off("SIGINT", onInterrupt);
      process.kill(process.pid, "SIGINT");
      return;
    }
    interrupted = true;
    client.abort();
  };
  const progress = process.stderr.isTTY ? new ProgressLine((text) => process.stderr.write(text), { columns: () => process.stderr.columns }) : null;
  try {
    if (!o.json) {
      const port = o.type.port.use === "none" ? "" : ` port ${o.port}`;
      const ports = o.type.rotatesPorts ? `, source ports ${o.srcPortA}-${o.srcPortZ}` : "";
      const dests = addresses.length === 1 ? addresses[0] : `${o.destination} (${addresses.length} addresses)`;
      out(`${o.type.title} to ${dests}${port}: ${o.count} probe(s) each${ports}, dscp ${o.dscp}`);
    }
    process.on("SIGINT", onInterrupt);
    progress?.start(runSchedule(targets.length, o.count, o.intervalMs, o.rate, o.timeoutMs));
    let r: BatchResult;
    try {
      r = await client.run(targets);
    } finally {
      progress?.stop();
      process.off("SIGINT", onInterrupt);
    }
    const report = buildReport(o, targets, r, interrupted);
    out(o.json ? renderJson(o, report) : renderTable(o, report));
    return report.answered > 0 ? EXIT_OK : EXIT_NO_ANSWER;
  } finally {
    await client.close();
  }
}

export const probeCommand = defineCommand({
  meta: { name: "probe", description: "Probe a destination once and print loss and RTT percentiles" },
  args: {
    destination: { type: "positional", description: "address, CIDR subnet, range (198.18.*.1-5) or hostname", required: false },
    type: { type: "string", description: probeTypeNames() },
    port: { type: "string", valueHint: "PORT", description: `destination port (${portHelp()})` },
    count: { type: "string", valueHint: "N", description: "probes per destination address (10)" },
    interval: { type: "string", valueHint: "SECONDS", description: "seconds between two probes of one address (0.05)" },
    timeout: { type: "string", valueHint: "SECONDS", description: "seconds to wait for answers after the last probe (1)" },
    "src-ports": { type: "string", valueHint: "A-Z", description: "source port range rotated over, A-Z (65000-65015)" },
    src: { type: "string", valueHint: "ADDRESS", description: "source address (the kernel's choice by default)" },
    dscp: { type: "string", valueHint: "D", description: "DSCP of every packet, 0-63 (0)" },
    size: { type: "string", valueHint: "BYTES", description: "IP payload size: L4 header + data" },
    "no-df": { type: "boolean", description: "clear the IPv4 don't-fragment bit" },
    "per-port": { type: "boolean", description: "one row per source port (per ECMP path)" },
    "l3-raw-socket": { type: "boolean", description: "send through a raw IP socket; the kernel routes" },
    rate: { type: "string", valueHint: "N", description: "cap on probes per second (100000)" },
    json: { type: "boolean", description: "print one JSON document (per destination, per source port with --per-port; times in seconds) instead of the table" },
    "4": { type: "boolean", description: "IPv4 (resolve hostnames to A records)" },
    "6": { type: "boolean", description: "IPv6 (resolve hostnames to AAAA records)" },
  },
});
