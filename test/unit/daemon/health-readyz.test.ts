import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startHealthServer } from '../../../src/daemon/health.js';
import { WeftdMetrics } from '../../../src/daemon/metrics.js';

describe('/readyz and metrics for refused lease keys', () => {
  it('lists refused keys in the body without changing readiness, and exports their counts', async () => {
    const metrics = new WeftdMetrics();
    let ok = true;
    const server = await startHealthServer({
      host: '127.0.0.1',
      port: 0,
      metrics: metrics.registry,
      state: {
        live: () => true,
        ready: () => ({ ok, reason: ok ? 'ready' : 'acquiring lease' }),
        invalidLeases: () => ['"10.244.4.0-24" value (our own key): lease value is not JSON'],
      },
    });
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      let res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('ready\ninvalid lease keys: 1\n  "10.244.4.0-24" value (our own key): lease value is not JSON\n');
      ok = false;
      res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(503);
      metrics.leaseInvalid.inc({ reason: 'too-large' });
      metrics.invalidLeaseKeys = () => 3;
      const text = await (await fetch(`${base}/metrics`)).text();
      expect(text).toContain('weftd_lease_invalid_total{reason="too-large"} 1');
      expect(text).toContain('weftd_lease_invalid_total{reason="key"} 0');
      expect(text).toContain('weftd_lease_invalid_keys 3');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
