/** A Logger that keeps its lines, for tests that check what was logged (and how often). */
import type { Logger, LogFields } from "../../src/log.ts";

export interface LogLine {
  level: string;
  msg: string;
  fields: LogFields;
}

export function recordLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (msg: string, fields: LogFields = {}) => void lines.push({ level, msg, fields });
  const log: Logger = {
    debug: at("DEBUG"),
    info: at("INFO"),
    warning: at("WARNING"),
    error: at("ERROR"),
    critical: at("CRITICAL"),
    enabled: () => true,
  };
  return { log, lines };
}
