import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { EndpointSlice, Service, SliceEndpoint } from '../../../src/proxy/model/k8s.js';
import { ProxyModel } from '../../../src/proxy/model/model.js';
import { groupByService, parseSave, renderIptables } from '../../../src/proxy/iptables/render.js';
import type { IptablesProxyConfig } from '../../../src/proxy/iptables/service-rules.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Compares with golden/<name>.txt; UPDATE_GOLDEN=1 (or a missing file) rewrites it. */
export function expectGolden(name: string, text: string): void {
  const file = join(here, 'golden', `${name}.txt`);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

export function svc(name: string, spec: Partial<Service['spec']> = {}, extra: Partial<Service> = {}): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...spec },
    ...extra,
  };
}

export function ep(ip: string, nodeName = 'node-a', conditions: SliceEndpoint['conditions'] = { ready: true }): SliceEndpoint {
  return { addresses: [ip], nodeName, conditions };
}

export function slice(service: string, endpoints: SliceEndpoint[], ports = [{ name: 'http', port: 8080, protocol: 'TCP' as const }], name = `${service}-abc`): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints,
    ports,
  };
}

export const CFG: IptablesProxyConfig = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16' };

/** Full render of a set of objects. */
export function renderFull(objects: Array<Service | EndpointSlice>, cfg: IptablesProxyConfig = CFG): string {
  const m = new ProxyModel(() => 0);
  for (const o of objects) m.upsert(o);
  m.applyChanges();
  return renderIptables({ model: { services: groupByService(m.servicePorts.values()), endpoints: m.endpoints }, cfg, changed: 'all', existing: parseSave('') }).text;
}

/** Only the lines of per-service chains and top-level service rules (drops the fixed boilerplate). */
export function serviceLines(text: string): string {
  return text
    .split('\n')
    .filter((l) => /^(-A |:)WEFT-(SVC|SVL|EXT|FW|SEP)-/.test(l) || /^-A WEFT-(SERVICES|EXTERNAL-SERVICES|NODEPORTS|PROXY-FIREWALL) /.test(l) || l.startsWith('*'))
    .join('\n') + '\n';
}
