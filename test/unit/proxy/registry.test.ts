import { describe, expect, it } from 'vitest';
import { MemoryKV } from '../../../src/proxy/registry/kv.js';
import { ProxyRegistry, parseObjectPath, pickFree } from '../../../src/proxy/registry/registry.js';
import type { Service } from '../../../src/proxy/model/k8s.js';
import { svc, slice, ep } from './fixtures.js';

const noIP = (name: string, spec: Partial<Service['spec']> = {}) => svc(name, { clusterIP: undefined, ...spec });

describe('pickFree', () => {
  it('wraps around from a random start and reports exhaustion', () => {
    expect(pickFree(1, 4, (v) => v !== 2, () => 0.9)).toBe(2);
    expect(pickFree(1, 2, () => true, () => 0)).toBeUndefined();
  });
});

describe('ProxyRegistry', () => {
  it('allocates a ClusterIP in the service CIDR and node ports in range, stored as Kubernetes JSON', async () => {
    const kv = new MemoryKV();
    const reg = new ProxyRegistry(kv, { serviceCIDR: '10.96.0.0/28', random: () => 0 });
    const r = await reg.apply(noIP('web', { type: 'NodePort', ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] }));
    expect(r.action).toBe('created');
    const s = r.object as Service;
    expect(s.spec.clusterIP).toBe('10.96.0.1');
    expect(s.spec.ports!.map((p) => p.nodePort)).toEqual([30000, 30001]);
    const stored = JSON.parse(kv.data.get('/weft/registry/services/default/web')!.value);
    expect(stored).toMatchObject({ apiVersion: 'v1', kind: 'Service', spec: { clusterIP: '10.96.0.1' } });
    expect(kv.data.get('/weft/registry/allocations/clusterips/10.96.0.1')!.value).toBe('default/web');
  });

  it('keeps allocations on re-apply and reports unchanged', async () => {
    const reg = new ProxyRegistry(new MemoryKV(), { random: () => 0.5 });
    const a = (await reg.apply(noIP('web', { type: 'NodePort' }))).object as Service;
    const b = await reg.apply(noIP('web', { type: 'NodePort' }));
    expect(b.action).toBe('unchanged');
    expect((b.object as Service).spec.clusterIP).toBe(a.spec.clusterIP);
    expect((b.object as Service).spec.ports![0]!.nodePort).toBe(a.spec.ports![0]!.nodePort);
  });

  it('refuses a taken ClusterIP or node port, an IP outside the range, and a ClusterIP change', async () => {
    const reg = new ProxyRegistry(new MemoryKV());
    await reg.apply(svc('a', { clusterIP: '10.96.0.10', type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }));
    await expect(reg.apply(svc('b', { clusterIP: '10.96.0.10' }))).rejects.toMatchObject({ code: 'ERR_INVALID_OBJECT', field: 'spec.clusterIP' });
    await expect(reg.apply(svc('c', { clusterIP: '10.97.0.10', type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }))).rejects.toMatchObject({ field: 'spec.ports[0].nodePort' });
    await expect(reg.apply(svc('d', { clusterIP: '10.200.0.1' }))).rejects.toMatchObject({ field: 'spec.clusterIP' });
    await expect(reg.apply(svc('a', { clusterIP: '10.96.0.11' }))).rejects.toMatchObject({ field: 'spec.clusterIP' });
  });

  it('retries when another writer takes the chosen IP between read and commit', async () => {
    const kv = new MemoryKV();
    const reg = new ProxyRegistry(kv, { serviceCIDR: '10.96.0.0/29', random: () => 0 });
    kv.beforeTxn = () => kv.put('/weft/registry/allocations/clusterips/10.96.0.1', 'default/other');
    const s = (await reg.apply(noIP('web'))).object as Service;
    expect(s.spec.clusterIP).toBe('10.96.0.2');
  });

  it('reports exhaustion with a stable code', async () => {
    const reg = new ProxyRegistry(new MemoryKV(), { serviceCIDR: '10.96.0.0/30' });
    await reg.apply(noIP('a'));
    await reg.apply(noIP('b'));
    await expect(reg.apply(noIP('c'))).rejects.toMatchObject({ code: 'ERR_RANGE_EXHAUSTED' });
  });

  it('allocates a health-check node port for LoadBalancer + Local, and delete releases everything', async () => {
    const kv = new MemoryKV();
    const reg = new ProxyRegistry(kv);
    const s = (await reg.apply(noIP('web', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }))).object as Service;
    expect(s.spec.healthCheckNodePort).toBeGreaterThanOrEqual(30000);
    expect([...kv.data.keys()].filter((k) => k.includes('allocations'))).toHaveLength(3);
    expect(await reg.delete('Service', 'default', 'web')).toBe(true);
    expect(kv.data.size).toBe(0);
    expect(await reg.delete('Service', 'default', 'web')).toBe(false);
  });

  it('switching to ClusterIP releases node ports', async () => {
    const kv = new MemoryKV();
    const reg = new ProxyRegistry(kv);
    await reg.apply(noIP('web', { type: 'NodePort' }));
    await reg.apply(noIP('web'));
    expect([...kv.data.keys()].filter((k) => k.includes('nodeports'))).toEqual([]);
  });

  it('stores slices and lists by kind', async () => {
    const reg = new ProxyRegistry(new MemoryKV());
    await reg.apply(slice('web', [ep('10.244.1.2')]));
    expect((await reg.list('EndpointSlice')).map((o) => o.metadata.name)).toEqual(['web-abc']);
    expect(parseObjectPath('/weft/registry/endpointslices/default/web-abc')).toEqual({ kind: 'EndpointSlice', namespace: 'default', name: 'web-abc' });
    expect(parseObjectPath('/weft/registry/allocations/nodeports/30000')).toBeUndefined();
  });
});
