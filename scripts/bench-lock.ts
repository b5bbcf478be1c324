/**
 * What every benchmark does first: refuse to run without root, then re-run itself under
 * /tmp/bench.lock (the lock the yardstick's run.sh takes) so two measurements never share the CPUs.
 */
export function rootUnderBenchLock(name: string, why: string): void {
  if (process.getuid?.() !== 0) {
    console.error(`${name}: needs root (${why})`);
    process.exit(77);
  }
  if (process.env.NETPROBIFY_BENCH_LOCKED) return;
  const r = Bun.spawnSync(["flock", "/tmp/bench.lock", process.execPath, ...process.argv.slice(1)], {
    env: { ...process.env, NETPROBIFY_BENCH_LOCKED: "1" },
    stdout: "inherit",
    stderr: "inherit",
  });
  process.exit(r.exitCode ?? 1);
}
