import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { run } from '../../src/exec/run.js';
import { ExecNft } from '../../src/netfilter/nft.js';
import { ProxyModel } from '../../src/proxy/model/model.js';
import { NftablesProxier } from '../../src/proxy/nftables/proxier.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

const CFG = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16' };

describe.skipIf(!isRoot)('NftablesProxier against the real nft in a namespace', () => {
  const sb = new NetnsSandbox();
  let ns: string;
  let nft: ExecNft;
  const table = async () => (await run('nft', ['list', 'table', 'ip', 'weft-proxy'], { netns: ns, allowFail: true })).stdout;
  beforeAll(async () => {
    ns = await sb.create('pnft');
    nft = new ExecNft(ns);
  });
  afterAll(() => sb.cleanup());

  it('full, partial, no-op and stale-removing syncs are accepted by the kernel; canary; cleanup', async () => {
    const model = new ProxyModel();
    const px = new NftablesProxier(nft, CFG, silentLogger);
    const lb = svc('lb', { clusterIP: '10.96.0.30', type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30090 }], loadBalancerSourceRanges: ['198.51.100.0/24'], externalTrafficPolicy: 'Local' }, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.70' }] } } });
    model.upsert(svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], sessionAffinity: 'ClientIP' }));
    model.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.2.2', 'node-b')]));
    model.upsert(svc('empty', { clusterIP: '10.96.0.20' }));
    model.upsert(lb);
    model.upsert(slice('lb', [ep('10.244.1.5'), ep('10.244.2.5', 'node-b')]));
    let c = model.applyChanges();
    expect((await px.sync(model, c.changed, true)).full).toBe(true);
    let t = await table();
    expect(t).toMatch(/10\.96\.0\.10 \. tcp \. 80 : goto svc-/);
    expect(t).toMatch(/10\.96\.0\.20 \. tcp \. 80 : goto reject-chain/);
    expect(t.match(/^\s+set aff-/gm)).toHaveLength(2);
    expect(await px.healthy()).toBe(true);

    c = model.applyChanges();
    expect((await px.sync(model, c.changed, false)).wrote).toBe(false);

    // Endpoint replaced, a service deleted, another gets endpoints: one partial transaction.
    model.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3', 'node-c')]));
    model.remove('Service', 'default/lb');
    model.upsert(slice('empty', [ep('10.244.1.9')]));
    c = model.applyChanges();
    const partial = await px.sync(model, c.changed, false);
    expect(partial.full).toBe(false);
    t = await table();
    expect(t).toContain('dnat to 10.244.3.3:8080');
    expect(t).not.toContain('10.244.2.2');
    expect(t).not.toContain('default/lb');
    expect(t).toMatch(/10\.96\.0\.20 \. tcp \. 80 : goto pick-tcp-1/);
    expect(t.match(/^\s+set aff-/gm)).toHaveLength(2);

    // A restart with a smaller model: a new proxier's full sync removes what is stale.
    const px2 = new NftablesProxier(nft, CFG, silentLogger);
    model.remove('Service', 'default/empty');
    c = model.applyChanges();
    await px2.sync(model, c.changed, true);
    t = await table();
    expect(t).not.toContain('default/empty');
    expect(t.match(/^\s+chain sep-/gm)).toHaveLength(2);

    // A firewall reload flushes the ruleset: the canary sees it, a full sync repairs it.
    await run('nft', ['flush', 'ruleset'], { netns: ns });
    expect(await px2.healthy()).toBe(false);
    await px2.sync(model, new Set(), true);
    expect(await px2.healthy()).toBe(true);
    expect(await table()).toMatch(/numgen random mod 2/);

    await px2.cleanup();
    expect((await run('nft', ['list', 'tables'], { netns: ns })).stdout).not.toContain('weft-proxy');
    await px2.cleanup();
  });

  it('apply(promise): nft starts at once and applies the text when it comes; nothing when it is empty or rejected', async () => {
    const later = (v: string) => new Promise<string>((r) => setTimeout(() => r(v), 20));
    await nft.apply(later('add table ip weft-pending\nadd chain ip weft-pending c\n'));
    expect((await run('nft', ['list', 'tables'], { netns: ns })).stdout).toContain('weft-pending');
    await nft.apply(later(''));
    await expect(nft.apply(Promise.reject(new Error('render failed')))).rejects.toThrow('render failed');
    await expect(nft.apply(later('add chain ip weft-pending c2\nadd rule ip weft-pending c2 bogus\n'))).rejects.toThrow(/nft -f failed/);
    // The refused transaction left nothing behind.
    expect((await run('nft', ['list', 'table', 'ip', 'weft-pending'], { netns: ns })).stdout).not.toContain('c2');
    await nft.apply('delete table ip weft-pending\n');
  });
});
