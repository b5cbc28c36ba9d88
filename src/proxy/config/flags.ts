/**
 * weft-proxy's flags: kube-proxy's names (as kubeadm and distributions pass
 * them), weft's older names kept as aliases, and kube-proxy/klog flags weft
 * has no use for, accepted with a warning so an unchanged kube-proxy command
 * line starts. Each flag maps to one setting (settings.ts) or to a warning.
 */
import type { Command } from 'commander';
import { addTypedOption, parseChoice, parseDurationMs, parseInteger, parseList, parseString, UsageError, type ValueParser } from '../../cli/env.js';
import { DEFAULT_SETTINGS, SETTINGS_PROXY_MODES, type FlagSettings } from './settings.js';

/** "A=true,B=false" (kube-proxy's --feature-gates). */
export const parseFeatureGates: ValueParser<Record<string, boolean>> = (text, what) => {
  const out: Record<string, boolean> = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9_.-]+)=(true|false)$/i.exec(part);
    if (!m) throw new UsageError(what, `"${part}" is not NAME=true|false`);
    out[m[1]!] = m[2]!.toLowerCase() === 'true';
  }
  return out;
};

const anyText = parseString;
const int32 = parseInteger(-(2 ** 31), 2 ** 31 - 1);

interface ProxyFlag {
  flags: string;
  description: string;
  /** The setting it sets; absent for warning-only flags. */
  key?: keyof FlagSettings;
  parse?: ValueParser<unknown>;
  kind?: 'value' | 'boolean';
  /** Warning-only: why it has no effect. */
  ignored?: string;
  defaultDescription?: string;
  env?: boolean;
}

const D = DEFAULT_SETTINGS;
const KLOG = 'klog flag: weft logs to stderr (--log-format, --log-level, -v)';

