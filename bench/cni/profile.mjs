#!/usr/bin/env node
// Where a server-side ADD spends its time: the handler in this process (as in
// weftd), `ip` through the warm shell pool, phases timed with the handler's
// step hook. Needs root and `npx tsc` output in dist/.
//
//   node bench/cni/profile.mjs [--adds 60] [--no-fsync]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCniHandler } from '../../dist/cni/handler.js';
import { ExecCniKernel } from '../../dist/cni/kernel-exec.js';
import { ShellPool } from '../../dist/cni/shell-pool.js';
import { DiskIpamStore } from '../../dist/cni/ipam/disk-store.js';

const i = process.argv.indexOf('--adds');
const N = i > 0 ? Number(process.argv[i + 1]) : 60;
const fsync = !process.argv.includes('--no-fsync');
const tag = randomBytes(3).toString('hex');
const host = `wcp-${tag}-host`;
const dir = mkdtempSync(join(tmpdir(), 'weft-cni-prof-'));
const made = [];
const ip = (...a) => execFileSync('ip', a);
const shells = new ShellPool(4);
try {
  ip('netns', 'add', host);
  made.push(host);
  writeFileSync(join(dir, 'subnet.env'), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.30.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  shells.warm();
  const phases = {};
  let t0 = 0n;
  let last = 0;
  const mark = (k) => {
    const now = Number(process.hrtime.bigint() - t0) / 1e6;
    (phases[k] ??= []).push(now - last);
    last = now;
  };
  const handler = createCniHandler({
    kernel: new ExecCniKernel({ shells, hostNetns: host }),
    bridgeCacheMs: 30_000,
    storeFor: (d) => new DiskIpamStore(d, { fsync }),
    fault: async (step) => mark(step),
  });
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'prof', type: 'weft', subnetFile: join(dir, 'subnet.env'), dataDir: dir, ipMasq: false });
  for (let n = -1; n < N; n++) {
    const ns = `wcp-${tag}-c${n + 1}`;
    ip('netns', 'add', ns);
    made.push(ns);
    const env = { CNI_CONTAINERID: `p${n + 1}`, CNI_NETNS: `/var/run/netns/${ns}`, CNI_IFNAME: 'eth0' };
    t0 = process.hrtime.bigint();
    last = 0;
    const r = await handler({ env: { ...env, CNI_COMMAND: 'ADD' }, stdin: conf });
    if (r.exitCode !== 0) throw new Error(r.stdout);
    mark('fsync+reply');
    t0 = process.hrtime.bigint();
    last = 0;
    await handler({ env: { ...env, CNI_COMMAND: 'DEL' }, stdin: conf });
    mark('DEL');
    if (n < 0) for (const k of Object.keys(phases)) phases[k].length = 0; // warm-up round (bridge creation) not counted
    ip('netns', 'del', ns);
    made.pop();
  }
  const q = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))].toFixed(1);
  console.log(`ADD phases, ms (fsync ${fsync}, ${N} ADDs, load ${execFileSync('cat', ['/proc/loadavg']).toString().trim()})`);
  const names = { reserved: 'IPAM (lock, reserve)', veth: 'host ip -batch', container: 'container ip -batch', masq: 'masquerade', 'fsync+reply': 'fsync wait + reply', DEL: 'whole DEL' };
  for (const [k, v] of Object.entries(phases)) console.log(`${(names[k] ?? k).padEnd(22)} p50 ${q(v, 0.5).padStart(6)}  p90 ${q(v, 0.9).padStart(6)}  max ${q(v, 1).padStart(6)}`);
} finally {
  shells.close();
  for (const ns of made.reverse()) execFileSync('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
}
