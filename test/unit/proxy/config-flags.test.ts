import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { applyEnv } from '../../../src/cli/env.js';
import { addProxyFlags, flagLayer, PROXY_FLAGS } from '../../../src/proxy/config/flags.js';
import { parseKubeProxyConfig } from '../../../src/proxy/config/kubeproxy-config.js';
import { resolveSettings } from '../../../src/proxy/config/settings.js';

function parse(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const p = new Command('weft-proxy').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  addProxyFlags(p);
  p.parse(argv, { from: 'user' });
  applyEnv(p, 'WEFT_PROXY', env);
  return flagLayer(p);
}

function failure(fn: () => unknown): { code?: string; field?: string; exitCode?: number; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; field?: string; exitCode?: number; message: string };
  }
  throw new Error('did not throw');
}

describe("weft-proxy's kube-proxy flags", () => {
  it('maps the command line distributions pass', () => {
    const { settings, warnings } = parse([
      '--hostname-override=node1',
      '--kubeconfig=/var/lib/kube-proxy/kubeconfig.conf',
      '--master=https://192.0.2.1:6443',
      '--cluster-cidr=10.244.0.0/16',
      '--bind-address=192.0.2.11',
      '--proxy-mode=iptables',
      '--iptables-sync-period=30s',
      '--iptables-min-sync-period=2s',
      '--iptables-masquerade-bit=14',
      '--masquerade-all',
      '--nodeport-addresses=192.0.2.0/24',
      '--healthz-bind-address=0.0.0.0:10256',
      '--metrics-bind-address=0.0.0.0:10249',
      '--oom-score-adj=-999',
      '--feature-gates=EndpointSliceProxying=true,Foo=false',
      '-v', '4',
    ]);
    expect(settings).toEqual({
      hostnameOverride: 'node1',
      kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf',
      master: 'https://192.0.2.1:6443',
      clusterCIDR: '10.244.0.0/16',
      nodeIP: '192.0.2.11',
      mode: 'iptables',
      syncPeriodMs: 30_000,
      minSyncPeriodMs: 2000,
      masqueradeBit: 14,
      masqueradeAll: true,
      nodePortAddresses: ['192.0.2.0/24'],
      healthzBindAddress: '0.0.0.0:10256',
      metricsBindAddress: '0.0.0.0:10249',
      oomScoreAdj: -999,
      featureGates: { EndpointSliceProxying: true, Foo: false },
      verbosity: 4,
    });
    expect(warnings).toEqual([]);
  });

  it("keeps weft's older names as aliases, and refuses two names with different values", () => {
    expect(parse(['--sync-period', '1m', '--min-sync-period=500ms', '--masquerade-bit', '12']).settings).toEqual({ syncPeriodMs: 60_000, minSyncPeriodMs: 500, masqueradeBit: 12 });
    expect(parse(['--sync-period=30s', '--iptables-sync-period=30s']).settings).toEqual({ syncPeriodMs: 30_000 });
    const e = failure(() => parse(['--sync-period=1m', '--iptables-sync-period=30s']));
    expect(e).toMatchObject({ exitCode: 2, field: '--sync-period' });
  });

  it('accepts flags weft has no use for, with a warning naming each', () => {
    const { settings, warnings } = parse([
      '--conntrack-max-per-core=0',
      '--conntrack-min=131072',
      '--conntrack-tcp-timeout-established=24h0m0s',
      '--conntrack-tcp-timeout-close-wait=1h0m0s',
      '--profiling',
      '--udp-timeout=250ms',
      '--proxy-port-range=30000-32767',
      '--alsologtostderr',
      '--logtostderr=false',
      '--log-dir=/tmp',
      '--ipvs-strict-arp',
    ]);
    // --ipvs-strict-arp is applied (ipvs mode's arp sysctls); the rest only warn.
    expect(settings).toEqual({ enableProfiling: true, ipvsStrictARP: true });
    expect(warnings.map((w) => w.split(':')[0])).toEqual([
      '--profiling',
      '--proxy-port-range',
      '--udp-timeout',
      '--conntrack-max-per-core',
      '--conntrack-min',
      '--conntrack-tcp-timeout-established',
      '--conntrack-tcp-timeout-close-wait',
      '--alsologtostderr',
      '--logtostderr',
      '--log-dir',
    ]);
  });

  it('still checks the types of ignored flags (usage error, exit 2)', () => {
    expect(failure(() => parse(['--conntrack-min=lots']))).toMatchObject({ exitCode: 2, field: '--conntrack-min' });
    expect(failure(() => parse(['--udp-timeout=250']))).toMatchObject({ exitCode: 2, field: '--udp-timeout' });
    expect(failure(() => parse(['-v', 'abc']))).toMatchObject({ exitCode: 2 });
    expect(failure(() => parse(['--feature-gates=Foo']))).toMatchObject({ exitCode: 2, field: '--feature-gates' });
    expect(failure(() => parse(['--iptables-masquerade-bit=32']))).toMatchObject({ exitCode: 2 });
    expect(failure(() => parse(['--oom-score-adj=-1001']))).toMatchObject({ exitCode: 2 });
    expect(failure(() => parse(['--proxy-mode=userspace']))).toMatchObject({ exitCode: 2 });
  });

  it('takes -v N, -vN and --v=N', () => {
    expect(parse(['-v', '2']).settings.verbosity).toBe(2);
    expect(parse(['-v5']).settings.verbosity).toBe(5);
    expect(parse(['--v=3']).settings.verbosity).toBe(3);
  });

  it('reads WEFT_PROXY_* for flags not on the command line; the command line wins', () => {
    const { settings } = parse(['--iptables-sync-period=10s'], { WEFT_PROXY_IPTABLES_SYNC_PERIOD: '1m', WEFT_PROXY_SYNC_PERIOD: '', WEFT_PROXY_CLUSTER_CIDR: '10.244.0.0/16', WEFT_PROXY_MASQUERADE_BIT: '14' });
    expect(settings).toEqual({ syncPeriodMs: 10_000, clusterCIDR: '10.244.0.0/16', masqueradeBit: 14 });
    expect(failure(() => parse([], { WEFT_PROXY_IPTABLES_MIN_SYNC_PERIOD: '1hour' }))).toMatchObject({ exitCode: 2, field: 'WEFT_PROXY_IPTABLES_MIN_SYNC_PERIOD' });
  });

  it('lets flags override the file (kubeadm: --config plus --hostname-override)', () => {
    const file = parseKubeProxyConfig('apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nhostnameOverride: from-file\niptables:\n  masqueradeBit: 14\n');
    const r = resolveSettings(parse(['--hostname-override=NODE1']).settings, file);
    expect(r.settings).toMatchObject({ hostnameOverride: 'node1', masqueradeBit: 14 });
  });

  it('the deprecated --healthz-port / --metrics-port set the port (0 = off)', () => {
    expect(resolveSettings(parse(['--healthz-port=0', '--metrics-port=12345']).settings).settings).toMatchObject({ healthzBindAddress: '', metricsBindAddress: '127.0.0.1:12345' });
    expect(resolveSettings(parse(['--healthz-bind-address=0.0.0.0']).settings).settings.healthzBindAddress).toBe('0.0.0.0:10256');
  });

  it('every flag of the table is unique', () => {
    const longs = PROXY_FLAGS.map((f) => /--[a-z0-9-]+/.exec(f.flags)![0]);
    expect(new Set(longs).size).toBe(longs.length);
  });
});