/** Flags that map onto settings or warnings; the CLI adds --config, etcd, manifests, --cleanup itself. */
export const PROXY_FLAGS: ProxyFlag[] = [
  { flags: '--kubeconfig <file>', description: 'kubeconfig for the Kubernetes API (clientConnection.kubeconfig)', key: 'kubeconfig' },
  { flags: '--master <url>', description: "API server URL (overrides the kubeconfig's)", key: 'master' },
  { flags: '--proxy-mode <mode>', description: `proxy mode: ${SETTINGS_PROXY_MODES.join(', ')} (mode)`, key: 'mode', parse: parseChoice(SETTINGS_PROXY_MODES), defaultDescription: D.mode },
  { flags: '--ipvs-scheduler <name>', description: 'ipvs scheduler for --proxy-mode ipvs (ipvs.scheduler)', key: 'ipvsScheduler', defaultDescription: D.ipvsScheduler },
  { flags: '--hostname-override <name>', description: 'node name: endpoints with this nodeName are local (hostnameOverride)', key: 'hostnameOverride', defaultDescription: 'the host name' },
  { flags: '--node-ip <ip>', description: "this node's primary IP", key: 'nodeIP' },
  { flags: '--bind-address <ip>', description: "kube-proxy's name for the node's primary IP (bindAddress); 0.0.0.0 = unset", key: 'nodeIP', parse: (t) => (t === '0.0.0.0' || t === '::' ? undefined : t) },
  { flags: '--cluster-cidr <cidr>', description: 'pod network; traffic from outside it to a ClusterIP is masqueraded (clusterCIDR)', key: 'clusterCIDR' },
  { flags: '--masquerade-all', description: 'masquerade all traffic to ClusterIPs (iptables.masqueradeAll)', key: 'masqueradeAll', kind: 'boolean' },
  { flags: '--iptables-masquerade-bit <bit>', description: 'fwmark bit for masquerading (iptables.masqueradeBit; kube-proxy defaults to 14)', key: 'masqueradeBit', parse: parseInteger(0, 31), defaultDescription: String(D.masqueradeBit) },
  { flags: '--masquerade-bit <bit>', description: 'alias of --iptables-masquerade-bit', key: 'masqueradeBit', parse: parseInteger(0, 31) },
  { flags: '--nodeport-addresses <cidrs>', description: 'CIDRs (or "primary") whose local addresses answer node ports (nodePortAddresses)', key: 'nodePortAddresses', parse: parseList, defaultDescription: 'all' },
  { flags: '--iptables-sync-period <duration>', description: 'full resync period (iptables.syncPeriod); changes sync partially in between', key: 'syncPeriodMs', parse: parseDurationMs, defaultDescription: '1h' },
  { flags: '--sync-period <duration>', description: 'alias of --iptables-sync-period (every mode)', key: 'syncPeriodMs', parse: parseDurationMs },
  { flags: '--iptables-min-sync-period <duration>', description: 'minimum time between rule syncs (iptables.minSyncPeriod)', key: 'minSyncPeriodMs', parse: parseDurationMs, defaultDescription: '1s' },
  { flags: '--min-sync-period <duration>', description: 'alias of --iptables-min-sync-period (every mode)', key: 'minSyncPeriodMs', parse: parseDurationMs },
  { flags: '--ipvs-sync-period <duration>', description: 'sync period in ipvs mode (ipvs.syncPeriod)', key: 'ipvsSyncPeriodMs', parse: parseDurationMs },
  { flags: '--ipvs-min-sync-period <duration>', description: 'minimum sync interval in ipvs mode (ipvs.minSyncPeriod)', key: 'ipvsMinSyncPeriodMs', parse: parseDurationMs },
  { flags: '--healthz-bind-address <host:port>', description: 'healthz server, /healthz and /livez ("" = off; a bare IP gets port 10256)', key: 'healthzBindAddress', defaultDescription: D.healthzBindAddress },
  { flags: '--metrics-bind-address <host:port>', description: 'metrics server: /metrics, /proxyMode, /configz, /healthz ("" = off; a bare IP gets port 10249)', key: 'metricsBindAddress', defaultDescription: D.metricsBindAddress },
  { flags: '--healthz-port <port>', description: "kube-proxy's deprecated port of the healthz server (0 = off)", key: 'healthzPort', parse: parseInteger(0, 65535) },
  { flags: '--metrics-port <port>', description: "kube-proxy's deprecated port of the metrics server (0 = off)", key: 'metricsPort', parse: parseInteger(0, 65535) },
  { flags: '--oom-score-adj <n>', description: "this process's oom_score_adj, -1000..1000 (oomScoreAdj)", key: 'oomScoreAdj', parse: parseInteger(-1000, 1000), defaultDescription: 'unchanged' },
  { flags: '--feature-gates <gates>', description: 'NAME=true|false,... accepted and logged; weft has no feature gates', key: 'featureGates', parse: parseFeatureGates },
  { flags: '--bind-address-hard-fail', description: 'accepted: weft always exits when a server cannot bind', key: 'bindAddressHardFail', kind: 'boolean' },
  { flags: '-v, --v <level>', description: 'klog verbosity: 0-3 = info, 4+ = debug (unless --log-level is given)', key: 'verbosity', parse: parseInteger(0, 2 ** 31 - 1) },
  { flags: '--log-format <format>', description: 'log format: text or json (logging.format)', key: 'logFormat', parse: parseChoice(['text', 'json'] as const), defaultDescription: 'text' },
  { flags: '--logging-format <format>', description: "kube-proxy's name of --log-format", key: 'logFormat', parse: parseChoice(['text', 'json'] as const) },
  { flags: '--log-level <level>', description: 'log level: debug, info, warn or error (wins over -v)', key: 'logLevel', parse: parseChoice(['debug', 'info', 'warn', 'error'] as const), defaultDescription: 'info' },
  // Accepted with a warning: no equivalent in weft.
  { flags: '--profiling', description: 'ignored: weft serves no /debug/pprof', kind: 'boolean', key: 'enableProfiling', ignored: 'weft serves no /debug/pprof' },
  { flags: '--show-hidden-metrics-for-version <v>', description: 'ignored: weft has no hidden metrics', ignored: 'weft has no hidden metrics' },
  { flags: '--proxy-port-range <range>', description: 'ignored: userspace mode only', ignored: 'userspace proxy mode only' },
  { flags: '--udp-timeout <duration>', description: 'ignored: userspace mode only', parse: parseDurationMs, ignored: 'userspace proxy mode only' },
  { flags: '--config-sync-period <duration>', description: 'ignored: weft keeps watching and relists on errors', parse: parseDurationMs, ignored: 'weft keeps watching and relists on errors' },
  { flags: '--conntrack-max-per-core <n>', description: 'ignored: conntrack sysctls are left to the host', parse: int32, ignored: 'conntrack sysctls are left to the host' },
  { flags: '--conntrack-min <n>', description: 'ignored: conntrack sysctls are left to the host', parse: int32, ignored: 'conntrack sysctls are left to the host' },
  { flags: '--conntrack-tcp-timeout-established <duration>', description: 'ignored: conntrack sysctls are left to the host', parse: parseDurationMs, ignored: 'conntrack sysctls are left to the host' },
  { flags: '--conntrack-tcp-timeout-close-wait <duration>', description: 'ignored: conntrack sysctls are left to the host', parse: parseDurationMs, ignored: 'conntrack sysctls are left to the host' },
  { flags: '--conntrack-tcp-be-liberal', description: 'ignored: conntrack sysctls are left to the host', kind: 'boolean', ignored: 'conntrack sysctls are left to the host' },
  { flags: '--conntrack-udp-timeout <duration>', description: 'ignored: conntrack sysctls are left to the host', parse: parseDurationMs, ignored: 'conntrack sysctls are left to the host' },
  { flags: '--conntrack-udp-timeout-stream <duration>', description: 'ignored: conntrack sysctls are left to the host', parse: parseDurationMs, ignored: 'conntrack sysctls are left to the host' },
  { flags: '--ipvs-exclude-cidrs <cidrs>', description: 'ignored', parse: parseList, ignored: 'weft removes only ipvs services it created' },
  { flags: '--ipvs-strict-arp', description: 'ipvs mode: set arp_ignore=1 and arp_announce=2 (ipvs.strictARP)', key: 'ipvsStrictARP', kind: 'boolean' },
  { flags: '--ipvs-tcp-timeout <duration>', description: 'ignored: ipvs timeouts are left as they are', parse: parseDurationMs, ignored: 'ipvs timeouts are left as they are' },
  { flags: '--ipvs-tcpfin-timeout <duration>', description: 'ignored: ipvs timeouts are left as they are', parse: parseDurationMs, ignored: 'ipvs timeouts are left as they are' },
  { flags: '--ipvs-udp-timeout <duration>', description: 'ignored: ipvs timeouts are left as they are', parse: parseDurationMs, ignored: 'ipvs timeouts are left as they are' },
  { flags: '--cleanup-ipvs', description: 'accepted: --cleanup always removes ipvs leftovers', kind: 'boolean', ignored: '--cleanup always removes ipvs leftovers' },
  { flags: '--kube-api-content-type <type>', description: "ignored: weft's API client speaks JSON", ignored: "weft's API client speaks JSON" },
  { flags: '--kube-api-qps <qps>', description: 'ignored: no client-side rate limit', ignored: 'no client-side rate limit' },
  { flags: '--kube-api-burst <n>', description: 'ignored: no client-side rate limit', parse: int32, ignored: 'no client-side rate limit' },
  { flags: '--detect-local-mode <mode>', description: 'only ClusterCIDR (the default) is implemented; others are ignored', parse: anyText, ignored: 'weft detects local traffic by --cluster-cidr' },
  { flags: '--pod-bridge-interface <name>', description: 'ignored (detect-local-mode BridgeInterface)', ignored: 'weft detects local traffic by --cluster-cidr' },
  { flags: '--pod-interface-name-prefix <prefix>', description: 'ignored (detect-local-mode InterfaceNamePrefix)', ignored: 'weft detects local traffic by --cluster-cidr' },
  { flags: '--iptables-localhost-nodeports', description: 'iptables mode: answer 127.0.0.1:<nodePort> from the node (sets net.ipv4.conf.all.route_localnet=1); =false to turn off (iptables.localhostNodePorts)', key: 'localhostNodePorts', kind: 'boolean', defaultDescription: 'true' },
  { flags: '--windows-service', description: 'ignored: Windows only', kind: 'boolean', ignored: 'Windows only' },
  // klog's flags, as kube-proxy 1.20 has them.
  ...['--alsologtostderr', '--logtostderr', '--add-dir-header', '--skip-headers', '--skip-log-headers', '--one-output'].map((f): ProxyFlag => ({ flags: f, description: `ignored (${KLOG})`, kind: 'boolean', ignored: KLOG })),
  ...['--log-dir <dir>', '--log-file <file>', '--log-file-max-size <mb>', '--log-flush-frequency <duration>', '--stderrthreshold <severity>', '--vmodule <pattern>', '--log-backtrace-at <file:line>'].map(
    (f): ProxyFlag => ({ flags: f, description: `ignored (${KLOG})`, ignored: KLOG }),
  ),
];

