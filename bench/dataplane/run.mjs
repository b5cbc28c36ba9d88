#!/usr/bin/env node
// Data path benchmark: pod-to-pod iperf3 TCP across two namespace hosts for
// weft's udp backend, kernel vxlan (weft's vxlan backend; `vxlan-manual` is a
// hand-made pair with flannel's layout) and the plain underlay veth, in
// interleaved rounds within one run.
//
//   npx tsc -p tsconfig.json && npm run build:native
//   node bench/dataplane/run.mjs [--quick] [--rounds N] [--time S] [--modes udp,vxlan,veth,vxlan-manual,udp-nogro,udp-noudpgro,udp-nooffload] [--json]
//
// Needs root and iperf3. Everything lives in namespaces named wb-<random>-*,
// removed at the end (also on error / Ctrl-C). Nothing touches the root netns.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt;
};
const quick = flag('--quick');
const seconds = Number(opt('--time', quick ? '3' : '10'));
const rounds = Number(opt('--rounds', quick ? '2' : '3'));
const modes = opt('--modes', 'udp,vxlan,veth').split(',');
const tag = randomBytes(3).toString('hex');
const made = [];
const daemons = [];

function sh(cmd, args, { netns, allowFail = false, input } = {}) {
  const [file, list] = netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const c = spawn(file, list, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => {
      if (code !== 0 && !allowFail) reject(new Error(`${file} ${list.join(' ')}: exit ${code}: ${stderr.trim()}`));
      else resolve({ code, stdout, stderr });
    });
    c.stdin.on('error', () => {});
    c.stdin.end(input ?? '');
  });
}

async function waitFor(check, what, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function netns(name) {
  const ns = `wb-${tag}-${name}`;
  await sh('ip', ['netns', 'add', ns]);
  made.push(ns);
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  return ns;
}

async function veth(a, aif, acidr, b, bif, bcidr, mtu = 1500) {
  const tmp = `wb${tag}${randomBytes(2).toString('hex')}`;
  await sh('ip', ['link', 'add', tmp, 'netns', a, 'type', 'veth', 'peer', 'name', `${tmp}p`, 'netns', b]);
  await sh('ip', ['-n', a, 'link', 'set', tmp, 'name', aif]);
  await sh('ip', ['-n', b, 'link', 'set', `${tmp}p`, 'name', bif]);
  for (const [ns, ifn, cidr] of [
    [a, aif, acidr],
    [b, bif, bcidr],
  ]) {
    if (cidr) await sh('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', ifn]);
    await sh('ip', ['-n', ns, 'link', 'set', ifn, 'mtu', String(mtu), 'up']);
  }
}

