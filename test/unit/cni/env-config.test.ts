import { describe, expect, it } from 'vitest';
import { parseCniArgs, parseCniEnv } from '../../../src/cni/env.js';
import { decodeConf, parseNetConf } from '../../../src/cni/config.js';
import type { CniError } from '../../../src/cni/errors.js';

function catchErr(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    return err as CniError;
  }
  throw new Error('expected a throw');
}

const base = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };

describe('parseCniEnv', () => {
  it('reads a complete ADD environment', () => {
    const env = parseCniEnv({ ...base, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar' });
    expect(env).toMatchObject({ command: 'ADD', containerId: 'abc', ifname: 'eth0', path: ['/opt/cni/bin'] });
    expect(env.args.k8sPodName).toBe('web');
  });

  it.each([
    [{ CNI_COMMAND: undefined }, 'CNI_COMMAND'],
    [{ CNI_COMMAND: 'FROB' }, 'CNI_COMMAND'],
    [{ CNI_CONTAINERID: undefined }, 'CNI_CONTAINERID'],
    [{ CNI_CONTAINERID: '-bad' }, 'CNI_CONTAINERID'],
    [{ CNI_CONTAINERID: 'a/b' }, 'CNI_CONTAINERID'],
    [{ CNI_IFNAME: undefined }, 'CNI_IFNAME'],
    [{ CNI_IFNAME: 'a-very-long-ifname' }, 'CNI_IFNAME'],
    [{ CNI_IFNAME: 'eth:0' }, 'CNI_IFNAME'],
    [{ CNI_NETNS: undefined }, 'CNI_NETNS'],
    [{ CNI_NETNS: 'relative/path' }, 'CNI_NETNS'],
  ])('rejects %j with code 4 naming %s', (patch, variable) => {
    const err = catchErr(() => parseCniEnv({ ...base, ...patch }));
    expect(err.cniCode).toBe(4);
    expect(err.code).toBe('ERR_CNI_INVALID_ENV');
    expect(err.details.variable).toBe(variable);
  });

  it('DEL needs no netns; VERSION, GC and STATUS need no container', () => {
    expect(parseCniEnv({ ...base, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }).netns).toBe('');
    for (const c of ['VERSION', 'GC', 'STATUS']) expect(parseCniEnv({ CNI_COMMAND: c }).command).toBe(c);
  });
});

describe('parseCniArgs', () => {
  it('parses known keys and a requested IP', () => {
    expect(parseCniArgs('K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.244.1.9')).toEqual({ ignoreUnknown: false, k8sPodNamespace: 'ns', k8sPodName: 'p', ip: '10.244.1.9' });
  });
  it('rejects unknown keys unless IgnoreUnknown is set (in any position)', () => {
    expect(catchErr(() => parseCniArgs('FOO=1')).cniCode).toBe(4);
    expect(parseCniArgs('FOO=1;IgnoreUnknown=true').ignoreUnknown).toBe(true);
  });
  it('rejects malformed pairs and a bad IP', () => {
    expect(catchErr(() => parseCniArgs('novalue')).cniCode).toBe(4);
    expect(catchErr(() => parseCniArgs('IP=10.0.0.300')).cniCode).toBe(4);
  });
});

describe('parseNetConf', () => {
  const ok = { cniVersion: '1.0.0', name: 'weft', type: 'weft' };
  it('fills the documented defaults and keeps unknown fields', () => {
    const c = parseNetConf({ ...ok, extra: { a: 1 } });
    expect(c).toMatchObject({ subnetFile: '/run/flannel/subnet.env', bridge: 'weft0', hairpinMode: true, isDefaultGateway: true, dataDir: '/var/lib/cni/networks' });
    expect(c.ipMasq).toBeUndefined();
    expect(c.raw.extra).toEqual({ a: 1 });
  });
  it.each([
    [{ name: undefined }, 'name'],
    [{ name: 'bad name' }, 'name'],
    [{ type: undefined }, 'type'],
    [{ bridge: 'this-name-is-too-long' }, 'bridge'],
    [{ mtu: 20 }, 'mtu'],
    [{ mtu: '1450' }, 'mtu'],
    [{ hairpinMode: 'yes' }, 'hairpinMode'],
    [{ ipMasq: 1 }, 'ipMasq'],
    [{ iptablesBackend: 'xt' }, 'iptablesBackend'],
    [{ runtimeConfig: { ips: ['nope'] } }, 'runtimeConfig.ips'],
    [{ 'cni.dev/valid-attachments': [{ containerID: 'a' }] }, 'cni.dev/valid-attachments[0]'],
  ])('rejects %j with code 7 naming %s', (patch, field) => {
    const err = catchErr(() => parseNetConf({ ...ok, ...patch }));
    expect(err.cniCode).toBe(7);
    expect(err.details.field).toBe(field);
  });
  it('code 1 for missing or unsupported cniVersion, code 6 for bad JSON', () => {
    expect(catchErr(() => parseNetConf({ ...ok, cniVersion: '0.2.0' })).cniCode).toBe(1);
    expect(catchErr(() => parseNetConf({ ...ok, cniVersion: undefined })).cniCode).toBe(1);
    expect(catchErr(() => decodeConf('{"cniVersion":')).cniCode).toBe(6);
    expect(catchErr(() => decodeConf('[1]')).cniCode).toBe(6);
  });
  it('accepts both GC attachment spellings', () => {
    const att = [{ containerID: 'c1', ifname: 'eth0' }];
    expect(parseNetConf({ ...ok, 'cni.dev/valid-attachments': att }).validAttachments).toEqual(att);
    expect(parseNetConf({ ...ok, 'cni.dev/attachments': att }).validAttachments).toEqual(att);
  });
});
