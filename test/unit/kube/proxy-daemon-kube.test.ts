import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../src/core/async.js';
import { silentLogger } from '../../../src/core/log.js';
import { FakeConntrack } from '../../../src/netfilter/conntrack.js';
import { FakeIptables } from '../../../src/netfilter/fake-iptables.js';
import { runProxy } from '../../../src/proxy/daemon.js';
import { FakeApiServer, ev, listOf, watchOf } from './fake-apiserver.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const service = (name: string, ip: string, rv: string) => ({ metadata: { name, namespace: 'default', resourceVersion: rv }, spec: { clusterIP: ip, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } });
const slice = (name: string, svc: string, ips: string[], rv: string) => ({
  metadata: { name, namespace: 'default', resourceVersion: rv, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: 'node-a' })),
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});

describe('weft-proxy daemon with --master (fake API server, fake iptables)', () => {
  it('writes rules only after every informer listed, then follows the watch; etcd is not needed', async () => {
    const api = await new FakeApiServer().start();
    cleanups.push(() => api.close());
    api.on('/apis/discovery.k8s.io', 'list', (_r, res) => res.end(JSON.stringify({ versions: [{ version: 'v1' }] })));
    api.on('/api/v1/services', 'list', listOf([service('web', '10.96.0.20', '5')], '9'));
    api.on('/api/v1/services', 'watch', watchOf({ events: [], then: 'hang' }));
    api.on('/apis/discovery.k8s.io/v1/endpointslices', 'list', listOf([slice('web-1', 'web', ['10.244.1.2', '10.244.1.3'], '6')], '9'));
    let sendChange!: () => void;
    api.on('/apis/discovery.k8s.io/v1/endpointslices', 'watch', (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      sendChange = () => res.write(`${JSON.stringify(ev('MODIFIED', { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', ...slice('web-1', 'web', ['10.244.1.2'], '12') }))}\n`);
      void req;
    });
    let releaseNodes!: () => void;
    const gate = new Promise<void>((r) => (releaseNodes = r));
    api.on('/api/v1/nodes', 'list', (req, res) => void gate.then(() => listOf([{ metadata: { name: 'node-a', resourceVersion: '3' }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.10' }] } }], '9')(req, res)));
    let sendNode!: (type: string, node: object) => void;
    api.on('/api/v1/nodes', 'watch', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      sendNode = (type, node) => res.write(`${JSON.stringify(ev(type, { kind: 'Node', apiVersion: 'v1', ...node }))}\n`);
    });
    let health: { status(): { nodeEligible: boolean; healthy: boolean } } | undefined;

    const ipt = new FakeIptables();
    const ac = new AbortController();
    const nodes: unknown[] = [];
    const done = runProxy(
      {
        master: api.url,
        nodeName: 'node-a',
        minSyncPeriodMs: 10,
        syncPeriodMs: 60_000,
        healthzBindAddress: '',
        metricsBindAddress: '',
        healthCheckBindHost: '127.0.0.1',
        iptables: ipt,
        conntrack: new FakeConntrack(),
        log: silentLogger,
        onStarted: (p) => (health = p.health),
        kube: { informer: { watchTimeoutSeconds: 30, backoff: { initialMs: 5, maxMs: 20 } }, onNode: (n) => nodes.push(n) },
      },
      ac.signal,
    );
    cleanups.push(async () => {
      ac.abort();
      await done;
    });
    await waitFor(() => api.lists('/api/v1/nodes').length === 1 && api.watches('/apis/discovery.k8s.io/v1/endpointslices').length === 1, { what: 'informers started' });
    expect(ipt.restores).toHaveLength(0); // the Node informer has not listed yet
    releaseNodes();
    await waitFor(() => ipt.rules('nat', 'WEFT-SERVICES')?.some((r) => r.includes('default/web:http cluster IP')), { what: 'first sync' });
    expect(ipt.chains('nat').filter((c) => c.startsWith('WEFT-SEP-'))).toHaveLength(2);
    expect(nodes.length).toBeGreaterThan(0);
    sendChange();
    await waitFor(() => ipt.chains('nat').filter((c) => c.startsWith('WEFT-SEP-')).length === 1, { what: 'endpoint removed via watch' });
    // kube-proxy's nodeEligible: false once this Node is being deleted (deletionTimestamp), and once it is gone.
    expect(health!.status().nodeEligible).toBe(true);
    sendNode('MODIFIED', { metadata: { name: 'node-a', resourceVersion: '20', deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: ['x/y'] } });
    await waitFor(() => health!.status().nodeEligible === false, { what: 'node not eligible while being deleted' });
    expect(health!.status().healthy).toBe(false);
    sendNode('DELETED', { metadata: { name: 'node-a', resourceVersion: '21' } });
    await waitFor(() => nodes.length >= 3 && nodes.at(-1) === undefined, { what: 'node deleted seen' });
    expect(health!.status().nodeEligible).toBe(false);
  });
});
