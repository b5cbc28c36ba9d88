#!/usr/bin/env node
// weft-proxy against kube-proxy 1.20 from a real kube-apiserver: N Services x 2
// endpoints (v1 Services + discovery.k8s.io/v1beta1 EndpointSlices, what both
// read from a 1.20 server) created through the API with parallel POSTs, then
//   converge  time from the last create until every Service's endpoints are in the rules,
//   change    one endpoint replaced (at the largest size) until the new one is in the rules and the old gone,
//   restart   the proxy restarted against the full API until every rule is in place (list + full sync),
// for weft-proxy iptables mode, weft-proxy nftables mode and kube-proxy 1.20 (iptables mode, the same
// iptables backend as weft's), interleaved in one run (the order rotates per round), with ratios; plus
// weft-proxy's RSS, its own full-sync metric, and the bare `iptables-restore` / `nft -f` of weft's rules.
//
//   npm run build && node bench/proxy-kube.mjs [--sizes 1000] [--rounds 1] [--iptables-backend nft|legacy]
//        [--proxies weft-iptables,weft-nftables,kube-proxy] [--timeout-s 900] [--json]
//
// Needs root, dist/, kube-apiserver and kube-proxy 1.20 from scripts/kube-apiserver.sh, etcd and curl.
// Everything runs in the bench's own network namespaces: "api" (etcd on 127.0.0.1, kube-apiserver on
// 192.0.2.254 on a bridge) and one per proxy run (192.0.2.x on a veth to that bridge). Every process
// started here is stopped by its PID, and every namespace and temp dir removed, also on failure and
// Ctrl-C. The global sysctl nf_conntrack_max is read before and after: the run fails if it changed.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../dist/core/log.js';
import { ExecIptables } from '../dist/netfilter/iptables.js';
import { IptablesProxier } from '../dist/proxy/iptables/proxier.js';
import { ProxyModel } from '../dist/proxy/model/model.js';
import { NODE, changedIp, clusterIp, endpointIps, svcName } from './proxy-kube-objects.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..');
const opt = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const SIZES = opt('sizes', '1000').split(',').map(Number);
const ROUNDS = Number(opt('rounds', '1'));
const BACKEND = opt('iptables-backend', 'nft');
const PROXIES = opt('proxies', 'weft-iptables,weft-nftables,kube-proxy').split(',');
const TIMEOUT_MS = Number(opt('timeout-s', '900')) * 1000;
const JSON_OUT = process.argv.includes('--json');
const KUBE_CACHE = process.env.WEFT_KUBE_CACHE ?? '/var/cache/weft/kube';
const APISERVER = process.env.WEFT_KUBE_APISERVER ?? join(KUBE_CACHE, 'current/bin/kube-apiserver');
const KUBE_PROXY = process.env.WEFT_KUBE_PROXY ?? join(KUBE_CACHE, 'current/bin/kube-proxy');
const API_IP = '192.0.2.254';
const CLUSTER_CIDR = '10.244.0.0/10'; // 10.244-10.246: every endpoint is a pod (no masquerade differences)
const CONNTRACK_MAX = '/proc/sys/net/netfilter/nf_conntrack_max';

if (process.getuid?.() !== 0) fail('needs root (network namespaces, iptables)');
for (const f of [APISERVER, KUBE_PROXY, join(REPO, 'dist/cli/weft-proxy.js')]) if (!existsSync(f)) fail(`${f} missing (npm run build; scripts/kube-apiserver.sh)`);
if (!['nft', 'legacy'].includes(BACKEND)) fail('--iptables-backend is nft or legacy');
for (const p of PROXIES) if (!['weft-iptables', 'weft-nftables', 'kube-proxy'].includes(p)) fail(`unknown proxy ${p}`);
function fail(msg) {
  console.error(`bench/proxy-kube: ${msg}`);
  process.exit(2);
}

