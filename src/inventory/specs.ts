/**
 * Which inventories a config asks for: the API when api.yaml sits beside the config, the file,
 * http and dns inventories of its `inventories` section, and one custom inventory per module file in the
 * modules directory; less those global.disable_dynamic_inventories names.
 *
 * A prober running as root or with capabilities starts a module only from a trusted file in a
 * trusted directory (src/trusted-code.ts); any other is planned as refused, with the reason.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, extname, join, resolve } from "node:path";
import { NAME_PATTERN, type Config } from "../config/schema.ts";
import type { LevelName } from "../log.ts";
import { holdsPrivilege } from "../privilege.ts";
import { checkCodeDirectory, checkCodeFile, UntrustedCode } from "../trusted-code.ts";
import { loadApiConfig } from "./api-config.ts";
import type { InventorySpec } from "./contract.ts";
import type { ListenerSettings } from "../web/tls.ts";

/** The API inventory's settings file, beside the config (the original's name and place). */
export const API_CONFIG_FILE = "api.yaml";
export const DEFAULT_MODULES_DIRECTORY = "dynamic_inventories";
const MODULE_EXTENSIONS = new Set([".ts", ".js", ".mjs", ".mts", ".cjs", ".cts"]);

export interface InventoryPlan {
  readonly specs: InventorySpec[];
  /** Problems that make the configuration unusable (an invalid api.yaml), FILE:LINE:COL each. */
  readonly problems: string[];
  /** Files that could not be read (api.yaml a directory, a FIFO, too large...), one line each. */
  readonly unreadable: string[];
  /** Things worth a log line: a skipped module, options for a module that is not there. */
  readonly warnings: string[];
}

/** The module files of a directory, by inventory name. A missing directory holds none. */
export function moduleFiles(directory: string): { name: string; path: string }[] {
  let entries: string[];
  try {
    entries = readdirSync(directory);
  } catch {
    return [];
  }
  return entries
    .filter((f) => MODULE_EXTENSIONS.has(extname(f)) && !/\.d\.[cm]?ts$/.test(f) && !f.startsWith("."))
    .map((f) => ({ name: basename(f, extname(f)), path: join(directory, f) }))
    .filter(({ path }) => {
      try {
        return statSync(path).isFile();
      } catch {
        return false;
      }
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * @param baseDir The config file's directory (the working directory for the built-in default):
 *   where api.yaml, the modules directory and relative paths are looked for.
 * @param privileged Whether modules must pass the ownership rule: this process is root or holds
 *   capabilities, which its children start with.
 * @param listener The web config's TLS and HTTP/2, which the API's listener takes; null: plain HTTP.
 */
export async function planInventories(
  config: Config,
  baseDir: string,
  privileged = holdsPrivilege(),
  listener: ListenerSettings | null = null,
): Promise<InventoryPlan> {
  const disabled = new Set(config.global.disable_dynamic_inventories);
  const logLevel = config.global.logging_level as LevelName;
  const specs: InventorySpec[] = [];
  const problems: string[] = [];
  const unreadable: string[] = [];
  const warnings: string[] = [];
  const taken = new Set<string>();
  const add = (spec: Omit<InventorySpec, "baseDir" | "logLevel">) => {
    if (disabled.has(spec.name)) return;
    taken.add(spec.name);
    specs.push({ ...spec, baseDir, logLevel });
  };

  const apiPath = join(baseDir, API_CONFIG_FILE);
  if (!disabled.has("api") && existsSync(apiPath)) {
    const metrics = { address: config.global.prometheus_address, port: config.global.prometheus_port };
    const api = await loadApiConfig(apiPath, { groups: Object.keys(config.groups), metrics });
    if (api.ok) {
      warnings.push(...api.warnings);
      add({ name: "api", kind: "api", options: api.config, ...(listener ? { listener } : {}) });
    } else {
      (api.unreadable ? unreadable : problems).push(...api.lines);
    }
  }

  const section = config.inventories;
  for (const [name, options] of Object.entries(section?.file ?? {})) add({ name, kind: "file", options });
  for (const [name, options] of Object.entries(section?.http ?? {})) add({ name, kind: "http", options });
  for (const [name, options] of Object.entries(section?.dns ?? {})) add({ name, kind: "dns", options });

  const directory = resolve(baseDir, section?.modules_directory ?? DEFAULT_MODULES_DIRECTORY);
  const modules = moduleFiles(directory);
  const optionsOf = section?.modules ?? {};
  // Every file of the modules directory runs: the directory is checked as well as each file.
  const untrusted = (check: () => void): UntrustedCode | undefined => {
    try {
      check();
      return undefined;
    } catch (e) {
      if (e instanceof UntrustedCode) return e;
      throw e;
    }
  };
  const directoryProblem = privileged && modules.length > 0 ? untrusted(() => checkCodeDirectory(directory)) : undefined;
  const refusal = (path: string): string | undefined => {
    if (!privileged) return undefined;
    const problem = directoryProblem ?? untrusted(() => checkCodeFile(path));
    // Named after the module, whichever file or directory is at fault.
    return problem && new UntrustedCode(path, problem.reason).message;
  };
  for (const { name, path } of modules) {
    if (!NAME_PATTERN.test(name)) {
      warnings.push(`${path}: not started: a module's file name must be lowercase letters, digits, _, - and . (it names its targets)`);
      continue;
    }
    if (taken.has(name) || name === "api") {
      warnings.push(`${path}: not started: another inventory is already called ${name}`);
      continue;
    }
    const refused = refusal(path);
    add({ name, kind: "module", modulePath: path, options: optionsOf[name] ?? {}, ...(refused ? { refused } : {}) });
  }
  for (const name of Object.keys(optionsOf)) {
    if (!modules.some((m) => m.name === name)) warnings.push(`inventories.modules.${name}: no module ${name} in ${directory}`);
  }
  return { specs, problems, unreadable, warnings };
}
