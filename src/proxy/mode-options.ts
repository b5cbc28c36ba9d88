// The proxy modes and what building one needs, apart from the daemon, so that
// the mode factory does not import the daemon that imports it.
import type { Logger } from '../core/log.js';
import type { Sysctl } from '../kernel/sysctl.js';
import type { IptablesBackend, IptablesChainClient } from '../netfilter/iptables.js';
import type { NftClient } from '../netfilter/nft.js';

export const PROXY_MODES = ['iptables', 'nftables', 'ipvs'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

/** The part of weft-proxy's options a mode (and leftover removal) reads. */
export interface ModeOptions {
  /** ipvs scheduler for --proxy-mode ipvs. Default 'rr'. */
  ipvsScheduler?: string;
  /** ipvs.strictARP: ipvs mode sets arp_ignore=1 and arp_announce=2. Default false. */
  ipvsStrictARP?: boolean;
  /** Kernel parameters (tests inject a fake); default /proc/sys of o.netns. */
  sysctl?: Sysctl;
  /** This node's primary IP; `--nodeport-addresses primary` means it. */
  nodeIP?: string;
  /** Force the iptables backend instead of detecting it. */
  iptablesBackend?: IptablesBackend;
  /** Injected kernel clients (tests); default: real commands. */
  iptables?: IptablesChainClient;
  nft?: NftClient;
  /** Run inside this netns (tests): iptables and conntrack commands only. */
  netns?: string;
  log: Logger;
}
