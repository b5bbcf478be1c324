/**
 * The privilege this process holds, read from /proc: root, capabilities, no_new_privs, per
 * thread. Giving it up needs native calls and lives in src/native/capabilities.ts.
 */
import { readdirSync, readFileSync } from "node:fs";

export interface CapabilityState {
  readonly effective: bigint;
  readonly permitted: bigint;
  readonly inheritable: bigint;
  readonly ambient: bigint;
  readonly bounding: bigint;
  readonly noNewPrivs: boolean;
}

export const CAP_NET_RAW = 13;
export const CAP_SETPCAP = 8;

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