function startDaemon(spec) {
  const child = spawn(process.execPath, [join(HERE, 'backend-host.mjs'), JSON.stringify(spec)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  daemons.push(child);
  let out = '';
  const waiters = [];
  child.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
    let i;
    while ((i = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      waiters.shift()?.(line);
    }
  });
  const next = () => new Promise((resolve) => waiters.push(resolve));
  const ask = async (msg) => {
    const p = next();
    child.stdin.write(JSON.stringify(msg) + '\n');
    return JSON.parse(await p);
  };
  return {
    pid: child.pid,
    ready: Promise.race([
      next().then((line) => JSON.parse(line)),
      new Promise((_, rej) => child.on('exit', (c) => rej(new Error(`backend-host exited ${c}`)))),
    ]),
    sync: (leases) => ask({ cmd: 'sync', leases }),
    stats: () => ask({ cmd: 'stats' }),
  };
}

/** Two hosts joined by a veth, one pod each; `mode` picks the overlay. */
async function topology(mode) {
  const h1 = await netns(`${mode}-h1`);
  const h2 = await netns(`${mode}-h2`);
  await veth(h1, 'eth0', '192.0.2.1/24', h2, 'eth0', '192.0.2.2/24');
  if (mode === 'veth') return { mode, hosts: [h1, h2], client: h1, server: h2, target: '192.0.2.2', daemons: [] };
  const hosts = [h1, h2];
  const mtu = mode.startsWith('vxlan') ? 1450 : 1472;
  const pods = [];
  for (const [i, h] of hosts.entries()) {
    const n = i + 1;
    const pod = await netns(`${mode}-p${n}`);
    await veth(pod, 'eth0', `10.244.${n}.2/24`, h, 'pod0', `10.244.${n}.1/24`, mtu);
    await sh('ip', ['-n', pod, 'route', 'add', 'default', 'via', `10.244.${n}.1`]);
    await sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], { netns: h });
    pods.push(pod);
  }
  const ds = [];
  if (mode.startsWith('udp') || mode === 'vxlan') {
    const type = mode === 'vxlan' ? 'vxlan' : 'udp';
    const opts = { offload: mode !== 'udp-nooffload', gro: mode !== 'udp-nogro', udpGro: mode !== 'udp-noudpgro' };
    const leases = [];
    for (const [i, h] of hosts.entries()) {
      const d = startDaemon({ type, netns: h, n: i + 1, opts });
      leases.push((await d.ready).lease);
      ds.push(d);
    }
    // Each daemon learns the other's lease (as from etcd), then programs its peer.
    for (const [i, d] of ds.entries()) await d.sync([leases[1 - i]]);
  } else if (mode === 'vxlan-manual') {
    const macs = ['02:00:00:00:01:01', '02:00:00:00:01:02'];
    for (const [i, h] of hosts.entries()) {
      const n = i + 1;
      const m = 2 - i;
      await sh('ip', ['-n', h, 'link', 'add', 'vx', 'address', macs[i], 'type', 'vxlan', 'id', '1', 'local', `192.0.2.${n}`, 'dev', 'eth0', 'dstport', '8472', 'nolearning', 'udpcsum']);
      await sh('ip', ['-n', h, 'link', 'set', 'vx', 'mtu', '1450', 'up']);
      await sh('ip', ['-n', h, 'addr', 'add', `10.244.${n}.0/32`, 'dev', 'vx']);
      await sh('ip', ['-n', h, 'neigh', 'replace', `10.244.${m}.0`, 'lladdr', macs[m - 1], 'dev', 'vx', 'nud', 'permanent']);
      await sh('bridge', ['-n', h, 'fdb', 'append', macs[m - 1], 'dev', 'vx', 'dst', `192.0.2.${m}`, 'self', 'permanent']);
      await sh('ip', ['-n', h, 'route', 'replace', `10.244.${m}.0/24`, 'via', `10.244.${m}.0`, 'dev', 'vx', 'onlink']);
    }
  }
  return { mode, hosts, client: pods[0], server: pods[1], target: '10.244.2.2', daemons: ds };
}

const HZ = 100;
function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

