import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { startTimeOf } from '../../src/lab/procs.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

// docs/operations.md carries a flags table per program; this keeps it from
// drifting: every long flag in a program's --help must appear in the doc as
// `--flag` inside a table row.
const repo = join(import.meta.dirname, '..', '..');
const doc = readFileSync(join(repo, 'docs', 'operations.md'), 'utf8');
const tableRows = doc.split('\n').filter((l) => l.startsWith('|'));

async function longFlags(script: string, args: string[] = []): Promise<string[]> {
  const r = await run(process.execPath, [join(repo, 'dist', 'cli', script), ...args, '--help'], { allowFail: true });
  expect(r.code, r.stderr).toBe(0);
  const flags = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s{2}(?:-\w, )?(--[a-z0-9-]+)/.exec(line);
    if (m && m[1] !== '--help') flags.add(m[1]!);
  }
  return [...flags];
}

const programs: Array<[string, string, string[]]> = [
  ['weftd', 'weftd.js', []],
  ['weft-proxy', 'weft-proxy.js', []],
  ['weftctl', 'weftctl.js', []],
  ['weftctl install-cni', 'weftctl.js', ['install-cni']],
  ['weftctl apply', 'weftctl.js', ['apply']],
  ['weftctl config set', 'weftctl.js', ['config', 'set']],
  ['weftctl leases', 'weftctl.js', ['leases']],
];

describe('docs/operations.md flags tables', () => {
  it.each(programs)('lists every flag of %s', async (_name, script, args) => {
    if (!existsSync(join(repo, 'dist', 'cli', script))) throw new Error(`dist/cli/${script} missing: npm run build`);
    const flags = await longFlags(script, args);
    expect(flags.length).toBeGreaterThan(0);
    const missing = flags.filter((f) => !tableRows.some((row) => row.includes(`\`${f}`) || row.includes(` ${f} `) || row.includes(`${f}\``)));
    // Global weftctl flags are documented in prose above its table.
    const undocumented = missing.filter((f) => !doc.includes(`\`${f} `));
    expect(undocumented).toEqual([]);
  });
});

describe('docs/operations.md installer table', () => {
  it('lists every option of scripts/install-weft.sh --help', async () => {
    const r = await run('bash', [join(repo, 'scripts', 'install-weft.sh'), '--help'], { allowFail: true });
    expect(r.code).toBe(0);
    const opts = [...r.stdout.matchAll(/^ {2}(--[a-z0-9-]+)/gm)].map((m) => m[1]!);
    expect(opts.length).toBeGreaterThan(10);
    expect(opts.filter((o) => !tableRows.some((row) => row.includes(`\`${o}`) || row.includes(`${o}\``) || row.includes(` ${o} `)))).toEqual([]);
  });
});

// docs/migration.md's rolling migration, rollback and check blocks, run as
// written (the fenced sh text itself) on a host that looks like a flannel
// node: a network namespace with a private mount namespace in which /etc,
// /run, /opt, /var/lib and /usr/local are overlays on temp dirs (so the doc's
// real paths, /etc/cni/net.d, /run/flannel/subnet.env, /usr/local/bin/weftd...,
// never touch this machine), etcd with TLS as https://etcd:2379, and
// flannel's leftovers: its lease, flannel.1, FLANNEL- chains, subnet.env,
// kube-flannel's conflist and two pods on cni0 (reference bridge +
// host-local with the flannel plugin's delegate config). No systemd runs
// here: test/helpers/fake-systemctl.sh runs the installed units as systemd would.
const migrationDoc = readFileSync(join(repo, 'docs', 'migration.md'), 'utf8');

