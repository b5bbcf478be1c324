/**
 * One line per event, key=value fields (ts, level, module, msg, then context such as target and
 * group), so logs grep and parse alike. The level names are the config's logging_level values.
 */
export const LEVELS = { CRITICAL: 50, ERROR: 40, WARNING: 30, INFO: 20, DEBUG: 10, NOTSET: 0 } as const;
export type LevelName = keyof typeof LEVELS;

let threshold: number = LEVELS.INFO;
let sink: (line: string) => void = (line) => process.stderr.write(`${line}\n`);

export function setLogLevel(level: LevelName): void {
  threshold = LEVELS[level];
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

export function logger(module: string): Logger {
  const emit = (level: LevelName, msg: string, fields?: LogFields) => {
    if (LEVELS[level] < threshold) return;
    let line = `ts=${new Date().toISOString()} level=${level} module=${module} msg=${quote(msg)}`;
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${quote(String(v))}`;
    sink(line);
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
