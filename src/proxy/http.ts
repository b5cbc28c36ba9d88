import { createServer, type Server, type ServerResponse } from 'node:http';
import { InvalidArgumentError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { HealthCheckPort } from './backend.js';
import type { ProxyMetrics } from './metrics.js';
import { syncHealth, syncLiveness, type SyncState } from './syncer.js';

/** "host:port" -> parts; port 0 picks a free one (tests). */
export function parseBindAddress(text: string, field: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new InvalidArgumentError(field, `"${text}" is not host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(m[2]) };
}

export function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}

export function close(server: Server): Promise<void> {
  return new Promise((r) => {
    server.close(() => r());
    server.closeAllConnections?.();
  });
}

/**
 * kube-proxy's proxier health (pkg/proxy/healthcheck/proxier_health.go),
 * with an injected clock, judged by one rule (syncLiveness / syncHealth in
 * syncer.ts) over a SyncState: the running proxy reads its syncer's state;
 * without a source, `queued()` / `updated()` / `failed()` keep one here.
 * Live while no queued change has waited `timeoutMs` and fewer than 3 syncs
 * in a row failed. Healthy = live, synced at least once (weft's addition:
 * the systemd unit and readiness probes wait for rules to be written) and
 * this Node eligible.
 */
export class ProxierHealth {
  private own: SyncState = { lastSuccessfulSync: 0, lastQueued: 0, oldestPending: 0, consecutiveFailures: 0 };
  private nodeEligible = true;

  constructor(
    readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
    private readonly source?: () => SyncState,
  ) {}

  queued(): void {
    const t = this.now();
    this.own.lastQueued = t;
    if (this.own.oldestPending === 0) this.own.oldestPending = t;
  }

  updated(): void {
    this.own = { ...this.own, lastSuccessfulSync: this.now(), oldestPending: 0, consecutiveFailures: 0 };
  }

  failed(): void {
    this.own.consecutiveFailures++;
    if (this.own.oldestPending === 0) this.own.oldestPending = this.now();
  }

  /**
   * The Kubernetes source calls this with its Node's state: a Node being
   * deleted (deletionTimestamp, or the cluster autoscaler's
   * ToBeDeletedByClusterAutoscaler taint: see nodeBeingDeleted) makes
   * /healthz 503 so that load balancers drain this node; /livez ignores it.
   */
  setNodeDeleting(deleting: boolean): void {
    this.nodeEligible = !deleting;
  }

  status(): { live: boolean; healthy: boolean; nodeEligible: boolean; lastUpdated: number; currentTime: number; reason?: string } {
    const t = this.now();
    const s = this.source?.() ?? this.own;
    const h = syncHealth(s, t, { timeoutMs: this.timeoutMs });
    const live = syncLiveness(s, t, { timeoutMs: this.timeoutMs }).live;
    const reason = h.reason ?? (this.nodeEligible ? undefined : 'this Node is being deleted');
    return { live, healthy: h.healthy && this.nodeEligible, nodeEligible: this.nodeEligible, lastUpdated: s.lastSuccessfulSync, currentTime: t, ...(reason ? { reason } : {}) };
  }
}

/** kube-proxy's rule for "this Node is going away": a deletionTimestamp or the autoscaler's taint. */
export function nodeBeingDeleted(node: { metadata?: { deletionTimestamp?: string | null }; spec?: { taints?: Array<{ key?: string }> | null } }): boolean {
  if (node.metadata?.deletionTimestamp) return true;
  return (node.spec?.taints ?? []).some((t) => t.key === 'ToBeDeletedByClusterAutoscaler');
}

const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : '0001-01-01T00:00:00Z');

/**
 * /healthz and /livez with kube-proxy's bodies: `{"lastUpdated","currentTime","nodeEligible"}`
 * (livez without nodeEligible). As kube-proxy, a healthy answer reports
 * lastUpdated = currentTime; an unhealthy one the last successful sync
 * (Go's zero time when there was none).
 */
function healthHandler(health: ProxierHealth, metrics: ProxyMetrics | undefined, url: string, res: ServerResponse): boolean {
  const path = url.split('?')[0];
  if (path !== '/healthz' && path !== '/livez') return false;
  const s = health.status();
  const ok = path === '/healthz' ? s.healthy : s.live;
  (path === '/healthz' ? metrics?.healthzTotal : metrics?.livezTotal)?.inc({ code: ok ? '200' : '503' });
  const body: Record<string, unknown> = { lastUpdated: iso(ok ? s.currentTime : s.lastUpdated), currentTime: iso(s.currentTime) };
  if (path === '/healthz') body.nodeEligible = s.nodeEligible;
  res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify(body));
  return true;
}

/** The healthz address: /healthz and /livez. */
export function healthzServer(health: ProxierHealth, metrics?: ProxyMetrics): Server {
  return createServer((req, res) => {
    if (!healthHandler(health, metrics, req.url ?? '/', res)) res.writeHead(404).end();
  });
}

export interface MetricsServerOptions {
  /** /proxyMode: the mode name as plain text. */
  mode?: string;
  /** /configz: the configuration as applied, served as `{"kubeproxy.config.k8s.io": <config>}`. */
  configz?: () => unknown;
  /** /healthz and /livez on the metrics address too, as kube-proxy serves them there. */
  health?: ProxierHealth;
}

/** The metrics address: /metrics, /proxyMode, /configz, /healthz, /livez (kube-proxy's set). */
export function metricsServer(metrics: ProxyMetrics, o: MetricsServerOptions = {}): Server {
  return createServer((req, res) => {
    const url = req.url ?? '/';
    const path = url.split('?')[0];
    if (o.health && healthHandler(o.health, metrics, url, res)) return;
    if (path === '/proxyMode' && o.mode) return void res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' }).end(o.mode);
    if (path === '/configz' && o.configz) {
      return void res.writeHead(200, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' }).end(JSON.stringify({ 'kubeproxy.config.k8s.io': o.configz() }));
    }
    if (path !== '/metrics') return void res.writeHead(404).end();
    metrics.registry
      .metrics()
      .then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text))
      .catch((err) => res.writeHead(500).end(errorMessage(err)));
  });
}

/**
 * Health-check node ports of externalTrafficPolicy=Local services: one HTTP
 * listener per port answering 200 with the local endpoint count when this
 * node has endpoints, 503 when it has none - what cloud load balancers probe
 * to pick nodes.
 */
export class ServiceHealthServers {
  private readonly servers = new Map<number, { server: Server; info: HealthCheckPort }>();

  constructor(
    private readonly host: string,
    private readonly log: Logger,
  ) {}

  async sync(ports: HealthCheckPort[]): Promise<void> {
    const want = new Map(ports.map((p) => [p.port, p]));
    for (const [port, s] of this.servers) {
      if (!want.has(port)) {
        this.servers.delete(port);
        await close(s.server);
        this.log.info({ port, service: s.info.service }, 'closed health-check node port');
      }
    }
    for (const [port, info] of want) {
      const have = this.servers.get(port);
      if (have) {
        have.info = info;
        continue;
      }
      const entry = { server: undefined as unknown as Server, info };
      entry.server = createServer((_req, res) => {
        const [namespace, name] = entry.info.service.split('/');
        res.writeHead(entry.info.localEndpoints > 0 ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' });
        res.end(JSON.stringify({ service: { namespace, name }, localEndpoints: entry.info.localEndpoints, serviceProxyHealthy: true }));
      });
      try {
        await listen(entry.server, this.host, port);
        this.servers.set(port, entry);
        this.log.info({ port, service: info.service }, 'opened health-check node port');
      } catch (err) {
        this.log.warn({ port, service: info.service, err: errorMessage(err) }, 'cannot open health-check node port');
      }
    }
  }

  async closeAll(): Promise<void> {
    await this.sync([]);
  }
}
