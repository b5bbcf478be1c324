/**
 * The metrics listener of a running daemon process, as load balancers, orchestrators, Prometheus
 * and operators use it (loopback targets of every probe type, PROM_USER/PROM_PASSWORD set, the
 * targets API enabled). The stages share one daemon and run in order:
 *
 * - /-/ready is 503 until the first iteration's results are published; /-/healthy goes from 200
 *   to 503 (with the reason) while the main loop is held (tests/support/stall-loop.ts, preloaded),
 *   and both are 200 once it goes on;
 * - the landing page links the metrics, the health endpoints and the API's documentation;
 * - `promtool check metrics` on a real scrape complains of the original's three `*_count` names
 *   and of nothing else, a TWAMPlight target's families (against `netprobify responder`) included;
 * - a real Prometheus (Debian's package) scrapes it, over gzip and basic auth: `up` 1 and the
 *   per-target series in its database;
 * - `curl --compressed` gets the plain scrape's text (process_* aside), the loop held so that no
 *   iteration changes it in between;
 * - POST /-/reload: 405 to GET, 401 without the credentials, 500 with FILE:LINE:COL lines for a
 *   bad file (the running config goes on), 200 for a good one.
 *
 * Needs root (the engine's raw packets), promtool and prometheus (scripts/setup.sh installs them).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { VERSION } from "../../src/version.ts";
import { freePort, parseExposition, startDaemon, type DaemonProcess, type Exposition } from "../support/daemon-process.ts";
import { requireRoot } from "../support/testnet.ts";
import { startResponderProcess, type ResponderProcess } from "../support/responder-process.ts";

const USER = "prom";
const PASSWORD = "s3cret:pass";
const AUTH = `${USER}:${PASSWORD}`;
const authHeader = { authorization: `Basic ${Buffer.from(AUTH).toString("base64")}` };

/** The inherited names promtool may complain of: kept for drop-in compatibility. */
const INHERITED_COUNT_NAMES = ["tcpsyn_match_ack_fail_count", "tcpsyn_port_mismatch_count", "udp_unreachable_port_mismatch_count"];

/** The UDP port `netprobify responder` reflects on (set before the daemon starts). */
let twampPort = 0;

function config(tcpPort: number, extra = ""): string {
  return `global:
  probe_name: nb-endpoints
  interval: 1
  timeout: 2
  nb_proc: 1
  logging_level: INFO
  prometheus_port: __PORT__
  prometheus_address: 127.0.0.1
  dns_update_interval: 0
groups:
  local:
    src_port_a: 65020
    src_port_z: 65021
targets:
  tcp4:
    type: TCPsyn
    destination: 127.0.0.1
    dst_port: ${tcpPort}
    nb_packets: 2
    timeout: 0.3
  icmp6:
    type: ICMPping
    destination: "::1"
    nb_packets: 2
    timeout: 0.3
  udp4:
    type: UDPunreachable
    destination: 127.0.0.1
    dst_port: 33434
    nb_packets: 2
    timeout: 0.3
  twamp4:
    type: TWAMPlight
    destination: 127.0.0.1
    dst_port: ${twampPort}
    nb_packets: 2
    timeout: 0.3
${extra}`;
}

