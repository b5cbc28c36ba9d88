/**
 * etcd for the etcd client's lab tests that need more than test/helpers/etcd.ts
 * gives: TLS with client certificates (certs made with openssl in a temp dir)
 * or a plain etcd to turn auth on in. Random ports on 127.0.0.1; only the
 * process spawned here is ever signalled; stop() removes the temp dir.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './etcd.js';

export interface TlsFilesOnDisk {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export interface CustomEtcd {
  endpoint: string;
  dir: string;
  tls?: TlsFilesOnDisk;
  stop(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A CA, a server cert for 127.0.0.1 and a client cert, all signed by the CA (EC P-256: fast to make). */
export function makeTlsFiles(dir: string): TlsFilesOnDisk {
  const f = (n: string) => join(dir, n);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=weft-test-ca', '-days', '2', '-out', 'ca.pem'], dir);
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(f(`${name}.ext`), ext);
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=weft-test-${name}`, '-out', `${name}.csr`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
  }
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

/**
 * Starts etcd (https with client-cert auth when `tls`), and waits until
 * `ready(endpoint, tls)` returns true (the caller knows how to talk to it).
 */
export async function startCustomEtcd(opts: {
  tls?: boolean;
  ready: (endpoint: string, tls: TlsFilesOnDisk | undefined) => Promise<boolean>;
}): Promise<CustomEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-etcd-client-'));
  let proc: ChildProcess | undefined;
  let stderr = '';
  const stop = async () => {
    const p = proc;
    proc = undefined;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const tls = opts.tls ? makeTlsFiles(dir) : undefined;
    const client = await freePort();
    const peer = await freePort();
    const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${client}`;
    const args = [
      '--name', 'client-test',
      '--data-dir', join(dir, 'data'),
      '--listen-client-urls', endpoint,
      '--advertise-client-urls', endpoint,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `client-test=http://127.0.0.1:${peer}`,
      '--log-level', 'error',
      ...(tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--client-cert-auth', '--trusted-ca-file', tls.ca] : []),
    ];
    const p = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    p.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`etcd exited: ${stderr}`);
      if (await opts.ready(endpoint, tls).catch(() => false)) break;
      if (Date.now() > deadline) throw new Error(`etcd at ${endpoint} not ready: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100)); // bounded poll (20 s above)
    }
    return { endpoint, dir, ...(tls ? { tls } : {}), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
