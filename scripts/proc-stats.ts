/**
 * What the scripts read about a process from /proc: CPU time, memory, threads, open files.
 * Shared by bench-daemon.ts and soak.ts. Linux only; each reader throws when the process is gone.
 */
import { readdirSync, readFileSync } from "node:fs";

// Read at import: guarded, so that a script importing this still starts (and says which tool it
// lacks) where getconf is missing.
const CLK_TCK = (Bun.which("getconf") && Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim())) || 100;

/** The fields of a /proc stat line after the command name: field N (counted from 1) is f[N - 3]. */
const statFields = (stat: string) => stat.slice(stat.lastIndexOf(")") + 2).split(" ");

/** How often runMeasured reads a child's VmHWM. */
const PEAK_POLL_MS = 5;

/** utime + stime + cutime + cstime of the whole process (every thread, live or ended), seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(readFileSync(`/proc/${pid}/stat`, "utf8"));
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
}

/** A `Field:   N kB` line of /proc/PID/status text, in kB (NaN when absent). */
export const kbOf = (status: string, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);

/** One kB field of /proc/PID/status: VmRSS, VmHWM, RssAnon, RssFile... */
export function statusKb(pid: number, field: string): number {
  return kbOf(readFileSync(`/proc/${pid}/status`, "utf8"), field);
}

/**
 * CPU seconds (their own and their reaped children's) of every user-space process outside the
 * tree rooted at `self`, by pid: what other work on the machine used. Kernel threads (children of
 * kthreadd, pid 2) are left out: their softirq work is mostly the benchmark's own traffic.
 */
export function otherProcessCpu(self: number): Map<number, number> {
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      const f = statFields(readFileSync(`/proc/${pid}/stat`, "utf8"));
      parent.set(pid, Number(f[1]));
      cpu.set(pid, (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK);
    } catch {
      /* ended meanwhile */
    }
  }
  const ours = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) if (p === self) return true;
    return false;
  };
  const out = new Map<number, number>();
  for (const [pid, c] of cpu) if (pid !== 2 && parent.get(pid) !== 2 && !ours(pid)) out.set(pid, c);
  return out;
}

export interface ChildRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  wallS: number;
  /** User + system CPU of the child, seconds. */
  cpuS: number;
  /** The child's own peak RSS (VmHWM, read every few ms while it runs), MB. */
  peakMb: number;
  killed: boolean;
}

/**
 * Runs argv to its end and measures it. Its peak RSS is its own VmHWM, polled from /proc while
 * it runs: the rusage maxrss of a child counts the RSS its parent had when it forked (Linux keeps
 * the pre-exec high-water mark), so a benchmark holding 800 MB would report that for a 60 MB
 * child. The last reading can miss growth in the final poll interval only.
 */
export async function runMeasured(argv: string[], opts: { cwd?: string; timeoutS?: number } = {}): Promise<ChildRun> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, { cwd: opts.cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let peakKb = 0;
  let killed = false;
  const timer = opts.timeoutS === undefined ? null : setTimeout(() => {
    killed = true;
    proc.kill("SIGKILL");
  }, opts.timeoutS * 1000);
  const poll = setInterval(() => {
    try {
      const kb = statusKb(proc.pid, "VmHWM");
      if (Number.isFinite(kb)) peakKb = Math.max(peakKb, kb);
    } catch {
      /* exited */
    }
  }, PEAK_POLL_MS);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearInterval(poll);
  if (timer) clearTimeout(timer);
  const cpu = proc.resourceUsage()?.cpuTime;
  return {
    exitCode: killed ? null : exitCode,
    stdout,
    stderr,
    wallS: (performance.now() - t0) / 1000,
    cpuS: cpu ? Number(cpu.total) / 1e6 : NaN,
    peakMb: peakKb / 1024,
    killed,
  };
}

export interface ThreadCpu {
  main: number;
  workers: number;
  other: number;
}

/** CPU seconds of the live threads: the main thread (tid = pid), the Workers (named "Worker" by
 * Bun), and the rest (JIT, GC, HTTP). */
export function threadCpu(pid: number): ThreadCpu {
  const out = { main: 0, workers: 0, other: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // ended meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = statFields(stat);
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    if (Number(tid) === pid) out.main += cpu;
    else if (comm === "Worker") out.workers += cpu;
    else out.other += cpu;
  }
  return out;
}

export function threadCount(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).length;
}

/** Thread ids of the live Bun Workers (threads named "Worker"). */
export function workerThreadIds(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim() === "Worker") out.push(Number(tid));
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
