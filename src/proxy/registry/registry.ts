import { LeaseConflictError, WeftError } from '../../core/errors.js';
import { contains, formatIPv4, lastIP, parseCidr, parseIPv4, type IPv4Net } from '../../core/ip.js';
import { namespaceOf, type ProxyKind, type ProxyObject, type Service } from '../model/k8s.js';
import { InvalidObjectError, validateObject } from '../model/validate.js';
import type { KVCompare, RegistryKV } from './kv.js';

export const REGISTRY_PREFIX = '/weft/registry/';
export const KIND_DIR: Record<ProxyKind, string> = { Service: 'services', EndpointSlice: 'endpointslices', Endpoints: 'endpoints' };
const IP_ALLOC = `${REGISTRY_PREFIX}allocations/clusterips/`;
const PORT_ALLOC = `${REGISTRY_PREFIX}allocations/nodeports/`;

/** A ClusterIP or node port range has no free value left. */
export class RangeExhaustedError extends WeftError {
  override readonly code = 'ERR_RANGE_EXHAUSTED';
}

export interface RegistryOptions {
  /** ClusterIP range. Default 10.96.0.0/12. */
  serviceCIDR?: string;
  /** Inclusive node port range. Default [30000, 32767]. */
  nodePortRange?: readonly [number, number];
  /** Random source in [0,1) (tests pin it). Default Math.random. */
  random?: () => number;
  /** Transaction attempts before giving up on a race. Default 10. */
  maxAttempts?: number;
}

export function objectPath(kind: ProxyKind, namespace: string, name: string): string {
  return `${REGISTRY_PREFIX}${KIND_DIR[kind]}/${namespace}/${name}`;
}

/** Kind, namespace and name from a registry key, or undefined for other keys. */
export function parseObjectPath(key: string): { kind: ProxyKind; namespace: string; name: string } | undefined {
  const m = /^\/weft\/registry\/(services|endpointslices|endpoints)\/([^/]+)\/([^/]+)$/.exec(key);
  if (!m) return undefined;
  const kind = (Object.keys(KIND_DIR) as ProxyKind[]).find((k) => KIND_DIR[k] === m[1])!;
  return { kind, namespace: m[2]!, name: m[3]! };
}

/**
 * Picks a free value: start at a random offset, walk forward with wrap-around
 * (so allocation is spread out, as the API server's allocator does, but still
 * finds the last free value).
 */
export function pickFree(min: number, max: number, used: (v: number) => boolean, random: () => number): number | undefined {
  const size = max - min + 1;
  const start = Math.floor(random() * size);
  for (let i = 0; i < size; i++) {
    const v = min + ((start + i) % size);
    if (!used(v)) return v;
  }
  return undefined;
}

export interface ApplyResult {
  object: ProxyObject;
  action: 'created' | 'configured' | 'unchanged';
}

/**
 * The object store weftctl writes and weft-proxy reads: Kubernetes JSON under
 * /weft/registry/. Services get a ClusterIP and node ports allocated here
 * (there is no API server); each allocation is a key created in the same
 * transaction as the Service, with "key absent" conditions, so two writers
 * can never get the same IP or port.
 */
export class ProxyRegistry {
  private readonly cidr: IPv4Net;
  private readonly npRange: readonly [number, number];
  private readonly random: () => number;

  constructor(
    private readonly kv: RegistryKV,
    private readonly opts: RegistryOptions = {},
  ) {
    this.cidr = parseCidr(opts.serviceCIDR ?? '10.96.0.0/12', 'service-cidr');
    this.npRange = opts.nodePortRange ?? [30000, 32767];
    this.random = opts.random ?? Math.random;
  }

