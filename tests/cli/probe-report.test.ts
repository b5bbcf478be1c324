/**
 * What `probe` prints of a batch (src/cli/probe.ts), from synthetic slots: the table with one
 * unit per column (every RTT in ms, the unit in the header), the --json document per destination
 * and per source port, and an interrupted run (Ctrl-C) whose probes not sent yet are neither sent
 * nor lost.
 */
import { describe, expect, test } from "bun:test";
import { parseCommandLine } from "../../src/cli/args.ts";
import { buildReport, buildTargets, parseProbeArgs, probeCommand, renderJson, renderTable } from "../../src/cli/probe.ts";
import { emptyBatchStats, REPLY_ECHO, SLOT_ANSWERED, SLOT_LOST, SLOT_UNSENT, type BatchResult } from "../../src/engine/probe-engine.ts";
import type { ArgsDef, CommandDef } from "citty";

const A = SLOT_ANSWERED;
const L = SLOT_LOST;
const U = SLOT_UNSENT;

function options(argv: string[]) {
  return parseProbeArgs(parseCommandLine(probeCommand as CommandDef<ArgsDef>, argv));
}

/**
 * Two destinations of `count` slots each; RTTs in ns per slot (NaN when not answered), source
 * ports alternating 65000/65001.
 */
function batch(status: number[][], rttUs: number[][]): BatchResult {
  const flat = status.flat();
  const n = flat.length;
  const starts = [0];
  for (const s of status) starts.push(starts[starts.length - 1]! + s.length);
  return {
    targetStart: Int32Array.from(starts),
    kind: new Uint8Array(status.length),
    status: Uint8Array.from(flat),
    reply: Uint8Array.from(flat, (s) => (s === A ? REPLY_ECHO : 0)),
    rttNs: Float64Array.from(rttUs.flat(), (us) => us * 1e3),
    srcPort: Uint16Array.from({ length: n }, (_, k) => 65000 + ((k - starts[starts.findLastIndex((s) => s <= k)]!) % 2)),
    srcIndex: new Uint16Array(n),
    matchFail: new Uint32Array(status.length),
    portMismatch: new Uint32Array(status.length),
    timeOutOfOrder: new Uint32Array(status.length),
    unroutable: status.map(() => ""),
    ident: new Uint32Array(n),
    values: new Float64Array(0),
    valueWidth: 1,
    stats: emptyBatchStats(),
  };
}

const N = NaN;

describe("the table", () => {
  test("every RTT in ms with 3 decimals (25 us is 0.025, 1.5 s is 1500.000), loss in %, units in the header only", () => {
    const o = options(["198.18.0.1", "--type", "icmp", "--count", "4", "--src-ports", "65000-65001"]);
    const targets = buildTargets(o, 4, ["198.18.0.1"]);
    const r = batch([[A, A, A, L]], [[25, 1_500_000, 300, N]]);
    const lines = renderTable(o, buildReport(o, targets, r, false)).split("\n");
    expect(lines[0]!.split(/\s+/)).toEqual(["destination", "sent", "lost", "loss%", "min(ms)", "p50(ms)", "p95(ms)", "p99(ms)", "max(ms)"]);
    expect(lines[1]!.split(/\s+/)).toEqual(["198.18.0.1", "4", "1", "25.0", "0.025", "0.300", "1350.030", "1470.006", "1500.000"]);
    expect(lines).toContain("answers: 3 echo-reply");
    expect(lines.join("\n")).not.toContain("interrupted");
  });

  test("no answer: dashes for the RTTs", () => {
    const o = options(["198.18.0.1", "--type", "icmp", "--count", "2"]);
    const r = batch([[L, L]], [[N, N]]);
    const report = buildReport(o, buildTargets(o, 4, ["198.18.0.1"]), r, false);
    expect(report.answered).toBe(0);
    expect(renderTable(o, report).split("\n")[1]!.split(/\s+/)).toEqual(["198.18.0.1", "2", "2", "100.0", "-", "-", "-", "-", "-"]);
  });

  test("interrupted: the probes not sent yet are in no column, and a line says how many were left out", () => {
    const o = options(["198.18.0.1", "--type", "icmp", "--count", "6"]);
    const r = batch([[A, A, L, U, U, U]], [[20, 30, N, N, N, N]]);
    const text = renderTable(o, buildReport(o, buildTargets(o, 4, ["198.18.0.1"]), r, true));
    expect(text.split("\n")[1]!.split(/\s+/).slice(0, 4)).toEqual(["198.18.0.1", "3", "1", "33.3"]);
    expect(text).toContain("interrupted: the 3 of 6 probe(s) not sent yet are not counted");
  });

  test("interrupted after a send error: the probe that failed to leave is a send error, not one of those not reached", () => {
    const o = options(["198.18.0.1", "--type", "icmp", "--count", "4"]);
    const r = batch([[A, U, U, U]], [[20, N, N, N]]);
    r.stats.sendErrors = 1;
    const text = renderTable(o, buildReport(o, buildTargets(o, 4, ["198.18.0.1"]), r, true));
    expect(text).toContain("interrupted: the 2 of 4 probe(s) not sent yet are not counted");
    expect(text).toContain("warning: 1 probe(s) could not be sent: not counted as sent or lost");
  });
});

