/**
 * weft-proxy's settings from three layers, highest first: the command line
 * (and WEFT_PROXY_* variables, which stand for flags), the
 * KubeProxyConfiguration file (--config), weft's defaults. kube-proxy 1.20
 * ignores most flags once --config is given; weft lets flags override the
 * file, as kube-proxy documents for its newer releases and as operators
 * expect. Pure: no I/O, no clock.
 */
import type { LogFormat, LogLevel } from '../../core/log.js';
import { ProxyConfigError } from './errors.js';
import { encodeKubeProxyConfig, KUBE_PROXY_API_VERSION, KUBE_PROXY_KIND, type KubeProxyConfiguration } from './kubeproxy-config.js';

export const SETTINGS_PROXY_MODES = ['iptables', 'nftables', 'ipvs'] as const;
export type SettingsProxyMode = (typeof SETTINGS_PROXY_MODES)[number];

/** The values weft-proxy runs with. */
export interface ProxySettings {
  mode: SettingsProxyMode;
  hostnameOverride?: string;
  nodeIP?: string;
  clusterCIDR?: string;
  masqueradeAll: boolean;
  masqueradeBit: number;
  nodePortAddresses: string[];
  /** iptables mode: answer 127.0.0.1:<nodePort> from the node (route_localnet), as kube-proxy. */
  localhostNodePorts: boolean;
  /** ipvs mode: arp_ignore=1 / arp_announce=2 (ipvs.strictARP). */
  ipvsStrictARP: boolean;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  healthzBindAddress: string;
  metricsBindAddress: string;
  ipvsScheduler: string;
  kubeconfig?: string;
  master?: string;
  featureGates: Record<string, boolean>;
  /** klog's -v; mapped to the log level when --log-level is not given. */
  verbosity?: number;
  logFormat: LogFormat;
  logLevel: LogLevel;
  oomScoreAdj?: number;
  bindAddressHardFail: boolean;
  enableProfiling: boolean;
}

/**
 * weft's defaults. They differ from kube-proxy's where weft shares a host
 * with a kube-proxy or runs on a laptop: mark bit 13 (kube-proxy 14),
 * healthz on 127.0.0.1 (kube-proxy 0.0.0.0), a full resync hourly with
 * partial syncs in between (kube-proxy 1.20: a full rewrite every 30 s).
 */
export const DEFAULT_SETTINGS: ProxySettings = {
  mode: 'iptables',
  masqueradeAll: false,
  masqueradeBit: 13,
  nodePortAddresses: [],
  localhostNodePorts: true,
  ipvsStrictARP: false,
  syncPeriodMs: 3_600_000,
  minSyncPeriodMs: 1000,
  healthzBindAddress: '127.0.0.1:10256',
  metricsBindAddress: '127.0.0.1:10249',
  ipvsScheduler: 'rr',
  featureGates: {},
  logFormat: 'text',
  logLevel: 'info',
  bindAddressHardFail: false,
  enableProfiling: false,
};

/** A flag layer: the settings flags gave, plus mode-specific sync periods (--ipvs-sync-period). */
export type FlagSettings = Partial<ProxySettings> & {
  ipvsSyncPeriodMs?: number;
  ipvsMinSyncPeriodMs?: number;
  /** Deprecated kube-proxy --healthz-port / --metrics-port (0 = off). */
  healthzPort?: number;
  metricsPort?: number;
};

export interface ResolvedSettings {
  settings: ProxySettings;
  /** What was accepted but has no effect in weft, one line each (logged as warnings). */
  warnings: string[];
  /** /healthz turns 503 once a queued change has waited this long: 2 x syncPeriod, at most 60 s. */
  healthzTimeoutMs: number;
}

/** klog verbosity -> weft's levels: 0-3 info (kube-proxy logs its routine lines at 2-3), 4 and above debug. */
export function levelOfVerbosity(v: number): LogLevel {
  return v >= 4 ? 'debug' : 'info';
}

