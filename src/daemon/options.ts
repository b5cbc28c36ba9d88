import type { LogFormat, LogLevel } from '../core/log.js';

/** Everything weftd can be told; flag names follow flanneld where they mean the same. */
export interface WeftdOptions {
  /** Default ['http://127.0.0.1:2379']. */
  etcdEndpoints: string[];
  /** Default '/coreos.com/network'. */
  etcdPrefix: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
  /** Interface names or IPs, first match wins. Default: the default route's interface. */
  iface: string[];
  /** Regexes matched against interface names and IPs. */
  ifaceRegex: string[];
  /** Address peers use to reach us. Default: the interface's address. */
  publicIp?: string;
  /** Default '/run/flannel/subnet.env'. */
  subnetFile: string;
  /** Install masquerade rules for traffic leaving the Network. Default false. */
  ipMasq: boolean;
  /** Default '127.0.0.1'. */
  healthzIp: string;
  /** Default 9808; 0 disables the server. */
  healthzPort: number;
  /** Lease TTL in seconds. Default 86400 (flannel's 24 h). */
  subnetLeaseTtl: number;
  /** Default '/var/lib/weft'. */
  stateDir: string;
  /** Periodic reconcile of the data path. Default 10 s (flannel re-checks routes every 10 s). */
  reconcileIntervalMs: number;
  /** Socket on which weftd serves CNI requests from the `weft` shim; empty = off. */
  cniSocket?: string;
  /** vxlan: accept VXLAN UDP only from current peers' PublicIPs (nftables). Default true. */
  vxlanPeerFilter: boolean;
  logFormat: LogFormat;
  logLevel: LogLevel;
  /** flanneld --subnet-lease-renew-margin (minutes); parsed, renewal not yet driven by it. */
  subnetLeaseRenewMarginMinutes?: number;
  /** flanneld --iptables-forward-rules; parsed (weft installs them with --ip-masq). */
  iptablesForwardRules?: boolean;
  /** Kubernetes subnet manager (flanneld --kube-subnet-mgr and friends). */
  kubeSubnetMgr?: boolean;
  kubeApiUrl?: string;
  kubeconfigFile?: string;
  /** Default 'flannel.alpha.coreos.com'. */
  kubeAnnotationPrefix?: string;
  /** Default '/etc/kube-flannel/net-conf.json'. */
  netConfigPath?: string;
  /** Default true. */
  setNodeNetworkUnavailable?: boolean;
  /** Kubernetes mode: our Node's name (NODE_NAME), else looked up from the Pod POD_NAMESPACE/POD_NAME. */
  nodeName?: string;
  podName?: string;
  podNamespace?: string;
}

export const DEFAULT_OPTIONS: WeftdOptions = {
  etcdEndpoints: ['http://127.0.0.1:2379'],
  etcdPrefix: '/coreos.com/network',
  iface: [],
  ifaceRegex: [],
  subnetFile: '/run/flannel/subnet.env',
  ipMasq: false,
  healthzIp: '127.0.0.1',
  healthzPort: 9808,
  subnetLeaseTtl: 86400,
  stateDir: '/var/lib/weft',
  reconcileIntervalMs: 10_000,
  vxlanPeerFilter: true,
  logFormat: 'text',
  logLevel: 'info',
};
