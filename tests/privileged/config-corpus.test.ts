/**
 * `check FILE` exits 0 exactly when the daemon starts on FILE: over the whole config corpus
 * (tests/fixtures/config) and the cases that need a file system to exist (api.yaml beside the
 * config, FIFOs, devices, a file over the size limit), the daemon is started for real and its exit
 * code compared with check's (0, 65 or 66). A config check refused could be one the daemon runs
 * anyway, so every start happens in a fresh network namespace holding only lo (down), where it can
 * send nothing anywhere. A daemon has started when it catches SIGTERM (runDaemon installs that
 * handler the moment Daemon.start returns); it is killed then, its verdict 0, without waiting for a
 * graceful stop (daemon.test.ts covers those). Every line the daemon writes on stderr must be a log
 * line (src/log.ts), never a stack trace.
 *
 * Machine-dependent failures (the metrics port taken, no privilege, no libpcap) are not part of
 * this corpus: README lists them as what only the daemon can find out.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/index.ts";
import { MAX_CONFIG_FILE_BYTES } from "../../src/config/limits.ts";
import { MAIN, parseLogLine } from "../support/daemon-process.ts";
import { createNamespaces, requireRoot, type BareNamespaces } from "../support/testnet.ts";

const CORPUS = join(import.meta.dir, "..", "fixtures", "config");
/** Daemons started at once, one namespace each: the machine has two cores. */
const PARALLEL = 4;
/** SIGTERM's bit in /proc/PID/status SigCgt (signal 15). */
const SIGTERM_BIT = 1n << 14n;

let net: BareNamespaces;
let work: string;

beforeAll(async () => {
  requireRoot();
  net = await createNamespaces(PARALLEL);
  work = mkdtempSync(join(tmpdir(), "netprobify-corpus-"));
}, 60_000);

afterAll(async () => {
  await net?.teardown();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

const GOOD = `global: {probe_name: corpus, interval: 30, nb_proc: 1, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}
groups: {lab: {}}
targets:
  t: {type: ICMPping, destination: 198.18.0.1}
`;
const API = (port: number) => `token: a-long-enough-secret-token\nlisten_address: 127.0.0.1\nlisten_port: ${port}\ngroups: [lab]\n`;

/** The cases beyond the fixture files, made in `dir`: name and the path to start on. */
function madeCases(dir: string): [string, string][] {
  const at = (name: string, files: Record<string, string>) => {
    mkdirSync(join(dir, name));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, name, file), text);
    return join(dir, name, "netprobify.yaml");
  };
  const fifo = (path: string) => expect(spawnSync("mkfifo", [path]).status).toBe(0);
  const cases: [string, string][] = [
    ["api.yaml on the metrics port", at("api-collides", { "netprobify.yaml": GOOD, "api.yaml": API(8000) })],
    ["api.yaml on another port", at("api-ok", { "netprobify.yaml": GOOD, "api.yaml": API(8001) })],
    ["api.yaml invalid", at("api-invalid", { "netprobify.yaml": GOOD, "api.yaml": `${API(8001)}bogus: 1\n` })],
    ["api.yaml a FIFO", at("api-fifo", { "netprobify.yaml": GOOD })],
    ["config a FIFO", join(dir, "fifo.yaml")],
    ["config over 64 MiB", join(dir, "huge.yaml")],
    ["config a directory", join(dir, "api-ok")],
    ["config missing", join(dir, "absent.yaml")],
    ["config /dev/zero", "/dev/zero"],
  ];
  fifo(join(dir, "api-fifo", "api.yaml"));
  fifo(join(dir, "fifo.yaml"));
  writeFileSync(join(dir, "huge.yaml"), "");
  truncateSync(join(dir, "huge.yaml"), MAX_CONFIG_FILE_BYTES + 1);
  return cases;
}

/** Whether the process catches SIGTERM: the daemon does once it has started, nothing before. */
function catchesSigterm(pid: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m !== null && (BigInt(`0x${m[1]}`) & SIGTERM_BIT) !== 0n;
  } catch {
    return false;
  }
}

interface Start {
  /** The exit code it stopped with by itself; 0 when it started; null when it did neither in 30 s. */
  code: number | null;
  started: boolean;
  stderr: string;
}

async function startIn(ns: string, path: string): Promise<Start> {
  const proc = Bun.spawn(["ip", "netns", "exec", ns, process.execPath, MAIN, path], { cwd: work, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const stderr = new Response(proc.stderr).text();
  let started = false;
  try {
    const deadline = Date.now() + 30_000;
    while (proc.exitCode === null && proc.signalCode === null && Date.now() < deadline) {
      if (catchesSigterm(proc.pid)) {
        started = true;
        break;
      }
      await Bun.sleep(25);
    }
    proc.kill("SIGKILL");
    const exited = await Promise.race([proc.exited, Bun.sleep(15_000).then(() => null)]);
    const refused = !started && proc.signalCode === null ? exited : null;
    return { code: started ? 0 : refused, started, stderr: await stderr };
  } finally {
    proc.kill("SIGKILL");
  }
}

async function checkOf(path: string): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await runCli(["check", path], (l) => lines.push(l), (l) => lines.push(l));
  return { code, lines };
}

test("check and the daemon's start agree on every config of the corpus (exit 0, 65 or 66)", async () => {
  const files = readdirSync(CORPUS)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f): [string, string] => [f, join(CORPUS, f)]);
  const cases = [...files, ...madeCases(work)];
  const results: { name: string; check: number; start: Start }[] = [];
  let next = 0;
  await Promise.all(
    net.namespaces.map(async (ns) => {
      for (let i = next++; i < cases.length; i = next++) {
        const [name, path] = cases[i]!;
        const [check, start] = await Promise.all([checkOf(path), startIn(ns, path)]);
        results.push({ name, check: check.code, start });
      }
    }),
  );
  results.sort((a, b) => (a.name < b.name ? -1 : 1));

  const disagreements = results.filter((r) => r.check !== r.start.code).map((r) => `${r.name}: check ${r.check}, start ${r.start.code}`);
  expect(disagreements).toEqual([]);
  const notLogLines = results.flatMap((r) =>
    r.start.stderr
      .split("\n")
      .filter((l) => l !== "" && parseLogLine(l) === null)
      .map((l) => `${r.name}: ${l}`),
  );
  expect(notLogLines).toEqual([]);
  // A started daemon is one check accepted, and the other way round.
  expect(results.filter((r) => r.start.started !== (r.check === 0)).map((r) => r.name)).toEqual([]);
  const byCode = results.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.check]: (acc[r.check] ?? 0) + 1 }), {});
  // The corpus exercises all three verdicts.
  expect(Object.keys(byCode).sort()).toEqual(["0", "65", "66"]);
  console.log(`${results.length} configs, check and start agreeing on each: ${Object.entries(byCode).map(([c, n]) => `${n} exit ${c}`).join(", ")}`);
}, 120_000);
