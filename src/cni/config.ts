import { isIPv4 } from '../core/ip.js';
import { DecodeError, IncompatibleVersionError, InvalidNetworkConfigError } from './errors.js';
import { parseIpamConf, type WeftIpamConf } from './ipam/conf.js';
import { isSupportedVersion, type CniDns, type CniVersion } from './spec.js';

/** The weft network configuration (stdin). Unknown fields are passed through untouched. */
export interface WeftNetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** subnet.env written by weftd. Default /run/flannel/subnet.env. */
  subnetFile: string;
  /** Host bridge. Default weft0. */
  bridge: string;
  /** Link MTU for the bridge and veths. Default FLANNEL_MTU from subnet.env. */
  mtu?: number;
  /** Let a container reach itself through a service (bridge hairpin). Default true. */
  hairpinMode: boolean;
  /** Per-container masquerade chain. Default: the opposite of FLANNEL_IPMASQ (as flannel's CNI plugin: weftd masquerades when that is true). */
  ipMasq?: boolean;
  /** Default route via the bridge address. Default true. */
  isDefaultGateway: boolean;
  /** host-local's state directory (one subfolder per network name); also read from `ipam.dataDir`. Default /var/lib/cni/networks. */
  dataDir: string;
  /** The `ipam` section (host-local's fields that agree with the node's subnet). */
  ipam?: WeftIpamConf;
  /** iptables flavour for ipMasq. Default: detected (whichever holds more rules). */
  iptablesBackend?: 'legacy' | 'nft';
  dns: CniDns;
  /** Runtime-supplied capabilities: "ips" (one IPv4 address) and "mac" (the container interface's MAC). */
  runtimeConfig: { ips?: string[]; mac?: string };
  /** CNI 1.1 GC: attachments to keep. */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
  prevResult?: unknown;
  /** The whole decoded object (pass-through fields). */
  raw: Record<string, unknown>;
}

