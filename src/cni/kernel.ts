import type { IptablesClient } from '../netfilter/iptables.js';

/** The host bridge as read from the kernel. */
export interface BridgeState {
  name: string;
  /** False when a link of that name exists but is not a bridge. */
  isBridge: boolean;
  mac: string;
  up: boolean;
  mtu: number;
  /** IPv4 addresses in CIDR form ("10.244.1.1/24"). */
  addrs: string[];
}

/** One interface inside a container netns (CHECK). */
export interface ContainerLinkState {
  name: string;
  mac: string;
  mtu: number;
  up: boolean;
  addrs: string[];
  /** Routes of the main table: dst in CIDR form ("0.0.0.0/0" for default), gw when present. */
  routes: Array<{ dst: string; gw?: string; dev?: string }>;
}

/** A port of the bridge (GC, CHECK). */
export interface BridgePort {
  name: string;
  alias?: string;
}

/**
 * Everything the plugin does to the kernel. Host-side work runs in the host
 * netns (the plugin's own, or a named one in tests); container-side work runs
 * in CNI_NETNS. Batches are `ip -batch` lines so one ADD costs few spawns.
 */
export interface CniKernel {
  readBridge(name: string): Promise<BridgeState | undefined>;
  /** Runs `ip` batch lines in the host netns; stops at the first failing line. */
  hostBatch(lines: string[]): Promise<void>;
  /** Runs `ip` batch lines inside the container netns (a path). */
  containerBatch(netnsPath: string, lines: string[]): Promise<void>;
  /** Deletes a host link; false when it did not exist. */
  deleteHostLink(name: string): Promise<boolean>;
  netnsExists(netnsPath: string): boolean;
  /** net.ipv4.ip_forward = 1 in the host netns. */
  ensureIpForward(): Promise<void>;
  readContainerLink(netnsPath: string, ifname: string): Promise<ContainerLinkState | undefined>;
  listBridgePorts(bridge: string): Promise<BridgePort[]>;
  /** iptables in the host netns (created once, backend detected unless given). */
  iptables(backend?: 'legacy' | 'nft'): Promise<IptablesClient>;
}
