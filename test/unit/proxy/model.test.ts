import { describe, expect, it } from 'vitest';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { endpointsToSlices, usableEndpoints } from '../../../src/proxy/model/endpoints.js';
import { servicePortsOf } from '../../../src/proxy/model/service-port.js';
import { staleConntrackFilters } from '../../../src/proxy/stale-conntrack.js';
import type { Endpoints } from '../../../src/proxy/model/k8s.js';
import { ep, slice, svc } from './fixtures.js';

describe('service ports', () => {
  it('flattens ports with keys, defaults and affinity', () => {
    const ports = servicePortsOf(svc('web', { sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
    expect(ports.map((p) => [p.key, p.protocol, p.affinityTimeoutS])).toEqual([
      ['default/web:http', 'TCP', 10800],
      ['default/web:dns', 'UDP', 10800],
    ]);
  });
  it('ignores headless and ExternalName services', () => {
    expect(servicePortsOf(svc('h', { clusterIP: 'None' }))).toEqual([]);
    expect(servicePortsOf(svc('x', { type: 'ExternalName', externalName: 'example.org' }))).toEqual([]);
  });
  it('externalTrafficPolicy Local applies only to externally accessible services', () => {
    expect(servicePortsOf(svc('a', { externalTrafficPolicy: 'Local' }))[0]!.externalPolicyLocal).toBe(false);
    expect(servicePortsOf(svc('a', { type: 'NodePort', externalTrafficPolicy: 'Local' }))[0]!.externalPolicyLocal).toBe(true);
  });
});

describe('endpoints', () => {
  it('resolves named ports from slices and keeps conditions and nodeName', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web', { ports: [{ name: 'http', port: 80, targetPort: 'web' }] }));
    m.upsert(slice('web', [ep('10.244.1.2', 'node-a', { ready: false, serving: true, terminating: true })], [{ name: 'http', port: 8080, protocol: 'TCP' }]));
    m.applyChanges();
    expect(m.endpoints.get('default/web:http')).toEqual([{ ip: '10.244.1.2', port: 8080, ready: false, serving: true, terminating: true, nodeName: 'node-a' }]);
  });
  it('merges several slices of one service and drops duplicates', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.1.3')], undefined, 'web-1'));
    m.upsert(slice('web', [ep('10.244.1.3'), ep('10.244.1.4')], undefined, 'web-2'));
    m.applyChanges();
    expect(m.endpoints.get('default/web:http')!.map((e) => e.ip)).toEqual(['10.244.1.2', '10.244.1.3', '10.244.1.4']);
  });
  it('converts legacy Endpoints (notReadyAddresses not ready) and prefers native slices', () => {
    const legacy: Endpoints = {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'web', namespace: 'default' },
      subsets: [{ addresses: [{ ip: '10.244.1.2', nodeName: 'node-a' }], notReadyAddresses: [{ ip: '10.244.1.3' }], ports: [{ name: 'http', port: 8080 }] }],
    };
    const slices = endpointsToSlices(legacy);
    expect(slices[0]!.endpoints.map((e) => e.conditions?.ready)).toEqual([true, false]);
    const m = new ProxyModel(() => 0);
    m.upsert(legacy);
    m.applyChanges();
    expect(usableEndpoints(m.endpoints.get('default/web:http')!).map((e) => e.ip)).toEqual(['10.244.1.2']);
    m.upsert(slice('web', [ep('10.244.9.9')]));
    m.applyChanges();
    expect(m.endpoints.get('default/web:http')!.map((e) => e.ip)).toEqual(['10.244.9.9']);
    m.remove('Endpoints', 'default/web');
    expect(m.applyChanges().changed.size).toBe(0);
  });
});

describe('change tracking', () => {
  it('drops changes that cancel out', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    m.remove('Service', 'default/web');
    m.upsert(slice('web', [ep('10.244.1.2')]));
    m.remove('EndpointSlice', 'default/web-abc');
    expect(m.hasPending).toBe(true);
    const c = m.applyChanges();
    expect(c.changed.size).toBe(0);
    expect(m.servicePorts.size).toBe(0);
  });
  it('an update back to the old value is no change; a real one is', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    m.applyChanges();
    m.upsert(svc('web', { clusterIP: '10.96.0.99' }));
    m.upsert(svc('web'));
    expect(m.applyChanges().changed.size).toBe(0);
    m.upsert(svc('web', { clusterIP: '10.96.0.99' }));
    const c = m.applyChanges();
    expect(c.services.get('default/web')!.previous[0]!.clusterIP).toBe('10.96.0.10');
    expect(m.servicePorts.get('default/web:http')!.clusterIP).toBe('10.96.0.99');
  });
  it('a slice whose service label moves changes both services', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(slice('a', [ep('10.244.1.2')], undefined, 's1'));
    m.applyChanges();
    m.upsert(slice('b', [ep('10.244.1.2')], undefined, 's1'));
    expect([...m.applyChanges().changed].sort()).toEqual(['default/a', 'default/b']);
  });
  it('replaceAll (relist) removes what is gone and keeps what is unchanged', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('a'));
    m.upsert(svc('b', { clusterIP: '10.96.0.11' }));
    m.applyChanges();
    m.replaceAll([svc('a')]);
    expect([...m.applyChanges().changed]).toEqual(['default/b']);
  });
  it('reports the trigger time from the last-change annotation', () => {
    const m = new ProxyModel(() => 5_000);
    const s = slice('web', [ep('10.244.1.2')]);
    s.metadata.annotations = { 'endpoints.kubernetes.io/last-change-trigger-time': '1970-01-01T00:00:01Z' };
    m.upsert(s);
    expect(m.applyChanges().triggerTimes).toEqual([1000]);
  });
});

describe('stale UDP conntrack', () => {
  const dns = svc('dns', { type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] });
  const udp = [{ name: 'dns', port: 53, protocol: 'UDP' as const }];
  it('deletes flows DNATed to a removed endpoint (cluster IP and node port)', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(dns);
    m.upsert(slice('dns', [ep('10.244.1.2'), ep('10.244.1.3')], udp));
    m.applyChanges();
    m.upsert(slice('dns', [ep('10.244.1.2')], udp));
    expect(staleConntrackFilters(m.applyChanges(), m)).toEqual([
      { protocol: 'udp', origDst: '10.96.0.10', dstNat: '10.244.1.3' },
      { protocol: 'udp', origDstPort: 30053, dstNat: '10.244.1.3' },
    ]);
  });
  it('clears flows to the service when it gets its first endpoint', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(dns);
    m.applyChanges();
    m.upsert(slice('dns', [ep('10.244.1.2')], udp));
    expect(staleConntrackFilters(m.applyChanges(), m)).toEqual([
      { protocol: 'udp', origDst: '10.96.0.10' },
      { protocol: 'udp', origDstPort: 30053 },
    ]);
  });
  it('ignores TCP', () => {
    const m = new ProxyModel(() => 0);
    m.upsert(svc('web'));
    m.upsert(slice('web', [ep('10.244.1.2')]));
    m.applyChanges();
    m.upsert(slice('web', []));
    expect(staleConntrackFilters(m.applyChanges(), m)).toEqual([]);
  });
});
