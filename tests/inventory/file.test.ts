import { afterEach, beforeEach, expect, test } from "bun:test";
import { cp, mkdir, mkdtemp, rename, rm, truncate, unlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileInventory, isTargetFileName, MAX_FILE_BYTES, parseTargets, start } from "../../src/inventory/file.ts";
import { MAX_INVENTORY_TARGETS } from "../../src/config/schema.ts";
import { hostnames, run, waitFor, type Running } from "../fixtures/inventory/harness.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "inventory");
/** The watch alone must see changes: the safety-net rescan is out of reach of every test. */
const WATCH_ONLY = fileInventory({ debounceMs: 50, rescanMs: 600_000, retryMs: 100 });
/** Rescans often, to show that rescans of an unchanged directory publish nothing. */
const BUSY_RESCAN = fileInventory({ debounceMs: 20, rescanMs: 30, retryMs: 30 });

const FIXTURE_HOSTS = ["web1.example", "web2.example", "198.51.100.53", "2001:db8::53"];
const icmp = (...hosts: string[]) => JSON.stringify(hosts.map((hostname) => ({ hostname, type: "ICMPping" })));

let base: string;
let dir: string;
const running: Running[] = [];

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "netprobify-file-inventory-"));
  dir = join(base, "targets.d");
});

afterEach(async () => {
  for (const inventory of running.splice(0)) await inventory.stop();
  await rm(base, { recursive: true, force: true });
});

/** Starts an inventory on "targets.d", relative to the temp base directory as to a config's. */
function startOn(start_ = WATCH_ONLY): Running {
  const inventory = run(start_, { directory: "targets.d" }, base);
  running.push(inventory);
  return inventory;
}

async function withFixtures(): Promise<void> {
  await cp(join(FIXTURES, "files"), dir, { recursive: true });
}

const published = (inventory: Running, n: number) =>
  waitFor(() => inventory.published.length >= n, `list #${n} (have ${inventory.published.length})`);
/** Waits for the latest list to name exactly `hosts`, whatever intermediate lists came before. */
const listed = (inventory: Running, hosts: string[]) =>
  waitFor(() => hostnames(inventory.published.at(-1) ?? []).join() === hosts.join(), `the list ${hosts.join()}`);

/** Writes a file whole, as a rename of a temp file: no scan can see it half-written. */
async function put(path: string, text: string): Promise<void> {
  await writeFile(`${path}.partial~`, text);
  await rename(`${path}.partial~`, path);
}
const fixtureText = (name: string) => Bun.file(join(FIXTURES, name)).text();

test("publishes the YAML and JSON files at start, concatenated in name order", async () => {
  await withFixtures();
  const inventory = startOn(start);
  await published(inventory, 1);
  expect(inventory.last()).toEqual([
    { hostname: "web1.example", destination: "192.0.2.10", type: "TCPsyn", dst_port: 443, groups: ["wan"] },
    { hostname: "web2.example", destination: "192.0.2.11", type: "TCPsyn", dst_port: 443, lifetime: "2h" },
    { hostname: "198.51.100.53", type: "ICMPping", groups: ["wan"] },
    { hostname: "2001:db8::53", type: "UDPunreachable", dst_port: 33434, address_family: "ipv6" },
  ]);
  expect(inventory.errors).toEqual([]);
});

test("editor temp files, dotfiles, other extensions and subdirectories are ignored", async () => {
  await withFixtures();
  const junk = "- this: is not a target list";
  for (const name of [".#10-web.yaml", "10-web.yaml~", ".10-web.yaml.swp", "4913", "notes.txt", ".hidden.json", "#10-web.yaml#"]) {
    await writeFile(join(dir, name), junk);
  }
  await mkdir(join(dir, "sub.yaml"));
  await writeFile(join(dir, "sub.yaml", "inner.yaml"), icmp("192.0.2.99"));
  const inventory = startOn();
  await published(inventory, 1);
  expect(hostnames(inventory.last())).toEqual(FIXTURE_HOSTS);
  expect(inventory.errors).toEqual([]);

  // Editors write their temp files beside the real one: none of it is read, nothing republished.
  await writeFile(join(dir, ".10-web.yaml.swx"), junk);
  await writeFile(join(dir, "20-dns.json~"), junk);
  await Bun.sleep(300);
  expect(inventory.published.length).toBe(1);
  expect(inventory.errors).toEqual([]);

  expect(["a.yaml", "a.yml", "a.json", "A.YAML"].every(isTargetFileName)).toBe(true);
  expect([".a.yaml", "a.yaml~", ".a.yaml.swp", ".#a.yaml", "a.txt", "a.yaml.tmp"].some(isTargetFileName)).toBe(false);
});

