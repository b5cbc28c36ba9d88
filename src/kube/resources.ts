import type { KubeClient } from './client.js';
import { servedVersions } from './discovery.js';
import { KubeApiError, KubeConfigError } from './errors.js';
import type { KubeObject } from './informer.js';
import { sliceV1beta1ToV1 } from '../proxy/sources/kubernetes-convert.js';

/**
 * Create / replace / get / list / delete of the namespaced kinds weftctl
 * writes (Services, EndpointSlices, Endpoints) and of Nodes, on a
 * KubeClient. EndpointSlices go to discovery.k8s.io/v1 where served, else
 * v1beta1 (1.20), converting the v1 shape (nodeName, zone) to v1beta1's
 * topology map on the way in.
 */

export type ResourceKind = 'Service' | 'Endpoints' | 'EndpointSlice' | 'Node';

export interface ResourceRef {
  kind: ResourceKind;
  /** Ignored for Nodes. */
  namespace?: string;
  name?: string;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function checkName(field: string, v: string): string {
  if (!NAME_RE.test(v)) throw new KubeConfigError(field, `${JSON.stringify(v)} is not a valid object name`);
  return v;
}

/** v1 EndpointSlice -> v1beta1 (node and zone into topology; v1-only fields dropped). */
export function sliceV1ToV1beta1(obj: KubeObject): KubeObject {
  const endpoints = Array.isArray(obj.endpoints) ? (obj.endpoints as Array<Record<string, unknown>>) : [];
  return {
    ...obj,
    apiVersion: 'discovery.k8s.io/v1beta1',
    endpoints: endpoints.map((ep) => {
      if (!ep || typeof ep !== 'object') return ep;
      const { nodeName, zone, hints: _hints, topology, ...rest } = ep as Record<string, unknown>;
      const topo: Record<string, unknown> = topology && typeof topology === 'object' ? { ...(topology as Record<string, unknown>) } : {};
      if (typeof nodeName === 'string') topo['kubernetes.io/hostname'] = nodeName;
      if (typeof zone === 'string') topo['topology.kubernetes.io/zone'] = zone;
      return Object.keys(topo).length ? { ...rest, topology: topo } : rest;
    }),
  };
}

export class KubeResources {
  private sliceVersion: Promise<string> | undefined;

  constructor(readonly client: KubeClient) {}

  /** 'v1' or 'v1beta1' (discovery, once). */
  endpointSliceVersion(): Promise<string> {
    this.sliceVersion ??= servedVersions(this.client, 'discovery.k8s.io').then((v) => {
      if (v.includes('v1')) return 'v1';
      if (v.includes('v1beta1')) return 'v1beta1';
      throw new KubeConfigError('discovery.k8s.io', `the API server serves no EndpointSlice version weft knows (served: ${v.join(', ') || 'none'})`);
    });
    return this.sliceVersion;
  }

  /** Collection path, or the object's path when ref.name is set. */
  async path(ref: ResourceRef): Promise<string> {
    const name = ref.name === undefined ? '' : `/${encodeURIComponent(checkName('metadata.name', ref.name))}`;
    if (ref.kind === 'Node') return `/api/v1/nodes${name}`;
    const ns = ref.namespace === undefined ? '' : `/namespaces/${encodeURIComponent(checkName('metadata.namespace', ref.namespace))}`;
    if (ref.kind === 'EndpointSlice') return `/apis/discovery.k8s.io/${await this.endpointSliceVersion()}${ns}/endpointslices${name}`;
    return `/api/v1${ns}/${ref.kind === 'Service' ? 'services' : 'endpoints'}${name}`;
  }

  /** The object as this server takes it (EndpointSlice version). */
  private async wire(kind: ResourceKind, obj: KubeObject): Promise<KubeObject> {
    if (kind !== 'EndpointSlice') return obj;
    const v = await this.endpointSliceVersion();
    if (v === 'v1beta1') return sliceV1ToV1beta1(obj);
    // A v1beta1 manifest on a v1 server.
    if (obj.apiVersion === 'discovery.k8s.io/v1beta1') return sliceV1beta1ToV1(obj);
    return obj;
  }

