/**
 * weft in every etcd security setup flanneld works with, against a real
 * etcd 3.4: mTLS alone, users alone (root + a user whose role covers the
 * prefixes weft uses), mTLS and users with passwords together (the setup
 * whose JSON-gateway calls etcd refused: "CommonName ... will be ignored"),
 * and certificate-CN users (client-cert-auth + auth, no password: etcd takes
 * the user from the certificate's CN). In each: the EtcdClient does
 * put/get/txn/lease/watch, weftd (host-gw, in a network namespace) starts
 * and acquires a lease, and weft-proxy (once it has the --etcd-* TLS/auth
 * flags) reads a Service. A wrong CA fails clearly.
 *
 * etcd runs on 127.0.0.1 in the root namespace (like the other etcd tests);
 * processes in the test namespace reach it through a byte relay (a TCP
 * listener on the same port inside the namespace, a unix socket, this
 * process connecting on), so TLS is end to end and no address or route is
 * added outside the namespace.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { EtcdClient, type EtcdClientOptions } from '../../src/etcd/index.js';
import { repoRoot, weftdScript } from '../../src/lab/weftd.js';
import { EtcdAdmin, makeClientCert, makeOtherCa, startCustomEtcd, type CustomEtcd } from '../helpers/etcd-secure.js';
import { failure } from '../helpers/etcd-errors.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { recorder } from '../unit/etcd/conformance.js';

const NETWORK_CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}';
const PUBLIC_IP = '192.0.2.10';
/** Prefixes the weft user's role may read and write: weftd's, weft-proxy's registry, this test's own. */
const PREFIXES = ['/coreos.com/network/', '/weft/registry/', '/weft-security-test/'];

