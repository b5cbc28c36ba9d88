import { isIPv4 } from '../../core/ip.js';
import { flat } from './flat.js';
import { endpointsToSlices, isMirrored, sameEndpoints, sliceService, type EndpointInfo, type ServiceEndpoints } from './endpoints.js';
import { LAST_CHANGE_TRIGGER_TIME, nsName, type EndpointSlice, type Endpoints, type ObjectMeta, type ProxyObject, type Service } from './k8s.js';
import { ENDPOINT_CAPS, capEndpoints } from './validate.js';
import { samePorts, servicePortKey, servicePortsOf, type ServicePortInfo } from './service-port.js';

/**
 * What the model keeps of each object: only what renderers and change
 * tracking read, computed once when the object arrives. A whole Kubernetes
 * object (metadata, labels, spec fields no proxy reads, conditions objects,
 * address arrays) costs several times its slim record, and at 10 000
 * Services the full objects were a large share of weft-proxy's heap.
 * Records are immutable: the model and the snapshot share their arrays.
 */

/** A Service: its flattened ports ([] for services a proxy ignores). */
export interface ServiceRecord {
  readonly kind: 'Service';
  /** "ns/name". */
  readonly name: string;
  readonly ports: readonly ServicePortInfo[];
}

/** One port of a slice with the slice's endpoints on it, ready for the snapshot. */
export interface SlicePortRecord {
  /** Service port key ("ns/name:portName"). */
  readonly key: string;
  readonly protocol: string;
  /** Deduplicated by IP (first kept) and sorted by IP: what a single slice contributes as is. */
  readonly endpoints: readonly EndpointInfo[];
}

/** An EndpointSlice (or one mirrored from v1 Endpoints). */
export interface SliceRecord {
  readonly kind: 'EndpointSlice';
  /** "ns/name" of the slice. */
  readonly name: string;
  /** Owning Service "ns/name"; undefined when the slice has no service-name label. */
  readonly service: string | undefined;
  readonly mirrored: boolean;
  /** Empty for non-IPv4 slices (they still count as native slices of their Service). */
  readonly ports: readonly SlicePortRecord[];
  /** From the last-change-trigger-time annotation (ms); undefined when absent or unparsable. */
  readonly triggerAt: number | undefined;
}

/** Legacy v1 Endpoints: the slices mirrored from it. */
export interface EndpointsRecord {
  readonly kind: 'Endpoints';
  /** "ns/name". */
  readonly name: string;
  readonly slices: readonly SliceRecord[];
  readonly triggerAt: number | undefined;
  /** Addresses the object had when more than ENDPOINT_CAPS.perEndpointsObject were cut off. */
  readonly truncatedFrom?: number;
}

export type ModelRecord = ServiceRecord | SliceRecord | EndpointsRecord;

/** What sources may hand the model: a validated object or its record. */
export type ModelInput = ProxyObject | ModelRecord;

/** True for records (objects carry metadata, records never do). */
export function isModelRecord(x: ModelInput): x is ModelRecord {
  return !('metadata' in x);
}

/** "Kind/ns/name", equal to objectKey() of the object the record came from. */
export function recordKey(r: ModelRecord): string {
  return flat(r.kind, '/', r.name);
}

/** Key of either form. */
export function inputKey(x: ModelInput): string {
  return isModelRecord(x) ? recordKey(x) : flat(x.kind, '/', nsName(x));
}

/**
 * Shares equal short strings (node names, protocols, port names) between
 * records: a JSON.parse'd manifest gives every occurrence its own copy.
 * Bounded: past `max` entries it starts over (sharing is an optimisation).
 */
export class Interner {
  private readonly seen = new Map<string, string>();
  constructor(private readonly max = 10_000) {}
  get(s: string): string {
    const have = this.seen.get(s);
    if (have !== undefined) return have;
    if (this.seen.size >= this.max) this.seen.clear();
    this.seen.set(s, s);
    return s;
  }
}

const sharedInterner = new Interner();

function triggerAt(meta: ObjectMeta): number | undefined {
  const t = Date.parse(meta.annotations?.[LAST_CHANGE_TRIGGER_TIME] ?? '');
  return Number.isFinite(t) ? t : undefined;
}

/** Converts a validated object; idempotent on records. */
export function toRecord(x: ModelInput, intern: Interner = sharedInterner): ModelRecord {
  if (isModelRecord(x)) return x;
  switch (x.kind) {
    case 'Service':
      return serviceRecord(x, intern);
    case 'EndpointSlice':
      return sliceRecord(x, nsName(x), triggerAt(x.metadata), intern);
    case 'Endpoints':
      return endpointsRecord(x, intern);
  }
}

export function serviceRecord(svc: Service, intern: Interner = sharedInterner): ServiceRecord {
  const ports = servicePortsOf(svc, intern);
  // The ports carry the same "ns/name": one string for both.
  return { kind: 'Service', name: ports[0]?.service ?? nsName(svc), ports };
}

/**
 * A slice's contribution per port, with endpointsOfService's rules: only
 * IPv4 slices, ports with a number, endpoints whose first address is IPv4;
 * a nil ready means ready, serving defaults to ready, terminating to false.
 */
