import type { KubeObject } from '../../kube/informer.js';

/**
 * discovery.k8s.io/v1beta1 EndpointSlice (what 1.20 serves) in the v1 shape
 * the model reads: v1beta1 puts the node in `topology["kubernetes.io/hostname"]`
 * (and, behind a 1.20 alpha gate, `nodeName`) and the zone in
 * `topology["topology.kubernetes.io/zone"]`; v1 has `nodeName` and `zone`
 * fields and no `topology`. Everything else the model reads is the same.
 */
export function sliceV1beta1ToV1(obj: KubeObject): KubeObject {
  const endpoints = Array.isArray(obj.endpoints) ? (obj.endpoints as Array<Record<string, unknown>>) : obj.endpoints;
  return {
    ...obj,
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    endpoints: Array.isArray(endpoints)
      ? endpoints.map((ep) => {
          if (!ep || typeof ep !== 'object') return ep;
          const { topology, ...rest } = ep as { topology?: unknown; nodeName?: unknown; zone?: unknown };
          const topo = topology && typeof topology === 'object' ? (topology as Record<string, unknown>) : {};
          const nodeName = typeof rest.nodeName === 'string' ? rest.nodeName : topo['kubernetes.io/hostname'];
          const zone = typeof rest.zone === 'string' ? rest.zone : topo['topology.kubernetes.io/zone'];
          return { ...rest, ...(typeof nodeName === 'string' ? { nodeName } : {}), ...(typeof zone === 'string' ? { zone } : {}) };
        })
      : endpoints,
  };
}

/** A Service kube-proxy does not program: headless (clusterIP None). */
export function isHeadless(obj: KubeObject): boolean {
  const spec = obj.spec as { clusterIP?: unknown } | undefined;
  return spec?.clusterIP === 'None';
}

/** A Node's addresses (status.addresses), validated to strings. */
export interface NodeAddress {
  type: string;
  address: string;
}

export function nodeAddresses(node: KubeObject | undefined): NodeAddress[] {
  const list = (node?.status as { addresses?: unknown } | undefined)?.addresses;
  if (!Array.isArray(list)) return [];
  return list.filter((a): a is NodeAddress => !!a && typeof a.type === 'string' && typeof a.address === 'string').map((a) => ({ type: a.type, address: a.address }));
}
