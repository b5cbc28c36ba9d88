import { isIPv4 } from '../../core/ip.js';
import { flat } from './flat.js';
import { nsName, namespaceOf, type Protocol, type Service, type ServicePort } from './k8s.js';

/** ClientIP affinity timeout when the Service does not set one (kube's default, 3 h). */
export const DEFAULT_AFFINITY_TIMEOUT_S = 10800;

/**
 * One port of one Service, flattened into what every proxy mode renders.
 * Plain data (JSON-comparable) so change trackers can compare snapshots.
 */
export interface ServicePortInfo {
  /** "ns/name:portName" (":portName" omitted when the port is unnamed), kube's ServicePortName. */
  readonly key: string;
  /** "ns/name" of the owning Service. */
  readonly service: string;
  readonly portName: string;
  readonly protocol: Protocol;
  readonly clusterIP: string;
  readonly port: number;
  /** 0 when the Service has no node port. */
  readonly nodePort: number;
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly string[];
  /** ClientIP affinity timeout in seconds; 0 means no affinity. */
  readonly affinityTimeoutS: number;
  readonly externalPolicyLocal: boolean;
  readonly internalPolicyLocal: boolean;
  /** Health-check node port for externalTrafficPolicy Local; 0 when none. */
  readonly healthCheckNodePort: number;
}

/** kube's ServicePortName string. */
export function servicePortKey(service: string, portName: string | undefined): string {
  return portName ? flat(service, ':', portName) : service;
}

/** True for Services a proxy ignores: headless, ExternalName, or without an IPv4 ClusterIP. */
export function isProxied(svc: Service): boolean {
  const ip = svc.spec.clusterIP;
  if (svc.spec.type === 'ExternalName') return false;
  return !!ip && ip !== 'None' && isIPv4(ip);
}

/** True when the service is reachable from outside the cluster (external policy applies). */
function isExternallyAccessible(svc: Service): boolean {
  const t = svc.spec.type ?? 'ClusterIP';
  return t === 'NodePort' || t === 'LoadBalancer' || (svc.spec.externalIPs?.length ?? 0) > 0;
}

/** One frozen [] shared by every port without external IPs, LB IPs or source ranges (most of them). */
const NONE: readonly string[] = Object.freeze([]);
const orNone = (xs: readonly string[]): readonly string[] => (xs.length === 0 ? NONE : xs);

/**
 * Flattens a (validated) Service into its ports; [] for services a proxy
 * ignores. The lists are shared between the ports of one Service (they are
 * read-only), and `intern` shares short repeated strings between Services.
 */
export function servicePortsOf(svc: Service, intern: { get(s: string): string } = { get: (s) => s }): ServicePortInfo[] {
  if (!isProxied(svc)) return [];
  const service = nsName(svc);
  const spec = svc.spec;
  const lbIPs = orNone((svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip && isIPv4(ip)));
  const externalIPs = orNone((spec.externalIPs ?? []).filter(isIPv4));
  const sourceRanges = orNone(spec.loadBalancerSourceRanges ?? []);
  const affinity =
    spec.sessionAffinity === 'ClientIP' ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_S) : 0;
  const externalLocal = isExternallyAccessible(svc) && spec.externalTrafficPolicy === 'Local';
  return (spec.ports ?? []).map((p: ServicePort) => ({
    key: servicePortKey(service, p.name),
    service,
    portName: intern.get(p.name ?? ''),
    protocol: p.protocol ?? 'TCP',
    clusterIP: spec.clusterIP!,
    port: p.port,
    nodePort: p.nodePort ?? 0,
    externalIPs,
    loadBalancerIPs: lbIPs,
    loadBalancerSourceRanges: sourceRanges,
    affinityTimeoutS: affinity,
    externalPolicyLocal: externalLocal,
    internalPolicyLocal: spec.internalTrafficPolicy === 'Local',
    healthCheckNodePort: externalLocal ? (spec.healthCheckNodePort ?? 0) : 0,
  }));
}

/** True when two port lists render the same rules (field by field, in order). */
export function samePorts(a: readonly ServicePortInfo[], b: readonly ServicePortInfo[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!samePort(a[i]!, b[i]!)) return false;
  return true;
}

function samePort(a: ServicePortInfo, b: ServicePortInfo): boolean {
  return (
    a === b ||
    (a.key === b.key &&
      a.service === b.service &&
      a.portName === b.portName &&
      a.protocol === b.protocol &&
      a.clusterIP === b.clusterIP &&
      a.port === b.port &&
      a.nodePort === b.nodePort &&
      sameList(a.externalIPs, b.externalIPs) &&
      sameList(a.loadBalancerIPs, b.loadBalancerIPs) &&
      sameList(a.loadBalancerSourceRanges, b.loadBalancerSourceRanges) &&
      a.affinityTimeoutS === b.affinityTimeoutS &&
      a.externalPolicyLocal === b.externalPolicyLocal &&
      a.internalPolicyLocal === b.internalPolicyLocal &&
      a.healthCheckNodePort === b.healthCheckNodePort)
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
}

/** kube's namespace default, re-exported for sources. */
export { namespaceOf };
