import { CniError, DecodeError, IncompatibleVersionError } from './errors.js';

/** Spec versions weft speaks, oldest first. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** -1, 0, 1 for semver-ish "a.b.c" strings (all CNI versions are). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export function atLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}

/** Version-independent result (the 1.1.0 model); `formatResult` shapes it per version. */
export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  /** 1.1.0 only. */
  mtu?: number;
}

export interface CniIpConfig {
  /** CIDR form: "10.244.1.5/24". */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns: CniDns;
}

/** The result object as printed for `version` (adds cniVersion, drops or adds per-version fields). */
export function formatResult(result: CniResult, version: CniVersion): Record<string, unknown> {
  const v1 = atLeast(version, '1.0.0');
  const v11 = atLeast(version, '1.1.0');
  return {
    cniVersion: version,
    interfaces: result.interfaces.map((i) => {
      const o: Record<string, unknown> = { name: i.name };
      if (i.mac !== undefined) o.mac = i.mac;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      if (v11 && i.mtu !== undefined) o.mtu = i.mtu;
      return o;
    }),
    // 0.3.x/0.4.0 require "version" on each IP; 1.0.0 removed it.
    ips: result.ips.map((ip) => ({ ...(v1 ? {} : { version: '4' }), ...ip })),
    routes: result.routes.map((r) => ({ ...r })),
    dns: { ...result.dns },
  };
}

/** The error object printed on stdout with a non-zero exit. */
export function formatError(err: CniError, version: string): Record<string, unknown> {
  const details = Object.keys(err.details).length ? JSON.stringify(err.details) : undefined;
  return {
    cniVersion: version,
    code: err.cniCode,
    msg: err.message,
    ...(details ? { details } : {}),
  };
}

export function formatVersionResult(version: string): Record<string, unknown> {
  return { cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/**
 * Reads a prevResult of any supported version back into the 1.1.0 model.
 * Tolerant: unknown fields are ignored, a missing or empty prevResult gives undefined.
 */
export function parsePrevResult(raw: unknown): CniResult | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new DecodeError('prevResult: not an object');
  const r = raw as Record<string, unknown>;
  if (r.cniVersion !== undefined && !isSupportedVersion(r.cniVersion)) {
    throw new IncompatibleVersionError(`prevResult: cniVersion ${String(r.cniVersion)} is not supported`);
  }
  const arr = (k: string): Record<string, unknown>[] => {
    const a = r[k];
    if (a === undefined || a === null) return [];
    if (!Array.isArray(a)) throw new DecodeError(`prevResult.${k}: not a list`);
    return a.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null);
  };
  const str = (o: Record<string, unknown>, k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  const interfaces = arr('interfaces').map((i) => ({
    name: str(i, 'name') ?? '',
    mac: str(i, 'mac'),
    sandbox: str(i, 'sandbox'),
  }));
  const ips = arr('ips').map((i) => ({
    address: str(i, 'address') ?? '',
    gateway: str(i, 'gateway'),
    interface: typeof i.interface === 'number' ? i.interface : undefined,
  }));
  const routes = arr('routes').map((x) => ({ dst: str(x, 'dst') ?? '', gw: str(x, 'gw') }));
  if (interfaces.length === 0 && ips.length === 0 && routes.length === 0) return undefined;
  const dns = typeof r.dns === 'object' && r.dns !== null ? (r.dns as CniDns) : {};
  return { interfaces, ips, routes, dns };
}
