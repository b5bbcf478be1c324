/**
 * Which inventories a config starts (src/inventory/specs.ts) and what `netprobify check` says
 * about them: api.yaml beside the config, the inventories section, module files, and
 * global.disable_dynamic_inventories.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/index.ts";
import { parseConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { moduleFiles, planInventories } from "../../src/inventory/specs.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function workDir(): string {
  const d = mkdtempSync(join(tmpdir(), "netprobify-specs-"));
  dirs.push(d);
  return d;
}

const CONFIG = (extra = "", disable = "[]") => `global:
  probe_name: p
  interval: 30
  nb_proc: 1
  logging_level: INFO
  prometheus_port: 8000
  dns_update_interval: 0
  disable_dynamic_inventories: ${disable}
groups:
  wan: {src_port_a: 1000, src_port_z: 1001}
${extra}`;

const API_YAML = "token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: 8001\ngroups: [wan]\n";

function config(text: string): Config {
  const r = parseConfigText(text, "netprobify.yaml");
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

test("nothing configured, no api.yaml, no modules directory: no inventory", async () => {
  const d = workDir();
  expect(await planInventories(config(CONFIG()), d)).toEqual({ specs: [], problems: [], unreadable: [], warnings: [] });
});

test("api.yaml, file, http and module files each give a spec, with the config's level and directory", async () => {
  const d = workDir();
  writeFileSync(join(d, "api.yaml"), API_YAML);
  mkdirSync(join(d, "dynamic_inventories"));
  writeFileSync(join(d, "dynamic_inventories", "cmdb.ts"), "export function start() {}");
  writeFileSync(join(d, "dynamic_inventories", "old.py"), "def start(): pass");
  writeFileSync(join(d, "dynamic_inventories", "types.d.ts"), "export {};");
  const plan = await planInventories(
    config(CONFIG(`inventories:
  file: {static: {directory: t.d}}
  http: {sd: {url: "http://127.0.0.1:9/x"}}
  modules: {cmdb: {url: "x"}}
`)),
    d,
  );
  expect(plan.problems).toEqual([]);
  expect(plan.specs.map((s) => [s.name, s.kind, s.baseDir, s.logLevel])).toEqual([
    ["api", "api", d, "INFO"],
    ["static", "file", d, "INFO"],
    ["sd", "http", d, "INFO"],
    ["cmdb", "module", d, "INFO"],
  ]);
  expect(plan.specs[3]!.modulePath).toBe(join(d, "dynamic_inventories", "cmdb.ts"));
  expect(plan.specs[3]!.options).toEqual({ url: "x" });
  expect(plan.specs[2]!.options).toEqual({ url: "http://127.0.0.1:9/x", refresh_interval: 60, timeout: 10 });
});

test("disable_dynamic_inventories leaves out the API, a file inventory and a module by name", async () => {
  const d = workDir();
  writeFileSync(join(d, "api.yaml"), API_YAML);
  mkdirSync(join(d, "dynamic_inventories"));
  writeFileSync(join(d, "dynamic_inventories", "cmdb.js"), "export function start() {}");
  writeFileSync(join(d, "dynamic_inventories", "keep.js"), "export function start() {}");
  const plan = await planInventories(config(CONFIG("inventories:\n  file: {static: {directory: t.d}}\n", "[api, static, cmdb]")), d);
  expect(plan.specs.map((s) => s.name)).toEqual(["keep"]);
});

test("a module with a bad name or the name of another inventory is skipped with a warning; options for a missing module are warned about", async () => {
  const d = workDir();
  mkdirSync(join(d, "mods"));
  writeFileSync(join(d, "mods", "Bad Name.ts"), "export function start() {}");
  writeFileSync(join(d, "mods", "static.ts"), "export function start() {}");
  writeFileSync(join(d, "mods", "api.ts"), "export function start() {}");
  const plan = await planInventories(
    config(CONFIG("inventories:\n  modules_directory: mods\n  file: {static: {directory: t.d}}\n  modules: {ghost: {}}\n")),
    d,
  );
  expect(plan.specs.map((s) => s.name)).toEqual(["static"]);
  expect(plan.warnings).toEqual([
    `${join(d, "mods", "Bad Name.ts")}: not started: a module's file name must be lowercase letters, digits, _, - and . (it names its targets)`,
    `${join(d, "mods", "api.ts")}: not started: another inventory is already called api`,
    `${join(d, "mods", "static.ts")}: not started: another inventory is already called static`,
    `inventories.modules.ghost: no module ghost in ${join(d, "mods")}`,
  ]);
});

test("an invalid api.yaml is a problem with FILE:LINE:COL, which stops a start", async () => {
  const d = workDir();
  writeFileSync(join(d, "api.yaml"), "token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: 70000\ngroups: [wan]\n");
  const plan = await planInventories(config(CONFIG()), d);
  expect(plan.specs).toEqual([]);
  expect(plan.problems).toEqual([`${join(d, "api.yaml")}:3:14: listen_port: 70000 is out of range (an integer from 1 to 65535)`]);
});

test("moduleFiles: a missing directory holds none; directories and dotfiles are not modules", () => {
  const d = workDir();
  expect(moduleFiles(join(d, "nope"))).toEqual([]);
  mkdirSync(join(d, "x.ts"));
  writeFileSync(join(d, ".hidden.ts"), "");
  writeFileSync(join(d, "b.mjs"), "");
  writeFileSync(join(d, "a.ts"), "");
  expect(moduleFiles(d).map((m) => m.name)).toEqual(["a", "b"]);
});

test("check FILE also validates api.yaml beside it (exit 65) and names the inventories it would start (exit 0)", async () => {
  const d = workDir();
  const file = join(d, "netprobify.yaml");
  writeFileSync(file, CONFIG("inventories:\n  file: {static: {directory: t.d}}\n"));
  writeFileSync(join(d, "api.yaml"), "token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: 8001\ngroups: [wan]\nbogus: 1\n");
  const out: string[] = [];
  const err: string[] = [];
  expect(await runCli(["check", file], (l) => out.push(l), (l) => err.push(l))).toBe(65);
  expect(err).toEqual([expect.stringMatching(new RegExp(`^${join(d, "api.yaml")}:5:1: bogus: unknown field`)) as unknown as string]);
  writeFileSync(join(d, "api.yaml"), API_YAML);
  out.length = 0;
  expect(await runCli(["check", file], (l) => out.push(l), (l) => err.push(l))).toBe(0);
  expect(out.at(-1)).toBe(`${file}: valid, 1 group and 0 targets, inventories: api (api), static (file)`);
});
