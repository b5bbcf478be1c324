/**
 * What every benchmark does first: refuse to run without root, then re-run itself under
 * /tmp/bench.lock (the lock the yardstick's run.sh takes) so two measurements never share the CPUs.
 *
 * The re-run is flock's child in a process group of its own, and SIGINT, SIGTERM and SIGHUP sent
 * to this process are passed on to that group: `timeout 40m bun scripts/soak.ts` or a kill of the
 * pid the shell shows must reach the process that holds the daemon and the namespaces (flock
 * passes no signal on, and a lone kill of the parent would leave it running).
 */
import { EXIT_INTERRUPTED, EXIT_NOPERM } from "../src/cli/exit.ts";

export async function rootUnderBenchLock(name: string, why: string): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error(`${name}: needs root (${why})`);
    process.exit(EXIT_NOPERM);
  }
  if (process.env.NETPROBIFY_BENCH_LOCKED) return;
  const child = Bun.spawn(["flock", "/tmp/bench.lock", process.execPath, ...process.argv.slice(1)], {
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
  process.exit(await child.exited);
}

/**
 * Runs `cleanup` when the process exits, whatever way: SIGINT and SIGTERM exit (EXIT_INTERRUPTED) through it.
 * testnet.ts's own handlers tear down test networks; this is for what the script itself holds.
 */
export function cleanUpOnExit(cleanup: () => void): void {
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(EXIT_INTERRUPTED));
}