describe("--json", () => {
  test("one document: the settings, then per destination (and per source port with --per-port) the figures, times in seconds", () => {
    const o = options(["198.18.0.0/31", "--type", "icmp", "--count", "4", "--src-ports", "65000-65001", "--per-port", "--json"]);
    expect(o.json).toBe(true);
    const targets = buildTargets(o, 4, ["198.18.0.0", "198.18.0.1"]);
    const r = batch(
      [
        [A, A, A, A],
        [A, L, U, U],
      ],
      [
        [10, 20, 30, 40],
        [50, N, N, N],
      ],
    );
    const text = renderJson(o, buildReport(o, targets, r, true));
    expect(text.split("\n").length).toBe(1);
    const doc = JSON.parse(text) as Record<string, unknown>;
    expect(doc).toMatchObject({ type: "icmp", destination: "198.18.0.0/31", port: null, count: 4, interrupted: true, probes_planned: 8, probes_not_sent: 2 });
    expect(doc.destinations).toEqual([
      {
        address: "198.18.0.0",
        sent: 4,
        lost: 0,
        loss_ratio: 0,
        rtt_seconds: { min: 0.00001, p50: 0.000025, p95: 0.0000385, p99: 0.0000397, max: 0.00004 },
        answers: { "echo-reply": 4 },
        unroutable: null,
        paths_down: 0,
        ports: [
          { src_port: 65000, sent: 2, lost: 0, loss_ratio: 0, rtt_seconds: { min: 0.00001, p50: 0.00002, p95: 0.000029, p99: 0.0000298, max: 0.00003 } },
          { src_port: 65001, sent: 2, lost: 0, loss_ratio: 0, rtt_seconds: { min: 0.00002, p50: 0.00003, p95: 0.000039, p99: 0.0000398, max: 0.00004 } },
        ],
      },
      {
        address: "198.18.0.1",
        sent: 2,
        lost: 1,
        loss_ratio: 0.5,
        rtt_seconds: { min: 0.00005, p50: 0.00005, p95: 0.00005, p99: 0.00005, max: 0.00005 },
        answers: { "echo-reply": 1 },
        unroutable: null,
        paths_down: 0,
        ports: [
          { src_port: 65000, sent: 1, lost: 0, loss_ratio: 0, rtt_seconds: { min: 0.00005, p50: 0.00005, p95: 0.00005, p99: 0.00005, max: 0.00005 } },
          { src_port: 65001, sent: 1, lost: 1, loss_ratio: 1, rtt_seconds: null },
        ],
      },
    ]);
  });

  test("without --per-port there is no ports list", () => {
    const o = options(["198.18.0.1", "--type", "icmp", "--count", "2", "--json"]);
    const doc = JSON.parse(renderJson(o, buildReport(o, buildTargets(o, 4, ["198.18.0.1"]), batch([[A, L]], [[10, N]]), false))) as {
      destinations: Record<string, unknown>[];
    };
    expect(Object.keys(doc.destinations[0]!)).not.toContain("ports");
  });
});
