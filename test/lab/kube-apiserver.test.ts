import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { KUBE_SKIP_MESSAGE, kubeApiserverPath, kubectl, startKubeApiserver, type KubeApiserver } from '../helpers/kube.js';
import { isRoot } from '../helpers/netns.js';

// The real kube-apiserver 1.20 that the proxy's Kubernetes source is proven
// against: it starts from the cache, serves the API groups weft-proxy reads
// (EndpointSlices only as discovery.k8s.io/v1beta1 in 1.20), and stores what
// kubectl creates.
const built = kubeApiserverPath() !== undefined;
if (!built) console.warn(`kube-apiserver.test.ts skipped: ${KUBE_SKIP_MESSAGE}`);

interface HttpAnswer {
  status: number;
  body: string;
}

function get(api: KubeApiserver, path: string, auth: 'token' | 'cert' | 'none' = 'token'): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}${path}`, {
      ca: readFileSync(api.caFile),
      headers: auth === 'token' ? { authorization: `Bearer ${api.token}` } : {},
      ...(auth === 'cert' ? { cert: readFileSync(api.clientCertFile), key: readFileSync(api.clientKeyFile) } : {}),
      timeout: 10_000,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!isRoot || !built)('kube-apiserver 1.20 from the cache', () => {
  let etcd: TestEtcd | undefined;
  let api: KubeApiserver | undefined;
  const tag = randomBytes(3).toString('hex');
  const ns = `weft-smoke-${tag}`;
  const node = `weft-node-${tag}`;
  const k = (args: string[], input?: string) => kubectl(args, api!.kubeconfigPath, { input });

  beforeAll(async () => {
    etcd = await startEtcd();
    api = await startKubeApiserver({ etcd: etcd.endpoint });
  });

  afterAll(async () => {
    if (api) {
      // Namespaces are finalised by kube-controller-manager, which does not run here:
      // delete the objects themselves (the etcd and its data go with stop()).
      await k(['delete', 'node', node, '--ignore-not-found']).catch(() => undefined);
      await k(['-n', ns, 'delete', 'service,endpointslices.discovery.k8s.io', '--all', '--ignore-not-found']).catch(() => undefined);
      await api.stop();
    }
    await etcd?.stop();
  });

  it('answers /readyz and /version as 1.20, and refuses a request without credentials', async () => {
    const version = JSON.parse((await get(api!, '/version')).body) as { major: string; minor: string; gitVersion: string };
    expect(version.major).toBe('1');
    expect(version.minor).toBe('20');
    expect(version.gitVersion).toMatch(/^v1\.20\./);
    expect((await get(api!, '/readyz')).body).toBe('ok');
    expect((await get(api!, '/api/v1/namespaces', 'none')).status).toBe(401);
    // The admin client certificate authenticates too (system:masters).
    expect((await get(api!, '/api/v1/namespaces', 'cert')).status).toBe(200);
  });

  it('serves discovery.k8s.io as v1beta1 only', async () => {
    const res = await get(api!, '/apis/discovery.k8s.io');
    expect(res.status).toBe(200);
    const group = JSON.parse(res.body) as { versions: { version: string }[] };
    expect(group.versions.map((v) => v.version)).toEqual(['v1beta1']);
    expect((await get(api!, '/apis/discovery.k8s.io/v1/endpointslices')).status).toBe(404);
  });

  it('stores a Service, its EndpointSlice and a Node created with kubectl', async () => {
    await k(['create', 'namespace', ns]);
    await k(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'web', namespace: ns },
          spec: { type: 'ClusterIP', clusterIP: '10.96.10.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
        },
        {
          apiVersion: 'discovery.k8s.io/v1beta1',
          kind: 'EndpointSlice',
          metadata: { name: 'web-a', namespace: ns, labels: { 'kubernetes.io/service-name': 'web' } },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': node } }],
          ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        },
        {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name: node, labels: { 'kubernetes.io/hostname': node } },
          spec: { podCIDR: '10.244.1.0/24' },
        },
      ],
    }));

    const svc = JSON.parse((await k(['-n', ns, 'get', 'service', 'web', '-o', 'json'])).stdout);
    expect(svc.spec.clusterIP).toBe('10.96.10.10');
    expect(svc.spec.ports[0]).toMatchObject({ name: 'http', port: 80, targetPort: 8080 });

    const slices = JSON.parse((await get(api!, `/apis/discovery.k8s.io/v1beta1/namespaces/${ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb`)).body);
    expect(slices.items).toHaveLength(1);
    expect(slices.items[0].endpoints[0].addresses).toEqual(['10.244.1.5']);
    expect(slices.items[0].ports[0]).toMatchObject({ name: 'http', port: 8080 });

    const n = JSON.parse((await k(['get', 'node', node, '-o', 'json'])).stdout);
    expect(n.spec.podCIDR).toBe('10.244.1.0/24');

    // A Service outside the range is refused by the server's own validation.
    const bad = await kubectl(['-n', ns, 'create', 'service', 'clusterip', 'bad', '--tcp=80:80', '--clusterip=192.0.2.9'],
      api!.kubeconfigPath, { allowFail: true });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not within the service CIDR|range/i);

    await k(['-n', ns, 'delete', 'service', 'web']);
    await k(['-n', ns, 'delete', 'endpointslices.discovery.k8s.io', 'web-a']);
    await k(['delete', 'node', node]);
    expect((await get(api!, `/api/v1/namespaces/${ns}/services/web`)).status).toBe(404);
    expect((await get(api!, `/api/v1/nodes/${node}`)).status).toBe(404);
  });
});
