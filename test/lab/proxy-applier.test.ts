import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { ExecIptables, type IptablesBackend } from '../../src/netfilter/iptables.js';
import { IptablesProxier } from '../../src/proxy/iptables/proxier.js';
import { ProxyModel } from '../../src/proxy/model/model.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

const CFG = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16' };

describe.skipIf(!isRoot).each(['nft', 'legacy'] as IptablesBackend[])('IptablesProxier against real iptables-%s in a namespace', (backend) => {
  const sb = new NetnsSandbox();
  let ns: string;
  let ipt: ExecIptables;
  beforeAll(async () => {
    ns = await sb.create(`pa${backend}`);
    ipt = new ExecIptables(backend, ns);
  });
  afterAll(() => sb.cleanup());

  it('full sync, partial sync, no-op sync, canary, stale chain removal and cleanup', async () => {
    const model = new ProxyModel();
    const proxier = new IptablesProxier(ipt, CFG, silentLogger);
    model.upsert(svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], sessionAffinity: 'ClientIP' }));
    model.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.2.2', 'node-b')]));
    model.upsert(svc('empty', { clusterIP: '10.96.0.20' }));
    let c = model.applyChanges();
    const first = await proxier.sync(model, c.changed, true);
    expect(first.full).toBe(true);
    const nat = await ipt.save('nat');
    expect(nat).toMatch(/-A PREROUTING .*-j WEFT-SERVICES/);
    expect(nat.match(/^:WEFT-SEP-/gm)).toHaveLength(2);
    expect(await ipt.save('filter')).toMatch(/default\/empty:http has no endpoints" -j REJECT/);
    expect(await proxier.healthy()).toBe(true);

    // Nothing changed: nothing written.
    c = model.applyChanges();
    expect((await proxier.sync(model, c.changed, false)).wrote).toBe(false);

    // One endpoint replaced: partial restore, old SEP chain gone.
    model.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.3.3', 'node-c')]));
    c = model.applyChanges();
    const second = await proxier.sync(model, c.changed, false);
    expect(second.full).toBe(false);
    const nat2 = await ipt.save('nat');
    expect(nat2).toContain('10.244.3.3:8080');
    expect(nat2).not.toContain('10.244.2.2:8080');
    expect(nat2.match(/^:WEFT-SEP-/gm)).toHaveLength(2);
    // A full resync of an unchanged host compares with iptables-save and writes nothing;
    // a new proxier (a restart) does the same. Jumps are never duplicated.
    expect((await proxier.sync(model, new Set(), true)).wrote).toBe(false);
    expect((await new IptablesProxier(ipt, CFG, silentLogger).sync(model, new Set(), true)).wrote).toBe(false);
    expect((await ipt.save('nat')).match(/-A PREROUTING .*-j WEFT-SERVICES/g)).toHaveLength(1);

    // Delete the service: its chains go away in a partial sync.
    model.remove('Service', 'default/web');
    c = model.applyChanges();
    await proxier.sync(model, c.changed, false);
    expect(await ipt.save('nat')).not.toMatch(/WEFT-(SVC|SEP|EXT)-/);

    // A flush by someone else is visible through the canary.
    await sb.exec(ns, `iptables-${backend}`, ['-w', '-t', 'mangle', '-X', 'WEFT-PROXY-CANARY']);
    expect(await proxier.healthy()).toBe(false);

    await proxier.cleanup();
    for (const t of ['nat', 'filter', 'mangle']) expect(await ipt.save(t)).not.toContain('WEFT-');
  });

  it('streams a restore: finished COMMIT blocks apply, an aborted open block does not, a refused line fails end()', async () => {
    // Two blocks written in pieces, with a turn of the event loop between them.
    const ok = ipt.openRestore();
    await ok.write('*nat\n:WEFT-STREAM-A - [0:0]\n');
    await ok.write('-A WEFT-STREAM-A -j RETURN\nCOMMIT\n*nat\n:WEFT-STREAM-B - [0:0]\n');
    await ok.write('-A WEFT-STREAM-B -j WEFT-STREAM-A\nCOMMIT\n');
    await ok.end();
    expect(await ipt.save('nat')).toMatch(/-A WEFT-STREAM-B -j WEFT-STREAM-A/);

    // Killed in the middle of a block: nothing of that block is applied.
    const cut = ipt.openRestore();
    await cut.write('*nat\n:WEFT-STREAM-C - [0:0]\n-A WEFT-STREAM-C -j RETURN\n');
    cut.abort();
    await expect(cut.end()).rejects.toThrow();
    expect(await ipt.save('nat')).not.toContain('WEFT-STREAM-C');

    // A line the tool refuses: end() throws with its message; the block is not applied.
    const bad = ipt.openRestore();
    await bad.write('*nat\n:WEFT-STREAM-D - [0:0]\n-A WEFT-STREAM-D -j WEFT-NO-SUCH-CHAIN\nCOMMIT\n');
    await expect(bad.end()).rejects.toThrow(/iptables-.*restore/);
    expect(await ipt.save('nat')).not.toContain('WEFT-STREAM-D');

    const clean = ipt.openRestore();
    await clean.write('*nat\n:WEFT-STREAM-A - [0:0]\n:WEFT-STREAM-B - [0:0]\n-X WEFT-STREAM-B\n-X WEFT-STREAM-A\nCOMMIT\n');
    await clean.end();
    expect(await ipt.save('nat')).not.toContain('WEFT-STREAM');
  });
});
