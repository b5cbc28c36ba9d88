// weft-proxy's command line; src/cli/weft-proxy.ts (the bin) loads this after installing the signal handlers.
import { installDaemonSignals } from './signals.js';
import { Command } from 'commander';
import { exitWhenDone, keepAliveUntil, runCli } from './run.js';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { stringify } from 'yaml';
import { addTypedOption, parseChoice, parseList, useEnv, type TypedOption } from './env.js';
import { addProxyFlags, flagLayer } from '../proxy/config/flags.js';
import { loadKubeProxyConfig, setOomScoreAdj } from '../proxy/config/load.js';
import { configzOf, levelOfVerbosity, resolveSettings } from '../proxy/config/settings.js';
import { addEtcdFlags, etcdSecurityOf } from './etcd-flags.js';
import { weftVersion } from './version.js';
import { createLogger, type LogLevel } from '../core/log.js';
import { PROXY_MODES, cleanupProxy, runProxy, type ProxyMode, type ProxyOptions } from '../proxy/daemon.js';
import type { ProxySyncer } from '../proxy/syncer.js';
import type { BoundedFrequencyRunner } from '../core/runner.js';
import type { ProxyModel } from '../proxy/model/model.js';
import { chooseSources } from '../proxy/sources/kubernetes-choice.js';

const program = new Command('weft-proxy')
  .description("weft's service proxy: renders Services and EndpointSlices (from etcd and/or a manifest directory) into iptables, nftables or ipvs rules with kube-proxy's semantics.\nTakes kube-proxy's command line and KubeProxyConfiguration (--config); flags override the file.\nEvery flag can also be set as WEFT_PROXY_<FLAG>, parsed as the flag is.")
  .version(weftVersion(), '--version', 'print the version and exit');
const add = <T>(o: TypedOption<T>) => addTypedOption(program, o);

add({ flags: '--etcd-endpoints <urls>', description: 'etcd endpoints, comma separated ("" = none)', default: 'http://127.0.0.1:2379' });
addEtcdFlags(program);
add({ flags: '--config <file>', description: 'KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1, YAML or JSON); flags override it' });
add({ flags: '--write-config-to <file>', description: 'write the configuration as applied (file + flags + defaults) to this file as YAML and exit', env: false });
add({ flags: '--manifests <dir>', description: 'also read Service/EndpointSlice manifests from this directory (watched)' });
addProxyFlags(program);
add({ flags: '--healthcheck-bind-host <host>', description: 'address the ETP=Local health-check node ports listen on', default: '0.0.0.0' });
add({ flags: '--iptables-backend <backend>', description: 'force iptables backend: legacy or nft (default: detect like kube-proxy)', parse: parseChoice(['legacy', 'nft'] as const) });
add({ flags: '--cleanup', description: "remove all of weft-proxy's rules and exit", kind: 'boolean', env: false });
useEnv(program, 'WEFT_PROXY');

program.action(async (o) => {
  const file = o.config ? await loadKubeProxyConfig(o.config) : undefined;
  const flags = flagLayer(program);
  const resolved = resolveSettings(flags.settings, file);
  const st = resolved.settings;
  const level: LogLevel = flags.settings.logLevel ?? (st.verbosity !== undefined ? levelOfVerbosity(st.verbosity) : st.logLevel);
  const log = createLogger({ format: st.logFormat, level, base: { component: 'weft-proxy' } });
  for (const w of [...flags.warnings, ...resolved.warnings]) log.warn({ reason: w }, 'setting accepted without effect');
  const nodeName = st.hostnameOverride || hostname().toLowerCase();
  const configz = configzOf(resolved, file, nodeName);
  if (o.writeConfigTo) {
    await writeFile(o.writeConfigTo, stringify(configz));
    log.info({ file: o.writeConfigTo }, 'wrote configuration');
    return;
  }
  if (st.oomScoreAdj !== undefined && !o.cleanup) await setOomScoreAdj(st.oomScoreAdj, log);
  let parts: { model: ProxyModel; syncer: ProxySyncer; runner: BoundedFrequencyRunner } | undefined;
  const sourcesChosen = chooseSources({ kubeconfig: st.kubeconfig, master: st.master, etcdExplicit: program.getOptionValueSource('etcdEndpoints') !== 'default' });
  const opts: ProxyOptions = {
    etcdEndpoints: sourcesChosen.etcd ? parseList(o.etcdEndpoints, '--etcd-endpoints') : [],
    kube: { inCluster: sourcesChosen.inCluster },
    etcd: etcdSecurityOf(o),
    manifestsDir: o.manifests || undefined,
    mode: st.mode as ProxyMode,
    ipvsScheduler: st.ipvsScheduler,
    nodeName,
    nodeIP: st.nodeIP,
    clusterCIDR: st.clusterCIDR,
    masqueradeAll: st.masqueradeAll,
    masqueradeBit: st.masqueradeBit,
    nodePortAddresses: st.nodePortAddresses,
    localhostNodePorts: st.localhostNodePorts,
    ipvsStrictARP: st.ipvsStrictARP,
    minSyncPeriodMs: st.minSyncPeriodMs,
    syncPeriodMs: st.syncPeriodMs,
    healthzTimeoutMs: resolved.healthzTimeoutMs,
    healthzBindAddress: st.healthzBindAddress,
    metricsBindAddress: st.metricsBindAddress,
    healthCheckBindHost: o.healthcheckBindHost,
    iptablesBackend: o.iptablesBackend,
    kubeconfig: st.kubeconfig || undefined,
    master: st.master || undefined,
    configz: () => configz,
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
