import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../core/errors.js';
import { writeFileAtomic } from '../store/subnet-env.js';

export interface InstallCniOptions {
  /** Where runtimes look for plugins. Default /opt/cni/bin. */
  binDir?: string;
  /** Where runtimes look for network configs. Default /etc/cni/net.d. */
  confDir?: string;
  /** Network (and conflist) name. Default "weft". */
  name?: string;
  /** Append Debian's portmap plugin to the chain. Default false. */
  withPortmap?: boolean;
  /** Where portmap lives when binDir lacks it (it is linked in). Default /usr/lib/cni (Debian). */
  portmapDir?: string;
  /** cniVersion of the conflist. Default 1.0.0 (the newest Debian's reference plugins and podman 4.3 speak). */
  cniVersion?: string;
  /** Extra options for the weft entry (bridge, subnetFile, mtu, ...). */
  weftConf?: Record<string, unknown>;
  /** Folder holding `weft` (the shim) and `weft-cni.cjs`. Default: this module's folder (dist/cni). */
  sourceDir?: string;
}

export function renderConflist(opts: InstallCniOptions = {}): string {
  // Runtimes pass runtimeConfig.ips / .mac only to plugins that declare the capability.
  const plugins: Record<string, unknown>[] = [{ type: 'weft', capabilities: { ips: true, mac: true }, ...(opts.weftConf ?? {}) }];
  if (opts.withPortmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
  return JSON.stringify({ cniVersion: opts.cniVersion ?? '1.0.0', name: opts.name ?? 'weft', plugins }, null, 2) + '\n';
}

/** Copies over a running binary safely: temp file then rename (no ETXTBSY, no half file). */
function installFile(src: string, dst: string, mode: number): void {
  const tmp = `${dst}.tmp-${process.pid}`;
  copyFileSync(src, tmp);
  chmodSync(tmp, mode);
  renameSync(tmp, dst);
}

/** Installs the plugin pair into binDir and the conflist into confDir; returns the paths written. */
export function installCni(opts: InstallCniOptions = {}): string[] {
  const binDir = opts.binDir ?? '/opt/cni/bin';
  const confDir = opts.confDir ?? '/etc/cni/net.d';
  const src = opts.sourceDir ?? fileURLToPath(new URL('.', import.meta.url));
  const shim = join(src, 'weft');
  const bundle = join(src, 'weft-cni.cjs');
  for (const f of [shim, bundle]) {
    if (!existsSync(f)) throw new InvalidArgumentError('sourceDir', `${f} is missing (run npm run build)`);
  }
  mkdirSync(binDir, { recursive: true, mode: 0o755 });
  mkdirSync(confDir, { recursive: true, mode: 0o755 });
  const written: string[] = [];
  // The shim finds the bundle as "<its own path>-cni.cjs".
  installFile(bundle, join(binDir, 'weft-cni.cjs'), 0o644);
  installFile(shim, join(binDir, 'weft'), 0o755);
  written.push(join(binDir, 'weft-cni.cjs'), join(binDir, 'weft'));
  // The native addon beside the bundle gives the standalone plugin flock(2) without util-linux flock(1).
  const addon = join(src, 'weft-cni.node');
  if (existsSync(addon)) {
    installFile(addon, join(binDir, 'weft-cni.node'), 0o644);
    written.push(join(binDir, 'weft-cni.node'));
  }
  if (opts.withPortmap && !existsSync(join(binDir, 'portmap'))) {
    const pm = join(opts.portmapDir ?? '/usr/lib/cni', 'portmap');
    if (!existsSync(pm)) throw new InvalidArgumentError('--with-portmap', `${pm} not found (apt-get install containernetworking-plugins)`);
    symlinkSync(pm, join(binDir, 'portmap'));
    written.push(join(binDir, 'portmap'));
  }
  const conf = join(confDir, `10-${opts.name ?? 'weft'}.conflist`);
  writeFileAtomic(conf, renderConflist(opts));
  written.push(conf);
  return written;
}