  async apply(input: unknown): Promise<ApplyResult> {
    const obj = validateObject(input, { nodePortRange: this.npRange });
    obj.metadata.namespace = namespaceOf(obj);
    if (obj.kind === 'Service') return this.applyService(obj);
    const key = objectPath(obj.kind, obj.metadata.namespace, obj.metadata.name);
    for (let i = 0; i < (this.opts.maxAttempts ?? 10); i++) {
      const existing = await this.kv.get(key);
      const stored = { ...obj, metadata: { ...obj.metadata, creationTimestamp: creationOf(existing?.value) } } as ProxyObject;
      const value = JSON.stringify(stored);
      if (existing && sameObject(existing.value, value)) return { object: stored, action: 'unchanged' };
      const cmp: KVCompare = existing ? { key, modRevision: existing.modRevision } : { key, absent: true };
      if (await this.kv.txn([cmp], [{ key, value }], [])) return { object: stored, action: existing ? 'configured' : 'created' };
    }
    throw new LeaseConflictError(`${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name}: too many concurrent writers`);
  }

  async get(kind: ProxyKind, namespace: string, name: string): Promise<ProxyObject | undefined> {
    const e = await this.kv.get(objectPath(kind, namespace, name));
    return e ? (JSON.parse(e.value) as ProxyObject) : undefined;
  }

  /** Objects of a kind, optionally in one namespace, sorted by namespace/name. */
  async list(kind: ProxyKind, namespace?: string): Promise<ProxyObject[]> {
    const prefix = `${REGISTRY_PREFIX}${KIND_DIR[kind]}/${namespace ? namespace + '/' : ''}`;
    const { entries } = await this.kv.list(prefix);
    return entries.map((e) => JSON.parse(e.value) as ProxyObject);
  }

  /** Deletes an object (and a Service's allocations). Returns false when it did not exist. */
  async delete(kind: ProxyKind, namespace: string, name: string): Promise<boolean> {
    const key = objectPath(kind, namespace, name);
    for (let i = 0; i < (this.opts.maxAttempts ?? 10); i++) {
      const existing = await this.kv.get(key);
      if (!existing) return false;
      const owner = `${namespace}/${name}`;
      const allocs = kind === 'Service' ? await this.allocationsOf(owner) : [];
      if (await this.kv.txn([{ key, modRevision: existing.modRevision }, ...allocs.map((k) => ({ key: k, value: owner }))], [], [key, ...allocs])) {
        return true;
      }
    }
    throw new LeaseConflictError(`${kind} ${namespace}/${name}: too many concurrent writers`);
  }

  private async allocationsOf(owner: string): Promise<string[]> {
    const [ips, ports] = await Promise.all([this.kv.list(IP_ALLOC), this.kv.list(PORT_ALLOC)]);
    return [...ips.entries, ...ports.entries].filter((e) => e.value === owner).map((e) => e.key);
  }

