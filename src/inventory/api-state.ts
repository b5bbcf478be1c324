/**
 * The targets API's state file, which makes its targets survive a restart: the file's format,
 * replacing it atomically, and reading it back, repaired against the current api.yaml (a file
 * that cannot be understood is set aside, not lost). api.ts's createApi reads it once at start
 * and writes it after every change.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import * as v from "valibot";
import { formatProblem, validateValue } from "../config/validate.ts";
import { NAME_PATTERN, splitIssueText } from "../config/schema.ts";
import type { LevelName, LogFields } from "../log.ts";
import type { ApiConfig } from "./api-config.ts";
import {
  expiryMs,
  familyProblem,
  identity,
  logFields,
  payloadProblem,
  targetFields,
  type ApiTarget,
  type ApiTargetView,
} from "./api-targets.ts";
import { describeError, errorCode } from "./runner.ts";

const STATE_VERSION = 1;

const StateTargetSchema = v.strictObject({
  owner: targetFields.owner,
  hostname: targetFields.hostname,
  type: targetFields.type,
  dst_port: targetFields.dst_port,
  ip_payload_size: targetFields.ip_payload_size,
  address_family: targetFields.address_family,
  groups: v.array(v.pipe(v.string(), v.regex(NAME_PATTERN))),
  /** Whether the POST chose the groups (else they follow api.yaml). */
  groups_chosen: v.optional(v.boolean(), false),
  creation_date: v.pipe(v.string(), v.isoTimestamp()),
  lifetime: v.pipe(v.number(), v.integer(), v.minValue(1)),
  expiry_date: v.optional(v.string()),
});

const StateFileSchema = v.strictObject({
  version: v.literal(STATE_VERSION),
  saved_at: v.optional(v.string()),
  targets: v.array(v.unknown()),
});

/** A target as the file keeps it: as GET shows it, and whether its POST chose the groups. */
type StateTarget = ApiTargetView & { readonly groups_chosen: boolean };

/** The file's text for `targets`, saved at `at` (ms since the epoch). */
export function stateFileText(targets: readonly StateTarget[], at: number): string {
  const text = JSON.stringify({ version: STATE_VERSION, saved_at: new Date(at).toISOString(), targets }, null, 2);
  return `${text}\n`;
}

/**
 * Replaces `path` with `text` so that a crash at any moment leaves either the old file or the
 * new one, never a mix: write a temporary file in the same directory (same filesystem, so the
 * rename is atomic), fsync it, rename it over, then fsync the directory so the rename is durable.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${++tempCounter}.tmp`);
  try {
    const file = await open(temp, "w", 0o644);
    try {
      await file.writeFile(text, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}
let tempCounter = 0;

/**
 * Reads the state file. Expired targets are dropped, lifetimes re-capped by the current
 * max_target_lifetime, chosen groups narrowed to the current api.yaml's. A file that cannot be
 * understood is reported, moved aside (kept for a person to look at) and the API starts empty.
 */
export async function loadState(
  path: string,
  config: ApiConfig,
  at: number,
  reportError: (message: string, fields?: LogFields) => void,
  log: (level: LevelName, message: string, fields?: LogFields) => void,
): Promise<{ targets: ApiTarget[]; rewrite: boolean }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return { targets: [], rewrite: false };
    reportError(`cannot read the state file: ${describeError(error)}; starting with no API targets`, { state_file: path });
    return { targets: [], rewrite: false };
  }

  const setAside = async (why: string) => {
    const aside = `${path}.corrupt-${new Date(at).toISOString().replace(/[:.]/g, "-")}`;
    let where = `moved to ${aside}`;
    try {
      await rename(path, aside);
    } catch (error) {
      where = `could not be moved aside: ${describeError(error)}`;
    }
    reportError(`state file is corrupt (${why}); it was ${where}`, { state_file: path });
  };

  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    await setAside(`not JSON: ${describeError(error)}`);
    return { targets: [], rewrite: true };
  }
  const file = validateValue(StateFileSchema, data);
  if (!file.ok) {
    await setAside(file.problems.slice(0, 3).map(formatProblem).join("; "));
    return { targets: [], rewrite: true };
  }

  const targets: ApiTarget[] = [];
  const seen = new Set<string>();
  const bad: string[] = [];
  let rewrite = false;
  file.value.targets.forEach((raw, i) => {
    const entry = validateValue(StateTargetSchema, raw);
    if (!entry.ok) {
      bad.push(`targets[${i}]: ${formatProblem(entry.problems[0] ?? { path: "", message: "invalid", expected: "" })}`);
      return;
    }
    const e = entry.value;
    // What a POST refuses across fields: the prober would refuse the whole list for one of these.
    const across = payloadProblem(e) ?? familyProblem(e);
    if (across) {
      const text = splitIssueText(across);
      bad.push(`targets[${i}]: ${text ? `${text.problem} (${text.expected})` : across}`);
      return;
    }
    const lifetime = Math.min(e.lifetime, config.max_target_lifetime);
    const groups = e.groups_chosen ? e.groups.filter((g) => config.groups.includes(g)) : undefined;
    const target: ApiTarget = {
      owner: e.owner,
      hostname: e.hostname,
      type: e.type,
      dst_port: e.dst_port,
      ip_payload_size: e.ip_payload_size,
      address_family: e.address_family,
      ...(groups && groups.length > 0 ? { groups } : {}),
      created: Date.parse(e.creation_date),
      lifetime,
    };
    if (groups && groups.length < e.groups.length) {
      rewrite = true;
      const left = groups.length > 0 ? groups.join(",") : `all of api.yaml's (${config.groups.join(",")})`;
      log("WARNING", "API target's groups are no longer all in api.yaml", { ...logFields(target), groups: left });
    }
    if (lifetime !== e.lifetime) rewrite = true;
    if (expiryMs(target) <= at) {
      rewrite = true;
      return;
    }
    const key = identity(target);
    if (seen.has(key)) {
      rewrite = true;
      return;
    }
    seen.add(key);
    targets.push(target);
  });
  if (bad.length > 0) {
    await setAside(`${bad.length} invalid target(s): ${bad.slice(0, 3).join("; ")}`);
    rewrite = true;
  }
  if (targets.length > config.max_targets) {
    log("WARNING", "the state file holds more targets than max_targets: all kept, no more accepted until some go", {
      targets: targets.length,
      max_targets: config.max_targets,
    });
  }
  log("INFO", "API targets loaded from the state file", { targets: targets.length, state_file: path });
  return { targets, rewrite };
}

// --- internal ---