/** "host:port", or a bare IP that gets `port`; "" stays "" (off). */
export function withPort(addr: string, port: number, field: string): string {
  if (addr === '') return '';
  if (/^\[.*\]:\d+$/.test(addr) || /^[^:]*:\d+$/.test(addr)) return addr;
  if (/^[0-9.]+$/.test(addr)) return `${addr}:${port}`;
  if (addr.includes(':') && !addr.startsWith('[')) return `[${addr}]:${port}`; // a bare IPv6 address
  throw new ProxyConfigError(field, `"${addr}" is not an IP or IP:port`);
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** The node name kube-proxy derives from hostnameOverride: trimmed and lower-cased. */
function nodeName(text: string, field: string): string {
  const n = text.trim().toLowerCase();
  if (!n) throw new ProxyConfigError(field, 'an empty hostname override is invalid');
  return n;
}

/** What the file sets, as settings, for the mode in effect; unset and zero values are left out. */
function fileLayer(c: KubeProxyConfiguration, mode: SettingsProxyMode, warnings: string[]): FlagSettings {
  const out: FlagSettings = {};
  const warn = (field: string, why: string) => warnings.push(`${field}: ${why}`);
  if (c.hostnameOverride) out.hostnameOverride = nodeName(c.hostnameOverride, 'hostnameOverride');
  if (c.bindAddress && !WILDCARD.has(c.bindAddress)) out.nodeIP = c.bindAddress;
  if (c.clusterCIDR) out.clusterCIDR = c.clusterCIDR;
  if (c.healthzBindAddress) out.healthzBindAddress = withPort(c.healthzBindAddress, 10256, 'healthzBindAddress');
  if (c.metricsBindAddress) out.metricsBindAddress = withPort(c.metricsBindAddress, 10249, 'metricsBindAddress');
  if (c.nodePortAddresses?.length) out.nodePortAddresses = c.nodePortAddresses;
  if (c.featureGates) out.featureGates = c.featureGates;
  if (c.clientConnection?.kubeconfig) out.kubeconfig = c.clientConnection.kubeconfig;
  if (c.oomScoreAdj !== undefined) out.oomScoreAdj = c.oomScoreAdj;
  if (c.bindAddressHardFail) out.bindAddressHardFail = true;
  if (c.enableProfiling) out.enableProfiling = true;
  if (c.logging?.verbosity !== undefined) out.verbosity = c.logging.verbosity;
  if (c.logging?.format) {
    if (c.logging.format !== 'text' && c.logging.format !== 'json') throw new ProxyConfigError('logging.format', `"${c.logging.format}" is not text or json`);
    out.logFormat = c.logging.format;
  }
  // Sync and masquerade settings come from the section of the mode in effect, as in kube-proxy.
  const it = c.iptables ?? {};
  const nft = c.nftables ?? {};
  const bit = mode === 'nftables' ? (nft.masqueradeBit ?? it.masqueradeBit) : it.masqueradeBit;
  if (bit !== undefined) out.masqueradeBit = bit;
  const all = mode === 'nftables' ? (nft.masqueradeAll ?? false) || (it.masqueradeAll ?? false) : it.masqueradeAll;
  if (all) out.masqueradeAll = true;
  const sec = mode === 'ipvs' ? (c.ipvs ?? {}) : mode === 'nftables' && (nft.syncPeriod || nft.minSyncPeriod) ? nft : it;
  if (sec.syncPeriod) out.syncPeriodMs = sec.syncPeriod;
  if (sec.minSyncPeriod) out.minSyncPeriodMs = sec.minSyncPeriod;
  if (c.ipvs?.scheduler) out.ipvsScheduler = c.ipvs.scheduler;

  // Accepted, no equivalent in weft: warn only for values that are set.
  const cc = c.clientConnection ?? {};
  if (cc.acceptContentTypes || cc.contentType) warn('clientConnection.contentType', "ignored: weft's API client speaks JSON");
  if (cc.qps || cc.burst) warn('clientConnection.qps', 'ignored: weft does not rate-limit its API client');
  if (c.showHiddenMetricsForVersion) warn('showHiddenMetricsForVersion', 'ignored: weft has no hidden metrics');
  if (c.enableProfiling) warn('enableProfiling', 'ignored: weft serves no /debug/pprof');
  if (c.portRange || c.udpIdleTimeout) warn(c.portRange ? 'portRange' : 'udpIdleTimeout', 'ignored: userspace proxy mode only');
  if (c.configSyncPeriod) warn('configSyncPeriod', 'ignored: weft keeps watching and relists on errors');
  if (c.detectLocalMode && c.detectLocalMode !== 'ClusterCIDR') warn('detectLocalMode', `"${c.detectLocalMode}" ignored: weft detects local traffic by clusterCIDR`);
  if (c.detectLocal && Object.values(c.detectLocal).some((v) => (Array.isArray(v) ? v.length : v))) warn('detectLocal', 'ignored: weft detects local traffic by clusterCIDR');
  if (it.localhostNodePorts !== undefined) out.localhostNodePorts = it.localhostNodePorts;
  if (c.ipvs?.strictARP !== undefined) out.ipvsStrictARP = c.ipvs.strictARP;
  if (it.snatNodeInternalIP) warn('iptables.snatNodeInternalIP', 'ignored');
  const ipvs = c.ipvs ?? {};
  if (ipvs.excludeCIDRs?.length || ipvs.tcpTimeout || ipvs.tcpFinTimeout || ipvs.udpTimeout) warn('ipvs', 'excludeCIDRs and the ipvs timeouts are ignored');
  const ct = c.conntrack ?? {};
  if (Object.values(ct).some((v) => v !== undefined && v !== false)) warn('conntrack', 'ignored: weft leaves the conntrack sysctls (nf_conntrack_max, TCP/UDP timeouts) to the host');
  if (c.winkernel && Object.values(c.winkernel).some(Boolean)) warn('winkernel', 'ignored: Windows only');
  if (c.windowsRunAsService) warn('windowsRunAsService', 'ignored: Windows only');
  if (c.logging?.flushFrequency || c.logging?.vmodule || c.logging?.options) warn('logging', 'only format and verbosity are applied');
  return out;
}

function modeOf(text: string | undefined, field: string): SettingsProxyMode | undefined {
  if (!text) return undefined;
  if ((SETTINGS_PROXY_MODES as readonly string[]).includes(text)) return text as SettingsProxyMode;
  throw new ProxyConfigError(field, `"${text}" is not a proxy mode weft has (${SETTINGS_PROXY_MODES.join(', ')})`);
}

/** Merges defaults <- file <- flags and derives what depends on the result. */
export function resolveSettings(flags: FlagSettings, file?: KubeProxyConfiguration): ResolvedSettings {
  const warnings: string[] = [];
  const mode = flags.mode ?? modeOf(file?.mode, 'mode') ?? DEFAULT_SETTINGS.mode;
  const fromFile = file ? fileLayer(file, mode, warnings) : {};
  const { ipvsSyncPeriodMs, ipvsMinSyncPeriodMs, healthzPort, metricsPort, ...flagValues } = flags;
  // An empty --hostname-override is "not given" (kube-proxy's rule); only a blank one is an error.
  if (flagValues.hostnameOverride === '') delete flagValues.hostnameOverride;
  const s: ProxySettings = { ...DEFAULT_SETTINGS, ...strip(fromFile), ...strip(flagValues), mode };
  // Feature gates merge by name, flags winning (kube-proxy's --feature-gates and featureGates do too).
  s.featureGates = { ...(fromFile.featureGates ?? {}), ...(flags.featureGates ?? {}) };
  if (mode === 'ipvs') {
    if (ipvsSyncPeriodMs !== undefined) s.syncPeriodMs = ipvsSyncPeriodMs;
    if (ipvsMinSyncPeriodMs !== undefined) s.minSyncPeriodMs = ipvsMinSyncPeriodMs;
  }
  s.healthzBindAddress = withPort(s.healthzBindAddress, 10256, '--healthz-bind-address');
  s.metricsBindAddress = withPort(s.metricsBindAddress, 10249, '--metrics-bind-address');
  if (healthzPort !== undefined) s.healthzBindAddress = healthzPort === 0 ? '' : `${hostOf(s.healthzBindAddress) ?? '0.0.0.0'}:${healthzPort}`;
  if (metricsPort !== undefined) s.metricsBindAddress = metricsPort === 0 ? '' : `${hostOf(s.metricsBindAddress) ?? '127.0.0.1'}:${metricsPort}`;
  if (flagValues.hostnameOverride !== undefined) s.hostnameOverride = nodeName(flagValues.hostnameOverride, '--hostname-override');
  if (!Number.isInteger(s.masqueradeBit) || s.masqueradeBit < 0 || s.masqueradeBit > 31) throw new ProxyConfigError(file && flags.masqueradeBit === undefined ? 'iptables.masqueradeBit' : '--iptables-masquerade-bit', `${s.masqueradeBit} is out of range (0..31)`);
  if (s.oomScoreAdj !== undefined && (s.oomScoreAdj < -1000 || s.oomScoreAdj > 1000)) throw new ProxyConfigError(flags.oomScoreAdj === undefined ? 'oomScoreAdj' : '--oom-score-adj', `${s.oomScoreAdj} is out of range (-1000..1000)`);
  if (s.syncPeriodMs <= 0) throw new ProxyConfigError('--iptables-sync-period', 'must be greater than 0');
  if (s.minSyncPeriodMs > s.syncPeriodMs) throw new ProxyConfigError('--iptables-min-sync-period', `${s.minSyncPeriodMs} ms is longer than the sync period (${s.syncPeriodMs} ms)`);
  if (s.clusterCIDR?.includes(',')) {
    // A dual-stack pair: weft's proxy is IPv4.
    const v4 = s.clusterCIDR.split(',').map((x) => x.trim()).find((x) => !x.includes(':'));
    warnings.push(`clusterCIDR: dual-stack "${s.clusterCIDR}": using ${v4 ?? 'none'} (weft-proxy is IPv4)`);
    s.clusterCIDR = v4;
  }
  const gates = Object.entries(s.featureGates);
  if (gates.length) warnings.push(`featureGates: ${gates.map(([k, v]) => `${k}=${v}`).join(',')} accepted; weft has no feature gates`);
  if (s.nodePortAddresses.includes('all')) s.nodePortAddresses = [];
  return { settings: s, warnings, healthzTimeoutMs: Math.min(2 * s.syncPeriodMs, 60_000) };
}

function hostOf(addr: string): string | undefined {
  const m = /^(.*):\d+$/.exec(addr);
  return m ? m[1] : undefined;
}

function strip<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * /configz's body (inside `{"kubeproxy.config.k8s.io": ...}`): the file as
 * given (or an empty one), with every field weft applies replaced by the
 * value in effect, in v1alpha1's field names. (kube-proxy itself serves its
 * internal Go struct, whose JSON has Go's capitalised field names; the file's
 * names are what operators and tools compare against.)
 */
