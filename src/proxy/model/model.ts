import { flat } from './flat.js';
import type { ProxyObject } from './k8s.js';
import { sameEndpoints, type EndpointInfo, type ServiceEndpoints } from './endpoints.js';
import { inputKey, mergeSlices, toRecord, type EndpointsRecord, type ModelInput, type ServiceRecord, type SliceRecord } from './records.js';
import { samePorts, type ServicePortInfo } from './service-port.js';
import { ENDPOINT_CAPS } from './validate.js';
import { ChangeTracker, type Change } from './tracker.js';

/** What changed between two `applyChanges` calls, per Service ("ns/name"). */
export interface ModelChanges {
  /** Services whose ports changed: previous and current port list. */
  services: Map<string, Change<readonly ServicePortInfo[]>>;
  /** Services whose endpoints changed, per service port key. */
  endpoints: Map<string, Change<ServiceEndpoints>>;
  /** Union of both key sets: the Services whose rules must be rewritten. */
  changed: Set<string>;
  /** Trigger times (ms) of endpoint changes, for network_programming_duration_seconds. */
  triggerTimes: number[];
}

/** An object whose endpoints were cut to a cap (validate.ts ENDPOINT_CAPS). */
export interface Truncation {
  /** "Endpoints ns/name" or "EndpointSlices of Service ns/name". */
  object: string;
  field: string;
  had: number;
  kept: number;
}

const NO_PORTS: readonly ServicePortInfo[] = Object.freeze([]);

/**
 * The mode-independent proxy model: the objects the sources describe, and the
 * applied snapshot (service ports and their endpoints) that renderers read.
 * Sources call upsert/remove at any time; the sync loop calls
 * `applyChanges()` to fold the pending changes into the snapshot.
 *
 * Objects are kept as slim records (records.ts), converted on arrival; the
 * snapshot shares the records' port and endpoint lists instead of copying.
 */
export class ProxyModel {
  private readonly services = new Map<string, ServiceRecord>();
  /** Service "ns/name" -> slice id -> slice. */
  private readonly slicesBySvc = new Map<string, Map<string, SliceRecord>>();
  /** Slice id -> owning Service (labels can move a slice). */
  private readonly sliceOwner = new Map<string, string>();
  /** Legacy Endpoints "ns/name" -> ids of the slices mirrored from it. */
  private readonly mirrored = new Map<string, string[]>();

  private readonly svcTracker = new ChangeTracker<readonly ServicePortInfo[]>((k) => this.portsOf(k), samePorts);
  private readonly epTracker = new ChangeTracker<ServiceEndpoints>((k) => this.endpointsOf(k), sameEndpoints);

  /** Applied snapshot: service port key -> info. */
  readonly servicePorts = new Map<string, ServicePortInfo>();
  /** Applied snapshot: service port key -> endpoints (all conditions). Read-only lists. */
  readonly endpoints = new Map<string, readonly EndpointInfo[]>();

  /** Objects cut to ENDPOINT_CAPS since the last takeTruncations(), by object and field (the trackers look twice per change). */
  private truncations = new Map<string, Truncation>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Objects whose endpoints were cut to a cap since the last call (for logs and metrics). */
  takeTruncations(): Truncation[] {
    const t = [...this.truncations.values()];
    this.truncations.clear();
    return t;
  }

  private noteTruncation(t: Truncation): void {
    this.truncations.set(`${t.object}|${t.field}`, t);
  }

  /** Any change recorded and not yet applied. */
  get hasPending(): boolean {
    return this.svcTracker.size > 0 || this.epTracker.size > 0;
  }

  /** Service and endpoint-set changes recorded and not yet applied (the *_changes_pending metrics). */
  get pendingCounts(): { services: number; endpoints: number } {
    return { services: this.svcTracker.size, endpoints: this.epTracker.size };
  }

  /** Adds or replaces a validated object (or its record). */
  upsert(obj: ModelInput): void {
    const r = toRecord(obj);
    switch (r.kind) {
      case 'Service':
        this.svcTracker.willChange(r.name, this.now());
        this.services.set(r.name, r);
        return;
      case 'EndpointSlice':
        return this.upsertSlice(flat('slice/', r.name), r);
      case 'Endpoints':
        return this.upsertEndpoints(r);
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
  replaceAll(objects: readonly ModelInput[]): void {
    const want = new Set(objects.map(inputKey));
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

  private portsOf(svc: string): readonly ServicePortInfo[] {
    return this.services.get(svc)?.ports ?? NO_PORTS;
  }

  private endpointsOf(svc: string): ServiceEndpoints {
    const slices = this.slicesBySvc.get(svc);
    return mergeSlices(slices ? slices.values() : [], (key, had, kept) =>
      this.noteTruncation({ object: `EndpointSlices of Service ${svc}`, field: `port ${key}`, had, kept }),
    );
  }

  private triggerTime(r: { triggerAt: number | undefined }): number {
    return r.triggerAt ?? this.now();
  }

  private upsertSlice(id: string, slice: SliceRecord): void {
    const at = this.triggerTime(slice);
    const owner = slice.service;
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

  private upsertEndpoints(ep: EndpointsRecord): void {
    const key = ep.name;
    const slices = ep.slices;
    if (ep.truncatedFrom !== undefined) {
      this.noteTruncation({ object: `Endpoints ${key}`, field: 'subsets', had: ep.truncatedFrom, kept: ENDPOINT_CAPS.perEndpointsObject });
    }
    const ids = slices.map((s) => flat('mirror/', s.name));
    for (const old of this.mirrored.get(key) ?? []) if (!ids.includes(old)) this.removeSlice(old, this.triggerTime(ep));
    slices.forEach((s, i) => this.upsertSlice(ids[i]!, s));
    // Remember the Endpoints even when it has no subsets, so a relist sees it.
    this.mirrored.set(key, ids);
  }
}
