/**
 * What answered a probe, shared by every probe type: a result slot stores one of these codes and
 * the CLI prints its name. A new kind of answer is a new code here.
 */
export const REPLY_NONE = 0;
export const REPLY_SYN_ACK = 1;
export const REPLY_RST_ACK = 2;
export const REPLY_ECHO = 3;
export const REPLY_PORT_UNREACHABLE = 4;
/** Any other destination-unreachable code (host, network, administratively prohibited). */
export const REPLY_UNREACHABLE = 5;
/** The probe's own packet sent back by a reflector on the far host, with what it adds (TWAMP-Test). */
export const REPLY_REFLECTED = 6;
export const REPLY_NAMES = ["none", "syn-ack", "rst-ack", "echo-reply", "port-unreachable", "unreachable", "reflected"] as const;

/** Slot states after a batch (BatchResult.status), read by the engine's summaries and by types' own. */
export const SLOT_LOST = 0;
export const SLOT_ANSWERED = 1;
/** Never left: no route, unresolved next hop, or the send call failed. Neither sent nor lost. */
export const SLOT_UNSENT = 2;
