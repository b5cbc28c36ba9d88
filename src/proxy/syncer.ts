import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { ConntrackClient } from '../netfilter/conntrack.js';
import type { ConntrackFilter } from '../netfilter/conntrack.js';
import type { HealthCheckPort, ProxyModeBackend } from './backend.js';
import type { ProxyMetrics } from './metrics.js';
import type { ProxyModel } from './model/model.js';
import { staleConntrackFilters } from './stale-conntrack.js';

/** What /healthz needs to know about the syncs (all times in ms since the epoch; 0 = never). */
export interface SyncState {
  lastSuccessfulSync: number;
  lastQueued: number;
  /** The oldest queued change not yet written; 0 when none is waiting. */
  oldestPending: number;
  consecutiveFailures: number;
}

export interface SyncHealthOptions {
  /** A queued change not written after this long is overdue. */
  timeoutMs: number;
  /** This many failed syncs in a row make the proxy unhealthy at once. Default 3. */
  maxFailures?: number;
}

/**
 * kube-proxy's liveness rule, plus failures: not live when the oldest
 * waiting change has waited longer than `timeoutMs` (the oldest counts, so a
 * stream of changes arriving while syncs fail does not look fresh), or when
 * the last `maxFailures` syncs all failed.
 */
export function syncLiveness(s: SyncState, now: number, o: SyncHealthOptions): { live: boolean; reason?: string } {
  if (s.consecutiveFailures >= (o.maxFailures ?? 3)) return { live: false, reason: `the last ${s.consecutiveFailures} syncs failed` };
  if (s.oldestPending > 0 && now - s.oldestPending >= o.timeoutMs) return { live: false, reason: `a change has waited ${Math.round((now - s.oldestPending) / 1000)} s for a sync` };
  return { live: true };
}

/** Healthy = live and synced at least once (weft's addition: readiness probes wait for the first write). */
export function syncHealth(s: SyncState, now: number, o: SyncHealthOptions): { healthy: boolean; reason?: string } {
  const l = syncLiveness(s, now, o);
  if (!l.live) return { healthy: false, reason: l.reason };
  if (s.lastSuccessfulSync === 0) return { healthy: false, reason: 'no successful sync yet' };
  return { healthy: true };
}

export interface SyncerOptions {
  model: ProxyModel;
  backend: ProxyModeBackend;
  conntrack: ConntrackClient;
  log: Logger;
  metrics?: ProxyMetrics;
  /** Called after each successful sync with the ETP=Local health-check ports. */
  onHealthChecks?: (ports: HealthCheckPort[]) => void;
  now?: () => number;
}

/**
 * The one writer's callback: fold pending model changes, pick full or partial,
 * let the mode backend write, then delete stale UDP conntrack entries. Rules
 * are written only once every source has listed (kube-proxy waits for both
 * Services and EndpointSlices to sync before its first write).
 */
export class ProxySyncer {
  private needFull = true;
  private ready = false;
  /** Conntrack deletions that failed; retried on the next sync. */
  private pendingConntrack: ConntrackFilter[] = [];
  /** Endpoint trigger times whose programming is not yet observed. */
  private pendingTriggers: number[] = [];
  lastSyncAt = 0;
  lastQueuedAt = 0;
  /**
   * When the oldest change not yet written was queued (ms); 0 when every
   * queued change is in the kernel. Kept from the first queued change until a
   * sync succeeds, so a stream of changes cannot keep /healthz green while
   * every sync fails (the latest queued time would always look fresh).
   */
  oldestPendingAt = 0;
  /** Failed syncs in a row; 0 after a success. */
  consecutiveFailures = 0;
  /** While a sync runs: when it started, and the first change queued meanwhile (not in what it writes). */
  private syncStartedAt = 0;
  private firstQueuedDuringSync = 0;
  syncs = { full: 0, partial: 0, failed: 0 };

  constructor(private readonly o: SyncerOptions) {}