  async create(kind: ResourceKind, obj: KubeObject): Promise<KubeObject> {
    const ns = kind === 'Node' ? undefined : (obj.metadata?.namespace ?? 'default');
    const body = await this.wire(kind, { ...obj, metadata: { ...obj.metadata, ...(ns ? { namespace: ns } : {}) } });
    return this.client.post<KubeObject>(await this.path({ kind, namespace: ns }), body);
  }

  async get(ref: Required<Pick<ResourceRef, 'kind' | 'name'>> & ResourceRef): Promise<KubeObject | undefined> {
    try {
      return await this.client.get<KubeObject>(await this.path({ ...ref, namespace: ref.kind === 'Node' ? undefined : (ref.namespace ?? 'default') }));
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * Create, or on 409 replace (PUT with the stored resourceVersion; a
   * Service keeps its allocated clusterIP and node ports unless given).
   */
  async apply(kind: ResourceKind, obj: KubeObject): Promise<{ object: KubeObject; action: 'created' | 'configured' }> {
    try {
      return { object: await this.create(kind, obj), action: 'created' };
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409)) throw err;
    }
    const name = String(obj.metadata?.name);
    const ns = kind === 'Node' ? undefined : (obj.metadata?.namespace ?? 'default');
    const old = await this.get({ kind, namespace: ns, name });
    if (!old) return { object: await this.create(kind, obj), action: 'created' };
    let next: KubeObject = { ...obj, metadata: { ...obj.metadata, ...(ns ? { namespace: ns } : {}), resourceVersion: old.metadata?.resourceVersion } };
    if (kind === 'Service') next = keepAllocated(next, old);
    const body = await this.wire(kind, next);
    return { object: await this.client.put<KubeObject>(await this.path({ kind, namespace: ns, name }), body), action: 'configured' };
  }

  /** Items of a kind, in one namespace or all. */
  async list(kind: ResourceKind, namespace?: string): Promise<KubeObject[]> {
    const r = await this.client.get<{ items?: KubeObject[] }>(await this.path({ kind, namespace: kind === 'Node' ? undefined : namespace }));
    return r.items ?? [];
  }

  /** True when it existed. */
  async delete(ref: Required<Pick<ResourceRef, 'kind' | 'name'>> & ResourceRef): Promise<boolean> {
    try {
      await this.client.delete(await this.path({ ...ref, namespace: ref.kind === 'Node' ? undefined : (ref.namespace ?? 'default') }));
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return false;
      throw err;
    }
  }
}

/** A replaced Service keeps what the server allocated when the manifest leaves it out (kubectl apply's effect). */
function keepAllocated(next: KubeObject, old: KubeObject): KubeObject {
  const spec = { ...((next.spec as Record<string, unknown>) ?? {}) };
  const oldSpec = (old.spec as Record<string, unknown>) ?? {};
  if (spec.clusterIP === undefined && oldSpec.clusterIP !== undefined) spec.clusterIP = oldSpec.clusterIP;
  if (spec.clusterIPs === undefined && oldSpec.clusterIPs !== undefined && spec.clusterIP === oldSpec.clusterIP) spec.clusterIPs = oldSpec.clusterIPs;
  const oldPorts = Array.isArray(oldSpec.ports) ? (oldSpec.ports as Array<Record<string, unknown>>) : [];
  if (Array.isArray(spec.ports) && spec.type !== 'ClusterIP') {
    spec.ports = (spec.ports as Array<Record<string, unknown>>).map((p) => {
      if (p.nodePort !== undefined) return p;
      const o = oldPorts.find((q) => q.port === p.port && (q.protocol ?? 'TCP') === (p.protocol ?? 'TCP'));
      return o?.nodePort !== undefined ? { ...p, nodePort: o.nodePort } : p;
    });
  }
  if (spec.healthCheckNodePort === undefined && oldSpec.healthCheckNodePort !== undefined) spec.healthCheckNodePort = oldSpec.healthCheckNodePort;
  return { ...next, spec };
}
