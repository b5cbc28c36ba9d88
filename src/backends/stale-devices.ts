import type { Logger } from '../core/log.js';
import type { Link, Links } from '../kernel/links.js';

/** weft's VXLAN devices under the default prefix: `weft.<VNI>`. */
const WEFT_VXLAN = /^weft\.\d+$/;

/**
 * VXLAN devices named like weft's that the running backend does not use:
 * left by an earlier run with the vxlan backend, or with another VNI. They
 * still answer on the VXLAN port and keep their neighbour and fdb entries.
 * Only `weft.<n>` links of kind vxlan qualify (a custom device prefix
 * of an earlier run is not guessed). Pure.
 */
export function staleOverlayDevices(links: readonly Link[], keep: string | undefined): string[] {
  return links.filter((l) => l.kind === 'vxlan' && WEFT_VXLAN.test(l.name) && l.name !== keep).map((l) => l.name);
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
