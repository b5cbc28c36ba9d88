import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { startCniServer, type CniServer } from '../../src/cni/server.js';
import { isRoot, NetnsSandbox } from '../helpers/netns.js';
import { CniWorkspace } from '../helpers/cni-env.js';

describe.skipIf(!isRoot)('weft CNI under load and under SIGKILL', () => {
  const sb = new NetnsSandbox();
  const ws = new CniWorkspace();
  const bridge = `wb${sb.tag}`;
  let host: string;
  let server: CniServer;
  const sock = join(ws.dir, 'cni.sock');

  beforeAll(async () => {
    host = await sb.create('host');
    ws.writeSubnetEnv('10.244.22.0/24', { ipMasq: true });
    await ws.build();
    server = await startCniServer({ socketPath: sock, hostNetns: host });
  });

  afterAll(async () => {
    await server?.close();
    await sb.cleanup();
    ws.cleanup();
  });

  const conf = (extra: Record<string, unknown> = {}) => JSON.stringify(ws.conf({ bridge, ...extra }));
  const cniEnv = (command: string, id: string, netns?: string) => ({ CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/x' });
  const reservations = () => (existsSync(join(ws.dataDir, 'weftlab')) ? readdirSync(join(ws.dataDir, 'weftlab')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []);
  const ports = async () => (await run('ip', ['-n', host, '-o', 'link', 'show', 'master', bridge], { allowFail: true })).stdout.split('\n').filter(Boolean);
  const natSave = async () => (await run('iptables-nft-save', ['-t', 'nat'], { netns: host, allowFail: true })).stdout + (await run('iptables-legacy-save', ['-t', 'nat'], { netns: host, allowFail: true })).stdout;

  async function makeNamespaces(prefix: string, n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i += 10) {
      out.push(...(await Promise.all(Array.from({ length: Math.min(10, n - i) }, (_, j) => sb.create(`${prefix}${i + j}`)))));
    }
    return out;
  }

  it('100 concurrent ADDs through the shim and server give 100 distinct addresses; 100 DELs leave the store empty', async () => {
    const nss = await makeNamespaces('s', 100);
    const adds = await Promise.all(nss.map((ns, i) => ws.exec(host, cniEnv('ADD', `load${i}`, `/var/run/netns/${ns}`), conf(), { WEFT_CNI_SOCKET: sock })));
    for (const r of adds) expect(r.code, r.stdout + r.stderr).toBe(0);
    const ips = adds.map((r) => JSON.parse(r.stdout).ips[0].address);
    expect(new Set(ips).size).toBe(100);
    expect(reservations()).toHaveLength(100);
    expect(await ports()).toHaveLength(100);
    const dels = await Promise.all(nss.map((ns, i) => ws.exec(host, cniEnv('DEL', `load${i}`, `/var/run/netns/${ns}`), conf(), { WEFT_CNI_SOCKET: sock })));
    for (const r of dels) expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(reservations()).toEqual([]);
    await waitFor(async () => (await ports()).length === 0, { timeoutMs: 10_000, what: 'bridge ports gone' });
  });

  it('a shim called from another netns is not served there: it falls back and works in its own netns', async () => {
    const other = await sb.create('other');
    const [ns] = await makeNamespaces('o', 1);
    const before = server.served;
    const add = await ws.exec(other, cniEnv('ADD', 'elsewhere', `/var/run/netns/${ns}`), conf(), { WEFT_CNI_SOCKET: sock });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(server.served).toBe(before);
    // The bridge was made in the caller's netns, not in the server's.
    expect((await run('ip', ['-n', other, 'link', 'show', bridge], { allowFail: true })).code).toBe(0);
    expect((await run('ip', ['-n', other, '-o', 'link', 'show', 'master', bridge])).stdout).toContain('veth');
    const del = await ws.exec(other, cniEnv('DEL', 'elsewhere', `/var/run/netns/${ns}`), conf(), { WEFT_CNI_SOCKET: sock });
    expect(del.code, del.stdout).toBe(0);
    expect(reservations()).toEqual([]);
  });

  it('concurrent standalone plugins (separate processes) never hand out one address twice', async () => {
    const nss = await makeNamespaces('x', 8);
    const adds = await Promise.all(nss.map((ns, i) => ws.exec(host, cniEnv('ADD', `solo${i}`, `/var/run/netns/${ns}`), conf())));
    for (const r of adds) expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(new Set(adds.map((r) => JSON.parse(r.stdout).ips[0].address)).size).toBe(8);
    const dels = await Promise.all(nss.map((ns, i) => ws.exec(host, cniEnv('DEL', `solo${i}`, `/var/run/netns/${ns}`), conf())));
    for (const r of dels) expect(r.code).toBe(0);
    expect(reservations()).toEqual([]);
  });

  it('a plugin SIGKILLed in the middle of ADD leaves nothing that the next GC does not free', async () => {
    const steps = ['reserved', 'veth', 'container', 'masq'];
    const nss = await makeNamespaces('k', steps.length + 1);
    // One healthy attachment GC must keep.
    const keep = await ws.exec(host, cniEnv('ADD', 'keeper', `/var/run/netns/${nss[steps.length]}`), conf({ ipMasq: true }));
    expect(keep.code, keep.stdout).toBe(0);
    for (const [i, step] of steps.entries()) {
      const marker = join(ws.dir, `hang-${step}`);
      const child = spawn('ip', ['netns', 'exec', host, ws.shim], {
        env: { PATH: process.env.PATH, WEFT_CNI_SOCKET: join(ws.dir, 'none.sock'), WEFT_CNI_TEST_HANG: `${step}:${marker}`, ...cniEnv('ADD', `killed${i}`, `/var/run/netns/${nss[i]}`) } as NodeJS.ProcessEnv,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      const exited = new Promise((r) => child.on('exit', r));
      child.stdin.end(conf({ ipMasq: true }));
      await waitFor(() => existsSync(marker), { timeoutMs: 20_000, what: `plugin at step ${step}` });
      process.kill(child.pid!, 'SIGKILL');
      await exited;
    }
    // The leaks are real before GC: reservations of killed ADDs, veths, a masquerade chain.
    expect(reservations().length).toBe(1 + steps.length);
    expect((await ports()).length).toBeGreaterThan(1);
    expect((await natSave()).match(/^:WEFT-CNI-/gm)?.length).toBe(2);

    const gc = await ws.exec(host, { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf({ cniVersion: '1.1.0', ipMasq: true, 'cni.dev/valid-attachments': [{ containerID: 'keeper', ifname: 'eth0' }] }));
    expect(gc.code, gc.stdout + gc.stderr).toBe(0);
    expect(reservations()).toHaveLength(1);
    expect(await ports()).toHaveLength(1);
    expect((await natSave()).match(/^:WEFT-CNI-/gm)?.length).toBe(1);

    // A retry of a killed ADD works once the kernel has finished removing the old pair.
    await waitFor(async () => (await run('ip', ['-n', nss[2]!, 'link', 'show', 'eth0'], { allowFail: true })).code !== 0, { timeoutMs: 10_000, what: 'old container end gone' });
    const retry = await ws.exec(host, cniEnv('ADD', 'killed2', `/var/run/netns/${nss[2]}`), conf({ ipMasq: true }), { WEFT_CNI_SOCKET: sock });
    expect(retry.code, retry.stdout).toBe(0);
    for (const id of ['killed2', 'keeper']) {
      const d = await ws.exec(host, cniEnv('DEL', id, undefined), conf({ ipMasq: true }), { WEFT_CNI_SOCKET: sock });
      expect(d.code, d.stdout).toBe(0);
    }
    expect(reservations()).toEqual([]);
    expect(await natSave()).not.toContain('WEFT-CNI-');
  });
});