/** The first ```sh block after `marker` in the doc. */
function shBlockAfter(marker: string): string {
  const at = migrationDoc.indexOf(marker);
  if (at < 0) throw new Error(`docs/migration.md has no "${marker}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(migrationDoc.slice(at));
  if (!m) throw new Error(`no sh block after "${marker}"`);
  return m[1]!;
}

/** The rolling migration block split at its `# N.` comments. */
function steps(block: string): string[] {
  const out: string[] = [];
  for (const line of block.split('\n')) {
    if (/^# \d+\. /.test(line)) out.push('');
    if (out.length === 0) throw new Error('the block must start with "# 0."');
    out[out.length - 1] += `${line}\n`;
  }
  return out;
}

describe('docs/migration.md blocks (parsing)', () => {
  it('has steps 0-3, a rollback and a check block', () => {
    const s = steps(shBlockAfter('### Rolling migration'));
    expect(s.map((x) => /^# (\d+)\./.exec(x)?.[1])).toEqual(['0', '1', '2', '3']);
    expect(shBlockAfter('Rollback is the same in reverse')).toContain('weftd --cleanup');
    expect(shBlockAfter('## Checking a migrated host')).toContain('iptables-save');
  });
});

describe.skipIf(!isRoot)('docs/migration.md runs as written (flannel host in namespaces)', () => {
  const sb = new NetnsSandbox();
  const tmp = mkdtempSync(join(tmpdir(), 'weft-ops-migration-'));
  const overlays = ['etc', 'run', 'opt', 'var/lib', 'usr/local'];
  const upper = (d: string) => join(tmp, 'ov', d.replace('/', '-'), 'u');
  const children: ChildProcess[] = [];
  const third = randomInt(1, 250);
  const subnet = `10.244.${third}.0/24`;
  const gateway = `10.244.${third}.1`;
  const tag = randomBytes(3).toString('hex');
  let host = '';
  let holder: ChildProcess | undefined;
  const pods: Record<string, { ns: string; id: string; ip?: string }> = {};
  const shimDir = join(tmp, 'shim');
  const PATH = `${shimDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

  /** A command in the migrated host: its netns and private mount namespace, cwd the checkout. */
  const inHost = (script: string, timeoutMs = 120_000) =>
    run('nsenter', ['-t', String(holder!.pid), '-m', '-n', '--', 'bash', '-e', '-o', 'pipefail', '-c', `cd '${repo}'\n${script}`], {
      allowFail: true,
      timeoutMs,
      env: { PATH, HOME: '/root', LANG: 'C.UTF-8' },
    });
  const must = async (script: string) => {
    const r = await inHost(script);
    expect(r.code, `${script}\n${r.stdout}\n${r.stderr}`).toBe(0);
    return r;
  };
  const iptablesSave = async () => (await must('iptables-legacy-save; iptables-nft-save')).stdout;
  const curlEtcd = (path: string, body: unknown) =>
    must(`curl -fsS --cacert /etc/flannel/ca.pem -X POST --data-binary @- https://etcd:2379${path} <<'EOF'\n${JSON.stringify(body)}\nEOF`);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const flannelDelegate = () => ({
    cniVersion: '0.3.1', name: 'cbr0', type: 'bridge', hairpinMode: true, isDefaultGateway: true, ipMasq: false, mtu: 1450, isGateway: true,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '10.244.0.0/16' }] },
  });
  const cniEnvLine = (command: string, pod: { ns: string; id: string }) =>
    `CNI_COMMAND=${command} CNI_CONTAINERID=${pod.id} CNI_NETNS=/run/netns/${pod.ns} CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin:/usr/lib/cni`;
  const ping = (from: string, to: string) => run('ping', ['-c', '3', '-i', '0.2', '-W', '2', to], { netns: pods[from]!.ns, allowFail: true });

  beforeAll(async () => {
    host = await sb.create('mdh');
    const peer = await sb.create('mdp');
    await sb.link({ ns: host, ifname: 'eth1', cidr: '192.0.2.1/24' }, { ns: peer, ifname: 'eth1', cidr: '192.0.2.2/24' });
    for (const name of ['old1', 'old2', 'new1']) pods[name] = { ns: await sb.create(name), id: `${name}-${tag}` };

    // TLS for https://etcd:2379 (server auth only; weftd gets the CA via --weftd-arg=--etcd-cafile).
    const tls = join(tmp, 'tls');
    mkdirSync(tls);
    const openssl = async (args: string[]) => {
      await run('bash', ['-c', `cd '${tls}' && openssl ${args.join(' ')}`]);
    };
    await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key']);
    await openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=weft-doc-ca', '-days', '2', '-out', 'ca.pem']);
    writeFileSync(join(tls, 'server.ext'), 'subjectAltName=DNS:etcd,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key']);
    await openssl(['req', '-new', '-key', 'server.key', '-subj', '/CN=etcd', '-out', 'server.csr']);
    await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem']);

    // The private mount namespace, held open by a sleeping shell.
    mkdirSync(join(tmp, 'keep-netns'));
    mkdirSync(shimDir);
    copyFileSync(join(repo, 'test/helpers/fake-systemctl.sh'), join(shimDir, 'systemctl'));
    chmodSync(join(shimDir, 'systemctl'), 0o755);
    const mounts = overlays.map((d) => {
      const base = join(tmp, 'ov', d.replace('/', '-'));
      mkdirSync(join(base, 'u'), { recursive: true });
      mkdirSync(join(base, 'w'));
      return `mount -t overlay overlay -o lowerdir=/${d},upperdir=${base}/u,workdir=${base}/w /${d}`;
    });
    const setup = [
      'set -e',
      // /run/netns (the pods' namespaces) survives the /run overlay; slave: later ip netns adds show up here.
      `mount --rbind /run/netns ${tmp}/keep-netns`,
      ...mounts,
      `mount --rbind ${tmp}/keep-netns /run/netns`,
      'echo ready',
      'exec sleep 3600',
    ].join('\n');
    holder = spawn('ip', ['netns', 'exec', host, 'unshare', '--mount', '--propagation', 'slave', 'bash', '-c', setup], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(holder);
    let err = '';
    holder.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      holder!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      holder!.on('exit', (c) => reject(new Error(`mount namespace setup failed (${c}): ${err}`)));
    });

    // etcd in the host netns (its files in the temp dir), reached as https://etcd:2379.
    await must(`echo '127.0.0.1 etcd' >> /etc/hosts; mkdir -p /etc/flannel; cp '${tls}/ca.pem' /etc/flannel/ca.pem`);
    const etcd = spawn('ip', ['netns', 'exec', host, '/usr/bin/etcd', '--name', 'doc', '--data-dir', join(tmp, 'etcd'),
      '--cert-file', join(tls, 'server.pem'), '--key-file', join(tls, 'server.key'),
      '--listen-client-urls', 'https://127.0.0.1:2379', '--advertise-client-urls', 'https://etcd:2379',
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'doc=http://127.0.0.1:2380', '--log-level', 'warn'], { stdio: 'ignore' });
    children.push(etcd);
    await waitFor(async () => (await inHost('curl -fsS --max-time 1 --cacert /etc/flannel/ca.pem https://etcd:2379/health')).code === 0, { timeoutMs: 30_000 });

    // flanneld's state: config, its lease (24 h etcd lease) for PublicIP 192.0.2.1, flannel.1, chains, subnet.env.
    await curlEtcd('/v3/kv/put', { key: b64('/coreos.com/network/config'), value: b64(JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } })) });
    const grant = JSON.parse((await curlEtcd('/v3/lease/grant', { TTL: 86400 })).stdout) as { ID: string };
    const lease = { PublicIP: '192.0.2.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'ca:b8:3a:f3:06:ae' } };
    await curlEtcd('/v3/kv/put', { key: b64(`/coreos.com/network/subnets/10.244.${third}.0-24`), value: b64(JSON.stringify(lease)), lease: grant.ID });
    await must([
      'ip link add flannel.1 type vxlan id 1 dstport 8472 dev eth1 local 192.0.2.1 nolearning',
      `ip addr add 10.244.${third}.0/32 dev flannel.1`,
      'ip link set flannel.1 up',
      'mkdir -p /run/flannel',
      `printf 'FLANNEL_NETWORK=10.244.0.0/16\\nFLANNEL_SUBNET=${gateway}/24\\nFLANNEL_MTU=1450\\nFLANNEL_IPMASQ=true\\n' > /run/flannel/subnet.env`,
      'mkdir -p /etc/cni/net.d',
      `cat > /etc/cni/net.d/10-flannel.conflist <<'EOF'\n${JSON.stringify({ name: 'cbr0', cniVersion: '0.3.1', plugins: [{ type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } }, { type: 'portmap', capabilities: { portMappings: true } }] }, null, 2)}\nEOF`,
      'iptables-restore --noflush <<EOF',
      '*nat',
      ':FLANNEL-POSTRTG - [0:0]',
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      `-A FLANNEL-POSTRTG -s ${subnet} -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN`,
      '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      'COMMIT',
      '*filter',
      ':FLANNEL-FWD - [0:0]',
      '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      'COMMIT',
      'EOF',
      'systemctl start flanneld',
    ].join('\n'));
    // Two running pods from flannel's plugin: the bridge delegate with host-local in its default dir (an overlay here).
    for (const name of ['old1', 'old2']) {
      const r = await must(`${cniEnvLine('ADD', pods[name]!)} /usr/lib/cni/bridge <<'EOF'\n${JSON.stringify(flannelDelegate())}\nEOF`);
      pods[name]!.ip = (JSON.parse(r.stdout).ips[0].address as string).split('/')[0];
    }
  }, 180_000);

  afterAll(async () => {
    const pidFile = join(upper('run'), 'fake-systemd', 'weftd.pid');
    const startFile = pidFile.replace(/\.pid$/, '.start');
    if (existsSync(pidFile) && existsSync(startFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8'));
      // Only the weftd fake systemd started: a recycled PID is left alone.
      if (startTimeOf(pid) === Number(readFileSync(startFile, 'utf8'))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const c of children) if (c.pid && c.exitCode === null) c.kill('SIGKILL');
    await sb.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  const doc = steps(shBlockAfter('### Rolling migration'));

  it('step 0 installs weft (the --weftd-arg=... form included) and adopts flannel\'s CNI network', async () => {
    const r = await must(doc[0]!);
    expect(r.stdout).toContain("cni: adopted flannel's network from /etc/cni/net.d/10-flannel.conflist");
    expect(r.stdout).toMatch(/"name": "cbr0"/);
    const env = readFileSync(join(upper('etc'), 'weft/weftd.env'), 'utf8');
    expect(env).toContain('WEFTD_EXTRA_ARGS=--etcd-cafile=/etc/flannel/ca.pem');
    expect(env).toContain('WEFTD_ETCD_ENDPOINTS=https://etcd:2379');
    expect(existsSync(join(upper('usr/local'), 'bin/weftd'))).toBe(true);
  }, 180_000);

  it('step 1 stops flannel and leaves neither flannel.1 nor a FLANNEL- chain', async () => {
    expect(await iptablesSave()).toContain('FLANNEL-POSTRTG');
    await must(doc[1]!);
    expect((await inHost('ip link show flannel.1')).code).not.toBe(0);
    expect(await iptablesSave()).not.toMatch(/FLANNEL-/);
  });

  it('step 2 starts weftd: ready, same subnet, weft.1 up', async () => {
    const r = await must(doc[2]!);
    expect(r.stdout).toContain(`FLANNEL_SUBNET=${gateway}/24`);
    expect((await must('ip -br link show weft.1')).stdout).toMatch(/^weft\.1\s/);
  }, 180_000);

  it('step 3 switches the runtime to weft: a new pod shares cni0 and the reservations, and reaches the old ones', async () => {
    await must(doc[3]!);
    // The runtime's choice: the first conflist in name order.
    const first = (await must('ls /etc/cni/net.d/*.conflist | sort | head -1')).stdout.trim();
    expect(first).toBe('/etc/cni/net.d/10-weft.conflist');
    const conflist = JSON.parse((await must(`cat ${first}`)).stdout) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };
    // The chain as libcni runs it (weft through weftd's socket, then the runtime's portmap).
    let prev: unknown;
    for (const p of conflist.plugins) {
      const stdin = JSON.stringify({ cniVersion: conflist.cniVersion, name: conflist.name, ...p, ...(prev ? { prevResult: prev } : {}) });
      const bin = p.type === 'weft' ? '/opt/cni/bin/weft' : `/usr/lib/cni/${String(p.type)}`;
      const r = await must(`${cniEnvLine('ADD', pods.new1!)} ${bin} <<'EOF'\n${stdin}\nEOF`);
      prev = JSON.parse(r.stdout);
    }
    pods.new1!.ip = ((prev as { ips: Array<{ address: string }> }).ips[0]!.address).split('/')[0];
    expect(new Set([pods.old1!.ip, pods.old2!.ip, pods.new1!.ip]).size).toBe(3);
    expect(readdirSync(join(upper('var/lib'), 'cni/networks/cbr0')).filter((f) => /^\d/.test(f)).sort()).toEqual([pods.old1!.ip, pods.old2!.ip, pods.new1!.ip].sort());
    const holders = (await must(`ip -o -4 addr show | awk '$4 == "${gateway}/24" {print $2}'`)).stdout.trim();
    expect(holders).toBe('cni0');
    const failed: string[] = [];
    for (const [a, b] of [['new1', 'old1'], ['old2', 'new1']] as const) if ((await ping(a, pods[b]!.ip!)).code !== 0) failed.push(`${a}->${b}`);
    expect(failed).toEqual([]);
  }, 120_000);

  it('the check block finds only weft devices and no flannel rules', async () => {
    const r = await must(shBlockAfter('## Checking a migrated host'));
    expect(r.stdout).toMatch(/^weft\.1\s/m);
    expect(r.stdout).not.toMatch(/^flannel/m);
    expect(r.stdout).toContain('no flannel or kube-proxy rules');
    expect(r.stdout).toMatch(/^ready$/m);
  });

  it('the rollback block removes weft\'s data path and puts flannel\'s conflist back', async () => {
    await must(shBlockAfter('Rollback is the same in reverse'));
    expect((await inHost('ip link show weft.1')).code).not.toBe(0);
    expect(await iptablesSave()).not.toMatch(/WEFT-POSTRTG|WEFT-FWD/);
    expect((await must('ls /etc/cni/net.d')).stdout).toContain('10-flannel.conflist');
    // The pod weft started keeps its address in flannel's network (host-local sees it).
    expect(readdirSync(join(upper('var/lib'), 'cni/networks/cbr0'))).toContain(pods.new1!.ip);
  }, 120_000);
});
