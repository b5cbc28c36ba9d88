import type { Logger } from '../../core/log.js';
import type { Sysctl } from '../../kernel/sysctl.js';

/**
 * Pod traffic crosses the host as forwarded packets for both host-gw and
 * vxlan, so IPv4 forwarding must be on. flannel leaves this to the runtime;
 * a fresh host (or a namespace lab host) often has it off, and the symptom
 * (pods reach the peer host but not its pods) is slow to diagnose.
 */
export async function ensureIpForward(sysctl: Sysctl, log: Logger): Promise<boolean> {
  const key = 'net.ipv4.ip_forward';
  const now = await sysctl.get(key).catch(() => '0');
  if (now === '1') return false;
  await sysctl.set(key, '1');
  log.info({ sysctl: key, from: now, to: '1' }, 'enabled IPv4 forwarding');
  return true;
}
