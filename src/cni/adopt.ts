import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../core/errors.js';

/**
 * Taking over a host that runs the flannel CNI plugin. Its pods keep running on
 * flannel's bridge with their addresses reserved by host-local under
 * `<dataDir>/<network name>/`. weft must use the same network name, bridge and
 * data directory, or its IPAM hands out addresses of running pods and the host
 * holds the gateway on two bridges.
 */

/** kube-flannel's conflist network name, and the bridge plugin's default bridge (flannel's delegate sets none). */
export const FLANNEL_DEFAULT_NAME = 'cbr0';
export const FLANNEL_DEFAULT_BRIDGE = 'cni0';

/** The file an adopting install writes (it sorts after kube-flannel's 10-flannel.conflist). */
export const WEFT_CONFLIST = '10-weft.conflist';
/** Extensions libcni loads from a conf dir. */
const CONF_EXTS = ['.conflist', '.conf', '.json'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IFNAME_RE = /^[^/:\s]{1,15}$/;
// Plain absolute paths only: the value ends up in weft's conflist and its IPAM paths.
const PATH_RE = /^\/[A-Za-z0-9_./@%+=,-]*$/;

/** flannel's CNI config cannot be adopted as it is; `file` and `field` say where. */
export class FlannelConfError extends WeftError {
  override readonly code = 'ERR_FLANNEL_CONF';
  constructor(readonly file: string, readonly field: string, reason: string) {
    super(`${file}: ${field}: ${reason}`, { file, field });
  }
}

export interface FlannelAdoption {
  /** The conflist the values came from; undefined when kube-flannel's defaults were assumed. */
  file?: string;
  /** Network name: host-local's reservations live in `<dataDir>/<name>/`. */
  name: string;
  /** flannel's delegate bridge. */
  bridge: string;
  /** The flannel entry's `ipam.dataDir` (what its delegate's host-local gets), when set; else host-local's default, weft's too. */
  dataDir?: string;
  /** Delegate options weft honours with the same meaning, when flannel's conflist set them. */
  mtu?: number;
  hairpinMode?: boolean;
  isDefaultGateway?: boolean;
  ipMasq?: boolean;
  /** flannel's chain had portmap after it. */
  portmap: boolean;
  /** Read back from an earlier adopting install's conflist (flannel's is gone). */
  previous?: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The flannel entry of a parsed conf file (a .conflist's first plugin, or a single .conf), or undefined. */
function flannelEntry(doc: unknown): { entry: Obj; name: unknown; plugins: Obj[] } | undefined {
  if (!isObj(doc)) return undefined;
  if (Array.isArray(doc.plugins)) {
    const plugins = doc.plugins.filter(isObj);
    const first = plugins[0];
    return first?.type === 'flannel' ? { entry: first, name: doc.name, plugins } : undefined;
  }
  return doc.type === 'flannel' ? { entry: doc, name: doc.name, plugins: [doc] } : undefined;
}

/** Reads the values to adopt from one flannel entry, refusing what weft cannot take over faithfully. */
function adoptionOf(file: string, found: { entry: Obj; name: unknown; plugins: Obj[] }): FlannelAdoption {
  const bad = (field: string, reason: string) => new FlannelConfError(file, field, reason);
  const { entry, name } = found;
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw bad('name', `${JSON.stringify(name)} is not a network name weft accepts ([A-Za-z0-9][A-Za-z0-9_.-]*)`);
  const delegate = entry.delegate ?? {};
  if (!isObj(delegate)) throw bad('delegate', 'is not an object');
  if (delegate.type !== undefined && delegate.type !== 'bridge') {
    throw bad('delegate.type', `"${String(delegate.type)}": only flannel's bridge delegate can be adopted (weft is a bridge plugin)`);
  }
  const bridge = delegate.bridge ?? FLANNEL_DEFAULT_BRIDGE;
  if (typeof bridge !== 'string' || !IFNAME_RE.test(bridge)) throw bad('delegate.bridge', `${JSON.stringify(bridge)} is not an interface name`);
  const out: FlannelAdoption = { file, name, bridge, portmap: found.plugins.slice(1).some((p) => p.type === 'portmap') };
  // The flannel plugin builds the delegate's ipam from its own entry's `ipam`
  // (a delegate.ipam is overwritten), and its entry-level `dataDir` is its
  // own scratch directory, not host-local's.
  const ipam = entry.ipam;
  if (ipam !== undefined) {
    if (!isObj(ipam)) throw bad('ipam', 'is not an object');
    if (ipam.type !== undefined && ipam.type !== 'host-local') throw bad('ipam.type', `"${String(ipam.type)}": weft's IPAM is host-local's, another IPAM's reservations cannot be shared`);
    if (ipam.dataDir !== undefined) {
      if (typeof ipam.dataDir !== 'string' || !PATH_RE.test(ipam.dataDir)) throw bad('ipam.dataDir', `${JSON.stringify(ipam.dataDir)} is not a plain absolute path`);
      out.dataDir = ipam.dataDir;
    }
  }
  if (delegate.mtu !== undefined) {
    const m = delegate.mtu;
    if (typeof m !== 'number' || !Number.isInteger(m) || m < 68 || m > 65535) throw bad('delegate.mtu', `${JSON.stringify(m)} is not an MTU`);
    out.mtu = m;
  }
  for (const k of ['hairpinMode', 'isDefaultGateway', 'ipMasq'] as const) {
    const v = delegate[k];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw bad(`delegate.${k}`, `${JSON.stringify(v)} is not a boolean`);
    out[k] = v;
  }
  return out;
}

/**
 * The flannel plugin's config in `confDir`, as the runtime would pick it (first
 * file in name order, libcni's extensions), or undefined when there is none.
 * Files that are not JSON or not flannel's are skipped; a flannel entry weft
 * cannot adopt is an error (adopting it wrongly would duplicate addresses).
 */
export function findFlannelConf(confDir: string): FlannelAdoption | undefined {
  let names: string[];
  try {
    names = readdirSync(confDir).filter((n) => CONF_EXTS.some((e) => n.endsWith(e))).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  for (const n of names) {
    const file = join(confDir, n);
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      continue;
    }
    const found = flannelEntry(doc);
    if (found) return adoptionOf(file, found);
  }
  return undefined;
}

/**
 * An adoption made by an earlier install: `10-weft.conflist` in `confDir`
 * whose weft entry names a network or bridge other than weft's own. After
 * migration step 3 flannel's conflist is gone; a re-run of the installer
 * (an upgrade) must keep the adopted network, not fall back to `weft`/`weft0`
 * while pods still hold reservations under the adopted name.
 */
export function findPreviousAdoption(confDir: string): FlannelAdoption | undefined {
  const file = join(confDir, WEFT_CONFLIST);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  if (!isObj(doc) || !Array.isArray(doc.plugins)) return undefined;
  const plugins = doc.plugins.filter(isObj);
  const weft = plugins[0];
  if (weft?.type !== 'weft' || typeof weft.bridge !== 'string') return undefined;
  if (doc.name === 'weft' && weft.bridge === 'weft0') return undefined;
  const bad = (field: string, reason: string) => new FlannelConfError(file, field, reason);
  const name = doc.name;
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw bad('name', `${JSON.stringify(name)} is not a network name`);
  if (!IFNAME_RE.test(weft.bridge)) throw bad('bridge', `${JSON.stringify(weft.bridge)} is not an interface name`);
  const out: FlannelAdoption = { file, name, bridge: weft.bridge, portmap: plugins.slice(1).some((p) => p.type === 'portmap'), previous: true };
  if (weft.dataDir !== undefined) {
    if (typeof weft.dataDir !== 'string' || !PATH_RE.test(weft.dataDir)) throw bad('dataDir', `${JSON.stringify(weft.dataDir)} is not a plain absolute path`);
    out.dataDir = weft.dataDir;
  }
  if (weft.mtu !== undefined) {
    if (typeof weft.mtu !== 'number' || !Number.isInteger(weft.mtu)) throw bad('mtu', `${JSON.stringify(weft.mtu)} is not an MTU`);
    out.mtu = weft.mtu;
  }
  for (const k of ['hairpinMode', 'isDefaultGateway', 'ipMasq'] as const) {
    const v = weft[k];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw bad(k, `${JSON.stringify(v)} is not a boolean`);
    out[k] = v;
  }
  return out;
}

/** kube-flannel's values, for `--adopt-flannel` on a host whose flannel conflist is already gone. */
export function defaultFlannelAdoption(): FlannelAdoption {
  return { name: FLANNEL_DEFAULT_NAME, bridge: FLANNEL_DEFAULT_BRIDGE, portmap: false };
}

/** The weft plugin options that make it use flannel's bridge and reservations. */
export function adoptedWeftConf(a: FlannelAdoption): Record<string, unknown> {
  const conf: Record<string, unknown> = { bridge: a.bridge };
  if (a.dataDir !== undefined) conf.dataDir = a.dataDir;
  if (a.mtu !== undefined) conf.mtu = a.mtu;
  if (a.hairpinMode !== undefined) conf.hairpinMode = a.hairpinMode;
  if (a.isDefaultGateway !== undefined) conf.isDefaultGateway = a.isDefaultGateway;
  if (a.ipMasq !== undefined) conf.ipMasq = a.ipMasq;
  return conf;
}
