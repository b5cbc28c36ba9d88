// Pure: Service + EndpointSlice manifests for the weft-proxy memory benchmark.

/** `<a>.<b>.x.y` for index i (i < 65536). */
export const ipOf = (base, i) => `${base}.${(i >> 8) & 255}.${i & 255}`;

/** Service i: ClusterIP 10.96.x.y, one TCP port 80 named http. */
export function service(i) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc-${i}`, namespace: 'bench' },
    spec: { clusterIP: ipOf('10.96', i + 1), ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
  };
}

/** Its EndpointSlice: `endpoints` ready pod IPs in 10.244.0.0/16 on port 8080. */
export function endpointSlice(i, endpoints = 2) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `svc-${i}-x`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    endpoints: Array.from({ length: endpoints }, (_, k) => ({
      addresses: [ipOf('10.244', endpoints * i + k + 2)],
      nodeName: k % 2 ? 'node-b' : 'node-a',
      conditions: { ready: true },
    })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/**
 * `services` services split into files of `perFile` as `kind: List` JSON
 * documents (JSON is YAML, and one List per file keeps parsing cheap).
 * Returns [{ name, text }].
 */
export function manifestFiles(services, endpoints = 2, perFile = 1000) {
  if (services * endpoints + 2 > 65536) throw new Error(`${services} x ${endpoints} endpoints do not fit 10.244.0.0/16`);
  const files = [];
  for (let start = 0; start < services; start += perFile) {
    const items = [];
    for (let i = start; i < Math.min(services, start + perFile); i++) items.push(service(i), endpointSlice(i, endpoints));
    files.push({ name: `bench-${String(files.length).padStart(3, '0')}.json`, text: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }) });
  }
  return files;
}

/** Value of a Prometheus sample in /metrics text (first match of name + optional labels). */
export function metricValue(text, name, labels = '') {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp < 0) continue;
    const key = line.slice(0, sp);
    if (key === name || (labels && key === `${name}{${labels}}`)) return Number(line.slice(sp + 1));
  }
  return undefined;
}

/** The same objects as weft-proxy registry entries in etcd: [{ key, value }]. */
export function registryEntries(services, endpoints = 2) {
  const out = [];
  for (let i = 0; i < services; i++) {
    const svc = service(i);
    const eps = endpointSlice(i, endpoints);
    out.push({ key: `/weft/registry/services/bench/${svc.metadata.name}`, value: JSON.stringify(svc) });
    out.push({ key: `/weft/registry/endpointslices/bench/${eps.metadata.name}`, value: JSON.stringify(eps) });
  }
  return out;
}
