/**
 * etcd for the etcd client's lab tests that need more than test/helpers/etcd.ts
 * gives: TLS with client certificates (certs made with openssl in a temp dir)
 * or a plain etcd to turn auth on in. Random ports on 127.0.0.1; only the
 * process spawned here is ever signalled; stop() removes the temp dir.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prefixRangeEnd } from '../../src/etcd/codec.js';
import { ProtoWriter, readFields } from '../../src/etcd/proto.js';
import { GrpcTransport } from '../../src/etcd/transport.js';
import { freePort } from './etcd.js';
import { stopChild } from './lab-util.js';

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

/** Another client certificate from the CA in `dir` (made by makeTlsFiles), with this CN: etcd's certificate-CN user. */
export function makeClientCert(dir: string, cn: string): { cert: string; key: string } {
  const name = `client-${cn.replace(/[^a-zA-Z0-9-]/g, '_')}`;
  writeFileSync(join(dir, `${name}.ext`), 'extendedKeyUsage=clientAuth\n');
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

/** A CA that signed nothing etcd has (a client trusting it must refuse etcd's certificate). */
export function makeOtherCa(dir: string): string {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'other-ca.key'], dir);
  openssl(['req', '-x509', '-new', '-key', 'other-ca.key', '-subj', '/CN=weft-test-other-ca', '-days', '2', '-out', 'other-ca.pem'], dir);
  return join(dir, 'other-ca.pem');
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
    await stopChild(p, 5000);
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

/**
 * etcd's auth admin calls (users, roles, enable / disable) over weft's own
 * gRPC transport: the client has no admin API and Debian ships no etcdctl.
 * With client-cert-auth and no `token`, etcd takes the user from the cert CN.
 */
export class EtcdAdmin {
  private readonly t: GrpcTransport;
  constructor(
    endpoint: string,
    tls?: { ca: string; cert?: string; key?: string },
    private token?: string,
  ) {
    this.t = new GrpcTransport({
      endpoints: [endpoint],
      callTimeoutMs: 5000,
      ...(tls
        ? { tls: { ca: readFileSync(tls.ca), ...(tls.cert ? { cert: readFileSync(tls.cert) } : {}), ...(tls.key ? { key: readFileSync(tls.key) } : {}) } }
        : {}),
    });
  }

  /** The token of the last login(). */
  get currentToken(): string | undefined {
    return this.token;
  }

  private call(method: string, m: ProtoWriter): Promise<Buffer> {
    return this.t.unary(method, `/etcdserverpb.Auth/${method}`, m.finish(), this.token ? { token: this.token } : {});
  }

  /** Authenticates as `name` and uses that token for the calls that follow. */
  async login(name: string, password: string): Promise<void> {
    this.token = undefined;
    for (const f of readFields(await this.call('Authenticate', new ProtoWriter().bytes(1, name).bytes(2, password)))) {
      if (f.field === 2 && f.bytes) this.token = f.bytes.toString();
    }
  }

  /** A user with a password, or with none (a certificate-CN user: etcd's UserAddOptions.no_password). */
  async userAdd(name: string, password?: string): Promise<void> {
    const m = new ProtoWriter().bytes(1, name).bytes(2, password);
    if (password === undefined) m.message(3, new ProtoWriter().int(1, true));
    await this.call('UserAdd', m);
  }

  async roleAdd(name: string): Promise<void> {
    await this.call('RoleAdd', new ProtoWriter().bytes(1, name));
  }

  /** Read-write on every key under `prefix`. */
  async roleGrantPrefix(role: string, prefix: string): Promise<void> {
    const perm = new ProtoWriter().int(1, 2).bytes(2, prefix).bytes(3, prefixRangeEnd(prefix));
    await this.call('RoleGrantPermission', new ProtoWriter().bytes(1, role).message(2, perm));
  }

  async userGrantRole(user: string, role: string): Promise<void> {
    await this.call('UserGrantRole', new ProtoWriter().bytes(1, user).bytes(2, role));
  }

  async authEnable(): Promise<void> {
    await this.call('AuthEnable', new ProtoWriter());
  }

  /** Also forgets the token (etcd refuses a stale token even with auth off). */
  async authDisable(): Promise<void> {
    await this.call('AuthDisable', new ProtoWriter());
    this.token = undefined;
  }

  close(): void {
    this.t.close();
  }
}