  private async applyService(svc: Service): Promise<ApplyResult> {
    const ns = svc.metadata.namespace!;
    const owner = `${ns}/${svc.metadata.name}`;
    const key = objectPath('Service', ns, svc.metadata.name);
    const label = `Service ${owner}`;
    for (let attempt = 0; attempt < (this.opts.maxAttempts ?? 10); attempt++) {
      const [existingEntry, ipList, portList] = await Promise.all([this.kv.get(key), this.kv.list(IP_ALLOC), this.kv.list(PORT_ALLOC)]);
      const existing = existingEntry ? (JSON.parse(existingEntry.value) as Service) : undefined;
      const ipOwner = new Map(ipList.entries.map((e) => [e.key.slice(IP_ALLOC.length), e.value]));
      const portOwner = new Map(portList.entries.map((e) => [Number(e.key.slice(PORT_ALLOC.length)), e.value]));
      const out: Service = structuredClone(svc);
      const spec = out.spec;
      const type = spec.type ?? 'ClusterIP';
      const compares: KVCompare[] = [existingEntry ? { key, modRevision: existingEntry.modRevision } : { key, absent: true }];
      const puts: Array<{ key: string; value: string }> = [];
      const keep = new Set<string>();
      const claim = (allocKey: string, currentOwner: string | undefined) => {
        keep.add(allocKey);
        if (currentOwner === owner) compares.push({ key: allocKey, value: owner });
        else (compares.push({ key: allocKey, absent: true }), puts.push({ key: allocKey, value: owner }));
      };

      if (type !== 'ExternalName' && spec.clusterIP !== 'None') {
        const old = existing?.spec.clusterIP;
        if (old && old !== 'None' && spec.clusterIP && spec.clusterIP !== old) {
          throw new InvalidObjectError(label, 'spec.clusterIP', `field is immutable (is ${old})`);
        }
        let ip = spec.clusterIP || (old && old !== 'None' ? old : undefined);
        if (ip) {
          if (!contains(this.cidr, parseIPv4(ip))) throw new InvalidObjectError(label, 'spec.clusterIP', `${ip} is not in the service range ${this.cidrText}`);
          const o = ipOwner.get(ip);
          if (o && o !== owner) throw new InvalidObjectError(label, 'spec.clusterIP', `${ip} is already allocated to ${o}`);
        } else {
          // Skip the network and broadcast addresses; .1 is allocatable (kube gives it to "kubernetes").
          const n = pickFree(this.cidr.ip + 1, lastIP(this.cidr) - 1, (v) => ipOwner.has(formatIPv4(v)), this.random);
          if (n === undefined) throw new RangeExhaustedError(`no free ClusterIP in ${this.cidrText}`);
          ip = formatIPv4(n);
        }
        spec.clusterIP = ip;
        spec.clusterIPs = [ip];
        claim(IP_ALLOC + ip, ipOwner.get(ip));
      }

      const chosen = new Set<number>();
      const takePort = (given: number | undefined, previous: number | undefined, field: string): number => {
        let p = given || previous;
        if (p) {
          const o = portOwner.get(p);
          if (o && o !== owner) throw new InvalidObjectError(label, field, `node port ${p} is already allocated to ${o}`);
        } else {
          const [min, max] = this.npRange;
          // A port this Service held before but no longer uses counts as free for it.
          p = pickFree(min, max, (v) => chosen.has(v) || (portOwner.has(v) && portOwner.get(v) !== owner), this.random);
          if (p === undefined) throw new RangeExhaustedError(`no free node port in ${min}-${max}`);
        }
        if (!chosen.has(p)) claim(`${PORT_ALLOC}${p}`, portOwner.get(p));
        chosen.add(p);
        return p;
      };
      if (type === 'NodePort' || type === 'LoadBalancer') {
        (spec.ports ?? []).forEach((p, i) => {
          const prev = existing?.spec.ports?.find((q) => (q.name ?? '') === (p.name ?? '') && (q.protocol ?? 'TCP') === (p.protocol ?? 'TCP'))?.nodePort;
          p.nodePort = takePort(p.nodePort, prev, `spec.ports[${i}].nodePort`);
        });
        if (type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local') {
          spec.healthCheckNodePort = takePort(spec.healthCheckNodePort, existing?.spec.healthCheckNodePort, 'spec.healthCheckNodePort');
        }
      } else {
        for (const p of spec.ports ?? []) delete p.nodePort;
      }
      out.metadata.creationTimestamp = existing?.metadata.creationTimestamp ?? new Date().toISOString();
      const value = JSON.stringify(out);
      if (existingEntry && sameObject(existingEntry.value, value)) return { object: out, action: 'unchanged' };
      const stale = [...ipOwner, ...portOwner]
        .filter(([, o]) => o === owner)
        .map(([v]) => (typeof v === 'number' ? `${PORT_ALLOC}${v}` : IP_ALLOC + v))
        .filter((k) => !keep.has(k));
      puts.unshift({ key, value });
      if (await this.kv.txn(compares, puts, stale)) return { object: out, action: existing ? 'configured' : 'created' };
    }
    throw new LeaseConflictError(`${label}: allocation raced with other writers too many times`);
  }

  private get cidrText(): string {
    return `${formatIPv4(this.cidr.ip)}/${this.cidr.prefixLen}`;
  }
}

function creationOf(value: string | undefined): string {
  if (value) {
    const t = (JSON.parse(value) as { metadata?: { creationTimestamp?: string } }).metadata?.creationTimestamp;
    if (t) return t;
  }
  return new Date().toISOString();
}

function sameObject(a: string, b: string): boolean {
  return a === b;
}

