#!/usr/bin/env node
import { Command, Option } from 'commander';
import { keepAliveUntil, runCli } from './run.js';
import { DEFAULT_OPTIONS, type WeftdOptions } from '../daemon/options.js';
import { runWeftd, cleanupWeftd } from '../daemon/daemon.js';
import { createLogger } from '../core/log.js';
import { InvalidArgumentError } from '../core/errors.js';

const env = (name: string) => process.env[`WEFTD_${name}`];
const list = (v: string | undefined) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);
const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
const int = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(flag, `"${v}" is not a non-negative integer`);
  return n;
};

const bool = (flag: string) => (v: string) => {
  if (v === 'true' || v === 'false') return v === 'true';
  throw new InvalidArgumentError(flag, `"${v}" is not true or false`);
};

const d = DEFAULT_OPTIONS;
const program = new Command('weftd')
  .description('weft network daemon: leases a pod subnet in etcd (flannel schema) and programs the data path.\nEvery flag can also be set as WEFTD_<FLAG> (e.g. WEFTD_ETCD_ENDPOINTS).')
  .option('--etcd-endpoints <urls>', 'etcd endpoints, comma separated', env('ETCD_ENDPOINTS') ?? d.etcdEndpoints.join(','))
  .option('--etcd-prefix <prefix>', 'etcd key prefix', env('ETCD_PREFIX') ?? d.etcdPrefix)
  .option('--etcd-cafile <file>', 'TLS CA for etcd', env('ETCD_CAFILE'))
  .option('--etcd-certfile <file>', 'TLS client certificate for etcd', env('ETCD_CERTFILE'))
  .option('--etcd-keyfile <file>', 'TLS client key for etcd', env('ETCD_KEYFILE'))
  .option('--etcd-username <name>', 'etcd user', env('ETCD_USERNAME'))
  .option('--etcd-password <password>', 'etcd password', env('ETCD_PASSWORD'))
  .option('--iface <name-or-ip>', 'interface to use (repeatable; first match wins)', collect, list(env('IFACE')) ?? [])
  .option('--iface-regex <regex>', 'regex over interface names and IPs (repeatable)', collect, list(env('IFACE_REGEX')) ?? [])
  .option('--public-ip <ip>', 'IP peers reach this host at', env('PUBLIC_IP'))
  .option('--subnet-file <path>', 'where to write subnet.env', env('SUBNET_FILE') ?? d.subnetFile)
  .option('--ip-masq', 'masquerade traffic leaving the pod network', env('IP_MASQ') === 'true')
  .option('--healthz-ip <ip>', 'health/metrics listen address', env('HEALTHZ_IP') ?? d.healthzIp)
  .option('--healthz-port <port>', 'health/metrics port (0 = off)', int('--healthz-port'), Number(env('HEALTHZ_PORT') ?? d.healthzPort))
  .option('--subnet-lease-ttl <seconds>', 'lease TTL (tests use a few seconds)', int('--subnet-lease-ttl'), Number(env('SUBNET_LEASE_TTL') ?? d.subnetLeaseTtl))
  .option('--state-dir <dir>', 'state directory', env('STATE_DIR') ?? d.stateDir)
  .option('--reconcile-interval <seconds>', 'periodic data path re-assertion', int('--reconcile-interval'), Number(env('RECONCILE_INTERVAL') ?? d.reconcileIntervalMs / 1000))
  .option('--vxlan-peer-filter <bool>', `vxlan: accept VXLAN UDP only from current peers (nftables table ip weft-vxlan) (default: ${d.vxlanPeerFilter})`, bool('--vxlan-peer-filter'))
  .option('--cni-socket <path>', 'serve CNI requests from the weft shim on this unix socket', env('CNI_SOCKET'))
  .addOption(new Option('--log-format <format>', 'log format').choices(['text', 'json']).default(env('LOG_FORMAT') ?? 'text'))
  .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default(env('LOG_LEVEL') ?? 'info'))
  .option('--cleanup', 'remove weft\'s routes, devices and rules, then exit', false)
  .action(async (o) => {
    const opts: WeftdOptions = {
      ...d,
      etcdEndpoints: String(o.etcdEndpoints).split(',').map((s: string) => s.trim()).filter(Boolean),
      etcdPrefix: o.etcdPrefix,
      etcdCafile: o.etcdCafile,
      etcdCertfile: o.etcdCertfile,
      etcdKeyfile: o.etcdKeyfile,
      etcdUsername: o.etcdUsername,
      etcdPassword: o.etcdPassword,
      iface: o.iface,
      ifaceRegex: o.ifaceRegex,
      publicIp: o.publicIp,
      subnetFile: o.subnetFile,
      ipMasq: Boolean(o.ipMasq),
      healthzIp: o.healthzIp,
      healthzPort: o.healthzPort,
      subnetLeaseTtl: o.subnetLeaseTtl,
      stateDir: o.stateDir,
      reconcileIntervalMs: o.reconcileInterval * 1000,
      cniSocket: o.cniSocket || undefined,
      vxlanPeerFilter: o.vxlanPeerFilter ?? (env('VXLAN_PEER_FILTER') === undefined ? d.vxlanPeerFilter : bool('WEFTD_VXLAN_PEER_FILTER')(env('VXLAN_PEER_FILTER')!)),
      logFormat: o.logFormat,
      logLevel: o.logLevel,
    };
    const log = createLogger({ format: opts.logFormat, level: opts.logLevel, base: { component: 'weftd' } });
    if (o.cleanup) {
      await cleanupWeftd(opts, log);
      return;
    }
    const ac = new AbortController();
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        log.info({ signal: sig }, 'stopping (data path stays in place)');
        ac.abort();
      });
    }
    keepAliveUntil(ac.signal);
    try {
      await runWeftd(opts, { log, signal: ac.signal });
    } finally {
      ac.abort(); // also releases keepAliveUntil when the daemon failed
    }
  });

await runCli(program);
