#!/usr/bin/env node
// CPU under load: weftd's CPU seconds per GB of pod traffic it moves on the
// udp backend. A two-host lab (backend udp, one pod per host, the real weftd
// in each host); iperf3 TCP from h1-p1 to h2-p1 while /proc/<pid>/stat of
// both weftd processes is read before and after each round.
//
//   node bench/memory/cpu.mjs [--quick] [--rounds N] [--time S] [--json FILE]
//
// There is no flanneld here to run beside it; FACTS.md quotes flanneld's udp
// backend at ~70% of a core for 0.19 Gbit/s (~29 CPU s/GB per side), measured
// on this kind of machine but not in this run.
import { writeFileSync } from 'node:fs';
import { HZ, argOf, cpuTicks, labExec, labSpawn, labStatus, waitUntil, withLab } from '../convergence/lab.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const rounds = Number(argOf(argv, '--rounds', quick ? '2' : '3'));
const seconds = Number(argOf(argv, '--time', quick ? '4' : '10'));
const jsonFile = argOf(argv, '--json');
const say = (m) => process.stderr.write(`cpu: ${m}\n`);

const out = await withLab({ prefix: 'cu', hosts: 2, podsPerHost: 1, backend: 'udp' }, async (id) => {
  const st = labStatus(id);
  const [h1, h2] = st.hosts;
  const target = h2.pods[0].ip;
  await labSpawn(id, 'h2-p1', ['iperf3', '-s', '-p', '5201']);
  await waitUntil(async () => (await labExec(id, 'h2-p1', ['ss', '-tln'])).stdout.includes(':5201'), 'iperf3 server', 15_000);
  const runs = [];
  for (let r = 0; r < rounds; r++) {
    const before = [cpuTicks(h1.weftd.pid), cpuTicks(h2.weftd.pid)];
    const res = await labExec(id, 'h1-p1', ['iperf3', '-c', target, '-p', '5201', '-t', String(seconds), '-J'], { timeoutMs: (seconds + 30) * 1000 });
    const after = [cpuTicks(h1.weftd.pid), cpuTicks(h2.weftd.pid)];
    const j = JSON.parse(res.stdout);
    const bytes = j.end.sum_received.bytes;
    const gb = bytes / 1e9;
    const [sender, receiver] = after.map((a, i) => (a - before[i]) / HZ);
    const run = {
      gbps: j.end.sum_received.bits_per_second / 1e9,
      bytes,
      retransmits: j.end.sum_sent.retransmits ?? 0,
      cpuSeconds: { sender, receiver },
      cpuSecondsPerGB: { sender: sender / gb, receiver: receiver / gb, total: (sender + receiver) / gb },
      corePercent: { sender: (sender / seconds) * 100, receiver: (receiver / seconds) * 100 },
    };
    runs.push(run);
    say(`round ${r + 1}/${rounds}: ${run.gbps.toFixed(2)} Gbit/s, weftd CPU ${sender.toFixed(2)} s + ${receiver.toFixed(2)} s = ${run.cpuSecondsPerGB.total.toFixed(2)} CPU s/GB`);
  }
  return { backend: 'udp', seconds, rounds, runs, flannelReference: { cpuSecondsPerGBPerSide: 29, gbps: 0.19, source: 'FACTS.md section 4 (not this run)' } };
});
if (jsonFile) writeFileSync(jsonFile, JSON.stringify(out));
else console.log(JSON.stringify(out));
