#!/usr/bin/env node
// Convergence: time from a lease appearing in etcd to the data path entries
// being present on a watching host. One real weftd (host-gw, then vxlan) in
// a one-host lab; simulated peers are written straight to etcd.
//
//   node bench/convergence/run.mjs [--quick] [--backends host-gw,vxlan] [--sizes 10,100,500] [--samples N] [--json FILE]
//
// For each size n: a burst (n leases written at once, latency of each) and
// a steady state (one peer joining a cluster of n, `--samples` times),
// interleaved with the baseline: the same entries added by `ip`/`bridge`
// commands in the same host, seen by the same monitor.
// Needs root and a built dist/. Labs are named cv<hex> and always removed.
import { writeFileSync } from 'node:fs';
import { makePeers, subnetsOf } from './model.mjs';
import { argOf, labExec, runProbe, startWatcher, withLab } from './lab.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const backends = argOf(argv, '--backends', 'host-gw,vxlan').split(',');
const sizes = argOf(argv, '--sizes', '10,100,500').split(',').map(Number);
const samples = Number(argOf(argv, '--samples', quick ? '10' : '30'));
const jsonFile = argOf(argv, '--json');

/** weftd's Network; the baseline's entries live in the other half of 10.244.0.0/16 so weftd never touches them. */
const NETWORK = '10.244.0.0/17';
const SUBNET_LEN = 26;
const BASE_CIDR = '10.244.200.0/26';
const BASE_GW = '192.0.2.77';
const BASE_MAC = '0e:77:65:00:00:01';

/** The baseline: the same entries for one peer, added and removed by the kernel tools. */
function baselineFor(backend, netns) {
  const ipn = ['ip', '-n', netns];
  if (backend === 'vxlan') {
    const dev = 'wbv0';
    const nh = BASE_CIDR.split('/')[0];
    return {
      setup: [
        ['ip', 'link', 'add', dev, 'type', 'vxlan', 'id', '99', 'local', '192.0.2.1', 'dev', 'eth0', 'dstport', '4799', 'nolearning'],
        ['ip', 'link', 'set', dev, 'up'],
      ],
      add: [
        [...ipn, 'neigh', 'replace', nh, 'lladdr', BASE_MAC, 'dev', dev, 'nud', 'permanent'],
        ['bridge', '-n', netns, 'fdb', 'replace', BASE_MAC, 'dev', dev, 'dst', BASE_GW, 'self', 'permanent'],
        [...ipn, 'route', 'replace', BASE_CIDR, 'via', nh, 'dev', dev, 'onlink'],
      ],
      del: [
        [...ipn, 'route', 'del', BASE_CIDR, 'dev', dev],
        ['bridge', '-n', netns, 'fdb', 'del', BASE_MAC, 'dev', dev, 'dst', BASE_GW, 'self'],
        [...ipn, 'neigh', 'del', nh, 'dev', dev],
      ],
      keys: [`neigh ${nh}`, `fdb ${BASE_MAC}`, `route ${BASE_CIDR}`],
    };
  }
  return {
    setup: [],
    add: [[...ipn, 'route', 'replace', BASE_CIDR, 'via', BASE_GW, 'dev', 'eth0']],
    del: [[...ipn, 'route', 'del', BASE_CIDR]],
    keys: [`route ${BASE_CIDR}`],
  };
}

async function measure(backend) {
  process.stderr.write(`convergence: ${backend} lab up\n`);
  return withLab({ prefix: 'cv', hosts: 1, podsPerHost: 0, backend, network: NETWORK, startWeftd: false }, async (id) => {
    const w = await startWatcher(id, { Network: NETWORK, SubnetLen: SUBNET_LEN, Backend: { Type: backend } });
    const need = Math.max(...sizes) + 1;
    const subnets = subnetsOf(NETWORK, SUBNET_LEN, [w.subnet]);
    if (subnets.length < need) throw new Error(`${NETWORK} has ${subnets.length} free /${SUBNET_LEN}s, ${need} needed`);
    const base = baselineFor(backend, w.netns);
    for (const cmd of base.setup) await labExec(id, 'h1', cmd);
    const res = await runProbe(id, {
      mode: 'converge',
      hostNetns: w.netns,
      backend,
      peers: makePeers(subnets.slice(0, need)),
      sizes,
      samples,
      baseline: base,
      canary: '10.244.254.1/32',
    });
    // How long weftd's last data path sync took with every peer present: where the time goes.
    const m = await labExec(id, 'h1', ['curl', '-s', '--max-time', '5', 'http://127.0.0.1:9808/metrics'], { allowFail: true, timeoutMs: 10_000 });
    const last = /^weftd_reconcile_last_duration_seconds (\S+)$/m.exec(m.stdout);
    return { ...res, weftdPid: w.pid, ownSubnet: w.subnet, lastReconcileMs: last ? Number(last[1]) * 1000 : undefined };
  });
}

const out = { network: NETWORK, subnetLen: SUBNET_LEN, samples, backends: {} };
let failed = false;
for (const b of backends) {
  try {
    out.backends[b] = await measure(b);
  } catch (err) {
    failed = true;
    out.backends[b] = { error: err.message };
    process.stderr.write(`convergence ${b} failed: ${err.stack ?? err}\n`);
  }
}
if (jsonFile) writeFileSync(jsonFile, JSON.stringify(out));
else console.log(JSON.stringify(out));
if (failed) process.exitCode = 1;
