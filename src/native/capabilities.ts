/**
 * Giving up every privilege this process holds, for good (what it holds is read by
 * src/privilege.ts, which needs no native call).
 *
 * Linux keeps capabilities and no_new_privs per thread: capset and prctl change the calling
 * thread only, and a Bun process has threads (JIT compiler, allocator) from before any of its
 * JavaScript runs. Those threads keep what the process was started with, so a thread-level drop
 * is complete only once the process re-executes itself from the dropped thread: every thread of
 * the new image starts from that thread's credentials. threadsNotConfined (src/privilege.ts) tells whether
 * that is still needed.
 */
import { readFileSync } from "node:fs";
import { capabilities, CAP_SETPCAP } from "../privilege.ts";
import {
  clearCapabilities,
  execve,
  prctl,
  PR_CAP_AMBIENT,
  PR_CAP_AMBIENT_CLEAR_ALL,
  PR_CAPBSET_DROP,
  PR_SET_NO_NEW_PRIVS,
} from "./libc.ts";

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

/**
 * Starts this program again in this process (same pid, same open descriptors, such as the IPC
 * channel) with the command line and environment it was started with, plus `extraArg`. Never
 * returns; throws SystemError when execve fails.
 */
export function reexecSelf(extraArg: string): never {
  const list = (file: string) => readFileSync(file, "utf8").split("\0").slice(0, -1);
  execve("/proc/self/exe", [...list("/proc/self/cmdline"), extraArg], list("/proc/self/environ"));
}
