import { InvalidArgumentError } from '../../core/errors.js';
import { isIPv4, parseCidr } from '../../core/ip.js';
import type { EndpointSlice, Endpoints, ProxyObject, Service } from './k8s.js';
import { SERVICE_NAME_LABEL } from './k8s.js';

/** An object the API server would refuse; names the object and the field. */
export class InvalidObjectError extends InvalidArgumentError {
  override readonly code = 'ERR_INVALID_OBJECT';
  constructor(
    readonly object: string,
    field: string,
    readonly reason: string,
  ) {
    super(field, reason, { object });
    this.message = `${object}: ${field}: ${reason}`;
  }
}

/**
 * What one object may contribute, so that a hostile or runaway object cannot
 * make a sync unbounded (one v1 Endpoints with 50 000 addresses once made
 * every iptables-restore run into its timeout). The API server refuses
 * EndpointSlices with more than 1000 endpoints (weft refuses them too, see
 * validateEndpointSlice); v1 Endpoints have no such rule, so weft keeps the
 * first 1000 addresses, as the EndpointSlice mirroring controller does;
 * several slices of one Service port are merged up to 5000 endpoints (by
 * address order). Truncation is deterministic and logged, naming the object.
 */
export const ENDPOINT_CAPS = {
  /** Endpoints per EndpointSlice (the API server's own limit; more is refused). */
  perSlice: 1000,
  /** Addresses taken from one v1 Endpoints object (ready first, in object order). */
  perEndpointsObject: 1000,
  /** Endpoints of one Service port over all its slices (lowest addresses kept). */
  perServicePort: 5000,
} as const;

/**
 * Keeps at most `limit` addresses of a v1 Endpoints object: subsets in
 * order, each subset's ready addresses before its not-ready ones. Returns the
 * object itself when it is within the limit.
 */
export function capEndpoints(ep: Endpoints, limit: number = ENDPOINT_CAPS.perEndpointsObject): { ep: Endpoints; had: number } {
  const subsets = ep.subsets ?? [];
  let had = 0;
  for (const s of subsets) had += (s.addresses?.length ?? 0) + (s.notReadyAddresses?.length ?? 0);
  if (had <= limit) return { ep, had };
  let left = limit;
  const take = <T>(list: readonly T[] | undefined): T[] => {
    const out = (list ?? []).slice(0, left);
    left -= out.length;
    return out;
  };
  const capped = subsets.map((s) => ({ ...s, addresses: take(s.addresses), notReadyAddresses: take(s.notReadyAddresses) }));
  return { ep: { ...ep, subsets: capped }, had };
}

export interface ValidateOptions {
  /** Inclusive NodePort range. Default [30000, 32767]. */
  nodePortRange?: readonly [number, number];
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?=[a-z0-9]))*$/;
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];

