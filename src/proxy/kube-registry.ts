import { loadKubeconfig } from '../kube/kubeconfig.js';
import { KubeClient } from '../kube/client.js';
import type { KubeObject } from '../kube/informer.js';
import { KubeResources } from '../kube/resources.js';
import { namespaceOf, type ProxyKind, type ProxyObject } from './model/k8s.js';
import { validateObject } from './model/validate.js';
import { sliceV1beta1ToV1 } from './sources/kubernetes-convert.js';

/**
 * weftctl's apply / get / delete against a Kubernetes API server instead of
 * the etcd registry: the same four calls as ProxyRegistry, so the commands
 * do not care which one they hold. The API server allocates ClusterIPs and
 * node ports; objects are checked with weft's validation first so a bad
 * manifest is refused with the same message either way.
 */
export class KubeApiRegistry {
  private readonly res: KubeResources;

  constructor(
    private readonly client: KubeClient,
    private readonly nodePortRange: readonly [number, number] = [30000, 32767],
  ) {
    this.res = new KubeResources(client);
  }

  static fromKubeconfig(file: string, nodePortRange?: readonly [number, number]): KubeApiRegistry {
    return new KubeApiRegistry(new KubeClient(loadKubeconfig(file), { userAgent: 'weftctl' }), nodePortRange);
  }

  async apply(input: unknown): Promise<{ object: ProxyObject; action: 'created' | 'configured' | 'unchanged' }> {
    const obj = validateObject(input, { nodePortRange: this.nodePortRange });
    obj.metadata.namespace = namespaceOf(obj);
    const r = await this.res.apply(obj.kind, obj as unknown as KubeObject);
    let stored = r.object;
    // status is a subresource: a create or replace drops it (LoadBalancer ingress).
    const status = (obj as { status?: unknown }).status;
    if (obj.kind === 'Service' && status && typeof status === 'object') {
      stored = await this.client.patch<KubeObject>(`${await this.res.path({ kind: 'Service', namespace: obj.metadata.namespace, name: obj.metadata.name })}/status`, { status }, {
        patchType: 'application/merge-patch+json',
      });
    }
    return { object: this.toV1(stored) as unknown as ProxyObject, action: r.action };
  }

  async get(kind: ProxyKind, namespace: string, name: string): Promise<ProxyObject | undefined> {
    const o = await this.res.get({ kind, namespace, name });
    return o ? (this.toV1(o) as unknown as ProxyObject) : undefined;
  }

  async list(kind: ProxyKind, namespace?: string): Promise<ProxyObject[]> {
    const items = await this.res.list(kind, namespace);
    return items
      .map((o) => this.toV1({ apiVersion: kind === 'EndpointSlice' ? undefined : 'v1', kind, ...o }) as unknown as ProxyObject)
      .sort((a, b) => `${namespaceOf(a)}/${a.metadata.name}`.localeCompare(`${namespaceOf(b)}/${b.metadata.name}`));
  }

  delete(kind: ProxyKind, namespace: string, name: string): Promise<boolean> {
    return this.res.delete({ kind, namespace, name });
  }

  close(): void {
    this.client.close();
  }

  /** What weftctl prints: v1 EndpointSlices, no managedFields. */
  private toV1(o: KubeObject): KubeObject {
    const { managedFields: _m, ...metadata } = o.metadata as KubeObject['metadata'] & { managedFields?: unknown };
    const out = { ...o, metadata };
    const isSlice = out.kind === 'EndpointSlice' || String(out.apiVersion ?? '').startsWith('discovery.k8s.io/');
    return isSlice && out.apiVersion !== 'discovery.k8s.io/v1' ? sliceV1beta1ToV1({ ...out, kind: 'EndpointSlice' }) : out;
  }
}
