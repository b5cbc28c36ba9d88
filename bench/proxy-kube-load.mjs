#!/usr/bin/env node
// Loader for bench/proxy-kube.mjs: runs inside the bench's API namespace (the
// API server is not reachable from the root namespace) and creates, changes and
// deletes the bench's objects with parallel HTTP requests through weft's own
// client (dist/kube). One JSON command per stdin line, one JSON answer per
// stdout line. Times are process.hrtime (CLOCK_MONOTONIC, the same clock in
// the parent), as decimal nanosecond strings.
//
//   ip netns exec <api-ns> node bench/proxy-kube-load.mjs <kubeconfig> [--concurrency 32]
import { createInterface } from 'node:readline';
import { KubeClient, loadKubeconfig } from '../dist/kube/index.js';
import { svcName, sliceName, clusterIp, endpointIps, NS, NODE } from './proxy-kube-objects.mjs';

const kubeconfig = process.argv[2];
const ci = process.argv.indexOf('--concurrency');
const CONCURRENCY = ci > 0 ? Number(process.argv[ci + 1]) : 32;
const client = new KubeClient(loadKubeconfig(kubeconfig), { maxSockets: CONCURRENCY, userAgent: 'weft-bench' });
const now = () => process.hrtime.bigint().toString();

const service = (i) => ({
  apiVersion: 'v1', kind: 'Service',
  metadata: { name: svcName(i), namespace: NS },
  spec: { clusterIP: clusterIp(i), ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
});
// discovery.k8s.io/v1beta1: what kube-apiserver 1.20 serves and kube-proxy 1.20 reads (EndpointSliceProxying is on by default).
const slice = (i, ips = endpointIps(i)) => ({
  apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice',
  metadata: { name: sliceName(i), namespace: NS, labels: { 'kubernetes.io/service-name': svcName(i), 'endpointslice.kubernetes.io/managed-by': 'weft-bench' } },
  addressType: 'IPv4',
  endpoints: ips.map((a) => ({ addresses: [a], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': 'elsewhere' } })),
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});
const SVC = `/api/v1/namespaces/${NS}/services`;
const EPS = `/apis/discovery.k8s.io/v1beta1/namespaces/${NS}/endpointslices`;

/** Runs the tasks with CONCURRENCY in flight; resolves with the time the last one finished. */
async function parallel(tasks) {
  let next = 0;
  let last = now();
  const worker = async () => {
    while (next < tasks.length) {
      const t = tasks[next++];
      await t();
      last = now();
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, tasks.length) }, worker));
  return last;
}
const ignore404 = (p) => p.catch((err) => {
  if (err?.status !== 404) throw err;
});

const ops = {
  async setup() {
    await client.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    // kube-proxy looks up its Node (by --hostname-override) for its node IP.
    await client.post('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } } });
    return {};
  },
  async create({ n }) {
    const t0 = process.hrtime.bigint();
    const tasks = [];
    for (let i = 0; i < n; i++) tasks.push(() => client.post(SVC, service(i)), () => client.post(EPS, slice(i)));
    const last = await parallel(tasks);
    return { lastCreate: last, ms: Number(BigInt(last) - t0) / 1e6 };
  },
  async change({ i, ips }) {
    // A PUT of the whole slice (what the EndpointSlice controller sends), on the current resourceVersion.
    const cur = await client.get(`${EPS}/${sliceName(i)}`);
    const body = slice(i, ips);
    body.metadata.resourceVersion = cur.metadata.resourceVersion;
    await client.put(`${EPS}/${sliceName(i)}`, body);
    return { done: now() };
  },
  async clear({ n }) {
    const t0 = process.hrtime.bigint();
    await client.delete(EPS); // deletecollection
    const tasks = [];
    for (let i = 0; i < n; i++) tasks.push(() => ignore404(client.delete(`${SVC}/${svcName(i)}`)));
    await parallel(tasks);
    const left = (await client.get(SVC, { query: { limit: 1 } })).items.length + (await client.get(EPS, { query: { limit: 1 } })).items.length;
    if (left) throw new Error(`after clear, objects left in namespace ${NS}`);
    return { ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  let cmd;
  try {
    cmd = JSON.parse(line);
    const res = await ops[cmd.op](cmd);
    process.stdout.write(JSON.stringify({ ok: true, ...res }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: `${cmd?.op}: ${err?.message ?? err}` }) + '\n');
  }
}
