import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
// weftd's command line; src/cli/weftd.ts (the bin) loads this after installing the signal handlers.
import { installDaemonSignals } from './signals.js';
import { Command } from 'commander';
import { exitWhenDone, keepAliveUntil, runCli } from './run.js';
import { UsageError, addTypedOption, booleanFlagsOf, goFlagArgv, parseChoice, parseInteger, parseList, parsePort, useEnv, type TypedOption } from './env.js';
import { addEtcdFlags, etcdSecurityOf } from './etcd-flags.js';
import { acquireInstanceLock } from './instance-lock.js';
import { weftVersion } from './version.js';
import { DEFAULT_OPTIONS, type WeftdOptions } from '../daemon/options.js';
import { runWeftd, cleanupWeftd, type DaemonControl } from '../daemon/daemon.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/log.js';

const d = DEFAULT_OPTIONS;
const program = new Command('weftd')
  .description('weft network daemon: leases a pod subnet in etcd (flannel schema) and programs the data path.\nEvery flag can also be set as WEFTD_<FLAG> (e.g. WEFTD_ETCD_ENDPOINTS), parsed as the flag is.')
  .version(weftVersion(), '--version', 'print the version and exit');
const add = <T>(o: TypedOption<T>) => addTypedOption(program, o);

add({ flags: '--etcd-endpoints <urls>', description: 'etcd endpoints, comma separated', parse: parseList, default: d.etcdEndpoints, defaultDescription: d.etcdEndpoints.join(',') });
add({ flags: '--etcd-prefix <prefix>', description: 'etcd key prefix', default: d.etcdPrefix });
addEtcdFlags(program);
add({ flags: '--iface <name-or-ip>', description: 'interface to use (repeatable, or comma separated; first match wins)', kind: 'list' });
add({ flags: '--iface-regex <regex>', description: 'regex over interface names and IPs (repeatable)', kind: 'list' });
add({ flags: '--public-ip <ip>', description: 'IP peers reach this host at' });
add({ flags: '--subnet-file <path>', description: 'where to write subnet.env', default: d.subnetFile });
add({ flags: '--ip-masq', description: 'masquerade traffic leaving the pod network (--ip-masq=false to turn off)', kind: 'boolean' });
add({ flags: '--healthz-ip <ip>', description: 'health/metrics listen address', default: d.healthzIp });
add({ flags: '--healthz-port <port>', description: 'health/metrics port (0 = off)', parse: parsePort, default: d.healthzPort });
add({ flags: '--subnet-lease-ttl <seconds>', description: 'lease TTL (tests use a few seconds)', parse: parseInteger(0), default: d.subnetLeaseTtl });
add({ flags: '--state-dir <dir>', description: 'state directory (holds weftd.lock: one weftd per directory)', default: d.stateDir });
add({ flags: '--reconcile-interval <seconds>', description: 'periodic data path re-assertion', parse: parseInteger(0), default: d.reconcileIntervalMs / 1000 });
add({ flags: '--vxlan-peer-filter', description: 'vxlan: accept VXLAN UDP only from current peers (nftables table ip weft-vxlan); --vxlan-peer-filter=false turns it off', kind: 'boolean', default: d.vxlanPeerFilter });
add({ flags: '--cni-socket <path>', description: 'serve CNI requests from the weft shim on this unix socket' });
add({ flags: '--log-format <format>', description: 'log format: text or json', parse: parseChoice(['text', 'json'] as const), default: 'text' });
add({ flags: '--log-level <level>', description: 'log level: debug, info, warn or error', parse: parseChoice(['debug', 'info', 'warn', 'error'] as const), default: 'info' });
// flanneld v0.2x flags weft accepts (docs/weftd.md "flanneld flags").
add({ flags: '--iface-can-reach <ip>', description: 'flanneld: use the interface whose route reaches this IP (when no --iface/--iface-regex)' });
add({ flags: '--public-ipv6 <ip>', description: 'flanneld: IPv6 public address (accepted with a warning: no IPv6 yet)' });
add({ flags: '--subnet-lease-renew-margin <minutes>', description: 'flanneld: renew the lease this long before expiry (1..1439)', parse: parseInteger(1, 1439), default: 60 });
add({ flags: '--ip-masq-fully-random-disable', description: 'flanneld: no --random-fully on MASQUERADE (accepted with a warning)', kind: 'boolean' });
add({ flags: '--iptables-resync <seconds>', description: 'flanneld: rule re-check period; sets --reconcile-interval when that is not given', parse: parseInteger(1), default: 5 });
add({ flags: '--iptables-forward-rules', description: 'flanneld: FORWARD accept rules with --ip-masq (false: accepted with a warning)', kind: 'boolean', default: true });
add({ flags: '--ip-blackhole-route', description: 'flanneld: blackhole route for the own subnet (accepted with a warning)', kind: 'boolean' });
add({ flags: '--kube-subnet-mgr', description: 'flanneld: take subnets from the Kubernetes API (Node spec.podCIDR + annotations; node name from NODE_NAME or POD_NAME/POD_NAMESPACE)', kind: 'boolean' });
add({ flags: '--kube-api-url <url>', description: 'flanneld: Kubernetes API server URL' });
add({ flags: '--kubeconfig-file <file>', description: 'flanneld: kubeconfig file' });
add({ flags: '--kube-annotation-prefix <prefix>', description: 'flanneld: Node annotation prefix', default: 'flannel.alpha.coreos.com' });
add({ flags: '--net-config-path <file>', description: 'flanneld: net-conf.json (Kubernetes mode)', default: '/etc/kube-flannel/net-conf.json' });
add({ flags: '--set-node-network-unavailable', description: 'flanneld: clear NodeNetworkUnavailable when ready (Kubernetes mode)', kind: 'boolean', default: true });
add({ flags: '--charon-executable-path <path>', description: 'flanneld ipsec (accepted with a warning)' });
add({ flags: '--charon-viciurl <url>', description: 'flanneld ipsec (accepted with a warning)' });
add({ flags: '--v <level>', description: 'flanneld/klog verbosity: 0-2 info, 3+ debug (when --log-level is not given)', parse: parseInteger(0, 100) });
for (const f of ['vmodule', 'log_dir', 'log_file', 'log_file_max_size', 'stderrthreshold', 'log_backtrace_at']) {
  add({ flags: `--${f} <value>`, description: 'klog flag (accepted with a warning)' });
}
for (const f of ['logtostderr', 'alsologtostderr', 'add_dir_header', 'skip_headers', 'skip_log_headers', 'one_output']) {
  add({ flags: `--${f}`, description: 'klog flag (accepted with a warning)', kind: 'boolean' });
}
add({ flags: '--cleanup', description: "remove weft's routes, devices and rules, then exit", kind: 'boolean', env: false });
// WEFTD_X wins over FLANNELD_X; the command line over both.
useEnv(program, ['WEFTD', 'FLANNELD']);