const tag = randomBytes(3).toString('hex');
const TMP = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'weft-bench-kube-'));
const namespaces = new Set();
const children = new Set();
const log = (msg) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const now = () => process.hrtime.bigint();
const msSince = (t0) => Number(now() - t0) / 1e6;
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
  if ((r.status !== 0 || r.error) && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? ''}${r.stderr}`);
  return r;
}
/** Async so that polling does not block the event loop (the loader's answers, child exits). */
function shAsync(cmd, args, input) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out).toString()) : reject(new Error(`${cmd} ${args.slice(0, 6).join(' ')}: exit ${code}: ${err}`))));
    if (input !== undefined) p.stdin.end(input);
  });
}
const inNs = (ns, cmd, ...args) => ['netns', 'exec', ns, cmd, ...args];

function addNetns(name) {
  const ns = `wkb-${tag}-${name}`;
  sh('ip', ['netns', 'add', ns]);
  namespaces.add(ns);
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  return ns;
}
function delNetns(ns) {
  // Rules freed in the syscall here, not by the kernel's cleanup worker during the next measurement.
  sh('ip', inNs(ns, 'nft', 'flush', 'ruleset'), { allowFail: true });
  sh('ip', inNs(ns, 'iptables-legacy', '-t', 'nat', '-F'), { allowFail: true });
  sh('ip', ['netns', 'del', ns], { allowFail: true });
  namespaces.delete(ns);
}
let hostIndex = 0;
/** A proxy's namespace: a veth to the API namespace's bridge, address 192.0.2.<k>. */
function hostNetns(name) {
  const ns = addNetns(name);
  const k = (hostIndex++ % 250) + 1;
  const peer = `v${tag}${k}`.slice(0, 15);
  sh('ip', ['-n', API_NS, 'link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  sh('ip', ['-n', API_NS, 'link', 'set', peer, 'master', 'br0', 'up']);
  sh('ip', ['-n', ns, 'addr', 'add', `192.0.2.${k}/24`, 'dev', 'eth0']);
  sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  return { ns, ip: `192.0.2.${k}` };
}

/** Starts a long-running child; its stderr tail is kept for failure messages. */
function start(name, file, args, opts = {}) {
  const p = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
  p.tail = '';
  p.name = name;
  p.stderr?.on('data', (d) => (p.tail = (p.tail + d).slice(-4000)));
  children.add(p);
  p.once('exit', () => children.delete(p));
  return p;
}
async function stop(p, graceMs = 10_000) {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}
/** Bounded poll: resolves with check()'s truthy value; throws on timeout or when `proc` exits. */
async function until(what, check, { timeoutMs = 120_000, proc, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    if (proc && (proc.exitCode !== null || proc.signalCode !== null)) throw new Error(`${proc.name} exited (${proc.exitCode ?? proc.signalCode}) while waiting for ${what}: ${proc.tail}`);
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last: ${last.slice(0, 300)})` : ''}`);
    await wait(intervalMs);
  }
}

async function cleanup() {
  for (const p of [...children]) await stop(p, 5000);
  for (const ns of [...namespaces]) delNetns(ns);
  rmSync(TMP, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    await cleanup();
    process.exit(130);
  });
}

// ---- the API: etcd + kube-apiserver in their own namespace --------------------------------------

function openssl(args) {
  sh('openssl', args);
}
function makeCerts(dir) {
  const f = (n) => join(dir, n);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=weft-bench-kube-ca']);
  writeFileSync(f('server.ext'), `subjectAltName=IP:${API_IP},IP:127.0.0.1,IP:10.96.0.1\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=kube-apiserver']);
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext')]);
  openssl(['genrsa', '-out', f('sa.key'), '2048']);
  openssl(['rsa', '-in', f('sa.key'), '-pubout', '-out', f('sa.pub')]);
}
let API_NS;
let kubeconfig;
async function startApi() {
  API_NS = addNetns('api');
  sh('ip', ['-n', API_NS, 'link', 'add', 'br0', 'type', 'bridge']);
  sh('ip', ['-n', API_NS, 'addr', 'add', `${API_IP}/24`, 'dev', 'br0']);
  sh('ip', ['-n', API_NS, 'link', 'set', 'br0', 'up']);
  const etcdDir = join(TMP, 'etcd');
  const etcd = start('etcd', 'ip', inNs(API_NS, 'etcd', '--name', 'bench', '--data-dir', etcdDir,
    '--listen-client-urls', 'http://127.0.0.1:2379', '--advertise-client-urls', 'http://127.0.0.1:2379',
    '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
    '--initial-cluster', 'bench=http://127.0.0.1:2380', '--quota-backend-bytes', String(4 << 30), '--log-level', 'error'));
  await until('etcd health', async () => (await shAsync('ip', inNs(API_NS, 'curl', '-sS', '--max-time', '2', 'http://127.0.0.1:2379/health'))).includes('true'), { proc: etcd, timeoutMs: 60_000 });

  const dir = join(TMP, 'api');
  mkdirSync(dir);
  const f = (n) => join(dir, n);
  makeCerts(dir);
  const token = randomBytes(24).toString('hex');
  writeFileSync(f('tokens.csv'), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
  kubeconfig = f('kubeconfig');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config',
    clusters: [{ name: 'bench', cluster: { server: `https://${API_IP}:6443`, 'certificate-authority': f('ca.crt') } }],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'admin' } }],
    'current-context': 'bench',
  }), { mode: 0o600 });
  const api = start('kube-apiserver', 'ip', inNs(API_NS, APISERVER,
    '--etcd-servers=http://127.0.0.1:2379', '--etcd-prefix=/weft-bench', `--bind-address=${API_IP}`, `--advertise-address=${API_IP}`,
    '--secure-port=6443', '--insecure-port=0', `--cert-dir=${f('certs')}`, `--tls-cert-file=${f('server.crt')}`, `--tls-private-key-file=${f('server.key')}`,
    `--client-ca-file=${f('ca.crt')}`, `--token-auth-file=${f('tokens.csv')}`, '--authorization-mode=AlwaysAllow',
    `--service-account-key-file=${f('sa.pub')}`, `--service-account-signing-key-file=${f('sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local', '--service-cluster-ip-range=10.96.0.0/12',
    '--disable-admission-plugins=ServiceAccount', '--profiling=false', '--logtostderr=true', '--v=0'));
  await until('kube-apiserver /readyz', async () => (await shAsync('ip', inNs(API_NS, 'curl', '-sS', '--max-time', '3', '--cacert', f('ca.crt'), '-H', `Authorization: Bearer ${token}`, `https://${API_IP}:6443/readyz`))).trim() === 'ok', { proc: api, timeoutMs: 180_000, intervalMs: 250 });
  return { etcd, api };
}

/** The loader child (bench/proxy-kube-load.mjs) in the API namespace: one JSON request, one answer. */
function startLoader() {
  const p = spawn('ip', inNs(API_NS, process.execPath, join(HERE, 'proxy-kube-load.mjs'), kubeconfig), { stdio: ['pipe', 'pipe', 'pipe'] });
  p.name = 'loader';
  p.tail = '';
  p.stderr.on('data', (d) => (p.tail = (p.tail + d).slice(-4000)));
  children.add(p);
  p.once('exit', () => children.delete(p));
  const lines = createInterface({ input: p.stdout })[Symbol.asyncIterator]();
  return {
    proc: p,
    async call(cmd) {
      p.stdin.write(JSON.stringify(cmd) + '\n');
      const { value, done } = await lines.next();
      if (done) throw new Error(`loader exited: ${p.tail}`);
      const res = JSON.parse(value);
      if (!res.ok) throw new Error(`loader: ${res.error}`);
      return res;
    },
    async close() {
      p.stdin.end();
      await stop(p);
    },
  };
}

// ---- the proxies -------------------------------------------------------------------------------

/** A PATH directory whose iptables, iptables-save and iptables-restore are the chosen backend (kube-proxy 1.20 execs them by name). */
function iptablesPathDir() {
  const dir = join(TMP, `iptables-${BACKEND}`);
  mkdirSync(dir, { recursive: true });
  for (const v of ['', '6']) for (const s of ['', '-save', '-restore']) {
    const link = join(dir, `ip${v}tables${s}`);
    if (!existsSync(link)) symlinkSync(`/usr/sbin/ip${v}tables-${BACKEND}${s}`, link);
  }
  return dir;
}
function startProxy(kind, host) {
  if (kind === 'kube-proxy') {
    // The conntrack flags at 0 make kube-proxy leave nf_conntrack_max (global) and the conntrack timeouts alone;
    // oom-score-adj 0 instead of its -999 (this is a shared machine).
    const args = [`--kubeconfig=${kubeconfig}`, `--hostname-override=${NODE}`, '--proxy-mode=iptables', `--cluster-cidr=${CLUSTER_CIDR}`,
      `--bind-address=${host.ip}`, '--conntrack-max-per-core=0', '--conntrack-min=0', '--conntrack-tcp-timeout-established=0',
      '--conntrack-tcp-timeout-close-wait=0', '--oom-score-adj=0', '--metrics-bind-address=127.0.0.1:10249', '--v=0'];
    const env = { ...process.env, PATH: `${iptablesPathDir()}:${process.env.PATH}` };
    return start(kind, 'ip', inNs(host.ns, KUBE_PROXY, ...args), { env });
  }
  const mode = kind === 'weft-iptables' ? 'iptables' : 'nftables';
  return start(kind, 'ip', inNs(host.ns, process.execPath, join(REPO, 'dist/cli/weft-proxy.js'), '--etcd-endpoints=', `--kubeconfig=${kubeconfig}`,
    `--hostname-override=${NODE}`, `--proxy-mode=${mode}`, `--cluster-cidr=${CLUSTER_CIDR}`, `--iptables-backend=${BACKEND}`, '--log-level=warn'));
}
/** The proxy's rules as text: iptables-save (nat) in its netns, or weft's nft table. */
function dumpRules(kind, ns) {
  if (kind === 'weft-nftables') return shAsync('ip', inNs(ns, 'nft', 'list', 'table', 'ip', 'weft-proxy'));
  return shAsync('ip', inNs(ns, `iptables-${BACKEND}-save`, '-t', 'nat'));
}
const ready = (kind, dump) => (kind === 'weft-nftables' ? dump.includes('table ip weft-proxy') : dump.includes(kind === 'kube-proxy' ? ':KUBE-SERVICES' : ':WEFT-SERVICES'));
const ENDPOINT_RE = /10\.24[4-6]\.\d+\.\d+/g;
/** All n Services' endpoints present (each endpoint's DNAT names its IP). */
function complete(dump, n) {
  const seen = new Set(dump.match(ENDPOINT_RE));
  for (let i = n - 1; i >= 0; i--) for (const ip of endpointIps(i)) if (!seen.has(ip)) return false;
  return true;
}
const hasIp = (dump, ip) => new Set(dump.match(ENDPOINT_RE)).has(ip);
const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
/** Mean of a Prometheus histogram (sum / count) from the proxy's metrics server. */
async function histogramMean(ns, name) {
  const text = await shAsync('ip', inNs(ns, 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:10249/metrics')).catch((err) => (log(`metrics of ${ns}: ${err.message}`), ''));
  const sum = Number(new RegExp(`^${name}_sum (\\S+)`, 'm').exec(text)?.[1]);
  const count = Number(new RegExp(`^${name}_count (\\S+)`, 'm').exec(text)?.[1]);
  return count ? { meanMs: (sum / count) * 1000, count } : undefined;
}

/** Starts a proxy in a fresh netns and waits until it has written its base rules (all informers listed). */
async function launch(kind, label) {
  const host = hostNetns(label);
  const t0 = now();
  const proc = startProxy(kind, host);
  return { kind, host, proc, t0 };
}
async function teardown(run) {
  await stop(run.proc);
  delNetns(run.host.ns);
}

/** One turn of one proxy at size n: converge after the last create, change (at the largest size), restart. */
async function turn(kind, n, loader, withChange, round) {
  const r = { proxy: kind, services: n, round };
  let run = await launch(kind, `${kind.slice(0, 4)}${kind.at(-3)}${n}`);
  try {
    await until(`${kind} base rules`, async () => ready(kind, await dumpRules(kind, run.host.ns)), { proc: run.proc, timeoutMs: 120_000 });
    const created = await loader.call({ op: 'create', n });
    r.createMs = created.ms;
    const lastCreate = BigInt(created.lastCreate);
    let dump;
    await until(`${kind}: ${n} services in the rules`, async () => complete((dump = await dumpRules(kind, run.host.ns)), n), { proc: run.proc, timeoutMs: TIMEOUT_MS });
    r.convergeMs = Number(now() - lastCreate) / 1e6;
    r.dump = dump;
    log(`${kind} ${n}: converged ${r.convergeMs.toFixed(0)} ms after the last create (creates took ${r.createMs.toFixed(0)} ms)`);
    if (withChange) {
      const i = Math.floor(n / 2);
      const [keep, old] = endpointIps(i);
      const fresh = changedIp(round);
      const done = BigInt((await loader.call({ op: 'change', i, ips: [keep, fresh] })).done);
      await until(`${kind}: changed endpoint in the rules`, async () => {
        const d = await dumpRules(kind, run.host.ns);
        return hasIp(d, fresh) && !hasIp(d, old);
      }, { proc: run.proc, timeoutMs: TIMEOUT_MS, intervalMs: 20 });
      r.changeMs = Number(now() - done) / 1e6;
      log(`${kind} ${n}: one endpoint change in the rules after ${r.changeMs.toFixed(0)} ms`);
      await loader.call({ op: 'change', i, ips: [keep, old] });
    }
    if (kind !== 'kube-proxy') r.rssConvergedMb = rssMb(run.proc.pid);
    await teardown(run);
    // Restart against the full API: list + one full sync into an empty netns.
    run = await launch(kind, `${kind.slice(0, 4)}${kind.at(-3)}${n}r`);
    await until(`${kind}: restart, ${n} services in the rules`, async () => complete(await dumpRules(kind, run.host.ns), n), { proc: run.proc, timeoutMs: TIMEOUT_MS });
    r.restartMs = msSince(run.t0);
    if (kind !== 'kube-proxy') {
      r.rssRestartMb = rssMb(run.proc.pid);
      r.fullSync = await histogramMean(run.host.ns, 'kubeproxy_sync_full_proxy_rules_duration_seconds');
    } else {
      r.sync = await histogramMean(run.host.ns, 'kubeproxy_sync_proxy_rules_duration_seconds');
    }
    log(`${kind} ${n}: restart to all rules ${r.restartMs.toFixed(0)} ms` + (r.rssRestartMb ? `, RSS ${r.rssRestartMb.toFixed(0)} MB` : ''));
  } catch (err) {
    r.error = err.message.slice(0, 500);
    log(`${kind} ${n}: FAILED: ${r.error}`);
  } finally {
    await teardown(run);
    await loader.call({ op: 'clear', n });
  }
  return r;
}

// ---- bare loads of weft's rules, as bench/proxy/*.mjs do -------------------------------------------

/** Records the restore text weft-proxy's iptables proxier sends, for a model of the same n Services. */
class Recording extends ExecIptables {
  texts = [];
  openRestore() {
    const s = super.openRestore();
    return { write: (t) => (this.texts.push(t), s.write(t)), end: () => s.end(), abort: () => s.abort() };
  }
}
async function bareIptables(n) {
  const m = new ProxyModel();
  for (let i = 0; i < n; i++) {
    m.upsert({ apiVersion: 'v1', kind: 'Service', metadata: { name: svcName(i), namespace: 'bench' }, spec: { clusterIP: clusterIp(i), ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    m.upsert({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${svcName(i)}-a`, namespace: 'bench', labels: { 'kubernetes.io/service-name': svcName(i) } },
      addressType: 'IPv4', endpoints: endpointIps(i).map((a) => ({ addresses: [a], conditions: { ready: true } })), ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
  }
  m.applyChanges();
  const scratch = addNetns(`rec${n}`);
  let text;
  try {
    const ipt = new Recording(BACKEND, scratch);
    await new IptablesProxier(ipt, { nodeName: NODE, clusterCIDR: CLUSTER_CIDR }, silentLogger).sync(m, new Set(), true);
    text = ipt.texts.join('');
  } finally {
    delNetns(scratch);
  }
  const ns = addNetns(`bip${n}`);
  try {
    const t0 = now();
    await shAsync('ip', inNs(ns, `iptables-${BACKEND}-restore`, '--noflush', '-w', '5'), text);
    return msSince(t0);
  } finally {
    delNetns(ns);
  }
}
async function bareNft(dump, n) {
  const ns = addNetns(`bnf${n}`);
  try {
    const t0 = now();
    await shAsync('ip', inNs(ns, 'nft', '-f', '-'), dump);
    return msSince(t0);
  } finally {
    delNetns(ns);
  }
}

// ---- main ---------------------------------------------------------------------------------------

const conntrackBefore = readFileSync(CONNTRACK_MAX, 'utf8').trim();
const rows = [];
let exitCode = 0;
let summary;
try {
  const t0 = now();
  await startApi();
  log(`kube-apiserver ready in ${(msSince(t0) / 1000).toFixed(1)} s (namespace ${API_NS})`);
  const loader = startLoader();
  await loader.call({ op: 'setup' });
  const maxN = Math.max(...SIZES);
  for (const n of SIZES) {
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved: each proxy in turn, the order rotated per round.
      const order = PROXIES.map((_, k) => PROXIES[(k + round) % PROXIES.length]);
      for (const kind of order) {
        const r = await turn(kind, n, loader, n === maxN, round);
        if (kind === 'weft-iptables' && !r.error) r.bareMs = await bareIptables(n);
        if (kind === 'weft-nftables' && !r.error) r.bareMs = await bareNft(r.dump, n);
        if (r.bareMs) log(`${kind} ${n}: bare load of weft's rules ${r.bareMs.toFixed(0)} ms`);
        delete r.dump;
        rows.push(r);
      }
    }
  }
  await loader.close();
  summary = summarize(rows);
} catch (err) {
  exitCode = 1;
  console.error(`bench/proxy-kube: ${err.stack ?? err}`);
} finally {
  await cleanup();
}
const conntrackAfter = readFileSync(CONNTRACK_MAX, 'utf8').trim();
if (conntrackAfter !== conntrackBefore) {
  console.error(`bench/proxy-kube: global ${CONNTRACK_MAX} changed from ${conntrackBefore} to ${conntrackAfter}`);
  exitCode = 1;
}
if (summary) {
  const out = { iptablesBackend: BACKEND, rounds: ROUNDS, conntrackMax: { before: conntrackBefore, after: conntrackAfter }, rows, summary };
  if (JSON_OUT) console.log(JSON.stringify(out, null, 2));
  else printSummary(summary);
}
if (rows.some((r) => r.error)) exitCode = 1;
process.exit(exitCode);

function summarize(all) {
  const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined);
  const out = [];
  for (const n of SIZES) {
    const by = {};
    for (const kind of PROXIES) {
      const rs = all.filter((r) => r.services === n && r.proxy === kind && !r.error);
      const pick = (k) => median(rs.map((r) => r[k]).filter((x) => x !== undefined));
      by[kind] = {
        convergeMs: pick('convergeMs'), changeMs: pick('changeMs'), restartMs: pick('restartMs'), bareMs: pick('bareMs'),
        rssMb: median(rs.map((r) => Math.max(r.rssConvergedMb ?? 0, r.rssRestartMb ?? 0)).filter(Boolean)),
        fullSyncMs: median(rs.map((r) => r.fullSync?.meanMs).filter((x) => x !== undefined)),
        failed: all.filter((r) => r.services === n && r.proxy === kind && r.error).length,
      };
    }
    const ratio = (a, b) => (a !== undefined && b ? a / b : undefined);
    const k = by['kube-proxy'];
    for (const kind of ['weft-iptables', 'weft-nftables']) {
      const w = by[kind];
      if (!w) continue;
      w.vsKubeConverge = ratio(k?.convergeMs, w.convergeMs);
      w.vsKubeChange = ratio(k?.changeMs, w.changeMs);
      w.vsKubeRestart = ratio(k?.restartMs, w.restartMs);
      w.fullSyncVsBare = ratio(w.fullSyncMs, w.bareMs);
    }
    out.push({ services: n, ...by });
  }
  return out;
}
function printSummary(s) {
  const f = (x, d = 0) => (x === undefined ? '-' : x.toFixed(d));
  console.log(`iptables backend for weft-proxy and kube-proxy: ${BACKEND}; ${ROUNDS} round(s); medians; "kube/weft" = kube-proxy's time over weft-proxy's`);
  for (const row of s) {
    for (const kind of PROXIES) {
      const x = row[kind];
      let line = `${String(row.services).padStart(6)} services  ${kind.padEnd(13)}  converge ${f(x.convergeMs).padStart(7)} ms  restart ${f(x.restartMs).padStart(7)} ms` +
        (x.changeMs !== undefined ? `  change ${f(x.changeMs).padStart(6)} ms` : '');
      if (kind !== 'kube-proxy') {
        line += `  full sync ${f(x.fullSyncMs)} ms vs bare ${f(x.bareMs)} ms (${f(x.fullSyncVsBare, 2)}x)  RSS ${f(x.rssMb)} MB`;
        if (x.vsKubeConverge !== undefined) line += `  kube/weft: converge ${f(x.vsKubeConverge, 1)}x restart ${f(x.vsKubeRestart, 1)}x` + (x.vsKubeChange !== undefined ? ` change ${f(x.vsKubeChange, 1)}x` : '');
      }
      if (x.failed) line += `  (${x.failed} failed)`;
      console.log(line);
    }
  }
}
