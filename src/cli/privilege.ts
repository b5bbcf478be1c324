/**
 * Sending crafted packets and capturing needs root or CAP_NET_RAW; saying so before libpcap
 * fails turns an obscure "socket: Operation not permitted" into one clear line (exit 77).
 */
import { capabilities, CAP_NET_RAW } from "../privilege.ts";
import { EXIT_NOPERM, ExitError } from "./exit.ts";

export function hasRawPacketPrivilege(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    return (capabilities().effective & (1n << BigInt(CAP_NET_RAW))) !== 0n;
  } catch {
    // No /proc: assume no privilege; libpcap would fail the same way a moment later.
    return false;
  }
}

export function requireRawPacketPrivilege(): void {
  if (!hasRawPacketPrivilege()) {
    throw new ExitError(
      EXIT_NOPERM,
      "netprobify needs root or the CAP_NET_RAW capability to send and capture probes " +
        "(sudo, or: setcap cap_net_raw+ep netprobify)",
    );
  }
}
