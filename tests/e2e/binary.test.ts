/**
 * The compiled binary, as a user gets it: built once with build.ts, copied alone into an empty
 * directory and run from there (nothing of the repository within reach). Checks --version, a probe
 * of a veth test host set against a capture inside the host, and the exit codes the spec fixes for
 * a missing libpcap (69), missing privilege (77) and bad arguments (64), each with one line.
 * Needs root (test network; the unprivileged run drops to nobody with setpriv).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestNet, requireRoot, type TestHost, type TestNet } from "../support/testnet.ts";
import { decodeCapture, isProbe } from "../privileged/wire.ts";
import type { ProbeTarget } from "../../src/engine/probe-engine.ts";

const REPO = join(import.meta.dir, "..", "..");
const NOBODY = "65534";

interface BinRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** The non-empty lines of a stream. */
function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.length > 0);
}

describe("the compiled binary, alone in an empty directory", () => {
  let buildDir = "";
  let runDir = "";
  let bin = "";
  let net: TestNet;
  let h: TestHost;

  async function run(args: string[], opts: { env?: Record<string, string>; asNobody?: boolean; prefix?: string[] } = {}): Promise<BinRun> {
    const prefix = opts.prefix ?? (opts.asNobody ? ["setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"] : []);
    const argv = [...prefix, bin, ...args];
    const proc = Bun.spawn(argv, {
      cwd: runDir,
      // Only what a shell would have: no Bun or test-runner variables leak into the binary.
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", ...opts.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    clearTimeout(timer);
    return { code, stdout, stderr };
  }

  beforeAll(async () => {
    requireRoot();
    buildDir = mkdtempSync(join(tmpdir(), "netprobify-build-"));
    const build = Bun.spawnSync([process.execPath, "run", "build.ts", "--outfile", join(buildDir, "netprobify")], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    if (build.exitCode !== 0) throw new Error(`build.ts failed (exit ${build.exitCode}): ${build.stderr.toString()}${build.stdout.toString()}`);
    runDir = mkdtempSync(join(tmpdir(), "netprobify-run-"));
    // Reachable by nobody for the unprivileged run.
    chmodSync(runDir, 0o755);
    bin = join(runDir, "netprobify");
    copyFileSync(join(buildDir, "netprobify"), bin);
    chmodSync(bin, 0o755);
    rmSync(buildDir, { recursive: true, force: true });
    net = await createTestNet();
    h = net.hosts[0]!;
  }, 300_000);

  afterAll(async () => {
    await net?.teardown();
    for (const d of [buildDir, runDir]) if (d) rmSync(d, { recursive: true, force: true });
  }, 60_000);

  test("the directory holds the binary and nothing else", () => {
    expect(readdirSync(runDir)).toEqual(["netprobify"]);
  });

  test("--version prints netprobify's version, the revision and date it was built from, its architecture, Bun's and libpcap's versions", async () => {
    const r = await run(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(lines(r.stdout)).toEqual([
      expect.stringMatching(
        /^netprobify \d+\.\d+\.\d+ \(revision [0-9a-f]{12}(-dirty)?, built \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, linux\/(amd64|arm64), bun \d+\.\d+\.\d+, libpcap \d+\.\d+\.\d+ \(embedded\)\)$/,
      ) as unknown as string,
    ]);
  }, 60_000);

  test("probe <veth host> --type tcpsyn --port 8443: exit 0, a table whose sent is what the host saw arrive, lost 0", async () => {
    const cap = await net.capture(h, "ip or ip6");
    const r = await run(["probe", h.v4.host, "--type", "tcpsyn", "--port", String(h.openPort)]);
    const pkts = decodeCapture(await cap.stop(), cap.linktype!);
    expect({ code: r.code, stderr: lines(r.stderr).filter((l) => !l.includes("resolved next hop")) }).toEqual({ code: 0, stderr: [] });
    const arrived = pkts.filter((p) => isProbe(p, { type: "TCPsyn", family: 4, dst: h.v4.host, dstPort: h.openPort } as ProbeTarget)).length;
    expect(arrived).toBe(10); // the command's default count
    const out = lines(r.stdout);
    expect(out.some((l) => /^destination\s+sent\s+lost\s+loss%\s+min\(ms\)\s+p50\(ms\)\s+p95\(ms\)\s+p99\(ms\)\s+max\(ms\)$/.test(l))).toBe(true);
    const row = out.find((l) => l.startsWith(`${h.v4.host} `))?.trim().split(/\s+/);
    expect(row?.slice(0, 4)).toEqual([h.v4.host, String(arrived), "0", "0.0"]);
    expect(out).toContain("answers: 10 syn-ack");
  }, 60_000);

  test("NETPROBIFY_LIBPCAP=/nonexistent: exit 69 with one line naming libpcap0.8", async () => {
    const r = await run(["probe", h.v4.host, "--type", "icmp", "--count", "1"], { env: { NETPROBIFY_LIBPCAP: "/nonexistent" } });
    expect(r.code).toBe(69);
    expect(r.stdout).toBe("");
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toMatch(/^netprobify: .*libpcap0\.8/);
  }, 60_000);

  test("unprivileged (nobody, no capabilities): exit 77 with one line", async () => {
    const r = await run(["probe", h.v4.host, "--type", "icmp", "--count", "1"], { asNobody: true });
    expect(r.code).toBe(77);
    expect(r.stdout).toBe("");
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toMatch(/^netprobify: .*(root|CAP_NET_RAW)/);
  }, 60_000);

  test("root without CAP_NET_RAW (a container's root under podman's default capabilities): exit 77 with one line", async () => {
    // Root's capabilities after an execve are its bounding set: this is uid 0 without CAP_NET_RAW.
    const r = await run(["probe", h.v4.host, "--type", "icmp", "--count", "1"], { prefix: ["setpriv", "--bounding-set=-net_raw"] });
    expect(r.code).toBe(77);
    expect(r.stdout).toBe("");
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toMatch(/^netprobify: .*CAP_NET_RAW.*--cap-add=NET_RAW/);
  }, 60_000);

  for (const [what, args] of [
    ["a bad --type", ["--type", "bogus"]],
    ["port 70000", ["--type", "tcpsyn", "--port", "70000"]],
    ["an unknown option", ["--type", "icmp", "--bogus-option"]],
    ["--src-ports 9-3", ["--type", "udp", "--src-ports", "9-3"]],
  ] as const) {
    test(`bad arguments (${what}): exit 64, a one-line message first`, async () => {
      const r = await run(["probe", h.v4.host, ...args]);
      expect({ what, code: r.code }).toEqual({ what, code: 64 });
      expect(r.stdout).toBe("");
      expect(lines(r.stderr)[0]).toMatch(/^netprobify: \S/);
    }, 60_000);
  }
});
