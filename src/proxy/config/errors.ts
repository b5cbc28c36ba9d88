import { UsageError } from '../../cli/env.js';

/**
 * A KubeProxyConfiguration (or a flag mapped onto one) that cannot be used.
 * `field` is the file's field path (`iptables.masqueradeBit`) or the flag.
 * A usage error: the CLI exits 2, as kube-proxy does for a bad config.
 */
export class ProxyConfigError extends UsageError {
  override readonly code = 'ERR_PROXY_CONFIG';
}
