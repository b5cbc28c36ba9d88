import { createServer, type Server } from 'node:http';
import { InvalidArgumentError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { HealthCheckPort } from './backend.js';
import type { ProxyMetrics } from './metrics.js';
import { syncHealth } from './syncer.js';

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

export interface HealthState {
  /** ms of the last successful sync; 0 = never. */
  lastSyncAt: number;
  /** ms when a sync was last asked for. */
  lastQueuedAt: number;
  /** ms of the oldest change not yet written (0: none); absent: lastQueuedAt is used. */
  oldestPendingAt?: number;
  /** Failed syncs in a row. */
  consecutiveFailures?: number;
}

/**
 * kube-proxy's /healthz: 200 once rules have been written and no requested
 * sync has waited longer than `timeoutMs`; 503 otherwise. /livez answers
 * while the process runs.
 */
export function healthzServer(state: () => HealthState, timeoutMs: number, now: () => number = Date.now): Server {
  return createServer((req, res) => {
    const s = state();
    const t = now();
    const sync = syncHealth(
      {
        lastSuccessfulSync: s.lastSyncAt,
        lastQueued: s.lastQueuedAt,
        oldestPending: s.oldestPendingAt ?? (s.lastQueuedAt > s.lastSyncAt ? s.lastQueuedAt : 0),
        consecutiveFailures: s.consecutiveFailures ?? 0,
      },
      t,
      { timeoutMs },
    );
    const healthy = req.url?.startsWith('/livez') ? true : sync.healthy;
    if (!req.url?.startsWith('/healthz') && !req.url?.startsWith('/livez')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(healthy ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' });
    res.end(
      JSON.stringify({
        lastUpdated: s.lastSyncAt ? new Date(s.lastSyncAt).toISOString() : '',
        currentTime: new Date(t).toISOString(),
        nodeHealthy: healthy,
      }),
    );
  });
}

export function metricsServer(metrics: ProxyMetrics): Server {
  return createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
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