test("a file added, modified, renamed over and deleted gives a new list each time (seen by the watch)", async () => {
  await withFixtures();
  const inventory = startOn();
  await published(inventory, 1);

  // Written in place (truncated, then written): the debounce waits for the end.
  await writeFile(join(dir, "40-new.yaml"), icmp("192.0.2.40"));
  await listed(inventory, [...FIXTURE_HOSTS, "192.0.2.40"]);

  await writeFile(join(dir, "40-new.yaml"), icmp("192.0.2.40", "192.0.2.41"));
  await listed(inventory, [...FIXTURE_HOSTS, "192.0.2.40", "192.0.2.41"]);

  // Written aside then renamed over, as most tools save atomically.
  await writeFile(join(dir, ".40-new.yaml.tmp"), icmp("192.0.2.42"));
  await rename(join(dir, ".40-new.yaml.tmp"), join(dir, "40-new.yaml"));
  await listed(inventory, [...FIXTURE_HOSTS, "192.0.2.42"]);

  // A name sorting first lands first.
  await writeFile(join(dir, "00-first.json"), icmp("192.0.2.1"));
  await listed(inventory, ["192.0.2.1", ...FIXTURE_HOSTS, "192.0.2.42"]);

  await unlink(join(dir, "40-new.yaml"));
  await unlink(join(dir, "00-first.json"));
  await listed(inventory, FIXTURE_HOSTS);
  expect(inventory.errors).toEqual([]);
});

test("a broken file is reported at FILE:LINE:COL once, keeps its last good content, and the others apply", async () => {
  await withFixtures();
  const web = join(dir, "10-web.yaml");
  const inventory = startOn();
  await published(inventory, 1);

  // 10-web.yaml turns schema-invalid: its last good targets stay; the other files still apply.
  await put(web, await fixtureText("bad-port.yaml"));
  await waitFor(() => inventory.errors.length >= 1, "the report");
  expect(inventory.errors).toEqual([
    { message: `${web}:8:13: [1].dst_port: 0 is out of range (an integer from 1 to 65535)`, fields: { file: web, kept_targets: 2 } },
  ]);
  await put(join(dir, "40-new.yaml"), icmp("192.0.2.40"));
  await published(inventory, 2);
  expect(hostnames(inventory.last())).toEqual([...FIXTURE_HOSTS, "192.0.2.40"]);

  // A JSON syntax error, in a file that never was good: it contributes nothing.
  const json = join(dir, "50-broken.json");
  await put(json, await fixtureText("bad-syntax.json"));
  await waitFor(() => inventory.errors.length >= 3, "the JSON reports");
  expect(inventory.errors.slice(1).map((e) => e.message)).toEqual([
    `${json}:4:1: JSON syntax error: Flow map in block collection must be sufficiently indented and end with a }`,
    `${json}:4:2: JSON syntax error: Flow sequence must end with a ]`,
  ]);

  // Rewriting the same broken content (a new stat, so it is read again) does not report it again.
  await put(web, await fixtureText("bad-port.yaml"));
  await put(join(dir, "60-more.yaml"), icmp("192.0.2.60"));
  await published(inventory, 3);
  expect(hostnames(inventory.last())).toEqual([...FIXTURE_HOSTS, "192.0.2.40", "192.0.2.60"]);
  expect(inventory.errors.length).toBe(3);

  // A different problem in the same file is a new report.
  await put(web, "- hostname: web9.example\n  type: TCPsyn\n");
  await waitFor(() => inventory.errors.length >= 4, "the new report");
  expect(inventory.errors[3]?.message).toBe(`${web}:1:3: [0]: dst_port is required for a TCPsyn target (an integer from 1 to 65535)`);

  // Fixed: its new content applies; deleted: its targets go, last good content included.
  await put(web, icmp("192.0.2.10"));
  await published(inventory, 4);
  expect(hostnames(inventory.last())).toEqual(["192.0.2.10", "198.51.100.53", "2001:db8::53", "192.0.2.40", "192.0.2.60"]);
  await put(web, await fixtureText("bad-port.yaml"));
  await waitFor(() => inventory.errors.length >= 5, "the report after the fix");
  expect(inventory.errors[4]?.fields).toEqual({ file: web, kept_targets: 1 });
  expect(inventory.published.length).toBe(4);
  await unlink(web);
  await published(inventory, 5);
  expect(hostnames(inventory.last())).toEqual(["198.51.100.53", "2001:db8::53", "192.0.2.40", "192.0.2.60"]);
  expect(inventory.errors.length).toBe(5);
});

test("a file over the size limit is reported and not read; the others apply", async () => {
  await withFixtures();
  const big = join(dir, "90-big.yaml");
  await writeFile(big, "");
  await truncate(big, MAX_FILE_BYTES + 1); // sparse: nothing is written
  const inventory = startOn();
  await published(inventory, 1);
  expect(hostnames(inventory.last())).toEqual(FIXTURE_HOSTS);
  expect(inventory.errors.map((e) => e.message)).toEqual([
    `${big}: the file is ${MAX_FILE_BYTES + 1} bytes, over the limit of ${MAX_FILE_BYTES} bytes; not read`,
  ]);
});

