import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { renderFlannelCleanup } from '../../src/migrate/flannel-rules.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

// flanneld's rules as it leaves them when it stops (FACTS.md section 1), in a
// throwaway namespace, on both iptables backends; `weftctl cleanup-flannel`
// (docs/migration.md step 1) must remove them and nothing else.
const repo = join(import.meta.dirname, '..', '..');
const NET = '10.244.0.0/16';
const SUB = '10.244.7.0/24';
const flannelRules = [
  '*nat',
  ':FLANNEL-POSTRTG - [0:0]',
  '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
  '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
  `-A FLANNEL-POSTRTG -s ${SUB} -d ${NET} -m comment --comment "flanneld masq" -j RETURN`,
  `-A FLANNEL-POSTRTG -s ${NET} -d ${SUB} -m comment --comment "flanneld masq" -j RETURN`,
  `-A FLANNEL-POSTRTG ! -s ${NET} -d ${SUB} -m comment --comment "flanneld masq" -j RETURN`,
  `-A FLANNEL-POSTRTG -s ${NET} ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
  `-A FLANNEL-POSTRTG ! -s ${NET} -d ${NET} -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
  // Someone else's rule: must stay.
  '-A POSTROUTING -s 10.88.0.0/16 -j MASQUERADE',
  'COMMIT',
  '*filter',
  ':FLANNEL-FWD - [0:0]',
  '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
  `-A FLANNEL-FWD -s ${NET} -m comment --comment "flanneld forward" -j ACCEPT`,
  `-A FLANNEL-FWD -d ${NET} -m comment --comment "flanneld forward" -j ACCEPT`,
  '-A FORWARD -i keepme -j ACCEPT',
  'COMMIT',
  '',
].join('\n');

describe('renderFlannelCleanup', () => {
  it('deletes the jumps, then flushes and deletes the chains; nothing for a clean table', () => {
    const save = ['*nat', ':POSTROUTING ACCEPT [0:0]', ':FLANNEL-POSTRTG - [0:0]', '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG', '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN', 'COMMIT'].join('\n');
    expect(renderFlannelCleanup('nat', save)?.text).toBe(
      ['*nat', '-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG', '-F FLANNEL-POSTRTG', '-X FLANNEL-POSTRTG', 'COMMIT', ''].join('\n'),
    );
    expect(renderFlannelCleanup('nat', '*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n')).toBeUndefined();
  });
  it('refuses to hand back a rule line with unexpected bytes', () => {
    const save = '*nat\n:FLANNEL-POSTRTG - [0:0]\n-A POSTROUTING -m comment --comment "x\u0007" -j FLANNEL-POSTRTG\nCOMMIT\n';
    expect(() => renderFlannelCleanup('nat', save)).toThrow(expect.objectContaining({ code: 'ERR_FLANNEL_RULE' }));
  });
});

describe.skipIf(!isRoot)('weftctl cleanup-flannel in a namespace', () => {
  const sb = new NetnsSandbox();
  let ns = '';
  const weftctl = (args: string[]) => run(process.execPath, [join(repo, 'dist/cli/weftctl.js'), ...args], { netns: ns, allowFail: true });
  const save = async (b: string) => (await run(`iptables-${b}-save`, [], { netns: ns })).stdout;

  beforeAll(async () => {
    ns = await sb.create('flcl');
    for (const b of ['legacy', 'nft']) await run(`iptables-${b}-restore`, ['--noflush', '-w', '5'], { netns: ns, input: flannelRules });
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('removes FLANNEL-POSTRTG, FLANNEL-FWD and their jumps from both backends, keeps other rules, and is idempotent', async () => {
    for (const b of ['legacy', 'nft']) expect(await save(b)).toContain('FLANNEL-POSTRTG');
    const r = await weftctl(['cleanup-flannel']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('legacy: removed 2 jump(s) and chain(s) nat/FLANNEL-POSTRTG, filter/FLANNEL-FWD');
    expect(r.stdout).toContain('nft: removed 2 jump(s)');
    for (const b of ['legacy', 'nft']) {
      const s = await save(b);
      expect(s).not.toMatch(/FLANNEL-/);
      expect(s).toContain('-A POSTROUTING -s 10.88.0.0/16 -j MASQUERADE');
      expect(s).toContain('-A FORWARD -i keepme -j ACCEPT');
    }
    const again = await weftctl(['cleanup-flannel']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('legacy: no flannel rules');
    expect(again.stdout).toContain('nothing to remove');
  });

  it('refuses an unknown --backend', async () => {
    const r = await weftctl(['cleanup-flannel', '--backend=xt']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_INVALID_ARGUMENT');
  });
});
