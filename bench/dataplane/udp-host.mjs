// One udp "daemon" for the data path benchmark: runs the UdpBackend (from
// dist/) for one namespace host until stdin closes, so that its CPU use can
// be read from /proc/<pid>/stat like a real weftd's.
// Usage: node udp-host.mjs '<json: {netns, n, peers:[n...], offload, batch}>'
import { parseCidr } from '../../dist/core/ip.js';
import { createLogger } from '../../dist/core/log.js';
import { UdpBackend } from '../../dist/backends/udp/index.js';

const spec = JSON.parse(process.argv[2]);
const raw = { Type: 'udp' };
const config = {
  network: parseCidr('10.244.0.0/16'),
  subnetLen: 24,
  subnetMin: parseCidr('10.244.1.0/24'),
  subnetMax: parseCidr('10.244.255.0/24'),
  backend: { type: 'udp', raw },
  raw: { Network: '10.244.0.0/16', Backend: raw },
};
const lease = (n) => ({
  subnet: parseCidr(`10.244.${n}.0/24`),
  attrs: { PublicIP: `192.0.2.${n}`, BackendType: 'udp', BackendData: null },
});
const backend = new UdpBackend(
  {
    config,
    iface: { name: 'eth0', index: 0, mtu: 1500, ifaceAddr: `192.0.2.${spec.n}`, publicIp: `192.0.2.${spec.n}` },
    log: createLogger({ level: 'warn' }),
    stateDir: '/tmp',
    netns: spec.netns,
  },
  { offload: spec.offload !== false, gro: spec.gro !== false, udpGro: spec.udpGro !== false, batch: spec.batch ?? 64 },
);
await backend.prepare();
await backend.start(lease(spec.n));
await backend.sync(spec.peers.map(lease));
process.stdout.write('ready\n');

let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  if (buf.includes('stats\n')) {
    buf = '';
    process.stdout.write(JSON.stringify(backend.stats()) + '\n');
  }
});
process.stdin.on('end', async () => {
  await backend.stop();
  process.exit(0);
});
