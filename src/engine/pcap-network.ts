/**
 * The engine's network on a real host (src/engine/network.ts): capture on the "any" device with
 * libpcap, frames injected on the egress interface or sent through a raw socket.
 *
 * Where each probe leaves: the kernel's route (egress interface, preferred source, next hop) and
 * the next hop's MAC. Routes are looked up per destination and MACs are kept per next hop, so
 * 10,000 targets behind one router cost one neighbour entry; both are refreshed at the start of
 * every batch so a failover never leaves probes going to a stale MAC.
 */
import { getLink, getNeighbour, getRoute, NoRoute, NoSuchLink, type LinkInfo, type RouteInfo } from "../native/netlink.ts";
import { parseAddress, parseMac, type Family } from "../packet/address.ts";
import {
  ETHERTYPE_ARP,
  ICMP6_NEIGHBOUR_ADVERT,
  IPPROTO_ICMPV6,
  LINK_ETHERNET,
  LINK_RAW,
  writeArpRequest,
  writeNeighbourSolicitation,
  type LinkKind,
} from "../packet/build.ts";
import { PARSE_OK, ParsedFrame, parseFrame } from "../packet/parse.ts";
import { AF_INET, AF_INET6, IPPROTO_RAW, openSocket, pollReadable, SOCK_RAW, closeFd } from "../native/libc.ts";
import { DLT_EN10MB, DLT_RAW, PcapHandle } from "../native/libpcap.ts";
import { sendTo, strerror } from "../native/libc.ts";
import type { ProbeNetwork, Route } from "./network.ts";
import { ProbeEngine, type EngineOptions } from "./probe-engine.ts";

/** How a probe reaches the wire. */
export type EgressMode = "inject" | "raw-socket" | "unroutable";

export interface Egress extends Route {
  mode: EgressMode;
  /** inject: the handle of the egress interface. */
  handle: PcapHandle | null;
  /** raw-socket: the socket for the family, and the destination as a sockaddr (raw sockets ignore its port). */
  fd: number;
  sockaddr: Uint8Array | null;
  link: LinkKind;
  readonly srcMac: Uint8Array;
  readonly dstMac: Uint8Array;
  /** Source address the kernel would choose (16 bytes). */
  readonly src: Uint8Array;
  ifname: string;
  /** unroutable: why (no route, blackhole, unresolved next hop). */
  reason: string;
}

const ARPHRD_LOOPBACK = 772;

function sockaddrFor(family: Family, dst: Uint8Array): Uint8Array {
  // struct sockaddr_in / sockaddr_in6 with port 0.
  const sa = new Uint8Array(family === 4 ? 16 : 28);
  const view = new DataView(sa.buffer);
  view.setUint16(0, family === 4 ? AF_INET : AF_INET6, true);
  if (family === 4) sa.set(dst.subarray(0, 4), 4);
  else sa.set(dst.subarray(0, 16), 8);
  return sa;
}
const NEIGHBOUR_ATTEMPTS = 3;
const NEIGHBOUR_WAIT_MS = 300;

/** Owns the inject handles and raw sockets, one per interface / family, for the engine's life. */
export class EgressResolver {
  /** Inject handles by interface name, with the index of the interface they were opened on. */
  readonly #handles = new Map<string, { handle: PcapHandle; ifindex: number }>();
  readonly #rawSockets = new Map<Family, number>();
  /** Next-hop MACs resolved this batch, keyed "ifindex/address". */
  #macs = new Map<string, Uint8Array | null>();
  #routes = new Map<string, Egress>();
  /** Links looked up this batch, by name: thousands of targets share a handful of interfaces. */
  #links = new Map<string, LinkInfo | null>();
  /** Interface names by index this batch, for getRoute. */
  #linkNames = new Map<number, string>();
  readonly #frame = new Uint8Array(128);
  readonly #parsed = new ParsedFrame();

