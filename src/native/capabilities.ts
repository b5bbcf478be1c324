/**
 * The privilege this process holds, and giving it all up for good.
 *
 * Linux keeps capabilities and no_new_privs per thread: capset and prctl change the calling
 * thread only, and a Bun process has threads (JIT compiler, allocator) from before any of its
 * JavaScript runs. Those threads keep what the process was started with, so a thread-level drop
 * is complete only once the process re-executes itself from the dropped thread: every thread of
 * the new image starts from that thread's credentials. {@link threadsNotConfined} tells whether
 * that is still needed.
 */
import { readdirSync, readFileSync } from "node:fs";
import {
  clearCapabilities,
  execve,
  prctl,
  PR_CAP_AMBIENT,
  PR_CAP_AMBIENT_CLEAR_ALL,
  PR_CAPBSET_DROP,
  PR_SET_NO_NEW_PRIVS,
} from "./libc.ts";

export interface CapabilityState {
  readonly effective: bigint;
  readonly permitted: bigint;
  readonly inheritable: bigint;
  readonly ambient: bigint;
  readonly bounding: bigint;
  readonly noNewPrivs: boolean;
}

export const CAP_NET_RAW = 13;
const CAP_SETPCAP = 8;

/** The capability lines of a /proc/…/status text. */
export function parseCapabilities(status: string): CapabilityState {
  const mask = (key: string) => {
    const hex = new RegExp(`^${key}:\\s*([0-9a-f]+)$`, "m").exec(status)?.[1];
    return hex === undefined ? 0n : BigInt(`0x${hex}`);
  };
  return {
    effective: mask("CapEff"),
    permitted: mask("CapPrm"),
    inheritable: mask("CapInh"),
    ambient: mask("CapAmb"),
    bounding: mask("CapBnd"),
    noNewPrivs: /^NoNewPrivs:\s*1$/m.test(status),
  };
}

/** This process's (its main thread's) capabilities; throws when /proc cannot be read. */
export function capabilities(): CapabilityState {
  return parseCapabilities(readFileSync("/proc/self/status", "utf8"));
}

/**
 * Root, or capabilities to use (effective, permitted or ambient): what makes loading code from a
 * file another user can write a way to gain privilege. No /proc: counted as privileged, the safe
 * side for a check that only refuses.
 */
export function holdsPrivilege(): boolean {
  if (process.geteuid?.() === 0) return true;
  try {
    const c = capabilities();
    return c.effective !== 0n || c.permitted !== 0n || c.ambient !== 0n;
  } catch {
    return true;
  }
}

/**
 * Gives up every capability in the calling thread, for good: no_new_privs (no execve can grant
 * any back, not a setcap'd binary, not a set-uid one, not root's), the bounding set when
 * CAP_SETPCAP allows (root; a setcap'd binary lacks it, and needs no bounding drop: with
 * no_new_privs and an empty permitted set an execve grants nothing), the ambient set, then the
 * effective, permitted and inheritable sets. Throws SystemError.
 */
export function dropCapabilities(): void {
  prctl(PR_SET_NO_NEW_PRIVS, 1);
  if ((capabilities().effective & (1n << BigInt(CAP_SETPCAP))) !== 0n) {
    const last = Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8").trim());
    for (let cap = 0; cap <= last; cap++) prctl(PR_CAPBSET_DROP, cap);
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
  clearCapabilities();
}

/** Thread ids of this process that still hold a capability or lack no_new_privs. */
export function threadsNotConfined(): number[] {
  const out: number[] = [];
  for (const tid of readdirSync("/proc/self/task")) {
    let c: CapabilityState;
    try {
      c = parseCapabilities(readFileSync(`/proc/self/task/${tid}/status`, "utf8"));
    } catch {
      continue; // the thread ended meanwhile
    }
    if (c.effective !== 0n || c.permitted !== 0n || c.inheritable !== 0n || c.ambient !== 0n || !c.noNewPrivs) out.push(Number(tid));
  }
  return out;
}

/**
 * Starts this program again in this process (same pid, same open descriptors, such as the IPC
 * channel) with the command line and environment it was started with, plus `extraArg`. Never
 * returns; throws SystemError when execve fails.
 */
export function reexecSelf(extraArg: string): never {
  const list = (file: string) => readFileSync(file, "utf8").split("\0").slice(0, -1);
  execve("/proc/self/exe", [...list("/proc/self/cmdline"), extraArg], list("/proc/self/environ"));
}
