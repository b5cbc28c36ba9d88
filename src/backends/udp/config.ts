import { ConfigError, InvalidArgumentError } from '../../core/errors.js';
import type { BackendConfig } from '../../store/types.js';

/** flannel's udp port. */
export const DEFAULT_UDP_PORT = 8285;
/** IPv4 header (20) + UDP header (8): what encapsulation costs per packet. */
export const UDP_ENCAP_OVERHEAD = 28;
export const DEFAULT_TUN_NAME = 'weft-udp';

/** The udp section of the network config, flannel semantics. */
export interface UdpNetworkConfig {
  /** `Backend.Port`. Default 8285. */
  port: number;
}

/** Field names in the config JSON are case-insensitive (as in flannel). */
function field(raw: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(raw).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : raw[key];
}

export function parseUdpConfig(backend: BackendConfig): UdpNetworkConfig {
  const port = field(backend.raw, 'Port');
  if (port === undefined || port === null || port === 0) return { port: DEFAULT_UDP_PORT };
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError('Backend.Port', `must be an integer 1-65535, got ${JSON.stringify(port)}`);
  }
  return { port };
}

/** Options weftd (or a test) may pass beyond the network config. */
export interface UdpBackendOptions {
  /** TUN device name (at most 15 bytes). Default "weft-udp". */
  tunName?: string;
  /**
   * Let the kernel hand us TSO super-packets (IFF_VNET_HDR + TUNSETOFFLOAD)
   * and split them in C. Default true.
   */
  offload?: boolean;
  /** Send a split TSO packet as one UDP_SEGMENT train (kernel segments). Default true. */
  udpGso?: boolean;
  /**
   * Join consecutive received TCP segments of a flow into one TSO write to
   * the TUN (needs offload). Default true.
   */
  gro?: boolean;
  /** Receive trains of datagrams in one read (UDP_GRO socket option). Default true. */
  udpGro?: boolean;
  /** Packets moved per wake-up of a data path thread. Default 64. */
  batch?: number;
  /** Socket send/receive buffer in bytes. Default 4 MiB. */
  sockBuf?: number;
  /** TUN queue length (flannel's 500 overflows under load). Default 1000. */
  txQueueLen?: number;
}

export interface ResolvedUdpOptions {
  tunName: string;
  offload: boolean;
  udpGso: boolean;
  gro: boolean;
  udpGro: boolean;
  batch: number;
  sockBuf: number;
  txQueueLen: number;
}

export function resolveUdpOptions(o: UdpBackendOptions = {}): ResolvedUdpOptions {
  const tunName = o.tunName ?? DEFAULT_TUN_NAME;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tunName)) {
    throw new InvalidArgumentError('tunName', `"${tunName}" is not a valid interface name (1-15 of [A-Za-z0-9_.-])`);
  }
  const batch = o.batch ?? 64;
  if (!Number.isInteger(batch) || batch < 1 || batch > 256) {
    throw new InvalidArgumentError('batch', `must be an integer 1-256, got ${batch}`);
  }
  const sockBuf = o.sockBuf ?? 4 * 1024 * 1024;
  if (!Number.isInteger(sockBuf) || sockBuf < 0) throw new InvalidArgumentError('sockBuf', `must be >= 0, got ${sockBuf}`);
  const txQueueLen = o.txQueueLen ?? 1000;
  if (!Number.isInteger(txQueueLen) || txQueueLen < 0) {
    throw new InvalidArgumentError('txQueueLen', `must be >= 0, got ${txQueueLen}`);
  }
  return { tunName, offload: o.offload ?? true, udpGso: o.udpGso ?? true, gro: o.gro ?? true, udpGro: o.udpGro ?? true, batch, sockBuf, txQueueLen };
}

/** TUN MTU = underlay MTU - 28 (flannel's FLANNEL_MTU for udp). */
export function udpMtu(ifaceMtu: number): number {
  const mtu = ifaceMtu - UDP_ENCAP_OVERHEAD;
  if (mtu < 68) throw new InvalidArgumentError('iface.mtu', `${ifaceMtu} leaves no room for udp encapsulation`);
  return mtu;
}