  /** Sources have all listed once; rules may be written. */
  markReady(): void {
    this.ready = true;
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** Force the next sync to be full (canary gone, periodic resync). */
  requestFull(): void {
    this.needFull = true;
  }

  /**
   * Checks the mode's canary; when it is gone someone flushed our rules and
   * the next sync is full. Returns true when a resync is needed.
   */
  async checkCanary(): Promise<boolean> {
    if (!this.ready || this.lastSyncAt === 0) return false;
    const ok = await this.o.backend.healthy().catch(() => false);
    if (!ok) {
      this.o.log.warn({ mode: this.o.backend.mode }, 'canary chain gone: rules were flushed by someone else, next sync is full');
      this.needFull = true;
    }
    return !ok;
  }

  /** The sync state /healthz judges (see syncHealth). */
  get state(): SyncState {
    return {
      lastSuccessfulSync: this.lastSyncAt,
      lastQueued: this.lastQueuedAt,
      oldestPending: this.oldestPendingAt,
      consecutiveFailures: this.consecutiveFailures,
    };
  }

  noteQueued(): void {
    this.lastQueuedAt = this.now();
    if (this.oldestPendingAt === 0) this.oldestPendingAt = this.lastQueuedAt;
    if (this.syncStartedAt && !this.firstQueuedDuringSync) this.firstQueuedDuringSync = this.lastQueuedAt;
    this.o.metrics?.lastQueued.set(this.lastQueuedAt / 1000);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  async sync(reasons: string[] = []): Promise<void> {
    if (!this.ready) return;
    const { model, backend, log, metrics } = this.o;
    if (reasons.includes('periodic')) this.needFull = true;
    const started = this.now();
    this.syncStartedAt = started;
    this.firstQueuedDuringSync = 0;
    const changes = model.applyChanges();
    for (const t of model.takeTruncations()) {
      metrics?.truncatedObjects.inc({ object: t.object });
      log.warn({ object: t.object, field: t.field, had: t.had, kept: t.kept }, 'object has more endpoints than weft-proxy takes from one object; kept the first ones');
    }
    this.pendingTriggers.push(...changes.triggerTimes);
    metrics?.serviceChanges.inc(changes.services.size);
    metrics?.endpointChanges.inc(changes.endpoints.size);
    this.pendingConntrack.push(...staleConntrackFilters(changes, model));
    const full = this.needFull;
    try {
      const r = await backend.sync(model, changes.changed, full);
      this.needFull = false;
      const secs = (this.now() - started) / 1000;
      this.syncs[r.full ? 'full' : 'partial']++;
      if (metrics) {
        metrics.syncDuration.observe(secs);
        (r.full ? metrics.fullSyncDuration : metrics.partialSyncDuration).observe(secs);
        for (const [table, n] of Object.entries(r.ruleCounts)) metrics.rulesTotal.set({ table }, n);
        metrics.noLocalEndpoints.set({ traffic_policy: 'external' }, r.noLocalEndpoints);
        for (const t of this.pendingTriggers) if (t > 0) metrics.programming.observe(Math.max(0, (this.now() - t) / 1000));
      }
      this.pendingTriggers = [];
      this.lastSyncAt = this.now();
      this.consecutiveFailures = 0;
      // What was queued before applyChanges is written now; what came while the backend wrote waits.
      this.oldestPendingAt = this.firstQueuedDuringSync;
      metrics?.lastSync.set(this.lastSyncAt / 1000);
      this.o.onHealthChecks?.(r.healthChecks);
      if (r.wrote || changes.changed.size > 0) {
        log.info({ mode: backend.mode, full: r.full, changed: changes.changed.size, seconds: secs, reasons: reasons.join(',') }, 'synced proxy rules');
      }
    } catch (err) {
      this.needFull = true;
      this.syncs.failed++;
      this.consecutiveFailures++;
      // What this sync folded in is not in the kernel: it is pending since it was queued (or now).
      if (this.oldestPendingAt === 0) this.oldestPendingAt = this.lastQueuedAt || started;
      metrics?.restoreFailures.inc();
      if (!full) metrics?.partialRestoreFailures.inc();
      log.warn({ mode: backend.mode, full, failures: this.consecutiveFailures, err: errorMessage(err) }, 'proxy rules sync failed; next sync is full');
      throw err;
    } finally {
      this.syncStartedAt = 0;
    }
    await this.flushConntrack();
  }

  private async flushConntrack(): Promise<void> {
    const todo = this.pendingConntrack;
    this.pendingConntrack = [];
    for (const f of todo) {
      try {
        const n = await this.o.conntrack.delete(f);
        this.o.metrics?.conntrackDeleted.inc(n);
        if (n > 0) this.o.log.info({ ...f, flows: n }, 'deleted stale UDP conntrack flows');
      } catch (err) {
        this.o.log.warn({ ...f, err: errorMessage(err) }, 'conntrack delete failed; will retry');
        this.pendingConntrack.push(f);
      }
    }
  }
}
