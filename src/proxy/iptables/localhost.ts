import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Sysctl } from '../../kernel/sysctl.js';
import { localhostNodePortsOn, type IptablesProxyConfig } from './service-rules.js';

export const ROUTE_LOCALNET = 'net.ipv4.conf.all.route_localnet';

/**
 * Localhost node ports (iptables mode, as kube-proxy's): a connection from
 * the node to 127.0.0.1:<nodePort> is DNATed to a pod, which the kernel only
 * routes off the loopback device with route_localnet on. Set only when the
 * feature is on and the node port addresses include loopback; never turned
 * off again (another component may rely on it). Returns what was done.
 */
export async function setupLocalhostNodePorts(sysctl: Sysctl, cfg: IptablesProxyConfig, log: Logger): Promise<'set' | 'already' | 'off' | 'failed'> {
  if (!localhostNodePortsOn(cfg)) {
    log.info({ localhostNodePorts: cfg.localhostNodePorts !== false, nodePortAddresses: cfg.nodePortAddresses ?? [] }, `localhost node ports off: ${ROUTE_LOCALNET} left as it is`);
    return 'off';
  }
  try {
    if ((await sysctl.get(ROUTE_LOCALNET)) === '1') {
      log.info({ sysctl: ROUTE_LOCALNET, value: '1' }, 'localhost node ports on (route_localnet was already 1)');
      return 'already';
    }
    await sysctl.set(ROUTE_LOCALNET, '1');
    log.info({ sysctl: ROUTE_LOCALNET, value: '1' }, 'localhost node ports on: set route_localnet');
    return 'set';
  } catch (err) {
    // kube-proxy refuses to start here; weft keeps every other node port working and says why this one will not.
    log.warn({ sysctl: ROUTE_LOCALNET, err: errorMessage(err) }, 'cannot set route_localnet: 127.0.0.1:<nodePort> will not answer');
    return 'failed';
  }
}