async function run(cmd: string[], stdin?: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

/** Polls `check` every 100 ms until it returns something truthy; fails with `what` after `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const r = await check();
      if (r) return r;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await Bun.sleep(100);
  }
}

const withoutProcessLines = (text: string) =>
  text
    .split("\n")
    .filter((l) => !l.startsWith("process_"))
    .join("\n");

describe("the metrics listener's endpoints in a running daemon", () => {
  let d: DaemonProcess;
  let dir: string;
  let stallFile: string;
  let tcpPort: number;
  let apiPort: number;
  let prometheus: Subprocess | null = null;
  let promDir: string | null = null;
  let responder: ResponderProcess | null = null;

  const get = async (path: string, init: RequestInit = {}) => {
    const r = await d.fetch(path, init);
    return { status: r.status, body: await r.text(), headers: r.headers };
  };
  const scrape = () => d.scrape({ auth: AUTH });

  beforeAll(async () => {
    requireRoot();
    for (const tool of ["promtool", "prometheus", "curl"]) {
      if (Bun.which(tool) === null) throw new Error(`${tool} is not installed (scripts/setup.sh installs it)`);
    }
    tcpPort = await freePort();
    apiPort = await freePort();
    twampPort = await freePort();
    responder = await startResponderProcess(["--listen", `127.0.0.1:${twampPort}`]);
    dir = mkdtempSync(join(tmpdir(), "netprobify-endpoints-"));
    stallFile = join(dir, "stall");
    writeFileSync(stallFile, "");
    d = await startDaemon({
      dir,
      config: config(tcpPort),
      files: { "api.yaml": `token: t0k3n-endpoints\nlisten_address: 127.0.0.1\nlisten_port: ${apiPort}\ngroups: [local]\n` },
      env: {
        PROM_USER: USER,
        PROM_PASSWORD: PASSWORD,
        BUN_OPTIONS: `--preload ${join(import.meta.dir, "..", "support", "stall-loop.ts")}`,
        NETPROBIFY_TEST_STALL_FILE: stallFile,
      },
    });
  }, 30_000);

  afterAll(async () => {
    prometheus?.kill("SIGKILL");
    await prometheus?.exited;
    if (promDir) rmSync(promDir, { recursive: true, force: true });
    await d?.stop();
    await responder?.stop();
  });

  test("/-/ready 503 until the first publish; /-/healthy 200, then 503 with the reason while the loop is held, then 200 again", async () => {
    const ready = await get("/-/ready");
    expect(ready).toMatchObject({ status: 503, body: "not ready: the first iteration's results are not published yet\n" });
    const seen: number[] = [];
    const stuck = await until("/-/healthy to answer 503", async () => {
      const r = await get("/-/healthy");
      if (seen.at(-1) !== r.status) seen.push(r.status);
      return r.status === 503 ? r.body : null;
    });
    expect(seen).toEqual([200, 503]);
    expect(stuck).toMatch(
      /^unhealthy: no iteration has ended for \d+\.\d s, more than 2 x interval \(1 s\) \+ timeout \(2 s\) = 4 s: the probing loop is stuck\n$/,
    );
    // Still held: still not ready, and the scrape has no per-target series.
    expect((await get("/-/ready")).status).toBe(503);
    expect((await scrape()).get("icmp_sent_total")).toEqual([]);
    rmSync(stallFile);
    await until("/-/ready and /-/healthy to answer 200", async () => (await get("/-/ready")).status === 200 && (await get("/-/healthy")).status === 200);
    expect(await get("/-/healthy")).toMatchObject({ status: 200, body: "healthy\n" });
    expect(await get("/-/ready")).toMatchObject({ status: 200, body: "ready\n" });
  }, 30_000);

  test("the landing page (no credentials needed): name, version, links to the metrics, the health endpoints and the API's documentation", async () => {
    const r = await get("/");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(r.body).toContain(`version ${VERSION}`);
    for (const href of ["metrics", "-/healthy", "-/ready", `//127.0.0.1:${apiPort}/api/ui/`]) expect(r.body).toContain(`<a href="${href}">`);
    expect((await get("/metrics")).status).toBe(401);
  }, 10_000);

  test("every probe type's series, the new netprobify_* gauges, and promtool complaining of the three inherited *_count names only", async () => {
    const e = await until("series of every probe type", async () => {
      const x = await scrape();
      const present = [
        "tcpsyn_sent_total",
        "icmp_sent_total",
        "udp_unreachable_sent_total",
        "tcpsyn_round_trip_duration_seconds_bucket",
        "twamp_sent_total",
        "twamp_reflector_seconds",
        "twamp_port_mismatch_total",
      ].every((n) => x.get(n).length > 0);
      return present && x.value("netprobify_last_iteration_end_timestamp_seconds") !== undefined ? x : null;
    });
    const pn = { probe_name: "nb-endpoints" };
    expect(e.value("netprobify_iteration_interval_seconds", pn)).toBe(1);
    expect(e.value("netprobify_config_last_reload_successful", pn)).toBe(1);
    const now = Date.now() / 1000;
    for (const name of ["netprobify_config_last_reload_success_timestamp_seconds", "netprobify_last_iteration_end_timestamp_seconds"]) {
      const v = e.value(name, pn)!;
      expect({ name, recent: v > now - 120 && v <= now + 1 }).toEqual({ name, recent: true });
    }
    expect([...e.families.keys()].filter((f) => f.startsWith("app_")).sort()).toEqual([
      "app_host_resolution_change_total",
      "app_host_resolution_status",
      "app_iteration_time_seconds",
      "app_process_timed_out_total",
      "app_reload_conf_failed_status",
      "app_target_name_dup_total",
      "app_time_ooo_total",
    ]);

    const lint = await run(["promtool", "check", "metrics"], e.text);
    const complaints = lint.out.split("\n").filter((l) => l.trim() !== "");
    expect(complaints.sort()).toEqual(INHERITED_COUNT_NAMES.map((n) => `${n} non-histogram and non-summary metrics should not have "_count" suffix`));
  }, 30_000);

  test("a real Prometheus scrapes it (gzip, basic auth): up 1 and per-target series in its database", async () => {
    const promPort = await freePort();
    promDir = mkdtempSync(join(tmpdir(), "netprobify-prometheus-"));
    writeFileSync(
      join(promDir, "prometheus.yml"),
      `global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: netprobify
    basic_auth: {username: ${USER}, password: "${PASSWORD}"}
    static_configs: [{targets: ["127.0.0.1:${d.port}"]}]
`,
    );
    prometheus = Bun.spawn(
      [
        "prometheus",
        `--config.file=${join(promDir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(promDir, "data")}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdout: "ignore", stderr: "pipe" },
    );
    const query = async (q: string) => {
      const r = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`, { signal: AbortSignal.timeout(2000) });
      const j = (await r.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      return j.data.result;
    };
    const up = await until("Prometheus to scrape the daemon", async () => {
      const r = await query('up{job="netprobify"}');
      return r.length > 0 && r[0]!.value[1] === "1" ? r : null;
    }, 30_000);
    expect(up).toHaveLength(1);
    for (const q of ['icmp_sent_total{destination="icmp6"}', 'udp_unreachable_loss_ratio{destination="udp4"}', "tcpsyn_round_trip_duration_seconds_count"]) {
      const r = await until(`${q} in Prometheus`, async () => ((await query(q)).length > 0 ? query(q) : null));
      expect({ q, found: r.length }).toEqual({ q, found: 1 });
    }
    // What Prometheus sends gets gzip back.
    const headers = await run(["curl", "-sS", "-u", AUTH, "-H", "Accept-Encoding: gzip", "-D", "-", "-o", "/dev/null", `${d.url}/metrics`]);
    expect(headers.out).toMatch(/^content-encoding: gzip\r$/im);
  }, 60_000);

  test("curl --compressed gets the plain scrape's text, process_* aside (the loop held between the two)", async () => {
    writeFileSync(stallFile, "");
    // Held once two plain scrapes an interval and more apart read the same.
    const plain = await until("the per-target text to stop changing", async () => {
      const a = withoutProcessLines((await scrape()).text);
      await Bun.sleep(1500);
      const b = withoutProcessLines((await scrape()).text);
      return a === b ? b : null;
    });
    const headersFile = join(dir, "curl-headers.txt");
    const curl = await run(["curl", "-sS", "--fail", "--compressed", "-u", AUTH, "-D", headersFile, `${d.url}/metrics`]);
    expect(curl.code).toBe(0);
    expect(readFileSync(headersFile, "utf8")).toMatch(/^content-encoding: gzip\r$/im);
    expect(withoutProcessLines(curl.out)).toBe(plain);
    expect(parseExposition(curl.out).get("process_cpu_seconds_total")).toHaveLength(1);
    rmSync(stallFile);
  }, 30_000);

  test("POST /-/reload: 405 to GET, 401 without credentials, 500 with FILE:LINE:COL for a bad file (the running config stays), 200 for a good one", async () => {
    const post = (headers: Record<string, string> = authHeader) => get("/-/reload", { method: "POST", headers });
    const g = await get("/-/reload", { headers: authHeader });
    expect([g.status, g.headers.get("allow")]).toEqual([405, "POST"]);
    expect((await post({})).status).toBe(401);

    d.writeConfig(config(tcpPort).replace("interval: 1\n", "interval: ten\n"));
    const bad = await post();
    expect(bad.status).toBe(500);
    const lines = bad.body.trimEnd().split("\n");
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^\/\S+\/netprobify\.yaml:3:\d+: /);
    expect(bad.body).toContain("global.interval");
    const pn = { probe_name: "nb-endpoints" };
    let e: Exposition = await scrape();
    expect([e.value("app_reload_conf_failed_status", pn), e.value("netprobify_config_last_reload_successful", pn)]).toEqual([1, 0]);
    expect(e.get("tcpsyn_sent_total", { destination: "tcp4" })).toHaveLength(1);
    expect((await get("/-/healthy")).status).toBe(200);
    const before = e.value("netprobify_config_last_reload_success_timestamp_seconds", pn)!;

    d.writeConfig(config(tcpPort, "  icmp4:\n    type: ICMPping\n    destination: 127.0.0.1\n    nb_packets: 2\n    timeout: 0.3\n"));
    const good = await post();
    expect(good.status).toBe(200);
    expect(good.body).toMatch(/^configuration (reloaded|accepted: it applies when the iteration in flight ends)\n$/);
    e = await d.waitFor("the reloaded config's new target", (x) => x.get("icmp_sent_total", { destination: "icmp4" }).length > 0 && x, { auth: AUTH });
    expect([e.value("app_reload_conf_failed_status", pn), e.value("netprobify_config_last_reload_successful", pn)]).toEqual([0, 1]);
    expect(e.value("netprobify_config_last_reload_success_timestamp_seconds", pn)!).toBeGreaterThan(before);
    expect(await post()).toMatchObject({ status: 200, body: "configuration unchanged: nothing to reload\n" });
    expect(existsSync(d.configPath)).toBe(true);
    expect(d.alive).toBe(true);
  }, 30_000);
});
