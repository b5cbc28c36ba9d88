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
  ipvsScheduler?: string;
  ipvsStrictARP?: boolean;
  sysctl?: Sysctl;
  nodeIP?: string;
  iptablesBackend?: IptablesBackend;
  iptables?: IptablesChainClient;
  nft?: NftClient;
  netns?: string;
  log: Logger;
}