export const CONF_DEFAULTS = {
  subnetFile: '/run/flannel/subnet.env',
  bridge: 'weft0',
  hairpinMode: true,
  isDefaultGateway: true,
  dataDir: '/var/lib/cni/networks',
} as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Decodes stdin (code 6 on bad JSON). */
export function decodeConf(stdin: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(stdin);
  } catch (err) {
    throw new DecodeError(`network configuration is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DecodeError('network configuration is not a JSON object');
  return v as Record<string, unknown>;
}

/** Checks cniVersion alone (code 1), so every later error can be shaped in the caller's version. */
export function confVersion(raw: Record<string, unknown>): CniVersion {
  const v = raw.cniVersion;
  if (v === undefined || v === '') throw new IncompatibleVersionError('cniVersion is missing');
  if (!isSupportedVersion(v)) throw new IncompatibleVersionError(`cniVersion ${JSON.stringify(v)} is not supported`, { supported: '0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0' });
  return v;
}

function optBool(raw: Record<string, unknown>, k: string): boolean | undefined {
  const v = raw[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new InvalidNetworkConfigError(k, `${JSON.stringify(v)} is not a boolean`);
  return v;
}

function optString(raw: Record<string, unknown>, k: string): string | undefined {
  const v = raw[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw new InvalidNetworkConfigError(k, `${JSON.stringify(v)} is not a non-empty string`);
  return v;
}

/** Validates a decoded configuration (code 7 naming the field). */
export function parseNetConf(raw: Record<string, unknown>): WeftNetConf {
  const cniVersion = confVersion(raw);
  const name = optString(raw, 'name');
  if (!name) throw new InvalidNetworkConfigError('name', 'missing');
  if (!NAME_RE.test(name)) throw new InvalidNetworkConfigError('name', `"${name}" must start alphanumeric and hold only [A-Za-z0-9_.-]`);
  const type = optString(raw, 'type');
  if (!type) throw new InvalidNetworkConfigError('type', 'missing');

  const bridge = optString(raw, 'bridge') ?? CONF_DEFAULTS.bridge;
  if (bridge.length > 15 || /[/:\s#"']/.test(bridge)) throw new InvalidNetworkConfigError('bridge', `"${bridge}" is not a valid interface name`);

  let mtu: number | undefined;
  if (raw.mtu !== undefined && raw.mtu !== null) {
    const m = raw.mtu;
    if (typeof m !== 'number' || !Number.isInteger(m) || m < 68 || m > 65535) throw new InvalidNetworkConfigError('mtu', `${JSON.stringify(m)} is not an MTU (68-65535)`);
    mtu = m;
  }

  const backend = raw.iptablesBackend;
  if (backend !== undefined && backend !== 'legacy' && backend !== 'nft') throw new InvalidNetworkConfigError('iptablesBackend', `${JSON.stringify(backend)} is not "legacy" or "nft"`);

  const dns = raw.dns === undefined || raw.dns === null ? {} : raw.dns;
  if (typeof dns !== 'object' || Array.isArray(dns)) throw new InvalidNetworkConfigError('dns', 'not an object');

  const rc = raw.runtimeConfig;
  const runtimeConfig: WeftNetConf['runtimeConfig'] = {};
  if (rc !== undefined && rc !== null) {
    if (typeof rc !== 'object' || Array.isArray(rc)) throw new InvalidNetworkConfigError('runtimeConfig', 'not an object');
    const ips = (rc as Record<string, unknown>).ips;
    if (ips !== undefined) {
      if (!Array.isArray(ips) || !ips.every((x) => typeof x === 'string')) throw new InvalidNetworkConfigError('runtimeConfig.ips', 'not a list of strings');
      // The "ips" capability may carry a prefix ("10.244.1.9/24"); only the address matters.
      const addrs = ips.map((x: string) => x.split('/')[0]!);
      for (const a of addrs) if (!isIPv4(a)) throw new InvalidNetworkConfigError('runtimeConfig.ips', `"${a}" is not an IPv4 address`);
      // One IPv4 range, one address: a second one would be dropped silently.
      if (addrs.length > 1) throw new InvalidNetworkConfigError('runtimeConfig.ips', `${JSON.stringify(ips)} holds ${addrs.length} IPv4 addresses; weft assigns one IPv4 address per interface`);
      runtimeConfig.ips = addrs;
    }
    const mac = (rc as Record<string, unknown>).mac;
    if (mac !== undefined && mac !== null && mac !== '') runtimeConfig.mac = parseMac(mac);
  }

  const ipam = parseIpamConf(raw.ipam);
  const topDataDir = optString(raw, 'dataDir');
  if (topDataDir && ipam?.dataDir && topDataDir !== ipam.dataDir) {
    throw new InvalidNetworkConfigError('ipam.dataDir', `"${ipam.dataDir}" differs from dataDir "${topDataDir}"; give one`);
  }

  return {
    cniVersion,
    name,
    type,
    subnetFile: optString(raw, 'subnetFile') ?? CONF_DEFAULTS.subnetFile,
    bridge,
    mtu,
    hairpinMode: optBool(raw, 'hairpinMode') ?? CONF_DEFAULTS.hairpinMode,
    ipMasq: optBool(raw, 'ipMasq'),
    isDefaultGateway: optBool(raw, 'isDefaultGateway') ?? CONF_DEFAULTS.isDefaultGateway,
    dataDir: topDataDir ?? ipam?.dataDir ?? CONF_DEFAULTS.dataDir,
    ipam,
    iptablesBackend: backend as WeftNetConf['iptablesBackend'],
    dns: dns as CniDns,
    runtimeConfig,
    validAttachments: parseAttachments(raw),
    prevResult: raw.prevResult,
    raw,
  };
}

/**
 * The "mac" capability: six hex pairs (':' or '-'), unicast and not all
 * zeros (the kernel refuses those for a veth), normalised to lower case with ':'.
 */
export function parseMac(v: unknown): string {
  if (typeof v !== 'string' || !/^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$/.test(v)) throw new InvalidNetworkConfigError('runtimeConfig.mac', `${JSON.stringify(v)} is not a MAC address (xx:xx:xx:xx:xx:xx)`);
  const mac = v.toLowerCase().replace(/-/g, ':');
  if (parseInt(mac.slice(0, 2), 16) & 1) throw new InvalidNetworkConfigError('runtimeConfig.mac', `${mac} is a multicast address`);
  if (mac === '00:00:00:00:00:00') throw new InvalidNetworkConfigError('runtimeConfig.mac', 'the all-zero address is not usable');
  return mac;
}

/** `cni.dev/valid-attachments` (1.1.0) or the older `cni.dev/attachments`. */
function parseAttachments(raw: Record<string, unknown>): WeftNetConf['validAttachments'] {
  const v = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new InvalidNetworkConfigError('cni.dev/valid-attachments', 'not a list');
  return v.map((a, i) => {
    const o = a as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.containerID !== 'string' || typeof o.ifname !== 'string') {
      throw new InvalidNetworkConfigError(`cni.dev/valid-attachments[${i}]`, 'needs string containerID and ifname');
    }
    return { containerID: o.containerID, ifname: o.ifname };
  });
}
