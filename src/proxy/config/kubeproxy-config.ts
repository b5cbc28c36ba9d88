/**
 * KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) files as kubeadm
 * and distributions write them, YAML or JSON. Pure: text in, a checked object
 * out. The fields are those of v1alpha1 from 1.20 to today (later versions'
 * nftables.*, logging, detectLocal, localhostNodePorts... included); a field
 * that is in none of them is refused naming its path, as kube-proxy's strict
 * decoder does, and so is a value of the wrong type. null is "unset" for any
 * field (Go decodes it to the zero value), and so are the zero values
 * kubeadm writes (`syncPeriod: 0s`, `mode: ""`): kube-proxy defaults those.
 */
import { parseDocument } from 'yaml';
import { ProxyConfigError } from './errors.js';
import { formatGoDuration, parseGoDuration } from './go-duration.js';

export const KUBE_PROXY_API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
export const KUBE_PROXY_KIND = 'KubeProxyConfiguration';

type Leaf = 'string' | 'bool' | 'int' | 'number' | 'duration' | 'strings' | 'boolMap' | 'object';
interface Schema {
  [field: string]: Leaf | Schema;
}

const CLIENT_CONNECTION: Schema = { kubeconfig: 'string', acceptContentTypes: 'string', contentType: 'string', qps: 'number', burst: 'int' };
const LOGGING: Schema = {
  format: 'string',
  flushFrequency: 'duration',
  verbosity: 'int',
  vmodule: 'object',
  options: 'object',
};

/** Every v1alpha1 field weft knows of. */
const SCHEMA: Schema = {
  apiVersion: 'string',
  kind: 'string',
  featureGates: 'boolMap',
  clientConnection: CLIENT_CONNECTION,
  logging: LOGGING,
  hostnameOverride: 'string',
  bindAddress: 'string',
  healthzBindAddress: 'string',
  metricsBindAddress: 'string',
  bindAddressHardFail: 'bool',
  enableProfiling: 'bool',
  showHiddenMetricsForVersion: 'string',
  mode: 'string',
  iptables: { masqueradeBit: 'int', masqueradeAll: 'bool', localhostNodePorts: 'bool', snatNodeInternalIP: 'bool', syncPeriod: 'duration', minSyncPeriod: 'duration' },
  ipvs: {
    syncPeriod: 'duration',
    minSyncPeriod: 'duration',
    scheduler: 'string',
    excludeCIDRs: 'strings',
    strictARP: 'bool',
    tcpTimeout: 'duration',
    tcpFinTimeout: 'duration',
    udpTimeout: 'duration',
  },
  nftables: { masqueradeBit: 'int', masqueradeAll: 'bool', syncPeriod: 'duration', minSyncPeriod: 'duration' },
  winkernel: { networkName: 'string', sourceVip: 'string', enableDSR: 'bool', rootHnsEndpointName: 'string', forwardHealthCheckVip: 'bool' },
  detectLocalMode: 'string',
  detectLocal: { bridgeInterface: 'string', interfaceNamePrefix: 'string', clusterCIDRs: 'strings' },
  clusterCIDR: 'string',
  nodePortAddresses: 'strings',
  oomScoreAdj: 'int',
  conntrack: {
    maxPerCore: 'int',
    min: 'int',
    tcpEstablishedTimeout: 'duration',
    tcpCloseWaitTimeout: 'duration',
    tcpBeLiberal: 'bool',
    udpTimeout: 'duration',
    udpStreamTimeout: 'duration',
  },
  configSyncPeriod: 'duration',
  portRange: 'string',
  udpIdleTimeout: 'duration',
  windowsRunAsService: 'bool',
};

