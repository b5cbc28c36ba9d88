import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { createLogger } from '../../../src/core/log.js';
import { KubeClient } from '../../../src/kube/client.js';
import { chooseSources } from '../../../src/proxy/sources/kubernetes-choice.js';
import { sliceV1beta1ToV1 } from '../../../src/proxy/sources/kubernetes-convert.js';
import { KubernetesSource, PROXY_LABEL_SELECTOR } from '../../../src/proxy/sources/kubernetes.js';
import type { ProxySink } from '../../../src/proxy/sources/source.js';
import { recordKey, toRecord, type ModelInput } from '../../../src/proxy/model/records.js';
import { FakeApiServer, ev, listOf, status, svc, watchOf } from './fake-apiserver.js';

const log = createLogger({ level: 'error' });

function slice(name: string, rv: string, svcName: string, ip: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: { name, namespace: 'default', resourceVersion: rv, labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], conditions: { ready: true }, ...extra }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

class RecordingSink implements ProxySink {
  calls: string[] = [];
  replaced: ModelInput[][] = [];
  replace(_s: string, objects: readonly ModelInput[]): void {
    this.replaced.push([...objects]);
    this.calls.push(`replace ${objects.map((o) => recordKey(toRecord(o))).sort().join(',')}`);
  }
  upsert(_s: string, obj: ModelInput): void {
    this.calls.push(`upsert ${recordKey(toRecord(obj))}`);
  }
  remove(_s: string, key: string): void {
    this.calls.push(`remove ${key}`);
  }
  refused(): void {
    this.calls.push('refused');
  }
}

