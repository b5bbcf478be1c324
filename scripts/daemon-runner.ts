/**
 * Which daemon a script measures: dist/netprobify when it is newer than every file under src/,
 * else the same binary built by build.ts from the working tree into the script's temp dir (dist/
 * is left alone), else `bun src/main.ts`. Shared by bench-daemon.ts and soak.ts.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");

export interface Runner {
  argv: string[];
  description: string;
}

export const RUNNER_CHOICES = ["auto", "dist", "bun"] as const;
export type RunnerChoice = (typeof RUNNER_CHOICES)[number];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * `dist`: dist/netprobify as found (a usage error when it is missing); `bun`: the sources;
 * `auto`: see the file comment. `buildDir` receives a binary built for this run.
 */
export function chooseRunner(choice: RunnerChoice, buildDir: string, log: (line: string) => void, usage: (message: string) => never): Runner {
  const dist = join(root, "dist", "netprobify");
  const fromSource: Runner = { argv: [process.execPath, join(root, "src", "main.ts")], description: `bun src/main.ts (Bun ${Bun.version})` };
  if (choice === "bun") return fromSource;
  if (choice === "dist") {
    if (!existsSync(dist)) usage("--runner dist: dist/netprobify does not exist (bun run build.ts)");
    return { argv: [dist], description: "dist/netprobify (compiled binary, as found)" };
  }
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestMtime(join(root, "src"))) {
    return { argv: [dist], description: "dist/netprobify (compiled binary, newer than every file under src/)" };
  }
  // dist/netprobify is missing or older than the sources: measuring it would measure old code.
  const out = join(buildDir, "netprobify");
  const why = existsSync(dist) ? "dist/netprobify is older than src/" : "dist/netprobify is missing";
  log(`${why}: building the binary from the working tree into ${out}`);
  const r = Bun.spawnSync([process.execPath, "run", join(root, "build.ts"), "--outfile", out], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode === 0 && existsSync(out)) {
    return { argv: [out], description: `compiled binary built by build.ts from the working tree for this run (${why})` };
  }
  log(`build failed (${r.stderr.toString().trim().split("\n").pop()}): running from source instead`);
  return { ...fromSource, description: `${fromSource.description} (${why} and the build failed)` };
}

/** Calls onLine for each line the stream carries (a daemon's stdout or stderr), the last one even without its newline. */
export async function pumpLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  if (buf) onLine(buf);
}
