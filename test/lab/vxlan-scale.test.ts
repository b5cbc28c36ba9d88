import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIPv4, parseCidr } from '../../src/core/ip.js';
import { VxlanBackend } from '../../src/backends/vxlan/index.js';
import type { Lease } from '../../src/store/types.js';
import { buildHosts, labContext, labLease, labLog, type LabHost } from '../helpers/kernel-lab.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

/**
 * 1000 vxlan peers (SubnetLen 26 leases) programmed into one namespace host.
 * Prints the time of each pass (`WEFT_SCALE_PEERS` overrides the count);
 * asserts only the resulting kernel state, never the clock.
 */
describe.skipIf(!isRoot)('vxlan backend at scale', () => {
  const sb = new NetnsSandbox();
  const stateDir = mkdtempSync(join(tmpdir(), 'weft-vxlan-scale-'));
  const n = Number(process.env.WEFT_SCALE_PEERS ?? 1000);
  let host: LabHost;
  let be: VxlanBackend;
  const peers: Lease[] = [];
  const count = async (cmd: string, args: string[]) =>
    (await sb.exec(host.ns, cmd, args)).stdout.split('\n').filter((l) => l.trim()).length;

  beforeAll(async () => {
    // /26 leases from 10.244.4.0 fill the /16 at 1008.
    if (n > 1000) throw new Error('WEFT_SCALE_PEERS: at most 1000 peers fit this layout');
    [host] = await buildHosts(sb, 1);
    be = new VxlanBackend(labContext(host!, { Type: 'vxlan' }, stateDir, labLog));
    await be.prepare();
    await be.start(labLease(host!, 'vxlan', undefined));
    const base = parseCidr('10.244.4.0/26').ip;
    for (let i = 0; i < n; i++) {
      peers.push({
        subnet: { ip: (base + i * 64) >>> 0, prefixLen: 26 },
        attrs: {
          PublicIP: `192.0.2.${(i % 200) + 2}`,
          BackendType: 'vxlan',
          BackendData: { VNI: 1, VtepMAC: `02:aa:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` },
        },
      });
    }
  });
  afterAll(async () => {
    await be?.stop();
    await sb.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it(`programs, re-checks and removes ${n} peers in batches`, async () => {
    const t0 = performance.now();
    expect(await be.sync(peers)).toEqual({ fixes: 3 * n, peers: n });
    const t1 = performance.now();
    expect(await be.sync(peers)).toEqual({ fixes: 0, peers: n });
    const t2 = performance.now();
    expect(await count('ip', ['neigh', 'show', 'dev', 'weft.1'])).toBe(n);
    expect(await count('bridge', ['fdb', 'show', 'dev', 'weft.1'])).toBeGreaterThanOrEqual(n);
    expect(await count('ip', ['route', 'show', 'dev', 'weft.1'])).toBe(n);
    const last = peers[n - 1]!;
    expect((await sb.exec(host.ns, 'ip', ['route', 'show', `${formatIPv4(last.subnet.ip)}/26`])).stdout).toContain('onlink');
    const t3 = performance.now();
    expect(await be.sync([])).toEqual({ fixes: 3 * n, peers: 0 });
    const t4 = performance.now();
    expect(await count('ip', ['route', 'show', 'dev', 'weft.1'])).toBe(0);
    console.log(
      `vxlan scale: ${n} peers: program ${(t1 - t0).toFixed(0)} ms, steady re-check ${(t2 - t1).toFixed(0)} ms, remove all ${(t4 - t3).toFixed(0)} ms`,
    );
  });
});
