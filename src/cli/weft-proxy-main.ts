// weft-proxy's command line; src/cli/weft-proxy.ts (the bin) loads this after installing the signal handlers.
import { installDaemonSignals } from './signals.js';
import { Command } from 'commander';
import { exitWhenDone, keepAliveUntil, runCli } from './run.js';
import { addTypedOption, parseChoice, parseDurationMs, parseInteger, parseList, useEnv, type TypedOption } from './env.js';
import { addEtcdFlags, etcdSecurityOf } from './etcd-flags.js';
import { weftVersion } from './version.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/log.js';
import { PROXY_MODES, cleanupProxy, runProxy, type ProxyMode, type ProxyOptions } from '../proxy/daemon.js';
import type { ProxySyncer } from '../proxy/syncer.js';
import type { BoundedFrequencyRunner } from '../core/runner.js';
import type { ProxyModel } from '../proxy/model/model.js';
import { chooseSources } from '../proxy/sources/kubernetes-choice.js';

const program = new Command('weft-proxy')
  .description("weft's service proxy: renders Services and EndpointSlices (from etcd and/or a manifest directory) into iptables, nftables or ipvs rules with kube-proxy's semantics.\nEvery flag can also be set as WEFT_PROXY_<FLAG>, parsed as the flag is.")
  .version(weftVersion(), '--version', 'print the version and exit');
const add = <T>(o: TypedOption<T>) => addTypedOption(program, o);

add({ flags: '--etcd-endpoints <urls>', description: 'etcd endpoints, comma separated ("" = none)', default: 'http://127.0.0.1:2379' });
addEtcdFlags(program);
add({ flags: '--kubeconfig <file>', description: 'read Services, EndpointSlices and this Node from the Kubernetes API of this kubeconfig (etcd then only with an explicit --etcd-endpoints)' });
add({ flags: '--master <url>', description: 'Kubernetes API server URL (overrides the kubeconfig server; in a pod without either flag: in-cluster config)' });
add({ flags: '--manifests <dir>', description: 'also read Service/EndpointSlice manifests from this directory (watched)' });
add({ flags: '--proxy-mode <mode>', description: `proxy mode: ${PROXY_MODES.join(', ')}`, parse: parseChoice(PROXY_MODES), default: 'iptables' });
add({ flags: '--ipvs-scheduler <name>', description: 'ipvs scheduler for --proxy-mode ipvs (rr, wrr, lc, wlc, sh, ...)', default: 'rr' });
add({ flags: '--hostname-override <name>', description: 'node name (endpoints with this nodeName are local)' });
add({ flags: '--node-ip <ip>', description: "this node's primary IP" });
add({ flags: '--cluster-cidr <cidr>', description: 'pod network; traffic from outside it to a ClusterIP is masqueraded' });
add({ flags: '--masquerade-all', description: 'masquerade all traffic to ClusterIPs (--masquerade-all=false to turn off)', kind: 'boolean' });
add({ flags: '--masquerade-bit <bit>', description: 'fwmark bit for masquerading (kube-proxy uses 14; weft 13 = 0x2000)', parse: parseInteger(0, 31), default: 13 });
add({ flags: '--nodeport-addresses <cidrs>', description: 'CIDRs (or "primary") whose local addresses answer node ports (default all)', parse: parseList, default: [], defaultDescription: 'all' });
add({ flags: '--min-sync-period <duration>', description: 'minimum time between rule syncs', parse: parseDurationMs, default: 1000, defaultDescription: '1s' });
add({ flags: '--sync-period <duration>', description: 'full resync period (changes are synced partially in between)', parse: parseDurationMs, default: 3_600_000, defaultDescription: '1h' });
add({ flags: '--healthz-bind-address <host:port>', description: 'healthz server ("" = off)', default: '127.0.0.1:10256' });
add({ flags: '--metrics-bind-address <host:port>', description: 'metrics server ("" = off)', default: '127.0.0.1:10249' });
add({ flags: '--healthcheck-bind-host <host>', description: 'address the ETP=Local health-check node ports listen on', default: '0.0.0.0' });
add({ flags: '--iptables-backend <backend>', description: 'force iptables backend: legacy or nft (default: detect like kube-proxy)', parse: parseChoice(['legacy', 'nft'] as const) });
add({ flags: '--cleanup', description: "remove all of weft-proxy's rules and exit", kind: 'boolean', env: false });
add({ flags: '--log-format <format>', description: 'log format: text or json', parse: parseChoice(['text', 'json'] as const), default: 'text' });
add({ flags: '--log-level <level>', description: 'log level: debug, info, warn or error', parse: parseChoice(['debug', 'info', 'warn', 'error'] as const), default: 'info' });
useEnv(program, 'WEFT_PROXY');

program.action(async (o) => {
  const log = createLogger({ format: o.logFormat as LogFormat, level: o.logLevel as LogLevel, base: { component: 'weft-proxy' } });
  let parts: { model: ProxyModel; syncer: ProxySyncer; runner: BoundedFrequencyRunner } | undefined;
  const sourcesChosen = chooseSources({ kubeconfig: o.kubeconfig, master: o.master, etcdExplicit: program.getOptionValueSource('etcdEndpoints') !== 'default' });
  const opts: ProxyOptions = {
    etcdEndpoints: sourcesChosen.etcd ? parseList(o.etcdEndpoints, '--etcd-endpoints') : [],
    kubeconfig: o.kubeconfig || undefined,
    master: o.master || undefined,
    kube: { inCluster: sourcesChosen.inCluster },
    etcd: etcdSecurityOf(o),
    manifestsDir: o.manifests || undefined,
    mode: o.proxyMode as ProxyMode,
    ipvsScheduler: o.ipvsScheduler,
    nodeName: o.hostnameOverride || undefined,
    nodeIP: o.nodeIp || undefined,
    clusterCIDR: o.clusterCidr || undefined,
    masqueradeAll: o.masqueradeAll,
    masqueradeBit: o.masqueradeBit,
    nodePortAddresses: o.nodeportAddresses,
    minSyncPeriodMs: o.minSyncPeriod,
    syncPeriodMs: o.syncPeriod,
    healthzBindAddress: o.healthzBindAddress,
    metricsBindAddress: o.metricsBindAddress,
    healthCheckBindHost: o.healthcheckBindHost,
    iptablesBackend: o.iptablesBackend,
    log,
    onStarted: (p) => (parts = p),
  };
  if (o.cleanup) {
    await cleanupProxy(opts);
    return;
  }
  const ac = new AbortController();
  const removeSignals = installDaemonSignals({
    log,
    stop: ac,
    stopMessage: 'stopping (rules stay in place)',
    dump: () =>
      parts
        ? {
            mode: opts.mode,
            ready: parts.syncer.isReady,
            servicePorts: parts.model.servicePorts.size,
            endpointSets: parts.model.endpoints.size,
            pendingChanges: parts.model.hasPending,
            syncs: parts.syncer.syncs,
            lastSync: parts.syncer.lastSyncAt ? new Date(parts.syncer.lastSyncAt).toISOString() : undefined,
          }
        : { mode: opts.mode, ready: false, state: 'starting' },
    reload: () => {
      if (!parts) return undefined;
      parts.syncer.requestFull();
      parts.runner.request('SIGHUP');
      return 'full rule sync';
    },
  });
  keepAliveUntil(ac.signal);
  try {
    await runProxy(opts, ac.signal);
  } finally {
    ac.abort(); // also releases keepAliveUntil when the daemon failed
    removeSignals();
  }
});

await runCli(program);
exitWhenDone();