/** A checked KubeProxyConfiguration. Durations are milliseconds; unset (null) fields are absent. */
export interface KubeProxyConfiguration {
  apiVersion: string;
  kind: string;
  featureGates?: Record<string, boolean>;
  clientConnection?: { kubeconfig?: string; acceptContentTypes?: string; contentType?: string; qps?: number; burst?: number };
  logging?: { format?: string; flushFrequency?: number; verbosity?: number; vmodule?: unknown; options?: unknown };
  hostnameOverride?: string;
  bindAddress?: string;
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  bindAddressHardFail?: boolean;
  enableProfiling?: boolean;
  showHiddenMetricsForVersion?: string;
  mode?: string;
  iptables?: { masqueradeBit?: number; masqueradeAll?: boolean; localhostNodePorts?: boolean; snatNodeInternalIP?: boolean; syncPeriod?: number; minSyncPeriod?: number };
  ipvs?: {
    syncPeriod?: number;
    minSyncPeriod?: number;
    scheduler?: string;
    excludeCIDRs?: string[];
    strictARP?: boolean;
    tcpTimeout?: number;
    tcpFinTimeout?: number;
    udpTimeout?: number;
  };
  nftables?: { masqueradeBit?: number; masqueradeAll?: boolean; syncPeriod?: number; minSyncPeriod?: number };
  winkernel?: { networkName?: string; sourceVip?: string; enableDSR?: boolean; rootHnsEndpointName?: string; forwardHealthCheckVip?: boolean };
  detectLocalMode?: string;
  detectLocal?: { bridgeInterface?: string; interfaceNamePrefix?: string; clusterCIDRs?: string[] };
  clusterCIDR?: string;
  nodePortAddresses?: string[];
  oomScoreAdj?: number;
  conntrack?: {
    maxPerCore?: number;
    min?: number;
    tcpEstablishedTimeout?: number;
    tcpCloseWaitTimeout?: number;
    tcpBeLiberal?: boolean;
    udpTimeout?: number;
    udpStreamTimeout?: number;
  };
  configSyncPeriod?: number;
  portRange?: string;
  udpIdleTimeout?: number;
  windowsRunAsService?: boolean;
}

const typeName = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v === 'object' ? 'object' : typeof v);

function leaf(kind: Leaf, v: unknown, path: string): unknown {
  const bad = (want: string): never => {
    throw new ProxyConfigError(path, `must be ${want} (got ${typeName(v)} ${JSON.stringify(v)})`);
  };
  switch (kind) {
    case 'string':
      return typeof v === 'string' ? v : bad('a string');
    case 'bool':
      return typeof v === 'boolean' ? v : bad('true or false');
    case 'int':
      // int32 in Go
      return typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31 ? v : bad('a whole number (int32)');
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) ? v : bad('a number');
    case 'duration':
      // metav1.Duration decodes from a string only.
      return typeof v === 'string' ? parseGoDuration(v, path) : bad('a duration string like "30s"');
    case 'strings':
      if (!Array.isArray(v)) return bad('a list of strings');
      return v.map((x, i) => (typeof x === 'string' ? x : leaf('string', x, `${path}[${i}]`)));
    case 'boolMap': {
      if (typeName(v) !== 'object') return bad('a map of names to true/false');
      const out: Record<string, boolean> = {};
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = leaf('bool', x, `${path}.${k}`) as boolean;
      return out;
    }
    case 'object':
      return v;
  }
}

function walk(schema: Schema, obj: Record<string, unknown>, prefix: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    const s = schema[k];
    if (s === undefined) throw new ProxyConfigError(path, 'unknown field');
    if (v === null || v === undefined) continue;
    if (typeof s === 'string') {
      out[k] = leaf(s, v, path);
    } else {
      if (typeName(v) !== 'object') throw new ProxyConfigError(path, `must be an object (got ${typeName(v)} ${JSON.stringify(v)})`);
      out[k] = walk(s, v as Record<string, unknown>, path);
    }
  }
  return out;
}

/** Parses and checks a KubeProxyConfiguration; `file` names it in errors about the document itself. */
export function parseKubeProxyConfig(text: string, file = 'config'): KubeProxyConfiguration {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) throw new ProxyConfigError(file, `not YAML or JSON: ${doc.errors[0]!.message.split('\n')[0]}`);
  const obj: unknown = doc.toJS();
  if (typeName(obj) !== 'object') throw new ProxyConfigError(file, `must be a KubeProxyConfiguration object (got ${typeName(obj)})`);
  const o = obj as Record<string, unknown>;
  if (o.kind !== KUBE_PROXY_KIND) throw new ProxyConfigError('kind', `must be ${KUBE_PROXY_KIND} (got ${JSON.stringify(o.kind ?? null)})`);
  if (o.apiVersion !== KUBE_PROXY_API_VERSION) throw new ProxyConfigError('apiVersion', `must be ${KUBE_PROXY_API_VERSION} (got ${JSON.stringify(o.apiVersion ?? null)})`);
  return walk(SCHEMA, o, '') as unknown as KubeProxyConfiguration;
}

function encode(schema: Schema, obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const s = schema[k];
    if (v === undefined) continue;
    if (s === 'duration' && typeof v === 'number') out[k] = formatGoDuration(v);
    else if (s && typeof s === 'object' && typeName(v) === 'object') out[k] = encode(s, v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}

/** The file form again: durations as Go text ("30s"). What /configz and --write-config-to show. */
export function encodeKubeProxyConfig(cfg: KubeProxyConfiguration): Record<string, unknown> {
  return encode(SCHEMA, cfg as unknown as Record<string, unknown>);
}
