import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubeClient } from '../../../src/kube/client.js';
import { inClusterConfig, isInCluster } from '../../../src/kube/incluster.js';
import { loadKubeconfig } from '../../../src/kube/kubeconfig.js';
import { resolveConnection } from '../../../src/kube/resolve.js';
import { FileTokenSource } from '../../../src/kube/token.js';
import { FakeApiServer, status } from './fake-apiserver.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';
const b64 = (s: string) => Buffer.from(s).toString('base64');

const dir = mkdtempSync(join(tmpdir(), 'weft-kubecfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(name: string, user: string, cluster = `    server: https://10.0.0.1:6443/\n    certificate-authority-data: ${b64(PEM)}`): string {
  const p = join(dir, name);
  writeFileSync(
    p,
    `apiVersion: v1
kind: Config
current-context: main
contexts:
- name: other
  context: {cluster: c, user: nobody}
- name: main
  context:
    cluster: c
    user: u
clusters:
- name: c
  cluster:
${cluster}
users:
- name: u
  user:
${user}
`,
  );
  return p;
}

describe('kubeconfig', () => {
  it('reads the current context: server, CA data, client certificate files relative to the kubeconfig, token', () => {
    writeFileSync(join(dir, 'client.crt'), PEM);
    writeFileSync(join(dir, 'client.key'), KEY);
    const c = loadKubeconfig(kubeconfig('a.yaml', '    client-certificate: client.crt\n    client-key: client.key\n    token: abc'));
    expect(c.server).toBe('https://10.0.0.1:6443');
    expect(c.ca).toBe(PEM);
    expect(c.cert).toBe(PEM);
    expect(c.key).toBe(KEY);
    expect(c.token!.get()).toBe('abc');
    expect(c.insecureSkipTLSVerify).toBe(false);
    expect(c.origin).toContain('context main');
  });

  it('client-certificate-data/-key-data, insecure-skip-tls-verify, tokenFile, --master override', () => {
    writeFileSync(join(dir, 'tok'), 'from-file\n');
    const p = kubeconfig('b.yaml', `    client-certificate-data: ${b64(PEM)}\n    client-key-data: ${b64(KEY)}\n    tokenFile: tok`, '    server: https://x:1\n    insecure-skip-tls-verify: true');
    const c = loadKubeconfig(p, { server: 'http://127.0.0.1:8080' });
    expect(c.server).toBe('http://127.0.0.1:8080');
    expect(c.insecureSkipTLSVerify).toBe(true);
    expect(c.key).toBe(KEY);
    expect(c.token!.get()).toBe('from-file');
  });

  it('refuses exec and auth-provider users with a typed error naming the user', () => {
    const p = kubeconfig('c.yaml', '    exec:\n      command: aws\n      apiVersion: client.authentication.k8s.io/v1');
    expect(() => loadKubeconfig(p)).toThrow(expect.objectContaining({ code: 'ERR_KUBE_AUTH_UNSUPPORTED', user: 'u', mechanism: 'exec' }));
    expect(() => loadKubeconfig(p)).toThrow(/users\[u\]\.user\.exec/);
    const q = kubeconfig('d.yaml', '    auth-provider:\n      name: gcp');
    expect(() => loadKubeconfig(q)).toThrow(expect.objectContaining({ code: 'ERR_KUBE_AUTH_UNSUPPORTED', mechanism: 'auth-provider' }));
  });

  it('names what is wrong: missing file, bad server, half a key pair, unknown cluster', () => {
    expect(() => loadKubeconfig(join(dir, 'nope.yaml'))).toThrow(expect.objectContaining({ code: 'ERR_KUBE_CONFIG', field: '--kubeconfig' }));
    expect(() => loadKubeconfig(kubeconfig('e.yaml', '    token: t', '    server: ftp://x'))).toThrow(/clusters\[c\]\.cluster\.server: must be an http/);
    expect(() => loadKubeconfig(kubeconfig('f.yaml', `    client-certificate-data: ${b64(PEM)}`))).toThrow(/client-key must be given together/);
    expect(() => loadKubeconfig(kubeconfig('g.yaml', '    token: t'), { context: 'other' })).toThrow(/users: no entry named "nobody"/);
  });
});

describe('in-cluster and the connection rule', () => {
  let sa: string;
  beforeEach(() => {
    sa = mkdtempSync(join(tmpdir(), 'weft-sa-'));
    writeFileSync(join(sa, 'ca.crt'), PEM);
    writeFileSync(join(sa, 'token'), 'tok-1');
  });
  afterEach(() => rmSync(sa, { recursive: true, force: true }));

  it('builds https://host:port with the service-account CA and token', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    expect(isInCluster(env)).toBe(true);
    const c = inClusterConfig({ env, dir: sa });
    expect(c.server).toBe('https://10.96.0.1:443');
    expect(c.ca).toBe(PEM);
    expect(c.token!.get()).toBe('tok-1');
    expect(inClusterConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, dir: sa }).server).toBe('https://[fd00::1]:443');
    expect(() => inClusterConfig({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: 'x' }, dir: sa })).toThrow(expect.objectContaining({ code: 'ERR_KUBE_CONFIG', field: 'KUBERNETES_SERVICE_PORT' }));
  });

  it('re-reads a rotated token file', () => {
    let now = 0;
    const t = new FileTokenSource(join(sa, 'token'), 1000, () => now);
    expect(t.get()).toBe('tok-1');
    writeFileSync(join(sa, 'token'), 'tok-2');
    utimesSync(join(sa, 'token'), new Date(), new Date(Date.now() + 5000));
    expect(t.get()).toBe('tok-1'); // not checked again yet
    now = 1000;
    expect(t.get()).toBe('tok-2');
    rmSync(join(sa, 'token'));
    now = 2000;
    expect(t.get()).toBe('tok-2'); // a rotation in progress keeps the last good one
  });

  it('kubeconfig, else --master, else in-cluster, else nothing', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    expect(resolveConnection({ master: 'http://127.0.0.1:8080/', inCluster: { env, dir: sa } })!.origin).toBe('--master');
    expect(resolveConnection({ inCluster: { env, dir: sa } })!.origin).toBe('in-cluster');
    expect(resolveConnection({ inCluster: { env: {}, dir: sa } })).toBeUndefined();
  });
});

