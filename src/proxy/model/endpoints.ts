import { isIPv4 } from '../../core/ip.js';
import {
  MANAGED_BY_LABEL,
  MIRROR_MANAGER,
  SERVICE_NAME_LABEL,
  namespaceOf,
  type EndpointSlice,
  type Endpoints,
  type SliceEndpoint,
} from './k8s.js';
import { servicePortKey } from './service-port.js';

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

/** Endpoints of one Service keyed by service-port key ("ns/name:port"). */
export type ServiceEndpoints = Map<string, EndpointInfo[]>;

/** "ip:port", the endpoint's identity in chain names and conntrack. */
export function endpointString(ep: { ip: string; port: number }): string {
  return `${ep.ip}:${ep.port}`;
}

/** The Service a slice belongs to ("ns/name"), or undefined when unlabelled. */
export function sliceService(slice: EndpointSlice): string | undefined {
  const svc = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc ? `${namespaceOf(slice)}/${svc}` : undefined;
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
 * Merges the slices of one Service into endpoints per service port. A slice
 * port is matched to the service port of the same name (the slice carries the
 * resolved number, which is how named target ports reach the proxy).
 * Duplicate ip:port across slices keep the first. Slices mirrored from v1
 * Endpoints count only when the Service has no native slices (kube-proxy reads
 * slices, and the mirror is there only for clusters that write Endpoints).
 * Results are sorted so that equal inputs compare equal.
 */
export function endpointsOfService(service: string, slices: Iterable<EndpointSlice>): ServiceEndpoints {
  const all = [...slices];
  const native = all.filter((s) => !isMirrored(s));
  const use = native.length > 0 ? native : all;
  const out: ServiceEndpoints = new Map();
  const seen = new Set<string>();
  for (const slice of use) {
    if (slice.addressType !== 'IPv4') continue;
    for (const port of slice.ports ?? []) {
      if (!port.port) continue;
      const key = servicePortKey(service, port.name);
      const list = out.get(key) ?? [];
      for (const ep of slice.endpoints) {
        const ip = ep.addresses[0];
        if (!ip || !isIPv4(ip)) continue;
        const id = `${key}|${ip}:${port.port}|${port.protocol ?? 'TCP'}`;
        if (seen.has(id)) continue;
        seen.add(id);
        // kube: a nil ready means ready; serving defaults to ready; terminating to false.
        const ready = ep.conditions?.ready ?? true;
        list.push({
          ip,
          port: port.port,
          ready,
          serving: ep.conditions?.serving ?? ready,
          terminating: ep.conditions?.terminating ?? false,
          nodeName: ep.nodeName ?? '',
        });
      }
      out.set(key, list);
    }
  }
  for (const list of out.values()) list.sort(compareEndpoints);
  return out;
}

function compareEndpoints(a: EndpointInfo, b: EndpointInfo): number {
  return a.ip === b.ip ? a.port - b.port : ipOrder(a.ip) - ipOrder(b.ip);
}

function ipOrder(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! * 256 + p[1]!) * 256 + p[2]!) * 256 + p[3]!;
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