export function configzOf(r: ResolvedSettings, file: KubeProxyConfiguration | undefined, nodeName: string): Record<string, unknown> {
  const s = r.settings;
  const f: KubeProxyConfiguration = structuredClone(file ?? { apiVersion: KUBE_PROXY_API_VERSION, kind: KUBE_PROXY_KIND });
  f.apiVersion = KUBE_PROXY_API_VERSION;
  f.kind = KUBE_PROXY_KIND;
  f.mode = s.mode;
  f.hostnameOverride = nodeName;
  f.bindAddress = s.nodeIP ?? f.bindAddress ?? '0.0.0.0';
  f.clusterCIDR = s.clusterCIDR ?? '';
  f.healthzBindAddress = s.healthzBindAddress;
  f.metricsBindAddress = s.metricsBindAddress;
  f.nodePortAddresses = s.nodePortAddresses;
  f.featureGates = s.featureGates;
  f.bindAddressHardFail = s.bindAddressHardFail;
  f.enableProfiling = s.enableProfiling;
  if (s.oomScoreAdj !== undefined) f.oomScoreAdj = s.oomScoreAdj;
  f.clientConnection = { ...f.clientConnection, kubeconfig: s.kubeconfig ?? '' };
  const sync = { syncPeriod: s.syncPeriodMs, minSyncPeriod: s.minSyncPeriodMs };
  if (s.mode === 'ipvs') f.ipvs = { ...f.ipvs, ...sync, scheduler: s.ipvsScheduler, strictARP: s.ipvsStrictARP };
  else f.ipvs = { ...f.ipvs, scheduler: s.ipvsScheduler, strictARP: s.ipvsStrictARP };
  if (s.mode === 'nftables') f.nftables = { ...f.nftables, ...sync, masqueradeAll: s.masqueradeAll, masqueradeBit: s.masqueradeBit };
  f.iptables = { ...f.iptables, masqueradeAll: s.masqueradeAll, masqueradeBit: s.masqueradeBit, localhostNodePorts: s.localhostNodePorts, ...(s.mode === 'iptables' ? sync : {}) };
  f.logging = { ...f.logging, format: s.logFormat, ...(s.verbosity !== undefined ? { verbosity: s.verbosity } : {}) };
  return encodeKubeProxyConfig(f);
}