async function iperf(top) {
  const srv = spawn('ip', ['netns', 'exec', top.server, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' });
  try {
    await waitFor(
      async () => (await sh('ss', ['-tln'], { netns: top.server })).stdout.includes(':5201'),
      'iperf3 server',
    );
    const before = top.daemons.map((d) => cpuTicks(d.pid));
    const t0 = Date.now();
    const r = await sh('iperf3', ['-c', top.target, '-p', '5201', '-t', String(seconds), '-J'], { netns: top.client });
    const wall = (Date.now() - t0) / 1000;
    const cpu = top.daemons.map((d, i) => ((cpuTicks(d.pid) - before[i]) / HZ / wall) * 100);
    const j = JSON.parse(r.stdout);
    return {
      gbps: j.end.sum_received.bits_per_second / 1e9,
      retransmits: j.end.sum_sent.retransmits ?? 0,
      cpu,
    };
  } finally {
    await new Promise((resolve) => {
      if (srv.exitCode !== null) return resolve();
      srv.on('exit', resolve);
      setTimeout(() => {
        srv.kill('SIGKILL');
      }, 5000).unref();
    });
  }
}

async function pingRtt(top) {
  const r = await sh('ping', ['-c', '200', '-i', '0.005', '-W', '1', top.target], { netns: top.client, allowFail: true });
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  const q = (p) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] : NaN);
  return { p50: q(0.5), p99: q(0.99), received: rtts.length };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

async function cleanup() {
  for (const d of daemons) {
    d.stdin.end();
  }
  await Promise.all(
    daemons.map(
      (d) =>
        new Promise((resolve) => {
          if (d.exitCode !== null) return resolve();
          const t = setTimeout(() => {
            d.kill('SIGKILL');
          }, 3000);
          d.on('exit', () => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
  for (const ns of made.reverse()) {
    const pids = await sh('ip', ['netns', 'pids', ns], { allowFail: true });
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sh('ip', ['netns', 'del', ns], { allowFail: true });
  }
  made.length = 0;
}

process.on('SIGINT', () => {
  cleanup().finally(() => process.exit(130));
});

async function main() {
  const tops = [];
  for (const m of modes) tops.push(await topology(m));
  const results = Object.fromEntries(modes.map((m) => [m, { runs: [], ping: null }]));
  for (const top of tops) results[top.mode].ping = await pingRtt(top);
  for (let r = 0; r < rounds; r++) {
    // Interleave: each round runs every mode once, so drift on this shared
    // machine hits all modes alike.
    for (const top of tops) {
      const res = await iperf(top);
      results[top.mode].runs.push(res);
      process.stderr.write(
        `round ${r + 1}/${rounds} ${top.mode.padEnd(13)} ${res.gbps.toFixed(2)} Gbit/s retr ${res.retransmits}` +
          (res.cpu.length ? ` cpu ${res.cpu.map((c) => c.toFixed(0) + '%').join('/')}` : '') +
          '\n',
      );
    }
  }
  // Where packets were lost inside the udp hosts: the TUN queue (tx dropped)
  // and the UDP socket's receive buffer (RcvbufErrors), per netns.
  const losses = {};
  for (const top of tops.filter((t) => t.mode.startsWith('udp'))) {
    losses[top.mode] = [];
    for (const h of top.hosts) {
      const link = JSON.parse((await sh('ip', ['-s', '-j', 'link', 'show', 'weft-udp'], { netns: h })).stdout)[0];
      const snmp = (await sh('cat', ['/proc/net/snmp'], { netns: h })).stdout.split('\n').filter((l) => l.startsWith('Udp:'));
      const udp = Object.fromEntries(snmp[0].split(/\s+/).slice(1).map((k, i) => [k, Number(snmp[1].split(/\s+/)[i + 1])]));
      losses[top.mode].push({ tunTxDropped: link.stats64.tx.dropped, udpRcvbufErrors: udp.RcvbufErrors });
    }
  }
  const udpTop = tops.find((t) => t.mode === 'udp');
  const udpStats = udpTop ? await Promise.all(udpTop.daemons.map((d) => d.stats())) : [];
  const summary = {};
  for (const m of modes) {
    const runs = results[m].runs;
    summary[m] = {
      gbps: median(runs.map((x) => x.gbps)),
      retransmits: median(runs.map((x) => x.retransmits)),
      cpuPerDaemon: runs[0].cpu.length ? median(runs.map((x) => x.cpu.reduce((a, b) => a + b, 0) / x.cpu.length)) : null,
      pingP50ms: results[m].ping.p50,
      pingP99ms: results[m].ping.p99,
    };
  }
  console.log(`\niperf3 TCP pod-to-pod, ${seconds} s x ${rounds} interleaved rounds (medians)`);
  console.log('mode           Gbit/s  retrans  daemon CPU   ping p50   ping p99');
  for (const m of modes) {
    const s = summary[m];
    console.log(
      `${m.padEnd(14)} ${s.gbps.toFixed(2).padStart(6)}  ${String(s.retransmits).padStart(7)}  ${
        s.cpuPerDaemon === null ? '         -' : (s.cpuPerDaemon.toFixed(0) + '%/side').padStart(10)
      }  ${s.pingP50ms.toFixed(3).padStart(6)} ms  ${s.pingP99ms.toFixed(3).padStart(6)} ms`,
    );
  }
  const ratio = (a, b) => (summary[a] && summary[b] ? summary[a].gbps / summary[b].gbps : undefined);
  const ratios = { udpOverVxlan: ratio('udp', 'vxlan'), udpOverVeth: ratio('udp', 'veth') };
  if (ratios.udpOverVxlan !== undefined) console.log(`udp/vxlan = ${ratios.udpOverVxlan.toFixed(2)}  (goal >= 0.5)`);
  if (ratios.udpOverVeth !== undefined) console.log(`udp/veth  = ${ratios.udpOverVeth.toFixed(2)}`);
  if (udpStats.length) {
    const c = udpStats[0].counters;
    console.log(
      `udp sender batching: ${(c.tun_read_packets / Math.max(1, c.tx_wakeups)).toFixed(1)} TUN reads per wake-up, ` +
        `${c.tso_packets} TSO packets split; receiver: ${(udpStats[1].counters.udp_recv_packets / Math.max(1, udpStats[1].counters.rx_wakeups)).toFixed(1)} datagrams per wake-up`,
    );
  }
  for (const [m, l] of Object.entries(losses)) {
    console.log(`${m} losses (host1, host2): TUN queue drops ${l.map((x) => x.tunTxDropped).join('/')}, UDP rcvbuf errors ${l.map((x) => x.udpRcvbufErrors).join('/')}`);
  }
  if (flag('--json')) console.log(JSON.stringify({ seconds, rounds, summary, ratios, losses, udpStats, results }));
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
