#!/usr/bin/env node
import { Command, Option } from 'commander';
import { keepAliveUntil, runCli } from './run.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/log.js';
import { InvalidArgumentError } from '../core/errors.js';
import { PROXY_MODES, cleanupProxy, runProxy, type ProxyMode, type ProxyOptions } from '../proxy/daemon.js';
import { parseDuration } from '../proxy/duration.js';

const env = (name: string) => process.env[`WEFT_PROXY_${name}`];
const list = (v: string | undefined) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : []);

const program = new Command('weft-proxy')
  .description("weft's service proxy: renders Services and EndpointSlices (from etcd and/or a manifest directory) into iptables, nftables or ipvs rules with kube-proxy's semantics.\nEvery flag can also be set as WEFT_PROXY_<FLAG>.")
  .option('--etcd-endpoints <urls>', 'etcd endpoints, comma separated ("" = none)', env('ETCD_ENDPOINTS') ?? 'http://127.0.0.1:2379')
  .option('--manifests <dir>', 'also read Service/EndpointSlice manifests from this directory (watched)', env('MANIFESTS'))
  .addOption(new Option('--proxy-mode <mode>', 'proxy mode').choices([...PROXY_MODES]).default(env('PROXY_MODE') ?? 'iptables'))
  .option('--ipvs-scheduler <name>', 'ipvs scheduler for --proxy-mode ipvs (rr, wrr, lc, wlc, sh, ...)', env('IPVS_SCHEDULER') ?? 'rr')
  .option('--hostname-override <name>', 'node name (endpoints with this nodeName are local)', env('HOSTNAME_OVERRIDE'))
  .option('--node-ip <ip>', "this node's primary IP", env('NODE_IP'))
  .option('--cluster-cidr <cidr>', 'pod network; traffic from outside it to a ClusterIP is masqueraded', env('CLUSTER_CIDR'))
  .option('--masquerade-all', 'masquerade all traffic to ClusterIPs', env('MASQUERADE_ALL') === 'true')
  .option('--masquerade-bit <bit>', 'fwmark bit for masquerading (kube-proxy uses 14; weft 13 = 0x2000)', env('MASQUERADE_BIT') ?? '13')
  .option('--nodeport-addresses <cidrs>', 'CIDRs (or "primary") whose local addresses answer node ports (default all)', env('NODEPORT_ADDRESSES') ?? '')
  .option('--min-sync-period <duration>', 'minimum time between rule syncs', env('MIN_SYNC_PERIOD') ?? '1s')
  .option('--sync-period <duration>', 'full resync period (changes are synced partially in between)', env('SYNC_PERIOD') ?? '1h')
  .option('--healthz-bind-address <host:port>', 'healthz server ("" = off)', env('HEALTHZ_BIND_ADDRESS') ?? '127.0.0.1:10256')
  .option('--metrics-bind-address <host:port>', 'metrics server ("" = off)', env('METRICS_BIND_ADDRESS') ?? '127.0.0.1:10249')
  .option('--healthcheck-bind-host <host>', 'address the ETP=Local health-check node ports listen on', env('HEALTHCHECK_BIND_HOST') ?? '0.0.0.0')
  .addOption(new Option('--iptables-backend <backend>', 'force iptables backend (default: detect like kube-proxy)').choices(['legacy', 'nft']))
  .option('--cleanup', "remove all of weft-proxy's rules and exit", false)
  .addOption(new Option('--log-format <format>', 'log format').choices(['text', 'json']).default(env('LOG_FORMAT') ?? 'text'))
  .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default(env('LOG_LEVEL') ?? 'info'))
  .action(async (o) => {
    const log = createLogger({ format: o.logFormat as LogFormat, level: o.logLevel as LogLevel, base: { component: 'weft-proxy' } });
    const bit = Number(o.masqueradeBit);
    if (!Number.isInteger(bit)) throw new InvalidArgumentError('--masquerade-bit', `"${o.masqueradeBit}" is not an integer`);
    const opts: ProxyOptions = {
      etcdEndpoints: list(o.etcdEndpoints),
      manifestsDir: o.manifests || undefined,
      mode: o.proxyMode as ProxyMode,
      ipvsScheduler: o.ipvsScheduler,
      nodeName: o.hostnameOverride || undefined,
      nodeIP: o.nodeIp || undefined,
      clusterCIDR: o.clusterCidr || undefined,
      masqueradeAll: Boolean(o.masqueradeAll),
      masqueradeBit: bit,
      nodePortAddresses: list(o.nodeportAddresses),
      minSyncPeriodMs: parseDuration(o.minSyncPeriod, '--min-sync-period'),
      syncPeriodMs: parseDuration(o.syncPeriod, '--sync-period'),
      healthzBindAddress: o.healthzBindAddress,
      metricsBindAddress: o.metricsBindAddress,
      healthCheckBindHost: o.healthcheckBindHost,
      iptablesBackend: o.iptablesBackend,
      log,
    };
    if (o.cleanup) {
      await cleanupProxy(opts);
      return;
    }
    const ac = new AbortController();
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        log.info({ signal: sig }, 'stopping (rules stay in place)');
        ac.abort();
      });
    }
    keepAliveUntil(ac.signal);
    try {
      await runProxy(opts, ac.signal);
    } finally {
      ac.abort(); // also releases keepAliveUntil when the daemon failed
    }
  });

await runCli(program);
