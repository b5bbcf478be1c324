/**
 * One line per event, so logs grep and parse alike: logfmt (ts, level, module, msg, then context
 * such as target and group, as key=value) or, with --log.format json, one JSON object per line
 * with the same keys in the same order. The level names are the config's logging_level values.
 */
export const LEVELS = { CRITICAL: 50, ERROR: 40, WARNING: 30, INFO: 20, DEBUG: 10, NOTSET: 0 } as const;
export type LevelName = keyof typeof LEVELS;

export const LOG_FORMATS = ["logfmt", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** --log.level's values, as the exporter ecosystem spells them, and the level each stands for. */
export const FLAG_LEVELS: Readonly<Record<string, LevelName>> = { debug: "DEBUG", info: "INFO", warn: "WARNING", error: "ERROR" };

let threshold: number = LEVELS.INFO;
let format: LogFormat = "logfmt";
let sink: (line: string) => void = (line) => process.stderr.write(`${line}\n`);

export function setLogLevel(level: LevelName): void {
  threshold = LEVELS[level];
}

export function setLogFormat(f: LogFormat): void {
  format = f;
}

/** Tests capture lines instead of writing them. */
export function setLogSink(write: (line: string) => void): void {
  sink = write;
}

function quote(value: string): string {
  return /^[\w.:/@+-]+$/.test(value) ? value : JSON.stringify(value);
}

export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warning(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  critical(msg: string, fields?: LogFields): void;
  enabled(level: LevelName): boolean;
}

/** The line of one event in the current format. */
export function formatLogLine(level: LevelName, module: string, msg: string, fields?: LogFields, ts = new Date()): string {
  if (format === "json") {
    // The fixed keys are written first, so a field of the same name cannot replace them.
    const record: Record<string, string | number | boolean> = { ts: ts.toISOString(), level, module, msg };
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined && !(k in record)) record[k] = v;
    return JSON.stringify(record);
  }
  let line = `ts=${ts.toISOString()} level=${level} module=${module} msg=${quote(msg)}`;
  if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${quote(String(v))}`;
  return line;
}

export function logger(module: string): Logger {
  const emit = (level: LevelName, msg: string, fields?: LogFields) => {
    if (LEVELS[level] < threshold) return;
    sink(formatLogLine(level, module, msg, fields));
  };
  return {
    debug: (m, f) => emit("DEBUG", m, f),
    info: (m, f) => emit("INFO", m, f),
    warning: (m, f) => emit("WARNING", m, f),
    error: (m, f) => emit("ERROR", m, f),
    critical: (m, f) => emit("CRITICAL", m, f),
    enabled: (level) => LEVELS[level] >= threshold,
  };
}

/** Where runtime warnings go: one listener however often logRuntimeWarnings is called. */
let warningsTo: Logger | null = null;

/**
 * Runtime warnings (a deprecation, MaxListenersExceeded, a timer too long) become log lines
 * instead of Bun's own "(node:PID) ..." text. The compiled binary runs with --no-warnings
 * (build.ts), which silences that text but still emits the event; `bun src/main.ts` prints it too.
 */
export function logRuntimeWarnings(log: Logger = logger("runtime")): void {
  if (!warningsTo) process.on("warning", (w: Error & { code?: string }) => warningsTo?.warning(w.message, { warning: w.name, code: w.code }));
  warningsTo = log;
}
