import { flat } from './flat.js';
import {
  MANAGED_BY_LABEL,
  MIRROR_MANAGER,
  SERVICE_NAME_LABEL,
  namespaceOf,
  type EndpointSlice,
  type Endpoints,
  type SliceEndpoint,
} from './k8s.js';

/** One backend of one service port. Plain data, JSON-comparable. */
export interface EndpointInfo {
  readonly ip: string;
  readonly port: number;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** Empty when the slice does not say. */
  readonly nodeName: string;
}

/**
 * Endpoints of one Service keyed by service-port key ("ns/name:port"). The
 * lists are shared with the model's records and snapshot: never mutate them.
 */
export type ServiceEndpoints = ReadonlyMap<string, readonly EndpointInfo[]>;

/** "ip:port", the endpoint's identity in chain names and conntrack. */
export function endpointString(ep: { ip: string; port: number }): string {
  return `${ep.ip}:${ep.port}`;
}

/** The Service a slice belongs to ("ns/name"), or undefined when unlabelled. */
export function sliceService(slice: EndpointSlice): string | undefined {
  const svc = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc ? flat(namespaceOf(slice), '/', svc) : undefined;
}

export function isMirrored(slice: EndpointSlice): boolean {
  return slice.metadata.labels?.[MANAGED_BY_LABEL] === MIRROR_MANAGER;
}

/**
 * Converts legacy v1 Endpoints into one EndpointSlice per subset port set, the
 * way the mirroring controller does: addresses are ready, notReadyAddresses
 * not ready. Slices are named `<name>-<subset index>`.
 */
export function endpointsToSlices(ep: Endpoints): EndpointSlice[] {
  return (ep.subsets ?? []).map((subset, i) => {
    const toEndpoint = (ready: boolean) => (a: { ip: string; nodeName?: string; hostname?: string }): SliceEndpoint => ({
      addresses: [a.ip],
      conditions: { ready, serving: ready, terminating: false },
      ...(a.nodeName ? { nodeName: a.nodeName } : {}),
      ...(a.hostname ? { hostname: a.hostname } : {}),
    });
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${ep.metadata.name}-${i}`,
        namespace: namespaceOf(ep),
        labels: { [SERVICE_NAME_LABEL]: ep.metadata.name, [MANAGED_BY_LABEL]: MIRROR_MANAGER },
        ...(ep.metadata.annotations ? { annotations: ep.metadata.annotations } : {}),
      },
      addressType: 'IPv4',
      endpoints: [...(subset.addresses ?? []).map(toEndpoint(true)), ...(subset.notReadyAddresses ?? []).map(toEndpoint(false))],
      ports: subset.ports ?? [],
    } satisfies EndpointSlice;
  });
}

/**
 * True when two endpoint sets render the same rules: the same service port
 * keys (in any order), each with the same endpoints in the same order.
 */
export function sameEndpoints(a: ServiceEndpoints, b: ServiceEndpoints): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, xs] of a) {
    const ys = b.get(k);
    if (ys === undefined || !sameEndpointList(xs, ys)) return false;
  }
  return true;
}

function sameEndpointList(a: readonly EndpointInfo[], b: readonly EndpointInfo[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y && (x.ip !== y.ip || x.port !== y.port || x.ready !== y.ready || x.serving !== y.serving || x.terminating !== y.terminating || x.nodeName !== y.nodeName)) return false;
  }
  return true;
}

/**
 * The endpoints traffic may use, kube-proxy's rule: ready ones; when none is
 * ready, the serving-and-terminating ones (graceful drain); else none.
 */
export function usableEndpoints(eps: readonly EndpointInfo[]): EndpointInfo[] {
  const ready = eps.filter((e) => e.ready);
  if (ready.length > 0) return ready;
  return eps.filter((e) => e.serving && e.terminating);
}