/** Adds PROXY_FLAGS to `program` (no defaults: what was not given stays unset, so the file's value applies). */
export function addProxyFlags(program: Command): void {
  for (const f of PROXY_FLAGS) {
    addTypedOption(program, { flags: f.flags, description: f.defaultDescription ? `${f.description} (default: ${f.defaultDescription})` : f.description, parse: f.parse, kind: f.kind, env: f.env, defaultDescription: f.defaultDescription });
    // addTypedOption gives booleans a false default; unset must stay unset here.
    const opt = program.options[program.options.length - 1]!;
    opt.defaultValue = undefined;
  }
}

/**
 * The settings the command line and WEFT_PROXY_* gave, and warnings for
 * the accepted-but-ignored ones. Two names of one setting with different
 * values (--sync-period and --iptables-sync-period) are a usage error.
 */
export function flagLayer(program: Command): { settings: FlagSettings; warnings: string[] } {
  const settings: Record<string, unknown> = {};
  const from: Record<string, string> = {};
  const warnings: string[] = [];
  for (const f of PROXY_FLAGS) {
    const opt = program.options.find((o) => o.flags === (f.kind === 'boolean' ? `${f.flags} [bool]` : f.flags))!;
    const name = opt.attributeName();
    const source = program.getOptionValueSource(name);
    if (source !== 'cli' && source !== 'env') continue;
    const value = program.getOptionValue(name);
    if (f.ignored) warnings.push(`${opt.long}: accepted and ignored (${f.ignored})`);
    if (!f.key || value === undefined) continue;
    if (f.key in settings && JSON.stringify(settings[f.key]) !== JSON.stringify(value)) {
      throw new UsageError(opt.long!, `conflicts with ${from[f.key]} (two names for one setting with different values)`);
    }
    settings[f.key] = value;
    from[f.key] = opt.long!;
  }
  return { settings: settings as FlagSettings, warnings };
}
