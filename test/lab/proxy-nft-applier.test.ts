import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
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

    // A client's affinity entry, which a restart's full sync must keep (`flush table` empties chains, not sets).
    const aff = /^\s+set (aff-\S+10\.244\.1\.2\S+) \{/m.exec(t)![1]!;
    await run('nft', ['add', 'element', 'ip', 'weft-proxy', aff, '{ 192.0.2.9 }'], { netns: ns });

    // A restart with a smaller model: a new proxier's full sync removes what is stale.
    const px2 = new NftablesProxier(nft, CFG, silentLogger);
    model.remove('Service', 'default/empty');
    c = model.applyChanges();
    await px2.sync(model, c.changed, true);
    t = await table();
    expect(t).not.toContain('default/empty');
    expect(t.match(/^\s+chain sep-/gm)).toHaveLength(2);
    expect((await run('nft', ['list', 'set', 'ip', 'weft-proxy', aff], { netns: ns })).stdout).toContain('192.0.2.9');

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

  it('applyStream: pieces make one transaction; a producer that fails or a refused piece applies nothing', async () => {
    const tables = async () => (await run('nft', ['list', 'tables'], { netns: ns })).stdout;
    async function* pieces(list: string[], failAfter?: number) {
      for (const [i, p] of list.entries()) {
        if (i === failAfter) throw new Error('render failed');
        yield p;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    await nft.applyStream(pieces(['add table ip weft-pending\n', 'add chain ip weft-pending c\n']));
    expect(await tables()).toContain('weft-pending');
    await expect(nft.applyStream(pieces(['add chain ip weft-pending c3\n', 'add chain ip weft-pending c4\n'], 1))).rejects.toThrow('render failed');
    // nft cannot quote a line of the pipe it read: the error quotes the refused line from what was sent.
    await expect(nft.applyStream(pieces(['add chain ip weft-pending c2\n', 'add rule ip weft-pending c2 bogus\n']))).rejects.toThrow(
      /nft -f failed \(exit 1\): line 2: Error: .*add rule ip weft-pending c2 .*bogus/,
    );
    // Neither the abandoned nor the refused transaction left anything behind.
    const left = (await run('nft', ['list', 'table', 'ip', 'weft-pending'], { netns: ns })).stdout;
    expect(left).toContain('chain c {');
    expect(left).not.toMatch(/c2|c3|c4/);
    await nft.apply('delete table ip weft-pending\n');
  });

  it('keepReady: the next transaction goes to an nft started ahead; close() ends it', async () => {
    const waiting = async () => (await run('pgrep', ['-P', String(process.pid), '-f', '^nft -f'], { allowFail: true })).stdout.trim().split('\n').filter(Boolean);
    const before = await waiting();
    const ready = new ExecNft(ns, { keepReady: true });
    try {
      await waitFor(async () => (await waiting()).length === before.length + 1, { what: 'an nft waiting for input', intervalMs: 20 });
      const [pid] = (await waiting()).filter((p) => !before.includes(p));
      await ready.apply('add table ip weft-ready\n');
      expect((await run('nft', ['list', 'tables'], { netns: ns })).stdout).toContain('weft-ready');
      // The waiting process did that transaction; another one waits now.
      expect(await waiting()).not.toContain(pid);
      await waitFor(async () => (await waiting()).length === before.length + 1, { what: 'the next nft waiting for input', intervalMs: 20 });
    } finally {
      await ready.close();
    }
    await waitFor(async () => (await waiting()).length === before.length, { what: 'the waiting nft gone after close()', intervalMs: 20 });
    await expect(ready.apply('delete table ip weft-ready\n')).rejects.toThrow(/closed/);
    await nft.apply('delete table ip weft-ready\n');
  });

  it('listTable: the netlink listing finds what an nft child lists, including maps and sets', async () => {
    await nft.apply('table ip weft-list {\nmap m { type ipv4_addr : verdict; }\nset s { type ipv4_addr; }\nchain a {\n}\nchain b {\njump a\n}\n}\n');
    const viaNetlink = await new ExecNft(ns, { lister: 'netlink' }).listTable('ip', 'weft-list');
    const viaNft = await new ExecNft(ns, { lister: 'nft' }).listTable('ip', 'weft-list');
    expect(viaNetlink).toEqual({ chains: new Set(['a', 'b']), sets: new Set(['m', 's']) });
    expect(viaNft).toEqual(viaNetlink);
    expect(await new ExecNft(ns).listTable('ip', 'weft-absent')).toBeUndefined();
    await expect(new ExecNft('weft-no-such-netns').listTable('ip', 'weft-list')).rejects.toThrow(/weft-no-such-netns/);
    await nft.apply('delete table ip weft-list\n');
  });
});
