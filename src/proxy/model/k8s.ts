import { flat } from './flat.js';

/**
 * The subset of Kubernetes' v1 Service, v1 Endpoints and discovery.k8s.io/v1
 * EndpointSlice that a service proxy reads. Field names and casing follow the
 * API so that manifests written for a cluster apply here unchanged.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  creationTimestamp?: string;
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';

export interface ServicePort {
  name?: string;
  protocol?: Protocol;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
}

export interface ServiceSpec {
  type?: ServiceType;
  ports?: ServicePort[];
  selector?: Record<string, string>;
  clusterIP?: string;
  clusterIPs?: string[];
  externalIPs?: string[];
  externalName?: string;
  sessionAffinity?: 'None' | 'ClientIP';
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  externalTrafficPolicy?: TrafficPolicy;
  internalTrafficPolicy?: TrafficPolicy;
  healthCheckNodePort?: number;
  loadBalancerIP?: string;
  loadBalancerSourceRanges?: string[];
}

export interface Service {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: ObjectMeta;
  spec: ServiceSpec;
  status?: { loadBalancer?: { ingress?: Array<{ ip?: string; hostname?: string }> } };
}

export interface EndpointConditions {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export interface SliceEndpoint {
  addresses: string[];
  conditions?: EndpointConditions;
  nodeName?: string;
  hostname?: string;
  zone?: string;
}

export interface EndpointPort {
  name?: string;
  protocol?: Protocol;
  port?: number;
  appProtocol?: string;
}

export interface EndpointSlice {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: ObjectMeta;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: SliceEndpoint[];
  ports?: EndpointPort[];
}

export interface EndpointAddress {
  ip: string;
  nodeName?: string;
  hostname?: string;
}

export interface EndpointSubset {
  addresses?: EndpointAddress[];
  notReadyAddresses?: EndpointAddress[];
  ports?: EndpointPort[];
}

/** Legacy v1 Endpoints: converted to an EndpointSlice before the model sees it. */
export interface Endpoints {
  apiVersion: 'v1';
  kind: 'Endpoints';
  metadata: ObjectMeta;
  subsets?: EndpointSubset[];
}

export type ProxyObject = Service | EndpointSlice | Endpoints;
export type ProxyKind = ProxyObject['kind'];

/** The label that ties a slice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Set on slices converted from v1 Endpoints (the endpointslice mirroring controller's label). */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MIRROR_MANAGER = 'weft-endpoints-mirror';
/** Annotation kube's controllers set; feeds network_programming_duration_seconds. */
export const LAST_CHANGE_TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

export function namespaceOf(obj: { metadata: ObjectMeta }): string {
  return obj.metadata.namespace || 'default';
}

/** "ns/name": the key Kubernetes calls a NamespacedName. */
export function nsName(obj: { metadata: ObjectMeta }): string {
  return flat(namespaceOf(obj), '/', obj.metadata.name);
}

/** "Kind/ns/name": unique across kinds. */
export function objectKey(obj: ProxyObject): string {
  return `${obj.kind}/${nsName(obj)}`;
}
