/**
 * The log line formats (src/log.ts): logfmt, and --log.format json, one JSON object per line with
 * the same keys in the same order and the same values; the level threshold; runtime warnings
 * (process.emitWarning, what Bun and node: modules raise) as log lines.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { formatLogLine, logger, logRuntimeWarnings, setLogFormat, setLogLevel, setLogSink } from "../../src/log.ts";
import { parseLogLine } from "../support/daemon-process.ts";
import { recordLog } from "../support/log-recorder.ts";

afterEach(() => {
  setLogFormat("logfmt");
  setLogLevel("INFO");
  setLogSink((line) => process.stderr.write(`${line}\n`));
});

const AT = new Date("2026-01-02T03:04:05.678Z");
const FIELDS = { target: "web 1", port: 8443, tls: false, quote: 'say "hi"\nbye', skipped: undefined };

describe("line formats", () => {
  test("logfmt: ts, level, module, msg, then the fields; values quoted only when they must be", () => {
    setLogFormat("logfmt");
    expect(formatLogLine("WARNING", "daemon", "listeners stay", FIELDS, AT)).toBe(
      'ts=2026-01-02T03:04:05.678Z level=WARNING module=daemon msg="listeners stay" target="web 1" port=8443 tls=false quote="say \\"hi\\"\\nbye"',
    );
  });

  test("json: one object on one line, the logfmt keys in the logfmt order, the same values (numbers and booleans typed)", () => {
    setLogFormat("logfmt");
    const logfmt = parseLogLine(formatLogLine("WARNING", "daemon", "listeners stay", FIELDS, AT))!;
    setLogFormat("json");
    const line = formatLogLine("WARNING", "daemon", "listeners stay", FIELDS, AT);
    expect(line).not.toContain("\n");
    const json = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(Object.keys(logfmt));
    expect(Object.fromEntries(Object.entries(json).map(([k, v]) => [k, String(v)]))).toEqual(logfmt);
    expect(json).toEqual({ ts: "2026-01-02T03:04:05.678Z", level: "WARNING", module: "daemon", msg: "listeners stay", target: "web 1", port: 8443, tls: false, quote: 'say "hi"\nbye' });
  });

  test("json: a field named like a fixed key does not replace it", () => {
    setLogFormat("json");
    expect(JSON.parse(formatLogLine("INFO", "http", "m", { level: "forged", msg: "forged" }, AT))).toMatchObject({ level: "INFO", msg: "m" });
  });

  test("the sink gets the format set, and nothing below the level", () => {
    const lines: string[] = [];
    setLogSink((l) => lines.push(l));
    setLogFormat("json");
    setLogLevel("WARNING");
    const log = logger("test");
    log.info("dropped");
    log.warning("kept", { n: 1 });
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([expect.objectContaining({ level: "WARNING", module: "test", msg: "kept", n: 1 })]);
  });
});

describe("runtime warnings", () => {
  test("process.emitWarning and a node: module's warning become one log line each, with the warning's name", async () => {
    const { log, lines } = recordLog();
    logRuntimeWarnings(log);
    logRuntimeWarnings(log); // a second call adds no second listener
    process.emitWarning("a test warning", "DeprecationWarning", "DEP_TEST");
    const { EventEmitter } = await import("node:events");
    const emitter = new EventEmitter();
    emitter.setMaxListeners(1);
    emitter.on("x", () => {});
    emitter.on("x", () => {});
    await Bun.sleep(10);
    expect(lines.map((l) => ({ level: l.level, warning: l.fields.warning }))).toEqual([
      { level: "WARNING", warning: "DeprecationWarning" },
      { level: "WARNING", warning: "MaxListenersExceededWarning" },
    ]);
    expect(lines[0]).toEqual({ level: "WARNING", msg: "a test warning", fields: { warning: "DeprecationWarning", code: "DEP_TEST" } });
  });
});
