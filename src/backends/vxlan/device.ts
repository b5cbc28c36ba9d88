import { formatIPv4, type IPv4Net } from '../../core/ip.js';
import type { Logger } from '../../core/log.js';
import type { Kernel } from '../../kernel/kernel.js';
import type { Link, VxlanSpec } from '../../kernel/links.js';

/** Why an existing link cannot serve as the wanted vxlan device, or undefined if it can. */
export function deviceMismatch(link: Link, want: VxlanSpec): string | undefined {
  if (link.kind !== 'vxlan' || !link.vxlan) return `kind ${link.kind ?? 'none'} is not vxlan`;
  const have = link.vxlan;
  if (have.vni !== want.vni) return `VNI ${have.vni} != ${want.vni}`;
  if (have.port !== want.port) return `port ${have.port} != ${want.port}`;
  if ((have.local ?? '') !== (want.local ?? '')) return `local ${have.local} != ${want.local}`;
  if ((have.dev ?? '') !== (want.dev ?? '')) return `underlay ${have.dev} != ${want.dev}`;
  if (have.learning !== want.learning) return `learning ${have.learning} != ${want.learning}`;
  if (have.gbp !== want.gbp) return `gbp ${have.gbp} != ${want.gbp}`;
  if (want.mtu !== undefined && link.mtu !== want.mtu) return `MTU ${link.mtu} != ${want.mtu}`;
  return undefined;
}

/**
 * Makes the vxlan device exist with exactly `want`'s attributes and MAC, up.
 * A device with other VNI/port/MTU/underlay settings is deleted and recreated
 * (the kernel cannot change those in place); a different MAC is just set.
 * Returns whether anything changed.
 */
export async function ensureDevice(kernel: Kernel, want: VxlanSpec, log: Logger): Promise<{ link: Link; changed: boolean }> {
  let link = await kernel.links.get(want.name);
  let changed = false;
  if (link) {
    const why = deviceMismatch(link, want);
    if (why) {
      log.info({ dev: want.name, why }, 'recreating vxlan device');
      await kernel.links.delete(want.name);
      link = undefined;
    }
  }
  if (!link) {
    link = await kernel.links.addVxlan(want);
    log.info({ dev: want.name, vni: want.vni, port: want.port, mac: want.mac, mtu: want.mtu }, 'created vxlan device');
    changed = true;
  }
  if (want.mac && link.mac !== want.mac) {
    await kernel.links.set(want.name, { mac: want.mac });
    changed = true;
  }
  if (!link.up) {
    await kernel.links.set(want.name, { up: true });
    changed = true;
  }
  return { link: (await kernel.links.get(want.name)) ?? link, changed };
}

/** `<subnet>.0/32` on the device, and no other IPv4 address (the lease may have moved). */
export async function ensureDeviceAddress(kernel: Kernel, dev: string, own: IPv4Net, log: Logger): Promise<boolean> {
  const ip = formatIPv4(own.ip);
  const addrs = await kernel.addrs.list(dev);
  let changed = false;
  for (const a of addrs) {
    if (a.ip !== ip || a.prefixLen !== 32) {
      await kernel.addrs.delete(a);
      log.info({ dev, addr: `${a.ip}/${a.prefixLen}` }, 'removed stale address from vxlan device');
      changed = true;
    }
  }
  if (!addrs.some((a) => a.ip === ip && a.prefixLen === 32)) {
    await kernel.addrs.add({ dev, ip, prefixLen: 32 });
    changed = true;
  }
  return changed;
}
