import { WeftError } from '../../core/errors.js';
import { ADDON_RELATIVE_PATH, loadAddon, NativeAddonMissingError } from '../../native/addon.js';

export { ADDON_RELATIVE_PATH, NativeAddonMissingError, packageRoot } from '../../native/addon.js';

/** One row of the peer table as the addon takes it (addresses host-order u32). */
export interface NativePeer {
  net: number;
  prefixLen: number;
  ip: number;
  port: number;
}

export interface NativeOpenOptions {
  /** Named netns (under /var/run/netns) to create the TUN and socket in. */
  netns?: string;
  ifname: string;
  mtu: number;
  port: number;
  bindIp?: number;
  tunAddr?: number;
  txqlen?: number;
  sockbuf?: number;
  batch?: number;
  offload?: number;
  udpGso?: number;
  gro?: number;
  udpGro?: number;
}

export interface NativeStats {
  counters: Record<string, number>;
  rxDrops: Record<string, number>;
  txDrops: Record<string, number>;
}

/** Opaque handle to a running native data path. */
export type NativeHandle = { readonly __weftUdpHandle: unique symbol };

/** The addon's surface (native/src/addon.c). */
export interface WeftNative {
  open(opts: NativeOpenOptions): NativeHandle;
  setPeers(h: NativeHandle, peers: NativePeer[], ownNet: number, ownPrefixLen: number): void;
  stats(h: NativeHandle): NativeStats;
  info(h: NativeHandle): { ifname: string; offload: number; batch: number; tunDead: boolean };
  close(h: NativeHandle): void;
  checkIpv4(pkt: Buffer): string;
  classify(peers: NativePeer[], ownNet: number, ownPrefixLen: number, srcIp: number, pkt: Buffer): string;
  route(peers: NativePeer[], dst: number): NativePeer | null;
  ttlDecrement(pkt: Buffer): boolean;
  icmpNetUnreachable(pkt: Buffer, src: number): Buffer | null;
  finishCsum(pkt: Buffer, csumStart: number, csumOffset: number): boolean;
  tsoSegment(pkt: Buffer, gsoSize: number): Buffer[] | null;
  /** What the receive thread would write to the TUN for these packets, in order. */
  groCoalesce(pkts: Buffer[]): { gsoSize: number; segments: number; packet: Buffer }[];
  /** Drop reasons, in check order (without "ok"). */
  readonly verdicts: string[];
  readonly counterNames: string[];
  readonly version: string;
}

/** The native data path could not be opened (TUN, socket, netns). */
export class UdpDatapathError extends WeftError {
  override readonly code = 'ERR_UDP_DATAPATH';
}

/** Loads the addon once; throws NativeAddonMissingError with the reason when it cannot. */
export function loadNative(): WeftNative {
  const mod = loadAddon();
  if (typeof mod.open !== 'function') {
    throw new NativeAddonMissingError(`native addon at ${ADDON_RELATIVE_PATH} has no udp data path (stale build?)`, { path: ADDON_RELATIVE_PATH });
  }
  return mod as unknown as WeftNative;
}

/** The addon, or undefined with the reason (for tests that skip). */
export function tryLoadNative(): { native?: WeftNative; reason?: string } {
  try {
    return { native: loadNative() };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}
