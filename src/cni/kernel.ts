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
 * A container netns opened and checked for one call (CniKernel.openNetns).
 * Commands name it by `ref`, never by the runtime's path: a path is text
 * from outside (a space or newline in it once broke or injected ip -batch
 * lines), `ref` is a plain word naming the very namespace that was checked.
 */
export interface NetnsRef {
  /** CNI_NETNS as the runtime gave it (results, logs). */
  path: string;
  /** What commands use: `/run/netns/<plain name>` or `/proc/<pid>/fd/<n>` of the open namespace. */
  ref: string;
  /** Drops the open namespace (idempotent). */
  close(): void;
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
  /** Runs `ip` batch lines inside the container netns (a NetnsRef's `ref`). */
  containerBatch(netnsRef: string, lines: string[]): Promise<void>;
  /** Deletes a host link; false when it did not exist. */
  deleteHostLink(name: string): Promise<boolean>;
  /**
   * Opens CNI_NETNS for this call: UnknownContainerError (3) when it does not
   * exist; InvalidEnvError (4) when it is not a network namespace or is the
   * plugin's own (host) namespace, which must never get a container's routes.
   */
  openNetns(netnsPath: string): NetnsRef;
  /** net.ipv4.ip_forward = 1 in the host netns. */
  ensureIpForward(): Promise<void>;
  readContainerLink(netnsRef: string, ifname: string): Promise<ContainerLinkState | undefined>;
  listBridgePorts(bridge: string): Promise<BridgePort[]>;
  /** iptables in the host netns (created once, backend detected unless given). */
  iptables(backend?: 'legacy' | 'nft'): Promise<IptablesClient>;
}
