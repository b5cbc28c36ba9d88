import { describe, expect, it } from 'vitest';
import { validateObject, InvalidObjectError } from '../../../src/proxy/model/validate.js';
import { parseManifests } from '../../../src/proxy/model/manifest.js';
import { slice, svc, ep } from './fixtures.js';

function refuse(obj: unknown): InvalidObjectError {
  try {
    validateObject(obj);
  } catch (err) {
    expect((err as InvalidObjectError).code).toBe('ERR_INVALID_OBJECT');
    return err as InvalidObjectError;
  }
  throw new Error('accepted');
}

describe('validation', () => {
  it('accepts good objects', () => {
    expect(validateObject(svc('web')).kind).toBe('Service');
    expect(validateObject(slice('web', [ep('10.244.1.2')])).kind).toBe('EndpointSlice');
    expect(validateObject(svc('web', { clusterIP: '' })).kind).toBe('Service');
  });
  it.each([
    [svc('Web'), 'metadata.name'],
    [svc('web', { ports: [{ port: 0 }] }), 'spec.ports[0].port'],
    [svc('web', { ports: [{ port: 70000 }] }), 'spec.ports[0].port'],
    [svc('web', { ports: [{ port: 80, protocol: 'ICMP' as never }] }), 'spec.ports[0].protocol'],
    [svc('web', { ports: [{ name: 'a', port: 80 }, { port: 81 }] }), 'spec.ports[1].name'],
    [svc('web', { ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), 'spec.ports[1].name'],
    [svc('web', { type: 'NodePort', ports: [{ port: 80, nodePort: 80 }] }), 'spec.ports[0].nodePort'],
    [svc('web', { ports: [{ port: 80, nodePort: 30080 }] }), 'spec.ports[0].nodePort'],
    [svc('web', { clusterIP: '10.96.0.300' }), 'spec.clusterIP'],
    [svc('web', { externalIPs: ['nope'] }), 'spec.externalIPs[0]'],
    [svc('web', { sessionAffinity: 'Sticky' as never }), 'spec.sessionAffinity'],
    [svc('web', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }), 'spec.sessionAffinityConfig.clientIP.timeoutSeconds'],
    [svc('web', { externalTrafficPolicy: 'Local' }), 'spec.externalTrafficPolicy'],
    [svc('web', { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/33'] }), 'spec.loadBalancerSourceRanges[0]'],
    [slice('web', [ep('10.244.1.300')]), 'endpoints[0].addresses[0]'],
    [slice('web', [ep('10.244.1.2')], [{ name: 'http', port: -1, protocol: 'TCP' }]), 'ports[0].port'],
    [{ ...slice('web', []), metadata: { name: 'web-x' } }, 'metadata.labels[kubernetes.io/service-name]'],
    [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } }, 'kind'],
    [{ apiVersion: 'v2', kind: 'Service', metadata: { name: 'p' }, spec: {} }, 'apiVersion'],
  ])('refuses %#, naming %s', (obj, field) => {
    const err = refuse(obj);
    expect(err.field).toBe(field);
    expect(err.message).toContain(field);
    expect(err.message).toMatch(/^(Service|EndpointSlice|Pod) default\//);
  });
});

describe('manifests', () => {
  it('splits multi-document YAML, expands Lists and skips empty documents', () => {
    const docs = parseManifests('---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- {kind: Service}\n- {kind: Endpoints}\n');
    expect(docs.map((d) => (d as { kind: string }).kind)).toEqual(['Service', 'Service', 'Endpoints']);
  });
  it('accepts JSON', () => {
    expect(parseManifests(JSON.stringify(svc('web')))).toHaveLength(1);
  });
  it('names the document on a syntax error', () => {
    expect(() => parseManifests('a: 1\n---\nb: [\n', 'f.yaml')).toThrow(/f.yaml document 2/);
  });
});
