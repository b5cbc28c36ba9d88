import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { KernelFeatureError } from '../../core/errors.js';
import { run } from '../../exec/run.js';

export interface IpvsKernelProbe {
  /** True when IP_VS is loaded (or built in). */
  ipvs(): Promise<boolean>;
  /** True when the kernel can make dummy links. */
  dummy(): Promise<boolean>;
}

const exists = (p: string) => access(p).then(() => true, () => false);

/**
 * The real probes: /proc/net/ip_vs (or /sys/module/ip_vs) for IP_VS; for
 * dummy links, creating one inside a throwaway network namespace (never in
 * the root namespace), removed right after.
 */
export const hostProbe: IpvsKernelProbe = {
  async ipvs() {
    return (await exists('/proc/net/ip_vs')) || (await exists('/sys/module/ip_vs'));
  },
  async dummy() {
    const ns = `weft-probe-${randomBytes(3).toString('hex')}`;
    const made = await run('ip', ['netns', 'add', ns], { allowFail: true });
    if (made.code !== 0) return false;
    try {
      return (await run('ip', ['-n', ns, 'link', 'add', 'weftprobe0', 'type', 'dummy'], { allowFail: true })).code === 0;
    } finally {
      await run('ip', ['netns', 'del', ns], { allowFail: true });
    }
  },
};

/** What to try, for the message the daemon exits with (and the ipvs e2e tests skip with). */
export function ipvsHint(missing: string[]): string {
  const mods = [...(missing.includes('IP_VS') ? ['ip_vs', 'ip_vs_rr'] : []), ...(missing.includes('dummy links') ? ['dummy'] : [])];
  const sched = missing.includes('IP_VS') ? ' (ip_vs_<name> for another --ipvs-scheduler)' : '';
  return `--proxy-mode ipvs needs it: try \`modprobe ${mods.join(' ')}\`${sched}, or use --proxy-mode nftables.`;
}

/** Throws KernelFeatureError naming what is missing and the modprobe to try. */
export async function checkIpvsKernel(probe: IpvsKernelProbe = hostProbe): Promise<void> {
  const missing: string[] = [];
  if (!(await probe.ipvs())) missing.push('IP_VS');
  if (!(await probe.dummy())) missing.push('dummy links');
  if (missing.length) throw new KernelFeatureError(missing.join(', '), ipvsHint(missing));
}
