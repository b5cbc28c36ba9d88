import { objectKey, nsName, type EndpointSlice, type Endpoints, type ProxyObject, type Service, LAST_CHANGE_TRIGGER_TIME } from './k8s.js';
import { endpointsOfService, endpointsToSlices, sliceService, type EndpointInfo, type ServiceEndpoints } from './endpoints.js';
import { servicePortsOf, type ServicePortInfo } from './service-port.js';
import { ChangeTracker, sameJson, type Change } from './tracker.js';

/** What changed between two `applyChanges` calls, per Service ("ns/name"). */
export interface ModelChanges {
  /** Services whose ports changed: previous and current port list. */
  services: Map<string, Change<ServicePortInfo[]>>;
  /** Services whose endpoints changed, per service port key. */
  endpoints: Map<string, Change<ServiceEndpoints>>;
  /** Union of both key sets: the Services whose rules must be rewritten. */
  changed: Set<string>;
  /** Trigger times (ms) of endpoint changes, for network_programming_duration_seconds. */
  triggerTimes: number[];
}

/**
 * The mode-independent proxy model: the objects the sources describe, and the
 * applied snapshot (service ports and their endpoints) that renderers read.
 * Sources call upsert/remove at any time; the sync loop calls
 * `applyChanges()` to fold the pending changes into the snapshot.
 */
export class ProxyModel {
  private readonly services = new Map<string, Service>();
  /** Service "ns/name" -> slice id -> slice. */
  private readonly slicesBySvc = new Map<string, Map<string, EndpointSlice>>();
  /** Slice id -> owning Service (labels can move a slice). */
  private readonly sliceOwner = new Map<string, string>();
  /** Legacy Endpoints "ns/name" -> ids of the slices mirrored from it. */
  private readonly mirrored = new Map<string, string[]>();

  private readonly svcTracker = new ChangeTracker<ServicePortInfo[]>((k) => this.portsOf(k), sameJson);
  private readonly epTracker = new ChangeTracker<ServiceEndpoints>((k) => this.endpointsOf(k), sameJson);

  /** Applied snapshot: service port key -> info. */
  readonly servicePorts = new Map<string, ServicePortInfo>();
  /** Applied snapshot: service port key -> endpoints (all conditions). */
  readonly endpoints = new Map<string, EndpointInfo[]>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Any change recorded and not yet applied. */
  get hasPending(): boolean {
    return this.svcTracker.size > 0 || this.epTracker.size > 0;
  }

  /** Adds or replaces a validated object. */
  upsert(obj: ProxyObject): void {
    switch (obj.kind) {
      case 'Service': {
        const key = nsName(obj);
        this.svcTracker.willChange(key, this.now());
        this.services.set(key, obj);
        return;
      }
      case 'EndpointSlice':
        return this.upsertSlice(`slice/${nsName(obj)}`, obj);
      case 'Endpoints':
        return this.upsertEndpoints(obj);
    }
  }

  /** Removes an object; unknown objects are ignored. */
  remove(kind: ProxyObject['kind'], key: string): void {
    switch (kind) {
      case 'Service':
        if (!this.services.has(key)) return;
        this.svcTracker.willChange(key, this.now());
        this.services.delete(key);
        return;
      case 'EndpointSlice':
        return this.removeSlice(`slice/${key}`, this.now());
      case 'Endpoints':
        for (const id of this.mirrored.get(key) ?? []) this.removeSlice(id, this.now());
        this.mirrored.delete(key);
        return;
    }
  }

  /** Makes the model hold exactly `objects` (a relist); differences become changes. */
  replaceAll(objects: ProxyObject[]): void {
    const want = new Set(objects.map(objectKey));
    for (const key of [...this.services.keys()]) if (!want.has(`Service/${key}`)) this.remove('Service', key);
    for (const id of [...this.sliceOwner.keys()]) {
      if (id.startsWith('slice/') && !want.has(`EndpointSlice/${id.slice(6)}`)) this.remove('EndpointSlice', id.slice(6));
    }
    for (const key of [...this.mirrored.keys()]) if (!want.has(`Endpoints/${key}`)) this.remove('Endpoints', key);
    for (const obj of objects) this.upsert(obj);
  }

  /** Folds pending changes into the snapshot and reports what really changed. */
  applyChanges(): ModelChanges {
    const services = this.svcTracker.checkout();
    const endpoints = this.epTracker.checkout();
    for (const { previous, current } of services.values()) {
      for (const p of previous) this.servicePorts.delete(p.key);
      for (const p of current) this.servicePorts.set(p.key, p);
    }
    for (const { previous, current } of endpoints.values()) {
      for (const k of previous.keys()) this.endpoints.delete(k);
      for (const [k, eps] of current) this.endpoints.set(k, eps);
    }
    return {
      services,
      endpoints,
      changed: new Set([...services.keys(), ...endpoints.keys()]),
      triggerTimes: [...endpoints.values()].map((c) => c.at),
    };
  }

  /** Service ports of the snapshot in a stable order. */
  sortedServicePorts(): ServicePortInfo[] {
    return [...this.servicePorts.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.protocol < b.protocol ? -1 : 1));
  }

  private portsOf(svc: string): ServicePortInfo[] {
    const s = this.services.get(svc);
    return s ? servicePortsOf(s) : [];
  }

  private endpointsOf(svc: string): ServiceEndpoints {
    const slices = this.slicesBySvc.get(svc);
    return slices ? endpointsOfService(svc, slices.values()) : new Map();
  }

  private triggerTime(obj: { metadata: { annotations?: Record<string, string> } }): number {
    const t = Date.parse(obj.metadata.annotations?.[LAST_CHANGE_TRIGGER_TIME] ?? '');
    return Number.isFinite(t) ? t : this.now();
  }

  private upsertSlice(id: string, slice: EndpointSlice): void {
    const at = this.triggerTime(slice);
    const owner = sliceService(slice);
    const old = this.sliceOwner.get(id);
    if (old && old !== owner) this.removeSlice(id, at);
    if (!owner) return;
    this.epTracker.willChange(owner, at);
    let m = this.slicesBySvc.get(owner);
    if (!m) this.slicesBySvc.set(owner, (m = new Map()));
    m.set(id, slice);
    this.sliceOwner.set(id, owner);
  }

  private removeSlice(id: string, at: number): void {
    const owner = this.sliceOwner.get(id);
    if (!owner) return;
    this.epTracker.willChange(owner, at);
    const m = this.slicesBySvc.get(owner)!;
    m.delete(id);
    if (m.size === 0) this.slicesBySvc.delete(owner);
    this.sliceOwner.delete(id);
  }

  private upsertEndpoints(ep: Endpoints): void {
    const key = nsName(ep);
    const slices = endpointsToSlices(ep);
    const ids = slices.map((s) => `mirror/${nsName(s)}`);
    for (const old of this.mirrored.get(key) ?? []) if (!ids.includes(old)) this.removeSlice(old, this.triggerTime(ep));
    slices.forEach((s, i) => this.upsertSlice(ids[i]!, s));
    // Remember the Endpoints even when it has no subsets, so a relist sees it.
    this.mirrored.set(key, ids);
  }
}
