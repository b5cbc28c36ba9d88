import type { Logger } from '../core/log.js';
import type { Link, Links } from '../kernel/links.js';

/** The default device prefix; a VXLAN device is `<prefix>.<VNI>`. */
const DEFAULT_PREFIX = 'weft';
const DEVICE_NAME = /^(.+)\.\d+$/;

/**
 * VXLAN devices named like weft's that the running backend does not use:
 * left by an earlier run with the vxlan backend, or with another VNI. They
 * still answer on the VXLAN port and keep their neighbour and fdb entries.
 * Only `<prefix>.<n>` links of kind vxlan qualify, for the default prefix
 * and the running device's own (a custom prefix of an earlier run that is
 * not the running one cannot be told from someone else's devices). Pure.
 */
export function staleOverlayDevices(links: readonly Link[], keep: string | undefined): string[] {
  const prefixes = new Set([DEFAULT_PREFIX]);
  const own = keep && DEVICE_NAME.exec(keep);
  if (own) prefixes.add(own[1]!);
  return links
    .filter((l) => {
      if (l.kind !== 'vxlan' || l.name === keep) return false;
      const m = DEVICE_NAME.exec(l.name);
      return !!m && prefixes.has(m[1]!);
    })
    .map((l) => l.name);
}

/** Deletes the stale devices (their routes go with them); returns their names. */
export async function removeStaleOverlayDevices(links: Links, keep: string | undefined, log: Logger): Promise<string[]> {
  const stale = staleOverlayDevices(await links.list(), keep);
  for (const dev of stale) {
    await links.delete(dev);
    log.info({ dev, keep: keep ?? null }, 'removed a vxlan device left by an earlier run (backend or VNI changed)');
  }
  return stale;
}