  constructor(
    private readonly useRawSocket: boolean,
    private readonly log: (message: string) => void = () => {},
  ) {}

  /** Forgets routes and MACs so the next lookups ask the kernel again (called per batch). */
  refresh(): void {
    this.#macs = new Map();
    this.#routes = new Map();
    this.#links = new Map();
    this.#linkNames = new Map();
  }

  /** The egress for dst, from src when given (else the kernel's preferred source). */
  resolve(family: Family, dst: string, src: string | null): Egress {
    const key = `${dst}|${src ?? ""}`;
    let e = this.#routes.get(key);
    if (!e) {
      e = this.#lookup(family, dst, src);
      this.#routes.set(key, e);
    }
    return e;
  }

  #lookup(family: Family, dst: string, src: string | null): Egress {
    const e: Egress = {
      mode: "unroutable",
      handle: null,
      fd: -1,
      sockaddr: null,
      link: LINK_ETHERNET,
      srcMac: new Uint8Array(6),
      dstMac: new Uint8Array(6),
      src: new Uint8Array(16),
      ifname: "",
      reason: "",
    };
    let route: RouteInfo;
    try {
      route = getRoute(dst, src ? { src, linkNames: this.#linkNames } : { linkNames: this.#linkNames });
    } catch (err) {
      if (err instanceof NoRoute) {
        e.reason = `no route to ${dst}`;
        return e;
      }
      throw err;
    }
    e.ifname = route.ifname;
    const preferred = src ?? route.src;
    if (preferred) e.src.set(parseAddress(preferred)!.bytes);
    if (route.type !== "unicast" && route.type !== "local") {
      e.reason = `route to ${dst} is ${route.type}`;
      return e;
    }
    if (!preferred) {
      e.reason = `no source address for ${dst} on ${route.ifname}`;
      return e;
    }
    // Local destinations go through a raw socket: the kernel then delivers them over loopback
    // with a route attached, whereas a frame injected on lo with a 127/8 source is dropped as
    // a martian by IPv4 input routing.
    if (this.useRawSocket || route.type === "local") {
      e.mode = "raw-socket";
      e.link = LINK_RAW;
      e.fd = this.#rawSocket(family);
      e.sockaddr = sockaddrFor(family, parseAddress(dst)!.bytes);
      return e;
    }
    const ifname = route.ifname;
    const handle = this.#handle(ifname, route.ifindex);
    e.handle = handle;
    if (handle.datalink === DLT_RAW) {
      e.link = LINK_RAW;
    } else if (handle.datalink !== DLT_EN10MB) {
      e.reason = `interface ${ifname} has link type ${handle.datalink}, which the prober cannot frame`;
      return e;
    }
    const link = this.#link(ifname);
    if (!link) {
      e.reason = `interface ${ifname} vanished`;
      return e;
    }
    if (e.link === LINK_ETHERNET && link.arpHardwareType !== ARPHRD_LOOPBACK && link.mac) {
      parseMac(link.mac, e.srcMac);
      const nextHop = route.gateway ?? dst;
      const mac = this.#nextHopMac(family, link.ifindex, ifname, nextHop, e.srcMac, e.src);
      if (!mac) {
        e.reason = `next hop ${nextHop} on ${ifname} does not answer ${family === 4 ? "ARP" : "neighbour solicitation"}`;
        return e;
      }
      e.dstMac.set(mac);
    }
    e.mode = "inject";
    return e;
  }

  /**
   * The send handle of an interface. An interface deleted and created again under the same name
   * has a new index, and a handle bound to the old one fails every send: it is reopened.
   */
  #handle(ifname: string, ifindex: number): PcapHandle {
    const cached = this.#handles.get(ifname);
    if (cached && !cached.handle.closed && cached.ifindex === ifindex) return cached.handle;
    cached?.handle.close();
    const h = PcapHandle.openLive(ifname, { snaplen: 64, bufferBytes: 256 * 1024, immediate: true });
    // This handle only sends: a filter that accepts nothing keeps the kernel from copying
    // every frame of the interface into its ring. libpcap refuses an Ethernet test on a link
    // without an Ethernet header (tun), hence an IP one there.
    h.setFilter(h.datalink === DLT_EN10MB ? "ether proto 0xfffe" : "ip proto 254 and ip[0] = 0x99");
    this.#handles.set(ifname, { handle: h, ifindex });
    return h;
  }

