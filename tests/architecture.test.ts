/**
 * Where native code may be reached from. bun:ffi is imported only under src/native/, and only
 * the host-network implementation of the engine's network (src/engine/pcap-network.ts) and the
 * entry points of the threads and processes that run it reach it at all: every other module
 * (config, planner, metrics, engine, matcher, stats, pool, CLI) loads without libpcap, so it is
 * tested, and read, without root or the built library.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const transpiler = new Bun.Transpiler({ loader: "ts" });

/** Modules that may reach bun:ffi, and why. */
const NATIVE_EDGE: Record<string, string> = {
  "src/engine/pcap-network.ts": "the engine's network on a real host: libpcap, raw sockets, netlink",
  "src/engine/engine-worker.ts": "entry of the engine's Worker thread: opens the pcap network and the eventfd",
  "src/inventory/child.ts": "entry of a custom inventory's child process: drops its capabilities first",
};
const isNativeEdge = (f: string) => f.startsWith("src/native/") || f in NATIVE_EDGE;

/** Static imports of every module under src/ (dynamic import() runs only when called). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of new Bun.Glob("src/**/*.ts").scanSync(ROOT)) {
    const text = readFileSync(join(ROOT, file), "utf8");
    const imports = transpiler
      .scanImports(text)
      .filter((i) => i.kind !== "dynamic-import")
      .map((i) => (i.path.startsWith(".") ? relative(ROOT, resolve(dirname(join(ROOT, file)), i.path)) : i.path));
    graph.set(file, imports);
  }
  return graph;
}

function reachesFfi(graph: Map<string, string[]>, file: string, seen = new Set<string>()): string[] | null {
  if (file === "bun:ffi") return [file];
  if (seen.has(file)) return null;
  seen.add(file);
  for (const next of graph.get(file) ?? []) {
    const path = reachesFfi(graph, next, seen);
    if (path) return [file, ...path];
  }
  return null;
}

describe("native code stays at the edge", () => {
  const graph = importGraph();

  test("only src/native/ imports bun:ffi", () => {
    const importers = [...graph].filter(([, deps]) => deps.includes("bun:ffi")).map(([f]) => f);
    expect(importers.length).toBeGreaterThan(0);
    expect(importers.filter((f) => !f.startsWith("src/native/"))).toEqual([]);
  });

  test("no module outside the native edge reaches bun:ffi through its imports", () => {
    const leaks = [...graph.keys()]
      .sort()
      .filter((f) => !isNativeEdge(f))
      .flatMap((f) => {
        const path = reachesFfi(graph, f);
        return path ? [path.join(" -> ")] : [];
      });
    expect(leaks).toEqual([]);
    // The edge is what it says: each listed module does reach native code.
    for (const f of Object.keys(NATIVE_EDGE)) expect({ f, reaches: reachesFfi(graph, f) !== null }).toEqual({ f, reaches: true });
  });

  test("every other module imports in a checkout without build/ and without libpcap", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netprobify-nobuild-"));
    try {
      cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
      cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
      cpSync(join(ROOT, "tsconfig.json"), join(dir, "tsconfig.json"));
      symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
      // Entry points run when imported (main, Worker scripts): checked statically above.
      const entries = (f: string) => f === "src/main.ts" || /-worker\.ts$/.test(f);
      const pure = [...graph.keys()].filter((f) => !isNativeEdge(f) && !entries(f)).sort();
      expect(pure.length).toBeGreaterThan(50);
      const script = [
        ...pure.map((f, i) => `import * as m${i} from "./${f}";`),
        `console.log(JSON.stringify([${pure.map((_, i) => `Object.keys(m${i}).length`).join(",")}]));`,
      ].join("\n");
      await Bun.write(join(dir, "import-all.ts"), script);
      await Bun.write(join(dir, "import-libpcap.ts"), `import { libpcapVersion } from "./src/native/libpcap.ts";\nconsole.log(libpcapVersion().version);\n`);
      const env = { ...process.env, NETPROBIFY_LIBPCAP: join(dir, "no-such-libpcap.so") };
      const run = (file: string) => Bun.spawnSync([process.execPath, file], { cwd: dir, env, stdout: "pipe", stderr: "pipe" });
      const all = run("import-all.ts");
      expect({ code: all.exitCode, stderr: all.stderr.toString().slice(0, 2000) }).toEqual({ code: 0, stderr: "" });
      expect(JSON.parse(all.stdout.toString())).toHaveLength(pure.length);
      // And the checkout is what it claims: the libpcap binding itself does not load there.
      const pcap = run("import-libpcap.ts");
      expect(pcap.exitCode).not.toBe(0);
      expect(pcap.stderr.toString()).toContain("build/libpcap");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
