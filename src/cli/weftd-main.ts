// weftd's command line; src/cli/weftd.ts (the bin) loads this after installing the signal handlers.
import { installDaemonSignals } from './signals.js';
import { Command } from 'commander';
import { exitWhenDone, keepAliveUntil, runCli } from './run.js';
import { addTypedOption, parseChoice, parseInteger, parseList, parsePort, useEnv, type TypedOption } from './env.js';
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
add({ flags: '--cleanup', description: "remove weft's routes, devices and rules, then exit", kind: 'boolean', env: false });
useEnv(program, 'WEFTD');

program.action(async (o) => {
  const opts: WeftdOptions = {
    ...d,
    etcdEndpoints: o.etcdEndpoints,
    etcdPrefix: o.etcdPrefix,
    ...etcdOptionsOf(o),
    iface: o.iface,
    ifaceRegex: o.ifaceRegex,
    publicIp: o.publicIp,
    subnetFile: o.subnetFile,
    ipMasq: o.ipMasq,
    healthzIp: o.healthzIp,
    healthzPort: o.healthzPort,
    subnetLeaseTtl: o.subnetLeaseTtl,
    stateDir: o.stateDir,
    reconcileIntervalMs: o.reconcileInterval * 1000,
    vxlanPeerFilter: o.vxlanPeerFilter,
    cniSocket: o.cniSocket || undefined,
    logFormat: o.logFormat as LogFormat,
    logLevel: o.logLevel as LogLevel,
  };
  const log = createLogger({ format: opts.logFormat, level: opts.logLevel, base: { component: 'weftd' } });
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

await runCli(program);
exitWhenDone();
