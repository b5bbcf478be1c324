/**
 * The two listeners the HTTP fuzzer runs against, started the way the program starts them
 * (serveMetrics, serveApi) on 127.0.0.1 with a free port, with a count of the requests that
 * reach the handler and a record of the errors the server logs or reports.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeHandler, serveMetrics, type DaemonControl, type MetricsSource } from "../../src/daemon/http.ts";
import { createApi, serveApi, type Lookup } from "../../src/inventory/api.ts";
import { parseApiConfigText } from "../../src/inventory/api-config.ts";
import { setLogSink } from "../../src/log.ts";
import type { FuzzTarget } from "./http-fuzz.ts";
import { header } from "./raw-http.ts";

export interface RunningTarget extends FuzzTarget {
  stop(): Promise<void>;
}

/** Larger than one write step of the metrics body (1 MiB), so that a scrape takes several. */
const EXPOSITION_BYTES = (1 << 20) + 200_000;
const METRICS_CREDENTIALS = { user: "prom", password: "fuzz:pass" };

export function startMetricsTarget(): RunningTarget {
  const line = "probe_rtt_seconds{destination=\"198.18.0.1\",probe_name=\"fuzz\"} 0.000123\n";
  const body = new TextEncoder().encode(line.repeat(Math.ceil(EXPOSITION_BYTES / line.length)));
  const head = "# HELP app_up up\n# TYPE app_up gauge\napp_up 1\n";
  const source: MetricsSource = { expositionParts: async () => ({ head, body }), contentType: "text/plain; version=0.0.4; charset=utf-8" };
  const errors: string[] = [];
  setLogSink((l) => {
    if (/ level=(ERROR|CRITICAL) /.test(l)) errors.push(l);
  });
  let handled = 0;
  // A daemon that is healthy, ready and accepts every reload: its routes are fuzzed too.
  const control: DaemonControl = {
    unhealthy: () => null,
    notReady: () => null,
    reload: async () => ({ ok: true, lines: ["configuration unchanged: nothing to reload"] }),
    apiListener: () => ({ address: "0.0.0.0", port: 9 }),
  };
  const handler = makeHandler(source, METRICS_CREDENTIALS, control);
  const server = serveMetrics({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      handled++;
      return handler(req);
    },
  });
  const auth = `Authorization: Basic ${Buffer.from(`${METRICS_CREDENTIALS.user}:${METRICS_CREDENTIALS.password}`).toString("base64")}`;
  return {
    name: "metrics listener (serveMetrics, Basic auth on)",
    port: server.port!,
    routes: { "/metrics": ["GET", "HEAD"], "/": ["GET", "HEAD"], "/-/healthy": ["GET", "HEAD"], "/-/ready": ["GET", "HEAD"], "/-/reload": ["POST"] },
    auth,
    normal: {
      request: `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}\r\n\r\n`,
      check: (r) =>
        r.status !== 200
          ? `status ${r.status}`
          : r.body.length !== head.length + body.length
            ? `${r.body.length} bytes instead of ${head.length + body.length}`
            : header(r, "content-type") !== source.contentType
              ? `content type ${header(r, "content-type")}`
              : undefined,
    },
    serverErrors: () => errors,
    handled: () => handled,
    async stop() {
      await server.stop(true);
      setLogSink((l) => process.stderr.write(`${l}\n`));
    },
  };
}

const API_TOKEN = "fuzz-token-0123456789-abcdef";

/** No DNS: IP literals only. */
const literalsOnly: Lookup = async (hostname, family) => {
  const version = isIP(hostname);
  return version !== 0 && (version === 4) === (family === "ipv4") ? hostname : undefined;
};

export async function startApiTarget(): Promise<RunningTarget> {
  const dir = await mkdtemp(join(tmpdir(), "netprobify-http-fuzz-"));
  const parsed = parseApiConfigText(`token: "${API_TOKEN}"\nlisten_address: 127.0.0.1\nlisten_port: 8009\ngroups: [lab]\n`, "api.yaml");
  if (!parsed.ok) throw new Error(parsed.lines.join("\n"));
  const errors: string[] = [];
  const reportError = (message: string) => void errors.push(message);
  const api = await createApi(parsed.config, {
    publish: () => undefined,
    statePath: join(dir, "api-targets.json"),
    reportError,
    lookup: literalsOnly,
  });
  let handled = 0;
  const server = serveApi(
    {
      ...api,
      fetch: (request) => {
        handled++;
        return api.fetch(request);
      },
    },
    "127.0.0.1",
    0,
    reportError,
  );
  return {
    name: "targets API listener (serveApi)",
    port: server.port!,
    routes: {
      "/api/targets": ["GET"],
      "/api/target": ["POST", "DELETE"],
      "/api/openapi.json": ["GET"],
      "/api/ui/": ["GET"],
      "/api/ui": ["GET"],
    },
    auth: `apikey: ${API_TOKEN}`,
    normal: {
      request: `GET /api/targets HTTP/1.1\r\nHost: 127.0.0.1\r\napikey: ${API_TOKEN}\r\n\r\n`,
      check: (r) => (r.status !== 200 ? `status ${r.status}` : Buffer.from(r.body).toString() !== "[]" ? "not the empty list" : undefined),
    },
    serverErrors: () => errors,
    handled: () => handled,
    async stop() {
      await server.stop(true);
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
