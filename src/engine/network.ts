/**
 * What the engine needs of the network, and nothing more: a route per destination, a way to send
 * a frame, captured frames with their kernel timestamps, a capture filter, drop counts and a
 * clock to wait on. src/engine/pcap-network.ts is the real one (libpcap, raw sockets, netlink);
 * tests/support/fake-network.ts answers probes in memory, so that matching, timeouts,
 * duplicates, reordering and late answers are tested without root.
 */
import type { LinkKind } from "../packet/build.ts";

/** How probes to one destination (from one source) leave. */
export interface Route {
  /** "unroutable": they cannot leave, and `reason` says why. Any other mode is the network's own. */
  readonly mode: string;
  /** The link header the frame must start with. */
  readonly link: LinkKind;
  /** Ethernet: the egress interface's MAC and the next hop's. */
  readonly srcMac: Uint8Array;
  readonly dstMac: Uint8Array;
  /** The source address (16 bytes; 4 used for IPv4). */
  readonly src: Uint8Array;
  readonly reason: string;
}

export interface ProbeNetwork {
  /** Called when a batch starts: routes and next hops are looked up again (a failover since). */
  refresh(): void;
  /** The route to `dst` from `src` (null: the kernel's preferred source). Routes are looked up per batch, never per packet. */
  route(family: 4 | 6, dst: string, src: string | null): Route;
  /** Sends `len` bytes of `frame` (written for `route`): returns `len` when the whole frame left, else what it returned (< 0: failure). */
  send(route: Route, frame: Uint8Array, len: number): number;
  /** Why send() on `route` returned `result`, for a log line. */
  sendFailure(route: Route, result: number, len: number): string;
  /** The capture filter (libpcap syntax) for what follows. */
  setFilter(filter: string): void;
  /**
   * Moves to the next captured frame, false when none is waiting. The frame's bytes and kernel
   * timestamp are then in `frame`, `caplen`, `datalink`, `tsSec` and `tsNsec`, until the next call.
   */
  next(): boolean;
  readonly frame: Uint8Array;
  readonly caplen: number;
  readonly datalink: number;
  readonly tsSec: number;
  readonly tsNsec: number;
  /** Frames the capture dropped since it opened. */
  captureDrops(): number;
  /** Blocks until a frame may be waiting, `ms` have passed, or the batch is aborted. */
  wait(ms: number): void;
  /** Milliseconds on a monotonic clock: the engine's schedule and deadlines. */
  now(): number;
  close(): void;
}
