#!/usr/bin/env node
// CNI ADD/DEL latency: weft (shim -> weft server), weft standalone (shim ->
// Node bundle) and Debian's reference bridge + host-local, side by side in one
// run, interleaved round by round, each call a real process started inside a
// throwaway "host" netns with a fresh container netns.
//
//   node bench/cni/run.mjs [--rounds 100] [--standalone-rounds 20] [--json]
//
// Needs root, /usr/lib/cni/{bridge,host-local}, and native/build/Release/weft-cni-shim.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ROUNDS = arg('--rounds', 100);
const SOLO_ROUNDS = arg('--standalone-rounds', 20);
const JSON_OUT = process.argv.includes('--json');
const REF_DIR = '/usr/lib/cni';

const tag = randomBytes(3).toString('hex');
const host = `wcb-${tag}-host`;
const dir = mkdtempSync(join(tmpdir(), 'weft-cni-bench-'));
const bin = join(dir, 'bin');
const sock = join(dir, 'cni.sock');
const made = [];
let server;

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** Starts the plugin as a runtime does and returns wall milliseconds (spawn to exit). */
function call(plugin, env, stdin) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('ip', ['netns', 'exec', host, plugin], { env: { PATH: process.env.PATH, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${plugin} ${env.CNI_COMMAND} exit ${code}: ${out} ${err}`));
      else resolve(ms);
    });
    child.stdin.end(stdin);
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function main() {
  if (!existsSync(join(REF_DIR, 'bridge'))) throw new Error(`${REF_DIR}/bridge missing (apt-get install containernetworking-plugins)`);
  sh('node', [new URL('../../scripts/build-cni.mjs', import.meta.url).pathname, '--outdir', bin]);
  sh('ip', ['netns', 'add', host]);
  made.push(host);
  sh('ip', ['-n', host, 'link', 'set', 'lo', 'up']);
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.30.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');

  // Same work on both sides: bridge with gateway, veth with hairpin, MTU 1450, default + network routes, no masquerade.
  const weftConf = JSON.stringify({ cniVersion: '1.0.0', name: 'weftbench', type: 'weft', bridge: 'weft0', subnetFile, dataDir: join(dir, 'weft-data'), ipMasq: false });
  const refConf = JSON.stringify({
    cniVersion: '1.0.0', name: 'refbench', type: 'bridge', bridge: 'cni0', isGateway: true, isDefaultGateway: true, ipMasq: false, hairpinMode: true, mtu: 1450,
    ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.31.0/24' }]], routes: [{ dst: '10.244.0.0/16' }], dataDir: join(dir, 'ref-data') },
  });

  server = spawn('ip', ['netns', 'exec', host, process.execPath, join(bin, 'weft-cni.cjs'), 'serve', '--socket', sock], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, WEFT_CNI_LOG_LEVEL: 'warn' } });
  for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25)); // bounded wait for the socket
  if (!existsSync(sock)) throw new Error('weft server did not start');

  const plugins = {
    weft: { path: join(bin, 'weft'), conf: weftConf, env: { WEFT_CNI_SOCKET: sock, CNI_PATH: bin }, rounds: ROUNDS },
    reference: { path: join(REF_DIR, 'bridge'), conf: refConf, env: { CNI_PATH: REF_DIR }, rounds: ROUNDS },
    'weft-standalone': { path: join(bin, 'weft'), conf: weftConf, env: { WEFT_CNI_SOCKET: join(dir, 'absent.sock'), CNI_PATH: bin }, rounds: SOLO_ROUNDS },
  };
  const times = Object.fromEntries(Object.keys(plugins).map((k) => [k, { add: [], del: [] }]));

  // One warm-up round each (bridge creation, page cache) is not counted.
  for (let round = -1; round < ROUNDS; round++) {
    const names = Object.keys(plugins).filter((k) => round < plugins[k].rounds);
    if (round % 2 === 1) names.reverse();
    for (const name of names) {
      const p = plugins[name];
      const ns = `wcb-${tag}-c${round + 1}-${name.slice(0, 4)}`;
      sh('ip', ['netns', 'add', ns]);
      made.push(ns);
      const env = { ...p.env, CNI_CONTAINERID: `b${round + 1}${name.replace(/-/g, '')}`, CNI_NETNS: `/var/run/netns/${ns}`, CNI_IFNAME: 'eth0' };
      const add = await call(p.path, { ...env, CNI_COMMAND: 'ADD' }, p.conf);
      const del = await call(p.path, { ...env, CNI_COMMAND: 'DEL' }, p.conf);
      if (round >= 0) {
        times[name].add.push(add);
        times[name].del.push(del);
      }
      sh('ip', ['netns', 'del', ns]);
      made.splice(made.indexOf(ns), 1);
    }
  }

  const summary = {};
  for (const [name, t] of Object.entries(times)) {
    summary[name] = { n: t.add.length, addP50: pct(t.add, 50), addP90: pct(t.add, 90), addP99: pct(t.add, 99), delP50: pct(t.del, 50), delP90: pct(t.del, 90), delP99: pct(t.del, 99), ...(JSON_OUT ? { add: t.add, del: t.del } : {}) };
  }
  const r = (a, b) => (a / b).toFixed(2);
  if (JSON_OUT) {
    console.log(JSON.stringify(summary));
  } else {
    console.log(`CNI ADD/DEL wall time per call, ms (spawn to exit, via ip netns exec), load ${spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).stdout.trim()}`);
    console.log('plugin            n    ADD p50  ADD p90  ADD p99  DEL p50  DEL p90  DEL p99');
    for (const [name, s] of Object.entries(summary)) {
      console.log(`${name.padEnd(16)} ${String(s.n).padStart(3)}  ${[s.addP50, s.addP90, s.addP99, s.delP50, s.delP90, s.delP99].map((x) => x.toFixed(1).padStart(7)).join('  ')}`);
    }
    const w = summary.weft;
    const ref = summary.reference;
    console.log(`ratio weft/reference: ADD p50 ${r(w.addP50, ref.addP50)}x  p99 ${r(w.addP99, ref.addP99)}x  DEL p50 ${r(w.delP50, ref.delP50)}x  p99 ${r(w.delP99, ref.delP99)}x`);
    const s = summary['weft-standalone'];
    console.log(`ratio weft-standalone/reference: ADD p50 ${r(s.addP50, ref.addP50)}x  DEL p50 ${r(s.delP50, ref.delP50)}x`);
  }
}

try {
  await main();
} finally {
  if (server?.pid) {
    try {
      process.kill(server.pid, 'SIGTERM');
    } catch {}
  }
  for (const ns of made.reverse()) sh('ip', ['netns', 'del', ns], { allowFail: true });
  rmSync(dir, { recursive: true, force: true });
}