/** Collects the first problem of an object; `fail` throws with the object's name. */
class Checker {
  constructor(readonly object: string) {}
  fail(field: string, reason: string): never {
    throw new InvalidObjectError(this.object, field, reason);
  }
  check(ok: boolean, field: string, reason: string): void {
    if (!ok) this.fail(field, reason);
  }
  isRecord(v: unknown, field: string): void {
    this.check(!!v && typeof v === 'object' && !Array.isArray(v), field, 'must be an object');
  }
  isArray(v: unknown, field: string): void {
    this.check(v === undefined || Array.isArray(v), field, 'must be a list');
  }
  port(v: unknown, field: string, required = true): void {
    if (v === undefined && !required) return;
    this.check(Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535, field, `must be an integer between 1 and 65535 (got ${JSON.stringify(v)})`);
  }
  protocol(v: unknown, field: string): void {
    this.check(v === undefined || PROTOCOLS.includes(v as string), field, `must be one of ${PROTOCOLS.join(', ')} (got ${JSON.stringify(v)})`);
  }
  ipv4(v: unknown, field: string): void {
    this.check(typeof v === 'string' && isIPv4(v), field, `must be an IPv4 address (got ${JSON.stringify(v)})`);
  }
  oneOf(v: unknown, allowed: string[], field: string): void {
    this.check(v === undefined || allowed.includes(v as string), field, `must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
  }
  bool(v: unknown, field: string): void {
    this.check(v === undefined || v === null || typeof v === 'boolean', field, 'must be true or false');
  }
}

function metadata(c: Checker, obj: { metadata?: unknown }, nameRe: RegExp, nameRule: string): void {
  c.isRecord(obj.metadata, 'metadata');
  const m = obj.metadata as Record<string, unknown>;
  c.check(typeof m.name === 'string' && m.name.length > 0, 'metadata.name', 'is required');
  c.check(nameRe.test(m.name as string) && (m.name as string).length <= 63, 'metadata.name', nameRule);
  if (m.namespace !== undefined) {
    c.check(typeof m.namespace === 'string' && DNS1123_LABEL.test(m.namespace) && m.namespace.length <= 63, 'metadata.namespace', 'must be a DNS-1123 label');
  }
  for (const f of ['labels', 'annotations'] as const) {
    if (m[f] === undefined) continue;
    c.isRecord(m[f], `metadata.${f}`);
    for (const [k, v] of Object.entries(m[f] as Record<string, unknown>)) c.check(typeof v === 'string', `metadata.${f}[${k}]`, 'must be a string');
  }
}

function label(obj: unknown): string {
  const o = (obj ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const kind = typeof o.kind === 'string' ? o.kind : 'object';
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : '<unnamed>';
  const ns = typeof o.metadata?.namespace === 'string' ? o.metadata.namespace : 'default';
  return `${kind} ${ns}/${name}`;
}

/**
 * Validates a Service like the API server does for the fields a proxy uses.
 * ClusterIP may be empty (weftctl allocates one) unless `requireClusterIP`.
 */
export function validateService(svc: Service, opts: ValidateOptions & { requireAllocated?: boolean } = {}): void {
  const c = new Checker(label(svc));
  const [npMin, npMax] = opts.nodePortRange ?? [30000, 32767];
  metadata(c, svc, DNS1035_LABEL, 'must be a DNS-1035 label (lower case letters, digits and "-", starting with a letter, at most 63)');
  c.isRecord(svc.spec, 'spec');
  const s = svc.spec;
  c.oneOf(s.type, ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'], 'spec.type');
  const type = s.type ?? 'ClusterIP';
  if (type === 'ExternalName') {
    c.check(typeof s.externalName === 'string' && DNS1123_SUBDOMAIN.test(s.externalName), 'spec.externalName', 'must be a DNS-1123 subdomain');
    return;
  }
  if (s.clusterIP !== undefined && s.clusterIP !== '' && s.clusterIP !== 'None') c.ipv4(s.clusterIP, 'spec.clusterIP');
  if (opts.requireAllocated) c.check(!!s.clusterIP, 'spec.clusterIP', 'is required');
  const headless = s.clusterIP === 'None';
  c.check(!(headless && type !== 'ClusterIP'), 'spec.clusterIP', `may not be "None" for type ${type}`);
  c.isArray(s.ports, 'spec.ports');
  const ports = s.ports ?? [];
  c.check(headless || ports.length > 0, 'spec.ports', 'must have at least one port');
  const names = new Set<string>();
  const portProto = new Set<string>();
  const nodePorts = new Set<string>();
  ports.forEach((p, i) => {
    const f = `spec.ports[${i}]`;
    c.isRecord(p, f);
    if (ports.length > 1) c.check(typeof p.name === 'string' && p.name.length > 0, `${f}.name`, 'is required when there is more than one port');
    if (p.name !== undefined && p.name !== '') {
      c.check(typeof p.name === 'string' && DNS1123_LABEL.test(p.name) && p.name.length <= 63, `${f}.name`, 'must be a DNS-1123 label');
      c.check(!names.has(p.name), `${f}.name`, `duplicate port name "${p.name}"`);
      names.add(p.name);
    }
    c.port(p.port, `${f}.port`);
    c.protocol(p.protocol, `${f}.protocol`);
    const pp = `${p.port}/${p.protocol ?? 'TCP'}`;
    c.check(!portProto.has(pp), `${f}`, `duplicate port ${pp}`);
    portProto.add(pp);
    if (typeof p.targetPort === 'string') {
      c.check(IANA_SVC_NAME.test(p.targetPort) && p.targetPort.length <= 15, `${f}.targetPort`, 'must be a port number or an IANA service name');
    } else c.port(p.targetPort, `${f}.targetPort`, false);
    if (p.nodePort !== undefined && p.nodePort !== 0) {
      c.check(type === 'NodePort' || type === 'LoadBalancer', `${f}.nodePort`, `may not be set for type ${type}`);
      c.check(Number.isInteger(p.nodePort) && p.nodePort >= npMin && p.nodePort <= npMax, `${f}.nodePort`, `must be in the node port range ${npMin}-${npMax} (got ${JSON.stringify(p.nodePort)})`);
      const np = `${p.nodePort}/${p.protocol ?? 'TCP'}`;
      c.check(!nodePorts.has(np), `${f}.nodePort`, `duplicate node port ${np}`);
      nodePorts.add(np);
    } else if (opts.requireAllocated && (type === 'NodePort' || type === 'LoadBalancer')) c.fail(`${f}.nodePort`, 'is required');
  });
  c.isArray(s.externalIPs, 'spec.externalIPs');
  (s.externalIPs ?? []).forEach((ip, i) => c.ipv4(ip, `spec.externalIPs[${i}]`));
  c.oneOf(s.sessionAffinity, ['None', 'ClientIP'], 'spec.sessionAffinity');
  const t = s.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  if (t !== undefined) {
    c.check(s.sessionAffinity === 'ClientIP', 'spec.sessionAffinityConfig', 'requires sessionAffinity ClientIP');
    c.check(Number.isInteger(t) && t >= 1 && t <= 86400, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 'must be between 1 and 86400');
  }
  c.oneOf(s.externalTrafficPolicy, ['Cluster', 'Local'], 'spec.externalTrafficPolicy');
  c.oneOf(s.internalTrafficPolicy, ['Cluster', 'Local'], 'spec.internalTrafficPolicy');
  if (s.externalTrafficPolicy !== undefined) {
    c.check(type !== 'ClusterIP' || (s.externalIPs?.length ?? 0) > 0, 'spec.externalTrafficPolicy', 'may only be set on externally accessible services');
  }
  if (s.healthCheckNodePort !== undefined && s.healthCheckNodePort !== 0) {
    c.check(type === 'LoadBalancer' && s.externalTrafficPolicy === 'Local', 'spec.healthCheckNodePort', 'may only be set for type LoadBalancer with externalTrafficPolicy Local');
    c.check(Number.isInteger(s.healthCheckNodePort) && s.healthCheckNodePort >= npMin && s.healthCheckNodePort <= npMax, 'spec.healthCheckNodePort', `must be in the node port range ${npMin}-${npMax}`);
  }
  c.isArray(s.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges');
  (s.loadBalancerSourceRanges ?? []).forEach((r, i) => {
    const f = `spec.loadBalancerSourceRanges[${i}]`;
    try {
      parseCidr(r, f);
    } catch {
      c.fail(f, `must be an IPv4 CIDR (got ${JSON.stringify(r)})`);
    }
    c.check(type === 'LoadBalancer', f, 'may only be set for type LoadBalancer');
  });
  if (s.loadBalancerIP !== undefined && s.loadBalancerIP !== '') c.ipv4(s.loadBalancerIP, 'spec.loadBalancerIP');
  (svc.status?.loadBalancer?.ingress ?? []).forEach((ing, i) => {
    if (ing.ip !== undefined) c.ipv4(ing.ip, `status.loadBalancer.ingress[${i}].ip`);
  });
}

function endpointPorts(c: Checker, ports: unknown, field: string): void {
  c.isArray(ports, field);
  const names = new Set<string>();
  ((ports as unknown[]) ?? []).forEach((p0, i) => {
    const p = p0 as { name?: unknown; port?: unknown; protocol?: unknown };
    const f = `${field}[${i}]`;
    c.isRecord(p, f);
    if (p.name !== undefined && p.name !== '') {
      c.check(typeof p.name === 'string' && DNS1123_LABEL.test(p.name), `${f}.name`, 'must be a DNS-1123 label');
    }
    const n = (p.name as string) ?? '';
    c.check(!names.has(n), `${f}.name`, `duplicate port name "${n}"`);
    names.add(n);
    c.port(p.port, `${f}.port`);
    c.protocol(p.protocol, `${f}.protocol`);
  });
}

export function validateEndpointSlice(slice: EndpointSlice): void {
  const c = new Checker(label(slice));
  metadata(c, slice, DNS1123_SUBDOMAIN, 'must be a DNS-1123 subdomain');
  c.check(typeof slice.metadata.labels?.[SERVICE_NAME_LABEL] === 'string', `metadata.labels[${SERVICE_NAME_LABEL}]`, 'is required (names the Service)');
  c.oneOf(slice.addressType, ['IPv4', 'IPv6', 'FQDN'], 'addressType');
  c.check(slice.addressType !== undefined, 'addressType', 'is required');
  c.check(Array.isArray(slice.endpoints), 'endpoints', 'is required (may be empty)');
  c.check(slice.endpoints.length <= ENDPOINT_CAPS.perSlice, 'endpoints', `must have at most ${ENDPOINT_CAPS.perSlice} items (has ${slice.endpoints.length})`);
  slice.endpoints.forEach((ep, i) => {
    const f = `endpoints[${i}]`;
    c.isRecord(ep, f);
    c.check(Array.isArray(ep.addresses) && ep.addresses.length >= 1 && ep.addresses.length <= 100, `${f}.addresses`, 'must have between 1 and 100 items');
    if (slice.addressType === 'IPv4') ep.addresses.forEach((a, j) => c.ipv4(a, `${f}.addresses[${j}]`));
    if (ep.conditions !== undefined) {
      c.isRecord(ep.conditions, `${f}.conditions`);
      for (const k of ['ready', 'serving', 'terminating'] as const) c.bool(ep.conditions[k], `${f}.conditions.${k}`);
    }
    if (ep.nodeName !== undefined) c.check(typeof ep.nodeName === 'string' && DNS1123_SUBDOMAIN.test(ep.nodeName), `${f}.nodeName`, 'must be a DNS-1123 subdomain');
  });
  endpointPorts(c, slice.ports, 'ports');
}

export function validateEndpoints(ep: Endpoints): void {
  const c = new Checker(label(ep));
  metadata(c, ep, DNS1123_SUBDOMAIN, 'must be a DNS-1123 subdomain');
  c.isArray(ep.subsets, 'subsets');
  (ep.subsets ?? []).forEach((s, i) => {
    const f = `subsets[${i}]`;
    c.isRecord(s, f);
    for (const k of ['addresses', 'notReadyAddresses'] as const) {
      c.isArray(s[k], `${f}.${k}`);
      (s[k] ?? []).forEach((a, j) => {
        c.isRecord(a, `${f}.${k}[${j}]`);
        c.ipv4(a.ip, `${f}.${k}[${j}].ip`);
        if (a.nodeName !== undefined) c.check(DNS1123_SUBDOMAIN.test(a.nodeName), `${f}.${k}[${j}].nodeName`, 'must be a DNS-1123 subdomain');
      });
    }
    endpointPorts(c, s.ports, `${f}.ports`);
  });
}

/**
 * Checks apiVersion/kind and dispatches. Returns the object typed; throws
 * InvalidObjectError naming object and field.
 */
export function validateObject(obj: unknown, opts: ValidateOptions & { requireAllocated?: boolean } = {}): ProxyObject {
  const c = new Checker(label(obj));
  c.isRecord(obj, '(document)');
  const o = obj as { apiVersion?: unknown; kind?: unknown };
  const want: Record<string, string> = { Service: 'v1', Endpoints: 'v1', EndpointSlice: 'discovery.k8s.io/v1' };
  c.check(typeof o.kind === 'string' && o.kind in want, 'kind', `must be one of ${Object.keys(want).join(', ')} (got ${JSON.stringify(o.kind)})`);
  c.check(o.apiVersion === want[o.kind as string], 'apiVersion', `must be ${want[o.kind as string]} for ${o.kind as string}`);
  const typed = obj as ProxyObject;
  switch (typed.kind) {
    case 'Service':
      validateService(typed, opts);
      break;
    case 'EndpointSlice':
      validateEndpointSlice(typed);
      break;
    case 'Endpoints':
      validateEndpoints(typed);
      break;
  }
  return typed;
}
