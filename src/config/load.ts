/**
 * Reading netprobify.yaml: YAML text in, a validated {@link Config} or a list of every problem
 * out, each one pinned to FILE:LINE:COL. Nothing here resolves a name or sends a packet, so
 * `netprobify check` and reloads can call it freely.
 */
import { join } from "node:path";
import { LEVELS } from "../log.ts";
import { destinationForm } from "../targets/destinations.ts";
import { DEFAULT_CONFIG_SOURCE, DEFAULT_CONFIG_YAML } from "./default-config.ts";
import { ConfigSchema, type Config } from "./schema.ts";
import { readSettingsFile } from "./settings-file.ts";
import { targetGroups } from "../daemon/group-membership.ts";
import { formatPath, isPlainMap, type Issue, type Key } from "./validate.ts";
import { formatWarnings, parseYamlText, type ConfigIssue, type Locator, type Warning } from "./validate-yaml.ts";

export type ParseResult =
  | { readonly ok: true; readonly config: Config; readonly warnings: string[] }
  | { readonly ok: false; readonly issues: ConfigIssue[] };

export type LoadResult = ParseResult | { readonly ok: false; readonly unreadable: string };

/** Files tried, in this order, when no file is named: the README's name, then the original's default. */
export const CONFIG_FILE_NAMES = ["netprobify.yaml", "config.yaml"] as const;

/**
 * Parses and validates configuration text.
 * @param text The YAML text.
 * @param file The name to print in front of each issue and warning.
 * @returns The config with its warnings, or every issue found, sorted by position.
 */
export function parseConfigText(text: string, file: string): ParseResult {
  const parsed = parseYamlText(text, file, ConfigSchema);
  if (!parsed.ok) return parsed;
  const warnings = formatWarnings(file, [...parsed.warnings, ...configWarnings(parsed.value, parsed.data, parsed.locator)]);
  return { ok: true, config: parsed.value, warnings };
}

/**
 * Reads and validates a file.
 * @returns As {@link parseConfigText}, or `unreadable` with one line saying why the file could not be read.
 */
export async function loadConfigFile(path: string): Promise<LoadResult> {
  const read = await readSettingsFile(path);
  if ("failure" in read) return { ok: false, unreadable: `${path}: cannot read the file: ${read.failure}` };
  return parseConfigText(read.text, path);
}

/** The built-in configuration, used when no file is named and none of {@link CONFIG_FILE_NAMES} exists. */
export function loadDefaultConfig(): ParseResult {
  return parseConfigText(DEFAULT_CONFIG_YAML, DEFAULT_CONFIG_SOURCE);
}

/**
 * The first of {@link CONFIG_FILE_NAMES} present in `dir`, or undefined when the built-in
 * default applies.
 */
export async function findConfigFile(dir: string): Promise<string | undefined> {
  for (const name of CONFIG_FILE_NAMES) {
    const path = join(dir, name);
    if (await Bun.file(path).exists()) return path;
  }
  return undefined;
}

function configWarnings(config: Config, data: unknown, locator: Locator): Warning[] {
  // Placed all at once at the end: one pass over a large file for every warning, not one each.
  const pending: { keys: Key[]; at: Issue["at"]; message: string }[] = [];
  const warn = (keys: Key[], at: Issue["at"], message: string) => pending.push({ keys, at, message });

  const level = config.global.logging_level;
  if (config.global.verbose === 1 && LEVELS[level] > LEVELS.INFO) {
    warn(["global", "verbose"], "value", `its per-target lines are INFO lines, which logging_level ${level} leaves out`);
  }

  const rawGroups = isPlainMap(data) && isPlainMap(data.groups) ? data.groups : {};
  for (const [name, raw] of Object.entries(rawGroups)) {
    if (isPlainMap(raw) && "src_ip" in raw) {
      warn(["groups", name, "src_ip"], "key", "deprecated; write src_ipv4 instead");
    }
  }

  for (const [name, target] of Object.entries(config.targets)) {
    for (const list of ["register_to", "exclude_from"] as const) {
      target.explicit_groups[list].forEach((group, i) => {
        if (!Object.hasOwn(config.groups, group)) {
          warn(["targets", name, "explicit_groups", list, i], "value", `group "${group}" does not exist; ignored`);
        }
      });
    }
    const form = destinationForm(target.destination);
    if (target.is_subnet && (form === "address" || form === "hostname")) {
      const what = form === "address" ? "a single address" : "a hostname (one address)";
      warn(["targets", name, "is_subnet"], "value", `destination ${JSON.stringify(target.destination)} is ${what}, so is_subnet: true changes nothing`);
    }
    if (targetGroups(config, target).length === 0) {
      warn(["targets", name], "key", "belongs to no group, so it is not probed");
    }
  }
  const positions = locator.positions(pending);
  return pending.map((w, i): Warning => ({ ...positions[i]!, path: formatPath(w.keys), message: w.message }));
}