export function sliceRecord(slice: EndpointSlice, name: string, at: number | undefined, intern: Interner = sharedInterner): SliceRecord {
  const service = sliceService(slice);
  const ports: SlicePortRecord[] = [];
  if (service !== undefined && slice.addressType === 'IPv4') {
    for (const port of slice.ports ?? []) {
      if (!port.port) continue;
      const seen = new Set<string>();
      const endpoints: EndpointInfo[] = [];
      for (const ep of slice.endpoints) {
        const ip = ep.addresses[0];
        if (!ip || !isIPv4(ip) || seen.has(ip)) continue;
        seen.add(ip);
        const ready = ep.conditions?.ready ?? true;
        endpoints.push({
          ip,
          port: port.port,
          ready,
          serving: ep.conditions?.serving ?? ready,
          terminating: ep.conditions?.terminating ?? false,
          nodeName: intern.get(ep.nodeName ?? ''),
        });
      }
      endpoints.sort(compareEndpoints);
      // slice(): arrays grown by push keep spare capacity (17 slots for 2 endpoints); copies are exact.
      ports.push({ key: servicePortKey(service, port.name ? intern.get(port.name) : undefined), protocol: intern.get(port.protocol ?? 'TCP'), endpoints: endpoints.slice() });
    }
  }
  return { kind: 'EndpointSlice', name, service, mirrored: isMirrored(slice), ports: ports.slice(), triggerAt: at };
}

export function endpointsRecord(ep: Endpoints, intern: Interner = sharedInterner): EndpointsRecord {
  const at = triggerAt(ep.metadata);
  const capped = capEndpoints(ep);
  const slices = endpointsToSlices(capped.ep).map((s) => sliceRecord(s, nsName(s), at, intern));
  return { kind: 'Endpoints', name: nsName(ep), slices, triggerAt: at, ...(capped.ep !== ep ? { truncatedFrom: capped.had } : {}) };
}

/** By IP (numerically), then port; stable, so ties keep their order. */
export function compareEndpoints(a: EndpointInfo, b: EndpointInfo): number {
  return a.ip === b.ip ? a.port - b.port : ipOrder(a.ip) - ipOrder(b.ip);
}

function ipOrder(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! * 256 + p[1]!) * 256 + p[2]!) * 256 + p[3]!;
}

const NO_ENDPOINTS: ServiceEndpoints = new Map();

/**
 * The endpoints of one Service from its slices, per service port. Slice
 * ports are matched to service ports by name (the slice carries the resolved
 * number, which is how named target ports reach the proxy). Mirrored slices
 * count only when the Service has no native ones (kube-proxy reads slices;
 * the mirror is there for clusters that write v1 Endpoints). Duplicate
 * ip:port/protocol across slices keep the first slice's. Lists are sorted so
 * equal inputs compare equal; a port only one slice feeds shares its list.
 */
export function mergeSlices(
  slices: Iterable<SliceRecord>,
  onTruncated?: (key: string, had: number, kept: number) => void,
  cap: number = ENDPOINT_CAPS.perServicePort,
): ServiceEndpoints {
  const all = [...slices];
  if (all.length === 0) return NO_ENDPOINTS;
  const native = all.filter((s) => !s.mirrored);
  const use = native.length > 0 ? native : all;
  const parts = new Map<string, SlicePortRecord[]>();
  for (const s of use) {
    for (const p of s.ports) {
      const have = parts.get(p.key);
      if (have) have.push(p);
      else parts.set(p.key, [p]);
    }
  }
  const out = new Map<string, readonly EndpointInfo[]>();
  for (const [key, ps] of parts) {
    if (ps.length === 1) {
      out.set(key, ps[0]!.endpoints);
      continue;
    }
    const seen = new Set<string>();
    const list: EndpointInfo[] = [];
    for (const p of ps) {
      for (const e of p.endpoints) {
        const id = `${e.ip}:${e.port}|${p.protocol}`;
        if (seen.has(id)) continue;
        seen.add(id);
        list.push(e);
      }
    }
    list.sort(compareEndpoints);
    if (list.length > cap) {
      onTruncated?.(key, list.length, cap);
      list.length = cap;
    }
    out.set(key, list);
  }
  return out;
}

/**
 * True when two records of the same object say the same thing. A rescan or
 * relist hands every object over again; the sink keeps the record it has
 * when nothing changed, so unchanged objects cost neither memory nor work.
 */
export function sameRecord(a: ModelRecord, b: ModelRecord): boolean {
  if (a === b) return true;
  if (a.kind !== b.kind || a.name !== b.name) return false;
  switch (a.kind) {
    case 'Service':
      return samePorts(a.ports, (b as ServiceRecord).ports);
    case 'EndpointSlice':
      return sameSlice(a, b as SliceRecord);
    case 'Endpoints': {
      const o = b as EndpointsRecord;
      return a.triggerAt === o.triggerAt && a.slices.length === o.slices.length && a.slices.every((s, i) => sameSlice(s, o.slices[i]!));
    }
  }
}

function sameSlice(a: SliceRecord, b: SliceRecord): boolean {
  if (a.name !== b.name || a.service !== b.service || a.mirrored !== b.mirrored || a.triggerAt !== b.triggerAt || a.ports.length !== b.ports.length) return false;
  return a.ports.every((p, i) => {
    const q = b.ports[i]!;
    return p.key === q.key && p.protocol === q.protocol && sameEndpoints(new Map([[p.key, p.endpoints]]), new Map([[q.key, q.endpoints]]));
  });
}