/** The --help text of one of weft's programs (dist build). */
async function helpOf(program: string): Promise<string> {
  const r = spawnSync(process.execPath, [join(repoRoot, 'dist', 'cli', `${program}.js`), '--help'], { encoding: 'utf8', timeout: 30_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

const proxyHasTlsFlags = (await helpOf('weft-proxy')).includes('--etcd-cafile');

interface Setup {
  name: string;
  tls: boolean;
  auth: boolean;
  /** How weft authenticates: a client certificate, a password, both, or a certificate whose CN is the user. */
  client: 'cert' | 'password' | 'cert+password' | 'cn';
}

const SETUPS: Setup[] = [
  { name: 'mTLS alone', tls: true, auth: false, client: 'cert' },
  { name: 'users alone', tls: false, auth: true, client: 'password' },
  { name: 'mTLS and users with passwords', tls: true, auth: true, client: 'cert+password' },
  { name: 'certificate-CN users (client-cert-auth + auth, no password)', tls: true, auth: true, client: 'cn' },
];

/** weft's credentials for a setup: the EtcdClient options and the matching --etcd-* flags. */
interface Credentials {
  options: EtcdClientOptions;
  flags: string[];
}

function credentials(endpoint: string, o: { caFile?: string; certFile?: string; keyFile?: string; username?: string; password?: string }): Credentials {
  const flags = ['--etcd-endpoints', endpoint];
  if (o.caFile) flags.push('--etcd-cafile', o.caFile);
  if (o.certFile) flags.push('--etcd-certfile', o.certFile, '--etcd-keyfile', o.keyFile!);
  if (o.username) flags.push('--etcd-username', o.username, '--etcd-password', o.password ?? '');
  return { options: { endpoints: [endpoint], callTimeoutMs: 3000, ...o }, flags };
}

/** Relays TCP 127.0.0.1:`port` inside `netns` to 127.0.0.1:`port` here, through a unix socket. */
async function relayInto(netns: string, port: number, dir: string): Promise<{ close(): Promise<void> }> {
  const path = join(dir, `relay-${port}.sock`);
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => sockets.delete(s));
  };
  const server: Server = createServer((inner) => {
    const outer = connect(port, '127.0.0.1');
    track(inner);
    track(outer);
    inner.pipe(outer);
    outer.pipe(inner);
    inner.on('close', () => outer.destroy());
    outer.on('close', () => inner.destroy());
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  const script = `
    const net = require('node:net');
    const [path, port] = process.argv.slice(1);
    net.createServer((c) => {
      const u = net.connect(path);
      c.pipe(u); u.pipe(c);
      c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
      c.on('close', () => u.destroy()); u.on('close', () => c.destroy());
    }).listen(Number(port), '127.0.0.1', () => console.log('listening'));`;
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, path, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await waitFor(() => out.includes('listening') || child.exitCode !== null, { what: `relay in ${netns}` });
  if (!out.includes('listening')) throw new Error(`relay in ${netns} failed: ${out}`);
  return {
    async close() {
      await stopChild(child);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** A weft program running inside the namespace, with its output collected. */
function startInNetns(netns: string, script: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out = (out + d).slice(-64_000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-64_000)));
  return { child, output: () => out };
}

/** Runs weftd (host-gw on the namespace's eth0) until it has acquired its lease; returns the lease value. */
async function weftdAcquires(netns: string, creds: Credentials, client: EtcdClient, dir: string): Promise<Record<string, unknown>> {
  const run = mkdtempSync(join(dir, 'weftd-'));
  const weftd = startInNetns(netns, weftdScript(), [
    ...creds.flags,
    '--iface', 'eth0',
    '--subnet-file', join(run, 'subnet.env'),
    '--state-dir', join(run, 'state'),
    '--healthz-port', '0',
  ]);
  try {
    const lease = await waitFor(
      async () => {
        if (weftd.child.exitCode !== null) throw new Error(`weftd exited ${weftd.child.exitCode}: ${weftd.output()}`);
        const kvs = (await client.list('/coreos.com/network/subnets/')).kvs;
        return kvs.map((kv) => JSON.parse(kv.value) as Record<string, unknown>).find((v) => v.PublicIP === PUBLIC_IP);
      },
      { what: 'weftd lease in etcd', timeoutMs: 60_000 },
    );
    // The log line may trail the etcd write a little.
    await waitFor(() => /acquired lease/.test(weftd.output()), { what: 'weftd logging its lease' });
    return lease;
  } finally {
    await stopChild(weftd.child);
    expect(weftd.child.exitCode === 0 || weftd.child.signalCode === 'SIGTERM').toBe(true);
  }
}

describe.skipIf(!isRoot)('weft in each etcd security setup', () => {
  const sandbox = new NetnsSandbox();
  let netns = '';
  let dir = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'weft-etcd-security-'));
    netns = await sandbox.create('esec');
    // A veth pair with both ends inside (this kernel has no dummy module): eth0 is weftd's interface.
    await sandbox.exec(netns, 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
    await sandbox.exec(netns, 'ip', ['addr', 'add', `${PUBLIC_IP}/24`, 'dev', 'eth0']);
    for (const dev of ['eth0', 'eth0peer']) await sandbox.exec(netns, 'ip', ['link', 'set', dev, 'up']);
  });
  afterAll(async () => {
    await sandbox.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const setup of SETUPS) {
    describe(setup.name, () => {
      let etcd: CustomEtcd;
      let creds: Credentials;
      let anonymous: Credentials | undefined;
      let client: EtcdClient;
      let relay: { close(): Promise<void> } | undefined;

      beforeAll(async () => {
        etcd = await startCustomEtcd({
          tls: setup.tls,
          ready: async (e, tls) => {
            const probe = new EtcdClient({ endpoints: [e], callTimeoutMs: 1000, ...(tls ? { caFile: tls.ca, certFile: tls.clientCert, keyFile: tls.clientKey } : {}) });
            try {
              await probe.range('/');
              return true;
            } finally {
              probe.close();
            }
          },
        });
        const tls = etcd.tls;
        const base = tls ? { caFile: tls.ca, certFile: tls.clientCert, keyFile: tls.clientKey } : {};
        if (setup.auth) {
          // With client-cert-auth, admin calls before auth is on need only the certificate.
          const admin = new EtcdAdmin(etcd.endpoint, tls ? { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } : undefined);
          try {
            await admin.userAdd('root', 'rootpw');
            await admin.userGrantRole('root', 'root');
            await admin.roleAdd('weft');
            for (const p of PREFIXES) await admin.roleGrantPrefix('weft', p);
            await admin.userAdd('weft', setup.client === 'cn' ? undefined : 'weftpw');
            await admin.userGrantRole('weft', 'weft');
            await admin.authEnable();
          } finally {
            admin.close();
          }
        }
        if (setup.client === 'cn') {
          const cert = makeClientCert(etcd.dir, 'weft');
          creds = credentials(etcd.endpoint, { caFile: tls!.ca, certFile: cert.cert, keyFile: cert.key });
          // The helper's own client certificate has a CN that is no etcd user.
          anonymous = credentials(etcd.endpoint, base);
        } else {
          creds = credentials(etcd.endpoint, { ...base, ...(setup.auth ? { username: 'weft', password: 'weftpw' } : {}) });
          if (setup.auth) anonymous = credentials(etcd.endpoint, base);
        }
        client = new EtcdClient(creds.options);
        await client.put('/coreos.com/network/config', NETWORK_CONFIG);
        relay = await relayInto(netns, Number(new URL(etcd.endpoint).port), dir);
      });
      afterAll(async () => {
        client?.close();
        await relay?.close();
        await etcd?.stop();
      });

      it('the EtcdClient does put / get / txn / lease / watch', async () => {
        const p = '/weft-security-test/';
        const r = recorder();
        const w = client.watch(p, { prefix: true, prevKv: true }, r.handlers);
        await waitFor(() => r.created === 1, { what: 'watch created' });
        await client.put(`${p}a`, '1');
        expect((await client.get(`${p}a`))!.value).toBe('1');
        const txn = await client.txn({ compare: [{ key: `${p}a`, target: 'value', op: '==', value: '1' }], success: [{ put: { key: `${p}a`, value: '2' } }] });
        expect(txn.succeeded).toBe(true);
        const lease = await client.leaseGrant(30);
        await client.put(`${p}leased`, 'x', { lease: lease.id });
        expect((await client.leaseTimeToLive(lease.id)).grantedTtl).toBe(30);
        await client.leaseRevoke(lease.id);
        expect(await client.get(`${p}leased`)).toBeUndefined();
        await waitFor(() => r.events().length === 4, { what: 'four events' });
        expect(r.events().map((e) => `${e.type} ${e.kv.key.slice(p.length)} ${e.kv.value}`)).toEqual(['put a 1', 'put a 2', 'put leased x', 'delete leased ']);
        expect(r.errors).toEqual([]);
        w.cancel();
      });

      it.skipIf(!setup.auth)('auth is really on: without the user\'s credentials etcd refuses, and outside its role too', async () => {
        const anon = new EtcdClient(anonymous!.options);
        try {
          const err = await failure(anon.get('/coreos.com/network/config'));
          expect(err.kind).toBe('grpc');
          expect(err.message).toMatch(/user name is empty|permission denied|user name not found/);
        } finally {
          anon.close();
        }
        const outside = await failure(client.put('/elsewhere', 'x'));
        expect(outside.message).toMatch(/permission denied/);
      });

      it('weftd starts and acquires a lease', async () => {
        const lease = await weftdAcquires(netns, creds, client, dir);
        expect(lease).toMatchObject({ PublicIP: PUBLIC_IP, BackendType: 'host-gw' });
      });

      const proxyTitle = 'weft-proxy starts and reads a Service from etcd';
      it.skipIf(!proxyHasTlsFlags)(proxyHasTlsFlags ? proxyTitle : `${proxyTitle} (skipped: weft-proxy has no --etcd-cafile yet)`, async () => {
        const { ProxyRegistry } = await import('../../src/proxy/registry/registry.js');
        const { EtcdKV } = await import('../../src/proxy/registry/kv.js');
        const reg = new ProxyRegistry(new EtcdKV(client), { serviceCIDR: '10.96.0.0/16' });
        const clusterIP = '10.96.77.7';
        await reg.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'sec', namespace: 'default' }, spec: { clusterIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
        await reg.apply({
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { name: 'sec-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'sec' } },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true } }],
          ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        } as never);
        const proxy = startInNetns(netns, join(repoRoot, 'dist', 'cli', 'weft-proxy.js'), [
          ...creds.flags,
          '--proxy-mode', 'iptables',
          '--healthz-bind-address', '',
          '--metrics-bind-address', '',
          '--hostname-override', 'sec-node',
          '--node-ip', PUBLIC_IP,
        ]);
        try {
          await waitFor(
            async () => {
              if (proxy.child.exitCode !== null) throw new Error(`weft-proxy exited ${proxy.child.exitCode}: ${proxy.output()}`);
              const rules = spawnSync('ip', ['netns', 'exec', netns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' }).stdout ?? '';
              return rules.includes(clusterIP);
            },
            { what: `weft-proxy rules for ${clusterIP}`, timeoutMs: 60_000 },
          );
          expect(proxy.output()).toMatch(/all sources listed/);
        } finally {
          await stopChild(proxy.child);
          spawnSync('ip', ['netns', 'exec', netns, process.execPath, join(repoRoot, 'dist', 'cli', 'weft-proxy.js'), '--cleanup', '--etcd-endpoints', ''], { timeout: 60_000 });
        }
      });
    });
  }

  describe('a wrong CA', () => {
    let etcd: CustomEtcd;
    let relay: { close(): Promise<void> } | undefined;
    let wrong: Credentials;
    beforeAll(async () => {
      etcd = await startCustomEtcd({
        tls: true,
        ready: async (e, tls) => {
          const probe = new EtcdClient({ endpoints: [e], callTimeoutMs: 1000, caFile: tls!.ca, certFile: tls!.clientCert, keyFile: tls!.clientKey });
          try {
            await probe.range('/');
            return true;
          } finally {
            probe.close();
          }
        },
      });
      const tls = etcd.tls!;
      wrong = credentials(etcd.endpoint, { caFile: makeOtherCa(etcd.dir), certFile: tls.clientCert, keyFile: tls.clientKey });
      relay = await relayInto(netns, Number(new URL(etcd.endpoint).port), dir);
    });
    afterAll(async () => {
      await relay?.close();
      await etcd?.stop();
    });

    it('fails each call at once, naming the endpoint and the TLS problem', async () => {
      const c = new EtcdClient(wrong.options);
      try {
        const err = await failure(c.get('/k'));
        expect(err.kind).toBe('unreachable');
        expect(err.endpoint).toBe(etcd.endpoint);
        expect(err.message).toContain(etcd.endpoint);
        expect(err.message).toMatch(/TLS: .*(certificate|SELF_SIGNED|UNABLE_TO_VERIFY)/i);
        const r = recorder();
        c.watch('/k', {}, r.handlers);
        await waitFor(() => r.errors.length === 1, { what: 'watch end report' });
        expect(r.errors[0]!.message).toMatch(/TLS: /);
      } finally {
        c.close();
      }
    });

    it('weftd says so in its log (endpoint and TLS reason), is not ready, and stops on SIGTERM', async () => {
      const run = mkdtempSync(join(dir, 'weftd-wrong-ca-'));
      const weftd = startInNetns(netns, weftdScript(), [...wrong.flags, '--iface', 'eth0', '--subnet-file', join(run, 'subnet.env'), '--state-dir', join(run, 'state'), '--healthz-port', '0']);
      try {
        await waitFor(() => /cannot read network config/.test(weftd.output()) || weftd.child.exitCode !== null, { what: 'weftd reporting the TLS failure', timeoutMs: 60_000 });
        const line = weftd.output().split('\n').find((l) => /cannot read network config/.test(l)) ?? weftd.output();
        expect(line).toContain(etcd.endpoint);
        expect(line).toMatch(/TLS: .*(certificate|SELF_SIGNED|UNABLE_TO_VERIFY)/i);
      } finally {
        await stopChild(weftd.child);
      }
      expect(weftd.output()).not.toMatch(/acquired lease/);
      // Logged once per distinct problem, not once per retry.
      expect(weftd.output().split('\n').filter((l) => /cannot read network config/.test(l))).toHaveLength(1);
    });
  });
});
