import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../core/errors.js';
import { writeFileAtomic } from '../store/subnet-env.js';
import { adoptedWeftConf, defaultFlannelAdoption, findFlannelConf, findPreviousAdoption, WEFT_CONFLIST, type FlannelAdoption } from './adopt.js';

/** `auto`: adopt flannel's network when its conflist is found; `yes`: always (kube-flannel's defaults without one); `no`: never. */
export type AdoptFlannelMode = 'auto' | 'yes' | 'no';

export interface InstallCniOptions {
  /** Where runtimes look for plugins. Default /opt/cni/bin. */
  binDir?: string;
  /** Where runtimes look for network configs. Default /etc/cni/net.d. */
  confDir?: string;
  /** Network (and conflist) name. Default "weft". */
  name?: string;
  /** Append Debian's portmap plugin to the chain. Default false. */
  withPortmap?: boolean;
  /** Link portmap into binDir when it lacks it. Default true; false when adopting flannel's chain (its portmap is the runtime's). */
  linkPortmap?: boolean;
  /** Where portmap lives when binDir lacks it (it is linked in). Default /usr/lib/cni (Debian). */
  portmapDir?: string;
  /** cniVersion of the conflist. Default 1.0.0 (the newest Debian's reference plugins and podman 4.3 speak). */
  cniVersion?: string;
  /** Extra options for the weft entry (bridge, subnetFile, mtu, ...). */
  weftConf?: Record<string, unknown>;
  /** Folder holding `weft` (the shim) and `weft-cni.cjs`. Default: this module's folder (dist/cni). */
  sourceDir?: string;
  /**
   * Take over the flannel CNI plugin's network name, bridge and host-local data
   * directory (migration: its pods keep their reservations). Default auto.
   */
  adoptFlannel?: AdoptFlannelMode;
  /** Where flannel's conflist is looked for. Default confDir (the installer stages into another dir). */
  flannelConfDir?: string;
  /** The conflist's file name. Default `10-<name>.conflist`; `10-weft.conflist` when flannel's network is adopted. */
  fileName?: string;
}

export interface ResolvedInstall {
  /** Options with the adopted values filled in (adoptFlannel: no). */
  options: InstallCniOptions;
  /** What was adopted, if anything. */
  adoption?: FlannelAdoption;
}

/**
 * Decides the network name and bridge. An explicit name or bridge that differs
 * from flannel's while adopting is refused: that combination is exactly the
 * one that hands out addresses of running pods.
 */
export function resolveInstall(opts: InstallCniOptions = {}): ResolvedInstall {
  const mode = opts.adoptFlannel ?? 'auto';
  if (mode === 'no') return { options: { ...opts, adoptFlannel: 'no' } };
  const dir = opts.flannelConfDir ?? opts.confDir ?? '/etc/cni/net.d';
  // flannel's conflist, else what an earlier install adopted (flannel's file already moved away).
  const found = findFlannelConf(dir) ?? findPreviousAdoption(dir);
  if (!found && mode === 'auto') return { options: { ...opts, adoptFlannel: 'no' } };
  const adoption = found ?? defaultFlannelAdoption();
  const from = adoption.file ?? "kube-flannel's defaults";
  if (opts.name !== undefined && opts.name !== adoption.name) {
    throw new InvalidArgumentError('--name', `"${opts.name}" differs from flannel's network "${adoption.name}" (${from}); new pods would get addresses of running ones. Drop --name, or give --no-adopt-flannel on a host without flannel pods`);
  }
  const bridge = opts.weftConf?.bridge;
  if (bridge !== undefined && bridge !== adoption.bridge) {
    throw new InvalidArgumentError('--bridge', `"${String(bridge)}" differs from flannel's bridge "${adoption.bridge}" (${from}); the gateway would sit on two bridges. Drop --bridge, or give --no-adopt-flannel`);
  }
  const dataDir = opts.weftConf?.dataDir;
  if (dataDir !== undefined && adoption.dataDir !== undefined && dataDir !== adoption.dataDir) {
    throw new InvalidArgumentError('dataDir', `"${String(dataDir)}" differs from flannel's ipam.dataDir "${adoption.dataDir}" (${from})`);
  }
  return {
    adoption,
    options: {
      ...opts,
      adoptFlannel: 'no',
      name: adoption.name,
      fileName: opts.fileName ?? WEFT_CONFLIST,
      // flannel's chain ran the runtime's own portmap: keep it in the chain, as it is.
      ...(adoption.portmap && !opts.withPortmap ? { withPortmap: true, linkPortmap: false } : {}),
      weftConf: { ...(opts.weftConf ?? {}), ...adoptedWeftConf(adoption) },
    },
  };
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
export function installCni(options: InstallCniOptions = {}): string[] {
  const opts = resolveInstall(options).options;
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
  if (opts.withPortmap && opts.linkPortmap !== false && !existsSync(join(binDir, 'portmap'))) {
    const pm = join(opts.portmapDir ?? '/usr/lib/cni', 'portmap');
    if (!existsSync(pm)) throw new InvalidArgumentError('--with-portmap', `${pm} not found (apt-get install containernetworking-plugins)`);
    symlinkSync(pm, join(binDir, 'portmap'));
    written.push(join(binDir, 'portmap'));
  }
  const conf = join(confDir, opts.fileName ?? `10-${opts.name ?? 'weft'}.conflist`);
  writeFileAtomic(conf, renderConflist(opts));
  written.push(conf);
  return written;
}
