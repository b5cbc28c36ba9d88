#!/usr/bin/env node
// Convergence probe. Runs inside the lab's switch namespace (where etcd
// listens on 127.0.0.1:2379) and watches the host namespace with
// `ip -n <host> -ts -o monitor route neigh`, so the etcd put and the kernel
// event are timed on one machine clock.
//
//   echo '<json spec>' | ip netns exec <lab>-sw node probe.mjs     (spec: see main())
//
// Modes: "converge" measures, "fill" only writes leases, "put-all" writes
// the given keys (weft-proxy's registry) and exits.
// Prints one JSON object on stdout; progress on stderr.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { Etcd3 } from 'etcd3';
import { PresenceTracker, expectedEntries, leaseKey, leaseValue, parseMonitorLine } from './model.mjs';

// The spec comes on stdin: a list of 1000 peers is longer than one argv string may be.
let specText = '';
for await (const chunk of process.stdin) specText += chunk;
const spec = JSON.parse(specText || '{}');
const now = () => performance.timeOrigin + performance.now();
const say = (msg) => process.stderr.write(`  ${msg}\n`);

function sh(args) {
  return new Promise((resolve, reject) => {
    const c = spawn(args[0], args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${args.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}

/** The monitor child plus waiters that resolve when a condition on the tracker holds. */
function startMonitor(hostNetns) {
  const tracker = new PresenceTracker();
  const waiters = new Set();
  const child = spawn('ip', ['-n', hostNetns, '-ts', '-o', 'monitor', 'route', 'neigh'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let ready;
  const started = new Promise((r) => (ready = r));
  createInterface({ input: child.stdout }).on('line', (line) => {
    ready();
    tracker.feed(parseMonitorLine(line));
    for (const w of waiters) {
      const t = w.check();
      if (t !== undefined) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(t);
      }
    }
  });
  const until = (check, what, timeoutMs) =>
    new Promise((resolve, reject) => {
      const t = check();
      if (t !== undefined) return resolve(t);
      const w = { check, resolve };
      w.timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      waiters.add(w);
    });
  return { child, tracker, until, started };
}

async function main() {
  const { mode = 'converge', hostNetns, backend, prefix = '/coreos.com/network', peers, sizes = [], samples = 10, timeoutMs = 30_000 } = spec;
  const etcd = new Etcd3({ hosts: spec.etcd ?? 'http://127.0.0.1:2379' });
  const put = (p) => etcd.put(leaseKey(prefix, p.cidr)).value(leaseValue(backend, p.publicIp, p.mac));
  const del = (p) => etcd.delete().key(leaseKey(prefix, p.cidr));
  try {
    if (mode === 'put-all') {
      // Arbitrary keys (the weft-proxy registry), in bounded concurrent batches.
      for (let i = 0; i < spec.kvs.length; i += 200) await Promise.all(spec.kvs.slice(i, i + 200).map((kv) => etcd.put(kv.key).value(kv.value)));
      console.log(JSON.stringify({ written: spec.kvs.length }));
      return;
    }
    if (mode === 'fill') {
      // Bounded concurrency keeps the gRPC channel from queueing thousands of calls.
      for (let i = 0; i < peers.length; i += 100) await Promise.all(peers.slice(i, i + 100).map(put));
      console.log(JSON.stringify({ written: peers.length }));
      return;
    }
    const mon = startMonitor(hostNetns);
    try {
      // A harmless event proves the monitor is reading before anything is timed.
      await sh(['ip', '-n', hostNetns, 'route', 'replace', spec.canary, 'dev', 'lo']);
      await mon.started;
      await sh(['ip', '-n', hostNetns, 'route', 'del', spec.canary, 'dev', 'lo']);
      const keys = (p) => expectedEntries(backend, p);
      const present = new Set();
      const result = { backend, sizes: [] };
      for (const n of sizes) {
        // Burst: from no peer to n peers written at once.
        const gone = [...present];
        await Promise.all(gone.map(del));
        await Promise.all(gone.map((p) => mon.until(() => mon.tracker.goneAt(keys(p)), `removal of ${p.cidr}`, timeoutMs)));
        present.clear();
        const batch = peers.slice(0, n);
        const t0 = new Map();
        await Promise.all(
          batch.map((p) => {
            t0.set(p.cidr, now());
            return put(p);
          }),
        );
        const done = await Promise.all(batch.map((p) => mon.until(() => mon.tracker.doneAt(keys(p)), `${p.cidr} after a burst`, timeoutMs)));
        for (const p of batch) present.add(p);
        const burst = done.map((t, i) => t - t0.get(batch[i].cidr));
        say(`${backend} ${n} peers: burst of ${n} converged, last after ${Math.max(...burst).toFixed(0)} ms`);

        // Steady state: one more peer joins and leaves a cluster of n, interleaved with the baseline.
        const probe = peers[sizes[sizes.length - 1]];
        const steady = { weft: [], baseline: [], weftRemove: [], baselineRemove: [] };
        const sides = {
          weft: async () => {
            let t = now();
            await put(probe);
            steady.weft.push((await mon.until(() => mon.tracker.doneAt(keys(probe)), `${probe.cidr}`, timeoutMs)) - t);
            t = now();
            await del(probe);
            steady.weftRemove.push((await mon.until(() => mon.tracker.goneAt(keys(probe)), `removal of ${probe.cidr}`, timeoutMs)) - t);
          },
          baseline: async () => {
            const b = spec.baseline;
            let t = now();
            for (const cmd of b.add) await sh(cmd);
            steady.baseline.push((await mon.until(() => mon.tracker.doneAt(b.keys), 'baseline entries', timeoutMs)) - t);
            t = now();
            for (const cmd of b.del) await sh(cmd);
            steady.baselineRemove.push((await mon.until(() => mon.tracker.goneAt(b.keys), 'baseline removal', timeoutMs)) - t);
          },
        };
        for (let r = 0; r < samples; r++) {
          const order = r % 2 === 0 ? ['weft', 'baseline'] : ['baseline', 'weft'];
          for (const side of order) await sides[side]();
        }
        const mid = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
        say(`${backend} ${n} peers: one joining peer ${mid(steady.weft).toFixed(1)} ms, baseline ${mid(steady.baseline).toFixed(1)} ms (medians of ${samples})`);
        result.sizes.push({ peers: n, burst, steady });
      }
      console.log(JSON.stringify(result));
    } finally {
      mon.child.kill('SIGTERM');
    }
  } finally {
    etcd.close();
  }
}

main().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exitCode = 1;
});
