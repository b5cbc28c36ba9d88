/**
 * flanneld's Kubernetes subnet manager as a LeaseStore: our subnet is our
 * Node's spec.podCIDR (waited for while unset), our lease value goes into
 * the Node's annotations (PATCH of the status subresource, as flanneld does,
 * so kube-flannel's RBAC - nodes get/list/watch, nodes/status patch - is
 * enough), and peers are the other Nodes, from one list/watch informer
 * (src/kube). Bad Nodes are refused, logged and counted once per
 * resourceVersion and reason, like bad etcd leases.
 */
import { delay } from '../core/async.js';
import { AbortedError, errorMessage } from '../core/errors.js';
import { formatCidr, sameNet, subnetKey, type IPv4Net } from '../core/ip.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { KubeClient } from '../kube/client.js';
import { Informer } from '../kube/informer.js';
import { Backoff } from './backoff.js';
import { KubeNodeNameError } from './kube-errors.js';
import { nodePodCidr, nodeRecordOf, nodeToLease, ownAnnotationsPatch, type KubeAnnotations, type NodeRecord } from './kube-node.js';
import { diffSnapshots } from './lease-manager.js';
import type { LeaseSnapshot, LeaseStore } from './lease-store.js';
import { LeaseView } from './lease-view.js';
import { Wakeup } from './wakeup.js';
import type { InvalidLease, InvalidReason, Lease, LeaseAttrs, LeaseEvent, NetworkConfig } from './types.js';

const NODES = '/api/v1/nodes';
const nodePath = (name: string) => `${NODES}/${encodeURIComponent(name)}`;

/** Retry timing shared by the watcher's callers; tests shrink it. */
export interface KubeRetryOptions {
  /** Default 500 ms. */
  minBackoffMs?: number;
  /** Default 10 000 ms. */
  maxBackoffMs?: number;
}

export interface KubeNodeWatcherOptions extends KubeRetryOptions {
  client: KubeClient;
  annotations: KubeAnnotations;
  log?: Logger;
  /** Server-side watch length; default the informer's. */
  watchTimeoutSeconds?: number;
}

/** All Nodes, kept by one informer; listeners hear of every change. */
export class KubeNodeWatcher {
  readonly informer: Informer<NodeRecord>;
  private readonly listeners = new Set<() => void>();
  private running: Promise<void> | undefined;