  #link(ifname: string): LinkInfo | null {
    let link = this.#links.get(ifname);
    if (link === undefined) {
      try {
        link = getLink(ifname);
      } catch (err) {
        if (!(err instanceof NoSuchLink)) throw err;
        link = null;
      }
      this.#links.set(ifname, link);
    }
    return link;
  }

  #rawSocket(family: Family): number {
    let fd = this.#rawSockets.get(family);
    if (fd === undefined) {
      // IPPROTO_RAW implies IP_HDRINCL (and IPV6_HDRINCL): the prober writes the IP header.
      fd = openSocket(family === 4 ? AF_INET : AF_INET6, SOCK_RAW, IPPROTO_RAW);
      this.#rawSockets.set(family, fd);
    }
    return fd;
  }

  #nextHopMac(
    family: Family,
    ifindex: number,
    ifname: string,
    nextHop: string,
    srcMac: Uint8Array,
    src: Uint8Array,
  ): Uint8Array | null {
    const key = `${ifindex}/${nextHop}`;
    if (this.#macs.has(key)) return this.#macs.get(key) ?? null;
    let mac: Uint8Array | null = null;
    const known = getNeighbour(ifindex, nextHop);
    if (known?.usable && known.mac) {
      mac = new Uint8Array(6);
      parseMac(known.mac, mac);
    } else {
      mac = this.#solicit(family, ifname, nextHop, srcMac, src);
      if (mac) this.log(`resolved next hop ${nextHop} on ${ifname} itself: the kernel had no entry`);
    }
    this.#macs.set(key, mac);
    return mac;
  }

  /** ARP or neighbour solicitation on our own, for a next hop the kernel has not resolved. */
  #solicit(family: Family, ifname: string, nextHop: string, srcMac: Uint8Array, src: Uint8Array): Uint8Array | null {
    const target = parseAddress(nextHop)!.bytes;
    const h = PcapHandle.openLive(ifname, { snaplen: 128, bufferBytes: 256 * 1024, immediate: true });
    try {
      h.setFilter(family === 4 ? "arp" : `icmp6 and ip6[40] == ${ICMP6_NEIGHBOUR_ADVERT}`);
      const len =
        family === 4
          ? writeArpRequest(this.#frame, srcMac, src, target)
          : writeNeighbourSolicitation(this.#frame, srcMac, src, target);
      for (let attempt = 0; attempt < NEIGHBOUR_ATTEMPTS; attempt++) {
        h.inject(this.#frame, len);
        const until = performance.now() + NEIGHBOUR_WAIT_MS;
        for (let left = NEIGHBOUR_WAIT_MS; left > 0; left = until - performance.now()) {
          if (!pollReadable(h.selectableFd, left)) continue;
          while (h.next() === 1) {
            const mac = this.#answer(family, h, target);
            if (mac) return mac;
          }
        }
      }
      return null;
    } finally {
      h.close();
    }
  }

  #answer(family: Family, h: PcapHandle, target: Uint8Array): Uint8Array | null {
    const p = this.#parsed;
    if (parseFrame(h.frame, h.caplen, h.datalink, p) !== PARSE_OK) return null;
    if (family === 4) {
      if (p.etherType !== ETHERTYPE_ARP || p.arpOp !== 2) return null;
      for (let i = 0; i < 4; i++) if (p.arpSenderIp[i] !== target[i]) return null;
      return h.frame.slice(p.arpSenderMacOffset, p.arpSenderMacOffset + 6);
    }
    if (p.outer.protocol !== IPPROTO_ICMPV6 || p.ndMacOffset < 0) return null;
    for (let i = 0; i < 16; i++) if (p.ndTarget[i] !== target[i]) return null;
    return h.frame.slice(p.ndMacOffset, p.ndMacOffset + 6);
  }

  close(): void {
    for (const { handle } of this.#handles.values()) handle.close();
    this.#handles.clear();
    for (const fd of this.#rawSockets.values()) closeFd(fd);
    this.#rawSockets.clear();
  }
}

export interface PcapNetworkOptions {
  /** Kernel ring of the capture handle: it absorbs bursts of answers while the thread sends. */
  captureBufferBytes: number;
  /** Send through raw IP sockets and let the kernel route (the spec's l3_raw_socket). */
  l3RawSocket: boolean;
  /** An eventfd that ends a wait() at once when signalled (the batch is aborted), or -1. */
  wakeFd: number;
  log?: (message: string) => void;
}

/**
 * Capture on the "any" device, so an answer counts whatever interface it returns on; sends on
 * the egress interface's own handle, or through a raw socket for local destinations and
 * l3_raw_socket.
 */
export class PcapNetwork implements ProbeNetwork {
  readonly #capture: PcapHandle;
  readonly #egress: EgressResolver;
  readonly #wakeFd: number;

  constructor(opts: PcapNetworkOptions) {
    this.#capture = PcapHandle.openLive("any", { snaplen: 256, bufferBytes: opts.captureBufferBytes, immediate: true });
    this.#egress = new EgressResolver(opts.l3RawSocket, opts.log);
    this.#wakeFd = opts.wakeFd;
  }

  get frame(): Uint8Array {
    return this.#capture.frame;
  }
  get caplen(): number {
    return this.#capture.caplen;
  }
  get datalink(): number {
    return this.#capture.datalink;
  }
  get tsSec(): number {
    return this.#capture.tsSec;
  }
  get tsNsec(): number {
    return this.#capture.tsNsec;
  }

  refresh(): void {
    this.#egress.refresh();
  }

  route(family: Family, dst: string, src: string | null): Egress {
    return this.#egress.resolve(family, dst, src);
  }

  send(route: Egress, frame: Uint8Array, len: number): number {
    return route.mode === "inject" ? route.handle!.inject(frame, len) : sendTo(route.fd, frame, len, route.sockaddr);
  }

  sendFailure(route: Egress, result: number, len: number): string {
    const via = route.mode === "inject" ? `on ${route.ifname}` : "through a raw socket";
    if (result >= 0) return `send ${via} took ${result} of ${len} bytes`;
    return `send ${via} failed: ${route.mode === "inject" ? route.handle!.lastError() : strerror(-result)}`;
  }

  setFilter(filter: string): void {
    this.#capture.setFilter(filter);
  }

  next(): boolean {
    return this.#capture.next() === 1;
  }

  captureDrops(): number {
    return this.#capture.stats().dropped;
  }

  wait(ms: number): void {
    pollReadable(this.#capture.selectableFd, ms, this.#wakeFd);
  }

  now(): number {
    return performance.now();
  }

  close(): void {
    this.#capture.close();
    this.#egress.close();
  }
}

/** An engine on the host's network: what a Worker, the probe command and the benchmarks run. */
export function openProbeEngine(opts: EngineOptions, log?: (message: string) => void): ProbeEngine {
  const network = new PcapNetwork({
    captureBufferBytes: opts.captureBufferBytes,
    l3RawSocket: opts.l3RawSocket,
    wakeFd: opts.wakeFd ?? -1,
    log,
  });
  return new ProbeEngine(network, { maxProbesPerSecond: opts.maxProbesPerSecond, identBase: opts.identBase, abortFlag: opts.abortFlag });
}
