import { InvalidArgumentError } from '../core/errors.js';
import { mustState } from './common.js';
import { labSpawn } from './ops.js';
import { pollUntil } from './procs.js';
import { httpStatusInNetns } from './weftd.js';

/**
 * A tiny HTTP server per pod that answers `<pod name> <address it was reached on>`,
 * so curl through a Service shows which backend answered. Passed to `node -e`
 * so it needs no build step and no file inside the pod.
 */
const SERVER_SOURCE = `
const [name, port] = process.argv.slice(1);
const srv = require('http').createServer((req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end(req.url === '/healthz' ? 'ok\\n' : name + ' ' + req.socket.localAddress.replace(/^::ffff:/, '') + '\\n');
});
srv.listen(Number(port), '0.0.0.0');
process.on('SIGTERM', () => srv.close(() => process.exit(0)));
`;

export function podServerArgv(name: string, port: number): string[] {
  return [process.execPath, '-e', SERVER_SOURCE, name, String(port)];
}

export interface ServedPod {
  pod: string;
  ip: string | undefined;
  pid: number;
  key: string;
}

/**
 * Starts the HTTP server in every pod of the lab (PIDs recorded, so `down`
 * stops them) and waits, bounded, until each answers on its own loopback.
 */
export async function labServePods(id: string, opts: { port?: number; timeoutMs?: number } = {}): Promise<ServedPod[]> {
  const port = opts.port ?? 8080;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError('port', `${port} is not a TCP port`);
  const pods = mustState(id).hosts.flatMap((h) => h.pods);
  const served: ServedPod[] = [];
  for (const p of pods) {
    const s = await labSpawn(id, p.name, podServerArgv(p.name, port));
    served.push({ pod: p.name, ip: p.ip, pid: s.pid, key: s.key });
  }
  await Promise.all(
    pods.map((p) =>
      pollUntil(async () => (await httpStatusInNetns(p.netns, '127.0.0.1', port, '/healthz')) === 200, {
        timeoutMs: opts.timeoutMs ?? 15_000,
        intervalMs: 100,
        what: `HTTP server in ${p.name}`,
      }),
    ),
  );
  return served;
}
