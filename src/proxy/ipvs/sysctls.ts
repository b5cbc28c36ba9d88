import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Sysctl } from '../../kernel/sysctl.js';

/** What ipvs mode needs of the kernel's parameters, as kube-proxy's ipvs proxier sets them at start. */
export const IPVS_SYSCTLS = {
  /** Without it IPVS connections bypass conntrack, so the masquerade rules never see them. */
  conntrack: 'net.ipv4.vs.conntrack',
  /** Drop connections to a real server that was removed, instead of black-holing their packets. */
  expireNodestConn: 'net.ipv4.vs.expire_nodest_conn',
  /** Expire persistence templates of a quiesced (weight 0) server, so affinity moves on. */
  expireQuiescentTemplate: 'net.ipv4.vs.expire_quiescent_template',
  ipForward: 'net.ipv4.ip_forward',
  arpIgnore: 'net.ipv4.conf.all.arp_ignore',
  arpAnnounce: 'net.ipv4.conf.all.arp_announce',
  bridgeCallIptables: 'net.bridge.bridge-nf-call-iptables',
} as const;

export interface IpvsSysctlOptions {
  /** ipvs.strictARP: answer ARP only for addresses on the asking interface (MetalLB L2 needs it). */
  strictARP?: boolean;
}

/**
 * Sets the parameters ipvs mode depends on (only those not already right,
 * each logged with its new value): vs.conntrack, vs.expire_nodest_conn,
 * vs.expire_quiescent_template and ip_forward = 1; with strictARP
 * arp_ignore = 1 and arp_announce = 2. bridge-nf-call-iptables is only
 * checked: when it is missing or 0 (no br_netfilter), pod-to-Service traffic
 * on a bridge skips iptables, and a warning says so. A parameter that cannot
 * be set is an error (the mode would be silently broken), except the check.
 */
export async function ensureIpvsSysctls(sysctl: Sysctl, log: Logger, o: IpvsSysctlOptions = {}): Promise<Record<string, string>> {
  const want: Array<[string, string]> = [
    [IPVS_SYSCTLS.conntrack, '1'],
    [IPVS_SYSCTLS.expireNodestConn, '1'],
    [IPVS_SYSCTLS.expireQuiescentTemplate, '1'],
    [IPVS_SYSCTLS.ipForward, '1'],
  ];
  if (o.strictARP) want.push([IPVS_SYSCTLS.arpIgnore, '1'], [IPVS_SYSCTLS.arpAnnounce, '2']);
  const set: Record<string, string> = {};
  for (const [key, value] of want) {
    const have = await sysctl.get(key).catch(() => undefined);
    if (have === value) continue;
    await sysctl.set(key, value);
    set[key] = value;
    log.info({ sysctl: key, value, was: have ?? '(unreadable)' }, 'ipvs mode: set kernel parameter');
  }
  const bridge = await sysctl.get(IPVS_SYSCTLS.bridgeCallIptables).catch((err: unknown) => `missing (${errorMessage(err)})`);
  if (bridge !== '1') {
    log.warn({ sysctl: IPVS_SYSCTLS.bridgeCallIptables, value: bridge }, 'br_netfilter not loaded or bridge-nf-call-iptables off: traffic bridged between pods skips the proxy rules');
  }
  return set;
}
