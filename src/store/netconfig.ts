/**
 * The network config at `<prefix>/config`, parsed with flannel's semantics
 * (FACTS.md §1): case-insensitive field names, SubnetLen/SubnetMin/SubnetMax
 * defaults, at least four subnets, Backend defaulting to udp. Every refusal is
 * a ConfigError naming the field, so `weftctl config set` and weftd say the
 * same thing about the same bad input.
 */
import { ConfigError, InvalidArgumentError } from '../core/errors.js';
import {
  containsNet,
  formatCidr,
  formatIPv4,
  maskOf,
  netSize,
  parseCidr,
  parseIPv4,
  type IPv4Net,
} from '../core/ip.js';
import type { BackendConfig, NetworkConfig } from './types.js';

/** Backend types weft implements. */
export const BACKEND_TYPES = ['host-gw', 'vxlan', 'udp'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

/** flannel's SubnetLen ceiling: a /30 still holds a bridge and a tunnel address. */
const MAX_SUBNET_LEN = 30;
/** Without SubnetLen, a network smaller than this cannot be split into four. */
const MIN_DEFAULT_PREFIX = 28;

/**
 * Case-insensitive view of a JSON object, as Go's encoding/json matches struct
 * fields. Two keys that differ only in case are refused: which one wins in Go
 * depends on order, and a config that means two things is a mistake.
 */
class Fields {
  private readonly byLower = new Map<string, { key: string; value: unknown }>();
  constructor(
    readonly obj: Record<string, unknown>,
    private readonly path: string,
  ) {
    for (const [key, value] of Object.entries(obj)) {
      const lower = key.toLowerCase();
      const prev = this.byLower.get(lower);
      if (prev) throw new ConfigError(this.name(key), `given twice ("${prev.key}" and "${key}")`);
      this.byLower.set(lower, { key, value });
    }
  }
  name(field: string): string {
    return this.path ? `${this.path}.${field}` : field;
  }
  get(field: string): unknown {
    return this.byLower.get(field.toLowerCase())?.value;
  }
  has(field: string): boolean {
    const v = this.get(field);
    return v !== undefined && v !== null;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(f: Fields, field: string): string | undefined {
  const v = f.get(field);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(f.name(field), `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function int(f: Fields, field: string, min: number, max: number): number | undefined {
  const v = f.get(field);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new ConfigError(f.name(field), `must be an integer, got ${JSON.stringify(v)}`);
  }
  if (v < min || v > max) throw new ConfigError(f.name(field), `${v} is out of range ${min}..${max}`);
  return v;
}

function bool(f: Fields, field: string): boolean | undefined {
  const v = f.get(field);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(f.name(field), `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** Re-throws an ip.ts InvalidArgumentError as a ConfigError for `field`. */
function asConfig<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError && !(err instanceof ConfigError)) {
      throw new ConfigError(field, err.message.replace(/^[^:]*: /, ''));
    }
    throw err;
  }
}

/**
 * SubnetMin / SubnetMax: flannel stores a bare address ("10.244.10.0"); a CIDR
 * whose prefix equals SubnetLen is accepted too, since that is how people think
 * of a subnet.
 */
function parseSubnetBound(f: Fields, field: string, subnetLen: number): IPv4Net | undefined {
  const text = str(f, field);
  if (text === undefined) return undefined;
  const name = f.name(field);
  let ip: number;
  if (text.includes('/')) {
    const net = asConfig(name, () => parseCidr(text, name, true));
    if (net.prefixLen !== subnetLen) {
      throw new ConfigError(name, `"${text}" has prefix /${net.prefixLen} but SubnetLen is ${subnetLen}`);
    }
    ip = net.ip;
  } else {
    ip = asConfig(name, () => parseIPv4(text, name));
  }
  if (((ip & maskOf(subnetLen)) >>> 0) !== ip) {
    throw new ConfigError(name, `${text} is not on a /${subnetLen} boundary (SubnetLen)`);
  }
  return { ip, prefixLen: subnetLen };
}

function parseBackend(f: Fields): BackendConfig {
  const value = f.get('Backend');
  if (value === undefined || value === null) return { type: 'udp', raw: { Type: 'udp' } };
  if (!isPlainObject(value)) throw new ConfigError(f.name('Backend'), 'must be an object like {"Type":"vxlan"}');
  const b = new Fields(value, f.name('Backend'));
  const type = str(b, 'Type');
  if (type === undefined) throw new ConfigError(b.name('Type'), `is required (one of ${BACKEND_TYPES.join(', ')})`);
  if (!(BACKEND_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError(b.name('Type'), `unknown backend "${type}" (weft knows ${BACKEND_TYPES.join(', ')})`);
  }
  // Type-check the fields weft's backends read; others pass through as flannel does.
  if (type === 'vxlan') {
    int(b, 'VNI', 0, 2 ** 24 - 1);
    int(b, 'Port', 0, 65535);
    int(b, 'MTU', 0, 65535);
    bool(b, 'GBP');
    bool(b, 'Learning');
    bool(b, 'DirectRouting');
  } else if (type === 'udp') {
    int(b, 'Port', 0, 65535);
  }
  return { type, raw: { ...value } };
}

/**
 * Parses and validates a network config (JSON text or an object).
 * @throws ConfigError naming the field (`Network`, `SubnetLen`, `Backend.Type`, ...)
 */
export function parseNetworkConfig(input: string | object): NetworkConfig {
  let obj: unknown = input;
  if (typeof input === 'string') {
    try {
      obj = JSON.parse(input);
    } catch (err) {
      throw new ConfigError('config', `not valid JSON: ${(err as Error).message}`);
    }
  }
  if (!isPlainObject(obj)) throw new ConfigError('config', 'must be a JSON object');
  const f = new Fields(obj, '');

  if (bool(f, 'EnableIPv6') === true) {
    throw new ConfigError('EnableIPv6', 'IPv6 is not supported yet (weft runs IPv4 networks only)');
  }
  if (bool(f, 'EnableIPv4') === false) {
    throw new ConfigError('EnableIPv4', 'must be true: IPv6-only networks are not supported yet');
  }

  const networkText = str(f, 'Network');
  if (networkText === undefined) throw new ConfigError('Network', 'is required (an IPv4 CIDR such as 10.244.0.0/16)');
  const network = asConfig('Network', () => parseCidr(networkText, 'Network', true));

  let subnetLen = int(f, 'SubnetLen', 0, 32);
  if (subnetLen === undefined || subnetLen === 0) {
    // flannel: a /24 per host when the network has room for four of them, else quarters.
    if (network.prefixLen > MIN_DEFAULT_PREFIX) {
      throw new ConfigError('Network', `${networkText} is too small: the smallest useful network is /${MIN_DEFAULT_PREFIX}`);
    }
    subnetLen = network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
  } else {
    if (subnetLen > MAX_SUBNET_LEN) {
      throw new ConfigError('SubnetLen', `${subnetLen} is too long: at most /${MAX_SUBNET_LEN}`);
    }
    if (subnetLen < network.prefixLen + 2) {
      throw new ConfigError(
        'SubnetLen',
        `/${subnetLen} leaves fewer than 4 subnets in ${networkText} (needs at least /${network.prefixLen + 2})`,
      );
    }
  }

  const subnetSize = 2 ** (32 - subnetLen);
  // flannel skips the first subnet: its .0 address is the network's own address.
  const subnetMin = parseSubnetBound(f, 'SubnetMin', subnetLen) ?? {
    ip: (network.ip + subnetSize) >>> 0,
    prefixLen: subnetLen,
  };
  const subnetMax = parseSubnetBound(f, 'SubnetMax', subnetLen) ?? {
    ip: (network.ip + netSize(network) - subnetSize) >>> 0,
    prefixLen: subnetLen,
  };
  if (!containsNet(network, subnetMin)) {
    throw new ConfigError('SubnetMin', `${formatIPv4(subnetMin.ip)} is not inside Network ${networkText}`);
  }
  if (!containsNet(network, subnetMax)) {
    throw new ConfigError('SubnetMax', `${formatIPv4(subnetMax.ip)} is not inside Network ${networkText}`);
  }
  if (subnetMin.ip > subnetMax.ip) {
    throw new ConfigError('SubnetMin', `${formatIPv4(subnetMin.ip)} is above SubnetMax ${formatIPv4(subnetMax.ip)}`);
  }

  return { network, subnetLen, subnetMin, subnetMax, backend: parseBackend(f), raw: { ...obj } };
}

/** Input of `buildNetworkConfig` (the flags of `weftctl config set`). */
export interface BuildNetworkConfigOptions {
  /** Network CIDR, e.g. "10.244.0.0/16". Required. */
  network: string;
  /** Backend type. Default "udp" (flannel's default). */
  backend?: string;
  /** Default: flannel's rule (24, or prefix+2 for small networks). */
  subnetLen?: number;
  /** First subnet handed out, address or CIDR. Default: the 2nd subnet. */
  subnetMin?: string;
  /** Last subnet handed out, address or CIDR. Default: the last subnet. */
  subnetMax?: string;
  /** Extra backend fields with flannel's names, e.g. {VNI: 1, Port: 8472, DirectRouting: true}. */
  backendFields?: Record<string, unknown>;
}

/**
 * Builds flannel's config JSON from flags and validates it. SubnetMin/Max are
 * written as bare addresses, the only form flanneld itself can read.
 */
export function buildNetworkConfig(opts: BuildNetworkConfigOptions): NetworkConfig {
  const raw: Record<string, unknown> = { Network: opts.network };
  if (opts.subnetLen !== undefined) raw.SubnetLen = opts.subnetLen;
  const bare = (v: string) => v.split('/')[0]!;
  // Validate the CIDR forms (prefix must equal SubnetLen) before dropping the prefix.
  parseNetworkConfig({
    ...raw,
    Backend: { Type: opts.backend ?? 'udp', ...(opts.backendFields ?? {}) },
    ...(opts.subnetMin !== undefined ? { SubnetMin: opts.subnetMin } : {}),
    ...(opts.subnetMax !== undefined ? { SubnetMax: opts.subnetMax } : {}),
  });
  if (opts.subnetMin !== undefined) raw.SubnetMin = bare(opts.subnetMin);
  if (opts.subnetMax !== undefined) raw.SubnetMax = bare(opts.subnetMax);
  raw.Backend = { Type: opts.backend ?? 'udp', ...(opts.backendFields ?? {}) };
  return parseNetworkConfig(raw);
}

/** The JSON written to `<prefix>/config`. */
export function serializeNetworkConfig(config: NetworkConfig): string {
  return JSON.stringify(config.raw);
}

/** Every subnet a lease may use, SubnetMin..SubnetMax in order. */
export function* subnetsOf(config: Pick<NetworkConfig, 'subnetMin' | 'subnetMax' | 'subnetLen'>): Generator<IPv4Net> {
  const step = 2 ** (32 - config.subnetLen);
  for (let ip = config.subnetMin.ip; ip <= config.subnetMax.ip; ip += step) {
    yield { ip: ip >>> 0, prefixLen: config.subnetLen };
  }
}

/** Number of subnets between SubnetMin and SubnetMax. */
export function subnetCount(config: Pick<NetworkConfig, 'subnetMin' | 'subnetMax' | 'subnetLen'>): number {
  return (config.subnetMax.ip - config.subnetMin.ip) / 2 ** (32 - config.subnetLen) + 1;
}

/**
 * flannel's compatibility test for an existing lease: inside Network with the
 * configured SubnetLen (SubnetMin/Max only govern new allocations).
 */
export function isSubnetCompatible(config: NetworkConfig, subnet: IPv4Net): boolean {
  return subnet.prefixLen === config.subnetLen && containsNet(config.network, subnet);
}

/** A backend field looked up case-insensitively (backends read `VNI`, `Port`, ...). */
export function backendField(backend: BackendConfig, name: string): unknown {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(backend.raw)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/** One-line summary for logs and `config set` output. */
export function describeNetworkConfig(c: NetworkConfig): string {
  return `network ${formatCidr(c.network)}, /${c.subnetLen} subnets ${formatIPv4(c.subnetMin.ip)}..${formatIPv4(
    c.subnetMax.ip,
  )} (${subnetCount(c)}), backend ${c.backend.type}`;
}