describe('KubernetesSource', () => {
  let api: FakeApiServer;
  let client: KubeClient;
  let ac: AbortController;
  let run: Promise<void> | undefined;
  beforeEach(async () => {
    api = await new FakeApiServer().start();
    client = new KubeClient({ server: api.url, origin: 'test' });
    ac = new AbortController();
  });
  afterEach(async () => {
    ac.abort();
    await run;
    client.close();
    await api.close();
  });

  const tuning = { informer: { watchTimeoutSeconds: 30, backoff: { initialMs: 5, maxMs: 20 } }, discoveryBackoff: { initialMs: 5, maxMs: 20 } };

  it('1.20: v1beta1 slices converted, headless skipped, selectors as kube-proxy, replace only once every informer listed', async () => {
    api.on('/apis/discovery.k8s.io', 'list', status(503, 'ServiceUnavailable'), (_r, res) => res.end(JSON.stringify({ kind: 'APIGroup', name: 'discovery.k8s.io', versions: [{ groupVersion: 'discovery.k8s.io/v1beta1', version: 'v1beta1' }] })));
    const headless = svc('hl', '3');
    (headless.spec as Record<string, unknown>).clusterIP = 'None';
    api.on('/api/v1/services', 'list', listOf([svc('web', '5'), headless], '9'));
    api.on('/api/v1/services', 'watch', watchOf({ events: [], then: 'hang' }));
    api.on('/apis/discovery.k8s.io/v1beta1/endpointslices', 'list', listOf([slice('web-abc', '6', 'web', '10.244.1.5', { topology: { 'kubernetes.io/hostname': 'node-a', 'topology.kubernetes.io/zone': 'z1' } })], '9'));
    api.on('/apis/discovery.k8s.io/v1beta1/endpointslices', 'watch', watchOf({ events: [ev('MODIFIED', { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1beta1', ...slice('web-abc', '12', 'web', '10.244.1.6', { topology: { 'kubernetes.io/hostname': 'node-a' } }) })], then: 'hang' }));
    // The Node answers last: nothing may be replaced before.
    let releaseNode!: () => void;
    const nodeGate = new Promise<void>((r) => (releaseNode = r));
    api.on('/api/v1/nodes', 'list', (req, res) =>
      void nodeGate.then(() => listOf([{ metadata: { name: 'node-a', resourceVersion: '4' }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'Hostname', address: 'node-a' }] } }], '9')(req, res)),
    );
    api.on('/api/v1/nodes', 'watch', watchOf({ events: [], then: 'hang' }));
    const sink = new RecordingSink();
    const nodes: unknown[] = [];
    const src = new KubernetesSource({ client, nodeName: 'node-a', log, ...tuning, onNode: (n) => nodes.push(n) });
    run = src.run(sink, ac.signal);
    await waitFor(() => api.lists('/apis/discovery.k8s.io/v1beta1/endpointslices').length === 1 && api.lists('/api/v1/services').length === 1);
    await waitFor(() => api.lists('/api/v1/nodes').length === 1);
    // The slice changed on its watch while the Node list was still out: folded into the store, not sent.
    await waitFor(() => src.informers[1]?.resourceVersion === '12', { what: 'slice watch event' });
    expect(sink.calls).toEqual([]);
    releaseNode();
    await waitFor(() => sink.calls.length >= 1, { what: 'replace' });
    expect(sink.calls).toEqual(['replace EndpointSlice/default/web-abc,Service/default/web']);
    expect(src.endpointsApi).toBe('discovery.k8s.io/v1beta1');
    // The converted slice kept its node: the record's endpoint says node-a.
    const rec = sink.replaced[0]!.map((o) => toRecord(o)).find((r) => r.kind === 'EndpointSlice')!;
    expect(rec.kind === 'EndpointSlice' && rec.ports[0]!.endpoints[0]).toMatchObject({ ip: '10.244.1.6', nodeName: 'node-a' });
    expect(api.lists('/api/v1/services')[0]!.query.get('labelSelector')).toBe(PROXY_LABEL_SELECTOR);
    expect(api.lists('/apis/discovery.k8s.io/v1beta1/endpointslices')[0]!.query.get('labelSelector')).toBe(PROXY_LABEL_SELECTOR);
    expect(api.lists('/api/v1/nodes')[0]!.query.get('fieldSelector')).toBe('metadata.name=node-a');
    expect(src.nodeAddresses()).toEqual([{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'Hostname', address: 'node-a' }]);
    expect(nodes.length).toBeGreaterThan(0);
    expect(src.synced).toBe(true);
  });

  it('v1 slices where served; a 410 relist that changed nothing touches nothing, a deletion meanwhile is one remove', async () => {
    api.on('/apis/discovery.k8s.io', 'list', (_r, res) => res.end(JSON.stringify({ versions: [{ version: 'v1' }, { version: 'v1beta1' }] })));
    api.on('/api/v1/services', 'list', listOf([svc('web', '5'), svc('db', '6', 5432)], '9'), listOf([svc('web', '5')], '20'));
    api.on('/api/v1/services', 'watch', watchOf({ events: [ev('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old' })], then: 'hang' }));
    api.on('/apis/discovery.k8s.io/v1/endpointslices', 'list', listOf([slice('web-1', '7', 'web', '10.244.1.5')], '9'));
    api.on('/apis/discovery.k8s.io/v1/endpointslices', 'watch', watchOf({ events: [], then: 'hang' }));
    api.on('/api/v1/nodes', 'list', listOf([], '9'));
    api.on('/api/v1/nodes', 'watch', watchOf({ events: [], then: 'hang' }));
    const sink = new RecordingSink();
    const src = new KubernetesSource({ client, nodeName: 'node-a', log, ...tuning });
    run = src.run(sink, ac.signal);
    await waitFor(() => src.informers[0]?.stats.relists === 1, { what: 'services relisted' });
    await waitFor(() => sink.calls.length >= 2);
    expect(sink.calls).toEqual(['replace EndpointSlice/default/web-1,Service/default/db,Service/default/web', 'remove Service/default/db']);
    expect(src.endpointsApi).toBe('discovery.k8s.io/v1');
    expect(src.node).toBeUndefined();
  });

  it('v1 Endpoints only where no slices are served; invalid objects are refused, not fatal', async () => {
    api.on('/apis/discovery.k8s.io', 'list', status(404, 'NotFound'));
    const bad = svc('Bad_Name', '4');
    api.on('/api/v1/services', 'list', listOf([svc('web', '5'), bad], '9'));
    api.on('/api/v1/services', 'watch', watchOf({ events: [], then: 'hang' }));
    api.on('/api/v1/endpoints', 'list', listOf([{ metadata: { name: 'web', namespace: 'default', resourceVersion: '6' }, subsets: [{ addresses: [{ ip: '10.244.1.5' }], ports: [{ name: 'http', port: 8080 }] }] }], '9'));
    api.on('/api/v1/endpoints', 'watch', watchOf({ events: [], then: 'hang' }));
    api.on('/api/v1/nodes', 'list', listOf([], '9'));
    api.on('/api/v1/nodes', 'watch', watchOf({ events: [], then: 'hang' }));
    const sink = new RecordingSink();
    const src = new KubernetesSource({ client, nodeName: 'node-a', log, ...tuning });
    run = src.run(sink, ac.signal);
    await waitFor(() => sink.calls.some((c) => c.startsWith('replace')));
    expect(sink.calls).toEqual(['refused', 'replace Endpoints/default/web,Service/default/web']);
    expect(src.endpointsApi).toBe('v1/endpoints');
  });
});

describe('source choice and v1beta1 conversion', () => {
  it('keeps etcd as the default; Kubernetes on --kubeconfig/--master or in a pod without explicit etcd', () => {
    const pod = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    expect(chooseSources({ etcdExplicit: false, env: {} })).toEqual({ kubernetes: false, inCluster: false, etcd: true });
    expect(chooseSources({ kubeconfig: '/k', etcdExplicit: false, env: {} })).toEqual({ kubernetes: true, inCluster: false, etcd: false });
    expect(chooseSources({ master: 'http://x', etcdExplicit: true, env: {} })).toEqual({ kubernetes: true, inCluster: false, etcd: true });
    expect(chooseSources({ etcdExplicit: false, env: pod })).toEqual({ kubernetes: true, inCluster: true, etcd: false });
    expect(chooseSources({ etcdExplicit: true, env: pod })).toEqual({ kubernetes: false, inCluster: false, etcd: true });
  });

  it('moves topology hostname/zone to nodeName/zone and sets apiVersion v1', () => {
    const out = sliceV1beta1ToV1({ apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { name: 's' }, endpoints: [{ addresses: ['10.0.0.1'], topology: { 'kubernetes.io/hostname': 'n1', 'topology.kubernetes.io/zone': 'z' } }, { addresses: ['10.0.0.2'], nodeName: 'n2' }] });
    expect(out.apiVersion).toBe('discovery.k8s.io/v1');
    expect(out.endpoints).toEqual([{ addresses: ['10.0.0.1'], nodeName: 'n1', zone: 'z' }, { addresses: ['10.0.0.2'], nodeName: 'n2' }]);
  });
});