const WARN_ONLY: Record<string, string> = {
  publicIpv6: 'IPv6 is not supported yet',
  ipMasqFullyRandomDisable: 'weft always uses --random-fully',
  ipBlackholeRoute: 'no blackhole route is installed',
  charonExecutablePath: 'no ipsec backend',
  charonViciurl: 'no ipsec backend',
  vmodule: 'klog flag', log_dir: 'klog flag: weft logs to stderr', log_file: 'klog flag: weft logs to stderr',
  log_file_max_size: 'klog flag', stderrthreshold: 'klog flag', log_backtrace_at: 'klog flag',
  alsologtostderr: 'klog flag', add_dir_header: 'klog flag', skip_headers: 'klog flag', skip_log_headers: 'klog flag', one_output: 'klog flag',
};
const given = (name: string) => { const s = program.getOptionValueSource(name); return s === 'cli' || s === 'env'; };

program.action(async (o) => {
  const logLevel = (given('logLevel') || o.v === undefined ? o.logLevel : o.v >= 3 ? 'debug' : 'info') as LogLevel;
  let iface: string[] = o.iface;
  const opts: WeftdOptions = {
    ...d,
    etcdEndpoints: o.etcdEndpoints,
    etcdPrefix: o.etcdPrefix,
    ...etcdOptionsOf(o),
    iface,
    ifaceRegex: o.ifaceRegex,
    publicIp: o.publicIp,
    subnetFile: o.subnetFile,
    ipMasq: o.ipMasq,
    healthzIp: o.healthzIp,
    healthzPort: o.healthzPort,
    subnetLeaseTtl: o.subnetLeaseTtl,
    stateDir: o.stateDir,
    reconcileIntervalMs: (given('reconcileInterval') || !given('iptablesResync') ? o.reconcileInterval : o.iptablesResync) * 1000,
    vxlanPeerFilter: o.vxlanPeerFilter,
    cniSocket: o.cniSocket || undefined,
    logFormat: o.logFormat as LogFormat,
    logLevel,
    subnetLeaseRenewMarginMinutes: o.subnetLeaseRenewMargin,
    iptablesForwardRules: o.iptablesForwardRules,
    kubeSubnetMgr: o.kubeSubnetMgr,
    kubeApiUrl: o.kubeApiUrl || undefined,
    kubeconfigFile: o.kubeconfigFile || undefined,
    kubeAnnotationPrefix: o.kubeAnnotationPrefix,
    netConfigPath: o.netConfigPath,
    setNodeNetworkUnavailable: o.setNodeNetworkUnavailable,
    // flanneld reads these from the environment (the DaemonSet's downward API).
    nodeName: process.env.NODE_NAME || undefined,
    podName: process.env.POD_NAME || undefined,
    podNamespace: process.env.POD_NAMESPACE || undefined,
  };
  const log = createLogger({ format: opts.logFormat, level: opts.logLevel, base: { component: 'weftd' } });
  for (const [name, reason] of Object.entries(WARN_ONLY)) {
    if (given(name)) log.warn({ flag: name, value: o[name], reason }, 'flanneld flag accepted without effect');
  }
  if (given('logtostderr') && !o.logtostderr) log.warn({ flag: 'logtostderr', reason: 'weft always logs to stderr' }, 'flanneld flag accepted without effect');
  if (!o.iptablesForwardRules) log.warn({ flag: 'iptablesForwardRules', reason: 'weft installs its FORWARD accept rules with --ip-masq regardless' }, 'flanneld flag accepted without effect');
  if (given('subnetLeaseRenewMargin')) log.warn({ flag: 'subnetLeaseRenewMargin', reason: 'weft renews at min(1 h, TTL/3) before expiry' }, 'flanneld flag accepted without effect');
  if (o.ifaceCanReach && iface.length === 0 && opts.ifaceRegex.length === 0) {
    opts.iface = iface = [await ifaceCanReach(o.ifaceCanReach)];
    log.info({ ip: o.ifaceCanReach, iface: iface[0] }, 'interface chosen by --iface-can-reach');
  }
  if (o.cleanup) {
    await cleanupWeftd(opts, log);
    return;
  }
  // Before anything is started: a second weftd on this state directory stops here.
  const lock = acquireInstanceLock(opts.stateDir);
  const ac = new AbortController();
  const control: DaemonControl = {};
  const removeSignals = installDaemonSignals({
    log,
    stop: ac,
    stopMessage: 'stopping (data path stays in place)',
    dump: () => ({ stateDir: opts.stateDir, ...(control.state?.() ?? { readyReason: 'starting' }) }),
    reload: () => (control.resync?.('SIGHUP') ? 'data path reconcile' : undefined),
  });
  keepAliveUntil(ac.signal);
  try {
    await runWeftd(opts, { log, signal: ac.signal, control });
  } finally {
    ac.abort(); // also releases keepAliveUntil when the daemon failed
    removeSignals();
    lock.release();
  }
});

/** The five etcd TLS/auth flags in WeftdOptions' names. */
function etcdOptionsOf(o: Record<string, string | undefined>): Partial<WeftdOptions> {
  const s = etcdSecurityOf(o);
  return { etcdCafile: s.caFile, etcdCertfile: s.certFile, etcdKeyfile: s.keyFile, etcdUsername: s.username, etcdPassword: s.password };
}

/** The device `ip route get IP` names (flanneld's --iface-can-reach). */
async function ifaceCanReach(ip: string): Promise<string> {
  if (isIP(ip) !== 4) throw new UsageError('--iface-can-reach', `"${ip}" is not an IPv4 address`);
  const { stdout } = await promisify(execFile)('ip', ['-j', 'route', 'get', ip]);
  const dev = (JSON.parse(stdout) as Array<{ dev?: string }>)[0]?.dev;
  if (!dev) throw new UsageError('--iface-can-reach', `no route reaches ${ip}`);
  return dev;
}

await runCli(program, [...process.argv.slice(0, 2), ...goFlagArgv(process.argv.slice(2), booleanFlagsOf(program))]);
exitWhenDone();