  constructor(readonly opts: KubeNodeWatcherOptions) {
    this.informer = new Informer<NodeRecord>({
      client: opts.client,
      path: NODES,
      kind: 'Node',
      apiVersion: 'v1',
      transform: (o) => nodeRecordOf(o, opts.annotations),
      onEvent: () => this.notify(),
      onListed: () => this.notify(),
      backoff: { initialMs: opts.minBackoffMs ?? 500, maxMs: opts.maxBackoffMs ?? 10_000 },
      ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
  }

  /** Starts the informer (once); it runs until the signal fires. */
  start(signal: AbortSignal): void {
    this.running ??= this.informer.run(signal);
  }

  /** Resolves after the first complete list; AbortedError when the signal fires first. */
  async synced(signal: AbortSignal): Promise<void> {
    if (this.informer.hasSynced) return;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new AbortedError());
      signal.addEventListener('abort', onAbort, { once: true });
      this.informer.synced.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  node(name: string): NodeRecord | undefined {
    return this.informer.get(name);
  }

  nodes(): NodeRecord[] {
    return this.informer.list();
  }

  /** Calls `fn` after every change; returns the unsubscribe. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async stopped(): Promise<void> {
    await this.running;
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }
}

export interface KubeLeaseStoreOptions extends KubeRetryOptions {
  watcher: KubeNodeWatcher;
  nodeName: string;
  config: NetworkConfig;
  /** The address other hosts reach us on. */
  publicIp: string;
  backendType: string;
  backendData?: unknown;
  log?: Logger;
  /** Re-check our Node's annotations at least this often. Default 60 000 ms. */
  recheckIntervalMs?: number;
  /** Repeat the "waiting for podCIDR" line this often. Default 30 000 ms. */
  waitLogIntervalMs?: number;
  onLeaseChanged?: (lease: Lease) => void;
  onError?: (err: Error) => void;
  onInvalid?: (invalid: InvalidLease) => void;
}

export interface KubeLeaseCounters {
  /** Annotation PATCHes of our Node that succeeded. */
  annotationWrites: number;
  /** Failed API calls (PATCH). */
  apiErrors: number;
  /** Nodes refused (once per node, resourceVersion and reason), by reason. */
  invalid: Partial<Record<InvalidReason, number>>;
}

export class KubeLeaseStore implements LeaseStore {
  readonly counters: KubeLeaseCounters = { annotationWrites: 0, apiErrors: 0, invalid: {} };
  private lease: Lease | undefined;
  private ownInvalid: InvalidLease | undefined;
  private invalidNow = new Map<string, InvalidLease>();
  private readonly reported = new Map<string, string>();
  /** node name -> [signature, lease]: an unchanged Node keeps its Lease object (no spurious "added"). */
  private readonly leaseCache = new Map<string, { sig: string; lease: Lease }>();
  private readonly log: Logger;
  private readonly wakeup = new Wakeup();
  private ownWait = '';
  /** resourceVersion of the Node our last PATCH was computed from. */
  private patchedFrom = '';

  constructor(private readonly opts: KubeLeaseStoreOptions) {
    this.log = opts.log ?? silentLogger;
  }

  get current(): Lease | undefined {
    return this.lease;
  }
  get expiration(): Date | undefined {
    return undefined;
  }
  get invalidLeases(): InvalidLease[] {
    const all = new Map(this.invalidNow);
    if (this.ownInvalid) all.set(this.ownInvalid.key, this.ownInvalid);
    return [...all.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  get ownLeaseInvalid(): InvalidLease | undefined {
    return this.ownInvalid;
  }

  private get ann(): KubeAnnotations {
    return this.opts.watcher.opts.annotations;
  }

  /**
   * Waits for our Node and its spec.podCIDR (logging why while waiting),
   * writes our annotations, and resolves with the lease.
   */
  async acquire(signal: AbortSignal): Promise<Lease> {
    const { watcher, nodeName } = this.opts;
    const unsubscribe = watcher.subscribe(() => this.wakeup.wake());
    const backoff = this.backoff();
    let lastLog = 0;
    try {
      watcher.start(signal);
      if (!watcher.informer.hasSynced) this.log.info({ node: nodeName }, 'listing Nodes from the Kubernetes API');
      await watcher.synced(signal);
      for (;;) {
        if (signal.aborted) throw new AbortedError();
        const node = watcher.node(nodeName);
        const subnet = node ? this.ownSubnet(node) : undefined;
        if (node && subnet) {
          try {
            const lease = await this.ensureAnnotations(node, subnet, signal);
            this.setLease(lease, true);
            return lease;
          } catch (err) {
            if (signal.aborted) throw new AbortedError();
            this.apiError(err, 'writing our Node annotations failed, retrying');
            await this.wakeup.wait(backoff.next(), signal);
            continue;
          }
        }
        const why = !node
          ? `waiting for Node ${nodeName} to exist (is NODE_NAME right?)`
          : `waiting for spec.podCIDR of Node ${nodeName} (kube-controller-manager --allocate-node-cidrs, or set it by hand)`;
        const now = Date.now();
        if (why !== this.ownWait || now - lastLog >= (this.opts.waitLogIntervalMs ?? 30_000)) {
          this.log.warn({ node: nodeName, ...(this.ownInvalid ? { problem: this.ownInvalid.detail } : {}) }, why);
          this.ownWait = why;
          lastLog = now;
        }
        await this.wakeup.wait(this.opts.waitLogIntervalMs ?? 30_000, signal);
      }
    } finally {
      unsubscribe();
    }
  }

  /**
   * Keeps our Node's annotations as they must be (someone may edit them,
   * the Node may be deleted and re-created) and follows a changed
   * podCIDR. Never throws for API errors; resolves when the signal fires.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (!this.lease) {
      try {
        await this.acquire(signal);
      } catch (err) {
        if (err instanceof AbortedError) return;
        throw err;
      }
    }
    const unsubscribe = this.opts.watcher.subscribe(() => this.wakeup.wake());
    const backoff = this.backoff();
    let missingLogged = false;
    try {
      while (!signal.aborted) {
        let waitMs = this.opts.recheckIntervalMs ?? 60_000;
        const node = this.opts.watcher.node(this.opts.nodeName);
        if (!node) {
          if (!missingLogged) this.log.error({ node: this.opts.nodeName }, 'our Node is gone from the API; keeping the data path, re-annotating when it is back');
          missingLogged = true;
        } else {
          missingLogged = false;
          const subnet = this.ownSubnet(node);
          if (subnet) {
            try {
              const lease = await this.ensureAnnotations(node, subnet, signal);
              if (!sameNet(lease.subnet, this.lease!.subnet)) {
                this.log.error({ node: node.name, was: formatCidr(this.lease!.subnet), now: formatCidr(lease.subnet) }, 'our Node\'s podCIDR changed');
              }
              this.setLease(lease, false);
              backoff.reset();
            } catch (err) {
              if (signal.aborted) break;
              this.apiError(err, 'rewriting our Node annotations failed, retrying');
              waitMs = backoff.next();
            }
          }
        }
        await this.wakeup.wait(waitMs, signal);
      }
    } finally {
      unsubscribe();
    }
  }

  /** Snapshots of every accepted peer Node (and ours), on start and after every change. */
  async watch(onChange: (snapshot: LeaseSnapshot, events: LeaseEvent[]) => void, signal: AbortSignal): Promise<void> {
    const { watcher } = this.opts;
    watcher.start(signal);
    try {
      await watcher.synced(signal);
    } catch (err) {
      if (err instanceof AbortedError || signal.aborted) return;
      throw err;
    }
    const view = new LeaseView(this.opts.config, (inv) => this.reportInvalid(inv));
    let snapshot = new Map<string, Lease>();
    const publish = () => {
      const { leases, invalid } = this.currentNodes();
      view.reset(leases, invalid);
      const next = new Map(view.leases);
      const diff = diffSnapshots(snapshot, next);
      snapshot = next;
      this.noteInvalid(view.invalid);
      if (!published || diff.length > 0) onChange(snapshot, diff);
      published = true;
    };
    let published = false;
    const unsubscribe = watcher.subscribe(publish);
    try {
      publish();
      await new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      unsubscribe();
    }
  }

  /** Every Node as a lease or a refusal (Nodes that are not flannel's, or lack a podCIDR, are left out). */
  private currentNodes(): { leases: Lease[]; invalid: InvalidLease[] } {
    const leases: Lease[] = [];
    const invalid: InvalidLease[] = [];
    const seen = new Set<string>();
    for (const n of this.opts.watcher.nodes()) {
      seen.add(n.name);
      const r = nodeToLease(n, this.ann, this.opts.config.network);
      if (!r) {
        this.leaseCache.delete(n.name);
        continue;
      }
      if ('invalid' in r) {
        invalid.push(r.invalid);
        this.leaseCache.delete(n.name);
        continue;
      }
      const sig = leaseSignature(r.lease);
      const have = this.leaseCache.get(n.name);
      if (have && have.sig === sig) leases.push(have.lease);
      else {
        this.leaseCache.set(n.name, { sig, lease: r.lease });
        leases.push(r.lease);
      }
    }
    for (const k of this.leaseCache.keys()) if (!seen.has(k)) this.leaseCache.delete(k);
    return { leases, invalid };
  }

  /** Our subnet from our Node, or undefined (with the refusal noted) when it has none or a bad one. */
  private ownSubnet(node: NodeRecord): IPv4Net | undefined {
    const r = nodePodCidr(node, this.opts.config.network);
    if (r === undefined) {
      this.ownInvalid = undefined;
      return undefined;
    }
    if ('problem' in r) {
      const inv: InvalidLease = {
        key: node.name,
        reason: /not inside the Network/.test(r.problem) ? 'outside-network' : 'key',
        detail: `our Node ${node.name}: ${r.problem}`,
        revision: Number(node.resourceVersion) || 0,
      };
      this.ownInvalid = inv;
      this.reportInvalid(inv);
      return undefined;
    }
    this.ownInvalid = undefined;
    return r.subnet;
  }

  /** PATCHes our annotations when they differ from what they must be; returns our lease. */
  private async ensureAnnotations(node: NodeRecord, subnet: IPv4Net, signal: AbortSignal): Promise<Lease> {
    const { patch, publicIp, overwriteProblem } = ownAnnotationsPatch(node, this.ann, {
      publicIp: this.opts.publicIp,
      backendType: this.opts.backendType,
      backendData: this.opts.backendData,
    });
    if (overwriteProblem) this.log.warn({ node: node.name, annotation: this.ann.publicIpOverwrite, problem: overwriteProblem }, 'ignored the public IP overwrite annotation');
    let rv = node.resourceVersion;
    // The informer may not have seen our last PATCH yet: the same Node version is not patched twice.
    if (Object.keys(patch).length > 0 && node.resourceVersion !== this.patchedFrom) {
      // Status subresource, as flanneld: kube-flannel's ClusterRole grants nodes/status patch, not nodes patch.
      const res = await this.opts.watcher.opts.client.patch<{ metadata?: { resourceVersion?: string } }>(
        `${nodePath(node.name)}/status`,
        { metadata: { annotations: patch } },
        { signal },
      );
      this.patchedFrom = node.resourceVersion;
      rv = res?.metadata?.resourceVersion ?? rv;
      this.counters.annotationWrites++;
      if (publicIp !== this.opts.publicIp && patch[this.ann.publicIp] !== undefined) {
        this.log.info({ node: node.name, publicIp, annotation: this.ann.publicIpOverwrite }, 'public IP overridden by the node annotation');
      }
      this.log.info({ node: node.name, subnet: formatCidr(subnet), annotations: Object.keys(patch) }, 'wrote our Node annotations');
    }
    const attrs: LeaseAttrs = { PublicIP: publicIp, PublicIPv6: null, BackendType: this.opts.backendType };
    if (this.opts.backendData !== undefined) attrs.BackendData = this.opts.backendData;
    return { subnet, attrs, key: node.name, revision: Number(rv) || 0, createRevision: node.created };
  }

  private setLease(lease: Lease, announce: boolean): void {
    const prev = this.lease;
    this.lease = lease;
    if (announce || !prev || !sameNet(prev.subnet, lease.subnet)) this.opts.onLeaseChanged?.(lease);
  }

  private noteInvalid(now: ReadonlyMap<string, InvalidLease>): void {
    for (const key of this.invalidNow.keys()) if (!now.has(key) && key !== this.ownInvalid?.key) this.reported.delete(key);
    this.invalidNow = new Map(now);
  }

  /** Logs and counts a refused Node once per node, resourceVersion and reason. */
  private reportInvalid(inv: InvalidLease): void {
    const tag = `${inv.revision}:${inv.reason}`;
    if (this.reported.get(inv.key) === tag) return;
    this.reported.set(inv.key, tag);
    this.counters.invalid[inv.reason] = (this.counters.invalid[inv.reason] ?? 0) + 1;
    this.log.warn({ node: inv.key, reason: inv.reason, detail: inv.detail, resourceVersion: inv.revision }, 'refused Node (not a peer)');
    this.opts.onInvalid?.(inv);
  }

  private apiError(err: unknown, what: string): void {
    this.counters.apiErrors++;
    const e = err instanceof Error ? err : new Error(String(err));
    this.log.warn({ node: this.opts.nodeName, err: errorMessage(e), code: (e as { code?: string }).code }, what);
    this.opts.onError?.(e);
  }

  private backoff(): Backoff {
    return new Backoff({ minMs: this.opts.minBackoffMs ?? 500, maxMs: this.opts.maxBackoffMs ?? 10_000 });
  }
}

function leaseSignature(l: Lease): string {
  return JSON.stringify([subnetKey(l.subnet), l.attrs.PublicIP, l.attrs.BackendType, l.attrs.BackendData ?? null, l.createRevision ?? 0]);
}

/**
 * Clears NodeNetworkUnavailable as flanneld does once the data path is up:
 * a strategic merge PATCH of status.conditions (merged by type). Retries
 * API errors with backoff until it succeeds or the signal fires.
 */
export async function markNodeNetworkAvailable(
  client: KubeClient,
  nodeName: string,
  signal: AbortSignal,
  opts: KubeRetryOptions & { log?: Logger; onError?: (err: Error) => void; now?: () => Date } = {},
): Promise<boolean> {
  const log = opts.log ?? silentLogger;
  const backoff = new Backoff({ minMs: opts.minBackoffMs ?? 500, maxMs: opts.maxBackoffMs ?? 10_000 });
  while (!signal.aborted) {
    const now = (opts.now?.() ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z');
    const condition = {
      type: 'NetworkUnavailable',
      status: 'False',
      reason: 'FlannelIsUp',
      message: 'Flannel is running on this node (weftd)',
      lastTransitionTime: now,
      lastHeartbeatTime: now,
    };
    try {
      await client.patch(`${nodePath(nodeName)}/status`, { status: { conditions: [condition] } }, { signal });
      log.info({ node: nodeName }, 'cleared the NodeNetworkUnavailable condition');
      return true;
    } catch (err) {
      if (signal.aborted) break;
      const wait = backoff.next();
      log.warn({ node: nodeName, err: errorMessage(err), retryMs: wait }, 'clearing NodeNetworkUnavailable failed; retrying');
      opts.onError?.(err instanceof Error ? err : new Error(String(err)));
      await delay(wait, signal).catch(() => {});
    }
  }
  return false;
}

/**
 * flanneld's node name: NODE_NAME, else the spec.nodeName of the Pod
 * POD_NAMESPACE/POD_NAME (the DaemonSet's downward API).
 * @throws KubeNodeNameError when neither gives one
 */
export async function resolveNodeName(
  client: KubeClient,
  env: { nodeName?: string | undefined; podName?: string | undefined; podNamespace?: string | undefined },
  signal: AbortSignal,
): Promise<string> {
  if (env.nodeName) return env.nodeName;
  if (!env.podName || !env.podNamespace) {
    throw new KubeNodeNameError('the node name is unknown: set NODE_NAME, or POD_NAME and POD_NAMESPACE (downward API)');
  }
  const pod = await client
    .get<{ spec?: { nodeName?: unknown } }>(`/api/v1/namespaces/${encodeURIComponent(env.podNamespace)}/pods/${encodeURIComponent(env.podName)}`, { signal })
    .catch((err: unknown) => {
      throw new KubeNodeNameError(`reading Pod ${env.podNamespace}/${env.podName} for its node name failed: ${errorMessage(err)}`, {
        pod: `${env.podNamespace}/${env.podName}`,
      });
    });
  const name = pod?.spec?.nodeName;
  if (typeof name !== 'string' || name === '') {
    throw new KubeNodeNameError(`Pod ${env.podNamespace}/${env.podName} has no spec.nodeName`, { pod: `${env.podNamespace}/${env.podName}` });
  }
  return name;
}
