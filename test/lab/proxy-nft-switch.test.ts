import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

/** Switching modes leaves one set of rules; --cleanup leaves none (real weft-proxy processes in a namespace). */
describe.skipIf(!isRoot)('weft-proxy mode switching and --cleanup', () => {
  const sb = new NetnsSandbox();
  let ns: string;
  let dir: string;
  let proxy: ChildProcess | undefined;
  const args = () => ['--etcd-endpoints', '', '--manifests', dir, '--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16', '--min-sync-period', '100ms'];
  const start = (mode: string) => {
    proxy = spawn('ip', ['netns', 'exec', ns, process.execPath, 'dist/cli/weft-proxy.js', ...args(), '--proxy-mode', mode], { stdio: 'ignore' });
  };
  const stop = async () => {
    if (!proxy || proxy.exitCode !== null) return;
    const exited = new Promise((r) => proxy!.once('exit', r));
    proxy.kill('SIGTERM');
    await exited;
  };
  const iptablesRules = async () => (await run('iptables-nft-save', [], { netns: ns })).stdout.includes('WEFT-');
  const nftTable = async () => (await run('nft', ['list', 'tables'], { netns: ns })).stdout.includes('weft-proxy');

  beforeAll(async () => {
    ns = await sb.create('pswitch');
    dir = mkdtempSync(join(tmpdir(), 'weft-proxy-switch-'));
    writeFileSync(join(dir, 'web.yaml'), [svc('web'), slice('web', [ep('10.244.1.2')])].map((o) => stringify(o)).join('---\n'));
  });
  afterAll(async () => {
    await stop();
    await sb.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('iptables -> nftables removes the iptables rules; nftables -> iptables removes the table; --cleanup removes all', async () => {
    start('iptables');
    await waitFor(iptablesRules, { what: 'iptables mode rules', timeoutMs: 20_000 });
    await stop();

    start('nftables');
    await waitFor(async () => (await nftTable()) && !(await iptablesRules()), { what: 'nftables rules in place, iptables rules gone', timeoutMs: 20_000 });
    await stop();

    start('iptables');
    await waitFor(async () => (await iptablesRules()) && !(await nftTable()), { what: 'iptables rules back, nftables table gone', timeoutMs: 20_000 });
    await stop();

    // Leave both kinds behind, then clean up everything.
    start('nftables');
    await waitFor(nftTable, { what: 'nftables table', timeoutMs: 20_000 });
    await stop();
    await run('iptables-nft', ['-t', 'nat', '-N', 'WEFT-SERVICES'], { netns: ns, allowFail: true });
    const r = await run(process.execPath, ['dist/cli/weft-proxy.js', '--cleanup'], { netns: ns, allowFail: true });
    expect(r.code).toBe(0);
    expect(await nftTable()).toBe(false);
    expect(await iptablesRules()).toBe(false);
  });
});
