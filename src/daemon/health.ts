import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthState {
  /** Live: the process works (always true while serving). */
  live(): boolean;
  /** Ready: lease held and backend programmed at least once. */
  ready(): { ok: boolean; reason: string };
  /**
   * Lease keys weft refuses right now, one line each (shown in the /readyz
   * body; they do not make weftd unready while it holds a lease of its own).
   */
  invalidLeases?(): string[];
}

/** Serves /healthz, /readyz and /metrics. Resolves once listening. */
export async function startHealthServer(opts: {
  host: string;
  port: number;
  state: HealthState;
  metrics: Registry;
  /** Extra text appended to /metrics (e.g. backend counters). */
  extraMetrics?: () => string;
}): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (url === '/readyz') {
      const r = opts.state.ready();
      const invalid = opts.state.invalidLeases?.() ?? [];
      const body = invalid.length > 0 ? `${r.reason}\ninvalid lease keys: ${invalid.length}\n${invalid.map((l) => `  ${l}\n`).join('')}` : `${r.reason}\n`;
      res.writeHead(r.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(body);
    } else if (url === '/metrics') {
      opts.metrics
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': opts.metrics.contentType });
          res.end(text + (opts.extraMetrics?.() ?? ''));
        })
        .catch((err) => res.writeHead(500).end(String(err)));
    } else {
      res.writeHead(404).end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}
