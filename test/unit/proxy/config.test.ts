import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseKubeProxyConfig } from '../../../src/proxy/config/kubeproxy-config.js';
import { formatGoDuration, parseGoDuration } from '../../../src/proxy/config/go-duration.js';
import { configzOf, DEFAULT_SETTINGS, levelOfVerbosity, resolveSettings } from '../../../src/proxy/config/settings.js';

const kubeadm = readFileSync(join(import.meta.dirname, 'config-fixtures', 'kubeadm-1.20-config.conf'), 'utf8');
const HEAD = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';

function failure(fn: () => unknown): { code?: string; field?: string; message: string } {
  try {
    fn();
  } catch (err) {
    const e = err as { code?: string; field?: string; message: string };
    return { code: e.code, field: e.field, message: e.message };
  }
  throw new Error('did not throw');
}

describe('KubeProxyConfiguration parsing', () => {
  it("reads kubeadm 1.20's config.conf: zero values and nulls are unset", () => {
    const c = parseKubeProxyConfig(kubeadm, 'config.conf');
    expect(c.clusterCIDR).toBe('10.244.0.0/16');
    expect(c.clientConnection?.kubeconfig).toBe('/var/lib/kube-proxy/kubeconfig.conf');
    expect(c.iptables?.masqueradeBit).toBeUndefined();
    expect(c.iptables?.syncPeriod).toBe(0);
    expect(c.conntrack).toEqual({});
    const r = resolveSettings({}, c);
    expect(r.settings).toMatchObject({
      mode: 'iptables',
      clusterCIDR: '10.244.0.0/16',
      kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf',
      masqueradeBit: 13, // null: weft's default
      syncPeriodMs: DEFAULT_SETTINGS.syncPeriodMs,
      minSyncPeriodMs: 1000,
      healthzBindAddress: '127.0.0.1:10256', // "" = default
      metricsBindAddress: '127.0.0.1:10249',
      nodePortAddresses: [],
    });
    expect(r.settings.nodeIP).toBeUndefined(); // 0.0.0.0 is "unset"
    expect(r.warnings).toEqual([]); // nothing in kubeadm's file is set without an effect
  });

  it('takes JSON too', () => {
    const c = parseKubeProxyConfig(JSON.stringify({ apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', mode: 'nftables', iptables: { masqueradeBit: 14 } }));
    expect(resolveSettings({}, c).settings).toMatchObject({ mode: 'nftables', masqueradeBit: 14 });
  });

  it('refuses an unknown field naming its path', () => {
    const e = failure(() => parseKubeProxyConfig(`${HEAD}iptables:\n  masqueradeBits: 14\n`));
    expect(e).toMatchObject({ code: 'ERR_PROXY_CONFIG', field: 'iptables.masqueradeBits' });
    expect(e.message).toBe('iptables.masqueradeBits: unknown field');
    expect(failure(() => parseKubeProxyConfig(`${HEAD}resourceContainer: /kube-proxy\n`)).field).toBe('resourceContainer');
  });

  it('refuses a value of the wrong type naming the field', () => {
    expect(failure(() => parseKubeProxyConfig(`${HEAD}iptables:\n  masqueradeBit: "14"\n`))).toMatchObject({ code: 'ERR_PROXY_CONFIG', field: 'iptables.masqueradeBit' });
    expect(failure(() => parseKubeProxyConfig(`${HEAD}iptables:\n  masqueradeAll: yes please\n`)).field).toBe('iptables.masqueradeAll');
    expect(failure(() => parseKubeProxyConfig(`${HEAD}iptables: 3\n`)).field).toBe('iptables');
    expect(failure(() => parseKubeProxyConfig(`${HEAD}nodePortAddresses: 10.0.0.0/8\n`)).field).toBe('nodePortAddresses');
    expect(failure(() => parseKubeProxyConfig(`${HEAD}featureGates:\n  Foo: 1\n`)).field).toBe('featureGates.Foo');
    expect(failure(() => parseKubeProxyConfig(`${HEAD}oomScoreAdj: 1.5\n`)).field).toBe('oomScoreAdj');
  });

  it('refuses a wrong kind or apiVersion, and a document that is not an object', () => {
    expect(failure(() => parseKubeProxyConfig('apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n')).field).toBe('kind');
    expect(failure(() => parseKubeProxyConfig('apiVersion: v1\nkind: KubeProxyConfiguration\n')).field).toBe('apiVersion');
    expect(failure(() => parseKubeProxyConfig('- a\n- b\n', 'f.yaml')).field).toBe('f.yaml');
    expect(failure(() => parseKubeProxyConfig('a: [\n', 'f.yaml')).field).toBe('f.yaml');
  });

  it('reads Go durations and refuses others naming the field', () => {
    expect(parseGoDuration('30s', 'x')).toBe(30_000);
    expect(parseGoDuration('1h0m0s', 'x')).toBe(3_600_000);
    expect(parseGoDuration('1m30s', 'x')).toBe(90_000);
    expect(parseGoDuration('1.5s', 'x')).toBe(1500);
    expect(parseGoDuration('250ms', 'x')).toBe(250);
    expect(parseGoDuration('0', 'x')).toBe(0);
    expect(parseGoDuration('500000us', 'x')).toBe(500);
    for (const bad of ['30', '1 h', '-1s', '1d', '', 's']) expect(() => parseGoDuration(bad, 'x')).toThrow(/duration/);
    expect(failure(() => parseKubeProxyConfig(`${HEAD}iptables:\n  syncPeriod: 30\n`)).field).toBe('iptables.syncPeriod');
    expect(failure(() => parseKubeProxyConfig(`${HEAD}iptables:\n  syncPeriod: thirty\n`)).field).toBe('iptables.syncPeriod');
    expect(formatGoDuration(3_600_000)).toBe('1h0m0s');
    expect(formatGoDuration(30_000)).toBe('30s');
    expect(formatGoDuration(250)).toBe('250ms');
  });

  it('applies the section of the mode in effect', () => {
    const c = parseKubeProxyConfig(`${HEAD}mode: ipvs\niptables:\n  syncPeriod: 30s\nipvs:\n  syncPeriod: 10s\n  minSyncPeriod: 2s\n  scheduler: wlc\n`);
    expect(resolveSettings({}, c).settings).toMatchObject({ mode: 'ipvs', syncPeriodMs: 10_000, minSyncPeriodMs: 2000, ipvsScheduler: 'wlc' });
    // The same file run in iptables mode by a flag uses iptables.*.
    expect(resolveSettings({ mode: 'iptables' }, c).settings).toMatchObject({ mode: 'iptables', syncPeriodMs: 30_000, minSyncPeriodMs: 1000 });
    expect(failure(() => resolveSettings({}, parseKubeProxyConfig(`${HEAD}mode: userspace\n`))).field).toBe('mode');
  });

  it('accepts what weft has no equivalent for, with a warning per setting', () => {
    const c = parseKubeProxyConfig(
      `${HEAD}conntrack:\n  maxPerCore: 32768\n  tcpEstablishedTimeout: 24h0m0s\nwinkernel:\n  networkName: x\nnftables:\n  masqueradeBit: 14\nudpIdleTimeout: 250ms\nconfigSyncPeriod: 15m0s\nfeatureGates:\n  EndpointSliceProxying: true\n`,
    );
    const r = resolveSettings({}, c);
    expect(r.warnings.map((w) => w.split(':')[0])).toEqual(expect.arrayContaining(['conntrack', 'winkernel', 'udpIdleTimeout', 'configSyncPeriod', 'featureGates']));
    expect(r.settings.masqueradeBit).toBe(13); // nftables.* apply only in nftables mode
  });

  it('lets flags override the file, and the file override defaults', () => {
    const c = parseKubeProxyConfig(`${HEAD}clusterCIDR: 10.244.0.0/16\nhostnameOverride: Node-A\niptables:\n  masqueradeBit: 14\n  syncPeriod: 30s\nhealthzBindAddress: 0.0.0.0:10256\nmetricsBindAddress: 0.0.0.0\nfeatureGates:\n  A: true\n  B: true\n`);
    const fileOnly = resolveSettings({}, c);
    expect(fileOnly.settings).toMatchObject({ hostnameOverride: 'node-a', masqueradeBit: 14, syncPeriodMs: 30_000, healthzBindAddress: '0.0.0.0:10256', metricsBindAddress: '0.0.0.0:10249' });
    expect(fileOnly.healthzTimeoutMs).toBe(60_000); // 2 x 30 s, as kube-proxy
    const r = resolveSettings({ masqueradeBit: 12, hostnameOverride: 'node1', syncPeriodMs: 10_000, featureGates: { B: false } }, c);
    expect(r.settings).toMatchObject({ masqueradeBit: 12, hostnameOverride: 'node1', syncPeriodMs: 10_000, clusterCIDR: '10.244.0.0/16', featureGates: { A: true, B: false } });
    expect(r.healthzTimeoutMs).toBe(20_000);
    expect(resolveSettings({}).healthzTimeoutMs).toBe(60_000); // 1 h sync period: capped
  });

  it('checks the merged values', () => {
    expect(failure(() => resolveSettings({}, parseKubeProxyConfig(`${HEAD}iptables:\n  masqueradeBit: 32\n`))).field).toBe('iptables.masqueradeBit');
    expect(failure(() => resolveSettings({}, parseKubeProxyConfig(`${HEAD}oomScoreAdj: -1001\n`))).field).toBe('oomScoreAdj');
    expect(failure(() => resolveSettings({ minSyncPeriodMs: 10_000, syncPeriodMs: 5000 })).code).toBe('ERR_PROXY_CONFIG');
    expect(failure(() => resolveSettings({ hostnameOverride: '  ' })).field).toBe('--hostname-override');
    // Empty = not given (WEFT_PROXY_HOSTNAME_OVERRIDE= in an env file): the file's name stays.
    expect(resolveSettings({ hostnameOverride: '' }, parseKubeProxyConfig(`${HEAD}hostnameOverride: n2\n`)).settings.hostnameOverride).toBe('n2');
  });

  it('takes the IPv4 half of a dual-stack clusterCIDR', () => {
    const r = resolveSettings({}, parseKubeProxyConfig(`${HEAD}clusterCIDR: 10.244.0.0/16,fd00:10:244::/56\n`));
    expect(r.settings.clusterCIDR).toBe('10.244.0.0/16');
    expect(r.warnings.some((w) => w.startsWith('clusterCIDR'))).toBe(true);
  });

  it('maps -v to log levels', () => {
    expect([0, 1, 2, 3, 4, 9].map(levelOfVerbosity)).toEqual(['info', 'info', 'info', 'info', 'debug', 'debug']);
  });

  it('serves the applied config in /configz: the file with the values in effect', () => {
    const c = parseKubeProxyConfig(kubeadm);
    const r = resolveSettings({ masqueradeBit: 14 }, c);
    const z = configzOf(r, c, 'node1') as Record<string, any>;
    expect(z).toMatchObject({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'iptables',
      hostnameOverride: 'node1',
      clusterCIDR: '10.244.0.0/16',
      healthzBindAddress: '127.0.0.1:10256',
      iptables: { masqueradeBit: 14, masqueradeAll: false, syncPeriod: '1h0m0s', minSyncPeriod: '1s' },
      clientConnection: { kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf' },
    });
    // Round trip: what /configz shows is itself a valid config file.
    expect(resolveSettings({}, parseKubeProxyConfig(JSON.stringify(z))).settings).toMatchObject({ masqueradeBit: 14, syncPeriodMs: 3_600_000 });
  });
});