describe('KubeClient', () => {
  it('sends the bearer token per request, JSON bodies with the patch content type, and typed API errors', async () => {
    const api = await new FakeApiServer().start();
    let token = 'one';
    const client = new KubeClient({ server: api.url, token: { get: () => token }, origin: 'test' });
    try {
      api.onMethod('PATCH', '/api/v1/nodes/n1/status', (_r, res) => res.end('{"kind":"Node"}'));
      api.on('/api/v1/nodes/n2', 'list', status(404, 'NotFound', 'nodes "n2" not found'));
      api.on('/api/v1/nodes/n3', 'list', status(410, 'Expired'));
      api.on('/api/v1/nodes/n4', 'list', (_r, res) => res.end('not json'));
      expect(await client.patch('/api/v1/nodes/n1/status', { status: { conditions: [] } })).toEqual({ kind: 'Node' });
      const p = api.requests[0]!;
      expect(p.headers.authorization).toBe('Bearer one');
      expect(p.headers['content-type']).toBe('application/strategic-merge-patch+json');
      expect(JSON.parse(p.body)).toEqual({ status: { conditions: [] } });
      token = 'two';
      await expect(client.get('/api/v1/nodes/n2')).rejects.toMatchObject({ code: 'ERR_KUBE_API', status: 404, reason: 'NotFound' });
      expect(api.requests[1]!.headers.authorization).toBe('Bearer two');
      await expect(client.get('/api/v1/nodes/n3')).rejects.toMatchObject({ code: 'ERR_KUBE_GONE', status: 410 });
      await expect(client.get('/api/v1/nodes/n4')).rejects.toMatchObject({ code: 'ERR_KUBE_PROTOCOL' });
    } finally {
      client.close();
      await api.close();
    }
    await expect(client.get('/x')).rejects.toMatchObject({ code: 'ERR_KUBE_CONNECTION' });
  });
});