test("files holding more targets together than an inventory may publish are reported, not published", async () => {
  await mkdir(dir);
  const half = MAX_INVENTORY_TARGETS / 2 + 1;
  const many = (prefix: string) => JSON.stringify(Array.from({ length: half }, (_, i) => ({ hostname: `${prefix}${i}`, type: "ICMPping" })));
  await writeFile(join(dir, "a.json"), many("a"));
  await writeFile(join(dir, "b.json"), many("b"));
  const inventory = startOn();
  await waitFor(() => inventory.errors.length >= 1, "the report", 10_000);
  expect(inventory.errors.map((e) => e.message)).toEqual([
    `${dir}: the files hold ${2 * half} targets together, over the limit of ${MAX_INVENTORY_TARGETS}; not published`,
  ]);
  expect(inventory.published).toEqual([]);
  await unlink(join(dir, "b.json"));
  await published(inventory, 1);
  expect(inventory.last().length).toBe(half);
}, 15_000);

test("parseTargets: JSON read by JSON.parse, its problems placed by the YAML parser", () => {
  expect(parseTargets('[{"hostname": "192.0.2.1", "type": "ICMPping"}]', "a.json")).toEqual({
    targets: [{ hostname: "192.0.2.1", type: "ICMPping" }],
    warnings: [],
  });
  expect(parseTargets('[\n  {"hostname": "192.0.2.1", "type": "TCPsyn", "dst_port": 70000}\n]\n', "a.json")).toEqual({
    problems: ["a.json:2:59: [0].dst_port: 70000 is out of range (an integer from 1 to 65535)"],
  });
  expect(parseTargets('{"hostname": "192.0.2.1"}', "a.json")).toEqual({
    problems: ["a.json:1:1: a map is not a list (a list of at most 100000 targets)"],
  });
  expect(parseTargets("- hostname: a\n  type: ICMPping\n  hostname: b\n", "a.yaml")).toEqual({
    targets: [{ hostname: "b", type: "ICMPping" }],
    warnings: ["a.yaml:3:3: warning: [0].hostname: duplicate key; this last one wins"],
  });
});

test("empty files and files of comments are empty lists", async () => {
  await mkdir(dir);
  await writeFile(join(dir, "a.yaml"), "");
  await writeFile(join(dir, "b.yaml"), "# to do\n---\n");
  await writeFile(join(dir, "c.json"), "  \n");
  await writeFile(join(dir, "d.json"), "[]");
  const inventory = startOn();
  await published(inventory, 1);
  expect(inventory.last()).toEqual([]);
  expect(inventory.errors).toEqual([]);
});

test("a missing directory is reported once, then read when it appears; a replaced one is watched anew", async () => {
  const inventory = startOn();
  await published(inventory, 1);
  expect(inventory.last()).toEqual([]);
  await Bun.sleep(400); // several retries (every 100 ms)
  expect(inventory.errors.map((e) => e.message)).toEqual([
    `${dir}: the directory does not exist; looking again every 0.1 s`,
  ]);
  expect(inventory.published.length).toBe(1);

  await withFixtures();
  await published(inventory, 2);
  expect(hostnames(inventory.last())).toEqual(FIXTURE_HOSTS);

  // Replaced by another directory: the watch on the old one is dead; the new one is found and watched.
  await rm(dir, { recursive: true });
  await mkdir(dir);
  await writeFile(join(dir, "a.json"), icmp("192.0.2.7"));
  await waitFor(() => hostnames(inventory.last()).join() === "192.0.2.7", "the new directory's list");
  await writeFile(join(dir, "b.json"), icmp("192.0.2.8"));
  await waitFor(() => hostnames(inventory.last()).join() === "192.0.2.7,192.0.2.8", "a change in the new directory");
  expect(inventory.errors.every((e) => e.message.startsWith(`${dir}: the directory does not exist`))).toBe(true);
});

test("rescans of an unchanged directory, and a touched file, publish nothing", async () => {
  await withFixtures();
  const inventory = startOn(BUSY_RESCAN);
  await published(inventory, 1);
  const future = new Date(Date.now() + 60_000);
  await utimes(join(dir, "10-web.yaml"), future, future);
  await writeFile(join(dir, "20-dns.json"), await Bun.file(join(FIXTURES, "files", "20-dns.json")).text());
  await Bun.sleep(400); // a dozen rescans
  expect(inventory.published.length).toBe(1);
  expect(inventory.errors).toEqual([]);
  // The rescans alone (no watch needed) do see a change.
  await writeFile(join(dir, "30-empty.yml"), icmp("192.0.2.30"));
  await published(inventory, 2);
});

test("stopping closes the watch and the timers: nothing is published after, start() returns", async () => {
  await withFixtures();
  const inventory = run(WATCH_ONLY, { directory: "targets.d" }, base);
  await published(inventory, 1);
  await inventory.stop();
  await writeFile(join(dir, "40-new.yaml"), icmp("192.0.2.40"));
  await Bun.sleep(300);
  expect(inventory.published.length).toBe(1);
});

test("stopped, it leaves nothing that keeps the process alive", async () => {
  const child = Bun.spawn([process.execPath, join(FIXTURES, "stop-exits.ts"), "file"], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => child.kill(), 5_000);
  const code = await child.exited;
  clearTimeout(timer);
  expect(await new Response(child.stderr).text()).toBe("");
  expect(await new Response(child.stdout).text()).toBe("stopped\n");
  expect(code).toBe(0);
});
