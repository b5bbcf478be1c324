/**
 * What every benchmark does first: refuse to run without root or without a tool it needs, then
 * re-run itself under /tmp/bench.lock (the lock the yardstick's run.sh takes) so two measurements
 * never share the CPUs. Each refusal is one line on stderr and a non-zero exit, before anything
 * is set up or printed on stdout.
 *
 * The lock is not waited for: a benchmark that finds it held says so and exits EXIT_TEMPFAIL
 * (NETPROBIFY_BENCH_LOCK_WAIT=SECONDS waits that long first, as the quick-mode tests do).
 * NETPROBIFY_BENCH_LOCK=PATH names another lock file, for tests of the lock itself only: the
 * benchmarks share fixed names (bench-engine's namespace pl-h1) that only the one lock protects.
 *
 * The re-run is flock's child in a process group of its own, and SIGINT, SIGTERM and SIGHUP sent
 * to this process are passed on to that group: `timeout 40m bun scripts/soak.ts` or a kill of the
 * pid the shell shows must reach the process that holds the daemon and the namespaces (flock
 * passes no signal on, and a lone kill of the parent would leave it running).
 */
import { EXIT_INTERRUPTED, EXIT_NOPERM, EXIT_UNAVAILABLE } from "../src/cli/exit.ts";

/** sysexits' EX_TEMPFAIL: flock's exit code when the lock is held (no benchmark exits with it). */
export const EXIT_TEMPFAIL = 75;
export const BENCH_LOCK = "/tmp/bench.lock";

export async function rootUnderBenchLock(name: string, why: string, tools: readonly string[] = []): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error(`${name}: needs root (${why})`);
    process.exit(EXIT_NOPERM);
  }
  const missing = ["flock", ...tools].filter((t) => !Bun.which(t));
  if (missing.length) {
    console.error(`${name}: cannot run: ${missing.join(", ")} not found in PATH (scripts/setup.sh installs them)`);
    process.exit(EXIT_UNAVAILABLE);
  }
  if (process.env.NETPROBIFY_BENCH_LOCKED) return;
  const lock = process.env.NETPROBIFY_BENCH_LOCK || BENCH_LOCK;
  const waitS = Number(process.env.NETPROBIFY_BENCH_LOCK_WAIT ?? 0);
  const waitArgs = Number.isFinite(waitS) && waitS > 0 ? ["-w", String(waitS)] : ["-n"];
  const child = Bun.spawn(["flock", ...waitArgs, "-E", String(EXIT_TEMPFAIL), lock, process.execPath, ...process.argv.slice(1)], {
    env: { ...process.env, NETPROBIFY_BENCH_LOCKED: "1" },
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    detached: true,
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      try {
        process.kill(-child.pid, sig);
      } catch {
        // the group is gone already
      }
    });
  }
  const code = await child.exited;
  if (code === EXIT_TEMPFAIL) {
    console.error(
      `${name}: cannot run: another benchmark holds ${lock}${waitArgs[0] === "-w" ? ` (waited ${waitS} s)` : ""}; ` +
        "run it when that one has ended (NETPROBIFY_BENCH_LOCK_WAIT=SECONDS waits for it)",
    );
  }
  process.exit(code);
}

/**
 * Runs `cleanup` when the process exits, whatever way: SIGINT and SIGTERM exit (EXIT_INTERRUPTED) through it.
 * testnet.ts's own handlers tear down test networks; this is for what the script itself holds.
 */
export function cleanUpOnExit(cleanup: () => void): void {
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(EXIT_INTERRUPTED));
}
