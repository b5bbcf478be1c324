/**
 * Sending crafted packets and capturing needs CAP_NET_RAW; saying so before libpcap fails turns
 * an obscure "socket: Operation not permitted" into one clear line (exit 77).
 */
import { capabilities, CAP_NET_RAW } from "../privilege.ts";
import { EXIT_NOPERM, ExitError } from "./exit.ts";

export function hasRawPacketPrivilege(): boolean {
  try {
    // The effective set, for root too: a container's root holds only the capabilities its
    // runtime grants (podman's default set has no CAP_NET_RAW; docker --cap-drop removes it).
    return (capabilities().effective & (1n << BigInt(CAP_NET_RAW))) !== 0n;
  } catch {
    // No /proc: root is the best guess; libpcap says the rest a moment later.
    return process.getuid?.() === 0;
  }
}

export function requireRawPacketPrivilege(): void {
  if (!hasRawPacketPrivilege()) {
    throw new ExitError(
      EXIT_NOPERM,
      "netprobify needs the CAP_NET_RAW capability to send and capture probes " +
        "(root has it: sudo; or setcap cap_net_raw+ep netprobify; in a container: --cap-add=NET_RAW)",
    );
  }
}
