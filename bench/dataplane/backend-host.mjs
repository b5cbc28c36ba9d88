// One weft "daemon" for the data path benchmark: runs a weft Backend (from
// dist/) for one namespace host, like weftd would, so its CPU use can be read
// from /proc/<pid>/stat. Talks JSON lines on stdin/stdout:
//   start:  prints {"lease": {...}} once prepared and started (BackendData included)
//   {"cmd":"sync","leases":[...]}  -> {"synced": {fixes, peers}}
//   {"cmd":"stats"}                -> the udp backend's native counters (or null)
//   stdin closed                   -> stop() and exit
// Usage: node backend-host.mjs '<json: {type, netns, n, opts}>'
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseCidr } from '../../dist/core/ip.js';
import { createLogger } from '../../dist/core/log.js';
import { UdpBackend } from '../../dist/backends/udp/index.js';
import { VxlanBackend } from '../../dist/backends/vxlan/index.js';

const spec = JSON.parse(process.argv[2]);
const raw = { Type: spec.type };
const config = {
  network: parseCidr('10.244.0.0/16'),
  subnetLen: 24,
  subnetMin: parseCidr('10.244.1.0/24'),
  subnetMax: parseCidr('10.244.255.0/24'),
  backend: { type: spec.type, raw },
  raw: { Network: '10.244.0.0/16', Backend: raw },
};
const ctx = {
  config,
  iface: { name: 'eth0', index: 0, mtu: 1500, ifaceAddr: `192.0.2.${spec.n}`, publicIp: `192.0.2.${spec.n}` },
  log: createLogger({ level: 'warn' }),
  stateDir: mkdtempSync(join(tmpdir(), 'weft-bench-')),
  netns: spec.netns,
};
const backend = spec.type === 'udp' ? new UdpBackend(ctx, spec.opts ?? {}) : new VxlanBackend(ctx);
const prepared = await backend.prepare();
const attrs = { PublicIP: `192.0.2.${spec.n}`, BackendType: spec.type, BackendData: prepared.backendData ?? null };
await backend.start({ subnet: parseCidr(`10.244.${spec.n}.0/24`), attrs });
process.stdout.write(JSON.stringify({ lease: { subnet: `10.244.${spec.n}.0/24`, attrs }, mtu: prepared.mtu }) + '\n');

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const msg = JSON.parse(line);
  if (msg.cmd === 'sync') {
    const leases = msg.leases.map((l) => ({ subnet: parseCidr(l.subnet), attrs: l.attrs }));
    process.stdout.write(JSON.stringify({ synced: await backend.sync(leases) }) + '\n');
  } else if (msg.cmd === 'stats') {
    process.stdout.write(JSON.stringify(backend.stats ? backend.stats() : null) + '\n');
  }
});
rl.on('close', async () => {
  await backend.stop();
  process.exit(0);
});
