import { afterEach, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { labDown, runDemo } from '../../src/lab/index.js';
import { uniqueLabId } from '../helpers/lab.js';
import { isRoot } from '../helpers/netns.js';

/**
 * The README's main command runs `weftctl demo`, which is runDemo(): this
 * suite runs the same code path for every backend and proxy mode available
 * here (ipvs needs IP_VS, which this kernel lacks).
 */
const variants = [
  { backend: 'vxlan', proxyMode: 'iptables' },
  { backend: 'host-gw', proxyMode: 'nftables' },
  { backend: 'udp', proxyMode: 'iptables' },
  { backend: 'vxlan', proxyMode: 'nftables' },
] as const;

describe.skipIf(!isRoot)('the demo (README main command) on each backend and proxy mode', () => {
  let current: string | undefined;
  afterEach(async () => {
    if (current) await labDown(current);
    if (current) expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(`${current}-`);
    current = undefined;
  });

  for (const v of variants) {
    it(`passes every check with ${v.backend} + ${v.proxyMode}`, async () => {
      current = uniqueLabId('dm');
      const res = await runDemo({ id: current, backend: v.backend, proxyMode: v.proxyMode, hosts: 3, podsPerHost: 2 });
      expect(res.report).toContain('checks passed');
      expect(res.checks.filter((c) => !c.ok), res.report).toEqual([]);
      // 6 pods: 30 ping pairs, 6 ClusterIP sources, 3 NodePort hosts.
      expect(res.checks.filter((c) => c.kind === 'ping')).toHaveLength(30);
      expect(res.checks.filter((c) => c.kind === 'clusterip')).toHaveLength(6);
      expect(res.checks.filter((c) => c.kind === 'nodeport')).toHaveLength(3);
      expect(res.ok).toBe(true);
    });
  }
});
