import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { KubeClient } from '../../../src/kube/client.js';
import { KubeLeaseStore, KubeNodeWatcher, markNodeNetworkAvailable, resolveNodeName } from '../../../src/store/kube-lease-store.js';
import { kubeAnnotations } from '../../../src/store/kube-node.js';
import { parseNetworkConfig } from '../../../src/store/netconfig.js';
import type { LeaseSnapshot } from '../../../src/store/lease-store.js';
import { FakeApiServer, ev, listOf, watchOf, type FakeHandler } from './fake-apiserver.js';

const P = 'flannel.alpha.coreos.com';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const node = (name: string, rv: string, podCIDR?: string, annotations: Record<string, string> = {}) => ({
  metadata: { name, resourceVersion: rv, creationTimestamp: '2026-01-01T00:00:00Z', annotations },
  spec: podCIDR ? { podCIDR } : {},
});
const peerAnn = (ip: string, mac: string) => ({
  [`${P}/kube-subnet-manager`]: 'true', [`${P}/backend-type`]: 'vxlan', [`${P}/public-ip`]: ip,
  [`${P}/backend-data`]: `{"VNI":1,"VtepMAC":"${mac}"}`,
});
const ok = (body: unknown): FakeHandler => (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
};

let api: FakeApiServer | undefined;
const ac = new AbortController();
afterEach(async () => {
  await api?.close();
});

describe('KubeLeaseStore against a fake API server', () => {
  it('waits for podCIDR, PATCHes flanneld annotations on nodes/status, refuses bad peers', async () => {
    api = await new FakeApiServer().start();
    const client = new KubeClient({ server: api.url, origin: 'test' });
    api.on('/api/v1/nodes', 'list', listOf([
      node('me', '10'),
      node('good', '11', '10.244.2.0/24', peerAnn('192.0.2.2', '02:00:00:00:00:02')),
      node('badip', '12', '10.244.3.0/24', peerAnn('127.0.0.1', '02:00:00:00:00:03')),
      node('outside', '13', '10.9.0.0/24', peerAnn('192.0.2.4', '02:00:00:00:00:04')),
      node('notjson', '14', '10.244.5.0/24', { ...peerAnn('192.0.2.5', 'x'), [`${P}/backend-data`]: '{nope' }),
      node('foreign', '15', '10.244.6.0/24'),
    ], '20'));
    // podCIDR arrives by watch event.
    api.on('/api/v1/nodes', 'watch', watchOf({ events: [ev('MODIFIED', node('me', '21', '10.244.1.0/24'))], then: 'hang' }));
    api.onMethod('PATCH', '/api/v1/nodes/me/status', ok({ metadata: { resourceVersion: '22' } }), ok({}));
    const ann = kubeAnnotations();
    const watcher = new KubeNodeWatcher({ client, annotations: ann, minBackoffMs: 10, maxBackoffMs: 50 });
    const invalid: string[] = [];
    const store = new KubeLeaseStore({
      watcher, nodeName: 'me', config, publicIp: '192.0.2.1', backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' }, onInvalid: (i) => invalid.push(`${i.key}:${i.reason}`),
    });
    const lease = await store.acquire(ac.signal);
    expect(lease.subnet).toEqual({ ip: (10 << 24 | 244 << 16 | 1 << 8) >>> 0, prefixLen: 24 });
    const patch = api.requests.find((r) => r.method === 'PATCH')!;
    expect(patch.headers['content-type']).toBe('application/strategic-merge-patch+json');
    expect(JSON.parse(patch.body)).toEqual({ metadata: { annotations: {
      [`${P}/backend-type`]: 'vxlan', [`${P}/backend-data`]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}',
      [`${P}/public-ip`]: '192.0.2.1', [`${P}/kube-subnet-manager`]: 'true',
    } } });
    let snap: LeaseSnapshot | undefined;
    const w = new AbortController();
    const done = store.watch((s) => (snap = s), w.signal);
    await waitFor(() => snap, { timeoutMs: 5000 });
    expect([...snap!.values()].map((l) => l.key)).toEqual(['good']);
    expect([...snap!.values()][0]!.attrs).toMatchObject({ PublicIP: '192.0.2.2', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '02:00:00:00:00:02' } });
    expect(invalid.sort()).toEqual(['badip:public-ip', 'notjson:value', 'outside:outside-network']);
    expect(store.invalidLeases.map((i) => i.key)).toEqual(['badip', 'notjson', 'outside']);
    w.abort();
    await done;
    ac.abort();
  });

  it('clears NetworkUnavailable with a status PATCH, retrying errors', async () => {
    api = await new FakeApiServer().start();
    const client = new KubeClient({ server: api.url, origin: 'test' });
    api.onMethod('PATCH', '/api/v1/nodes/n1/status', (_r, res) => { res.writeHead(500); res.end('{}'); }, ok({}));
    expect(await markNodeNetworkAvailable(client, 'n1', new AbortController().signal, { minBackoffMs: 5, maxBackoffMs: 10 })).toBe(true);
    const reqs = api.requests.filter((r) => r.method === 'PATCH');
    expect(reqs).toHaveLength(2);
    expect(JSON.parse(reqs[1]!.body).status.conditions[0]).toMatchObject({ type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp' });
  });

  it('finds the node name from NODE_NAME or the Pod, and refuses neither', async () => {
    api = await new FakeApiServer().start();
    const client = new KubeClient({ server: api.url, origin: 'test' });
    const s = new AbortController().signal;
    expect(await resolveNodeName(client, { nodeName: 'n9' }, s)).toBe('n9');
    api.on('/api/v1/namespaces/kube-flannel/pods/f-1', 'list', ok({ spec: { nodeName: 'n7' } }));
    expect(await resolveNodeName(client, { podName: 'f-1', podNamespace: 'kube-flannel' }, s)).toBe('n7');
    await expect(resolveNodeName(client, {}, s)).rejects.toMatchObject({ code: 'ERR_KUBE_NODE_NAME' });
  });

  it('applies flanneld\'s annotation prefix rules', () => {
    expect(kubeAnnotations('example.com').publicIp).toBe('example.com/public-ip');
    expect(kubeAnnotations('example.com/x').publicIp).toBe('example.com/x-public-ip');
    expect(() => kubeAnnotations('a/b/c')).toThrow(expect.objectContaining({ code: 'ERR_KUBE_SUBNET' }));
    expect(() => kubeAnnotations('Bad')).toThrow(expect.objectContaining({ code: 'ERR_KUBE_SUBNET' }));
  });
});
