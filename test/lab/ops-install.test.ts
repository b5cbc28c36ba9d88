import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type RunResult } from '../../src/exec/run.js';
import { nodeFlagsFor } from '../../src/cli/node-flags.js';

// scripts/install-weft.sh is what Vagrant provisioning runs on real hosts; here
// it runs into a temp prefix (DESTDIR-like), never touching this machine's /etc,
// and never calling systemctl.
const repo = join(import.meta.dirname, '..', '..');
const script = join(repo, 'scripts', 'install-weft.sh');

/** Every file below dir: relative path -> mode, mtime and content hash. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isSymbolicLink()) out[relative(dir, p)] = `-> ${readlinkSync(p)} ${lstatSync(p).mtimeMs}`;
      else {
        const st = statSync(p);
        const sha = createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16);
        out[relative(dir, p)] = `${(st.mode & 0o7777).toString(8)} ${st.mtimeMs} ${sha}`;
      }
    }
  };
  walk(dir);
  return out;
}

/** Parses a systemd EnvironmentFile the simple way (KEY=VALUE lines, # comments). */
function envFile(path: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) vars[m[1]!] = m[2]!;
  }
  return vars;
}

describe('scripts/install-weft.sh into a temp prefix', () => {
  const prefix = mkdtempSync(join(tmpdir(), 'weft-ops-install-'));
  // The whole install (npm run build makes every part it needs).
  const units = ['weftd.service', 'weft-proxy.service'];
  let args: string[] = [];
  let first: RunResult;
  let firstSnap: Record<string, string>;

  const install = (extra: string[] = []) => run('bash', [script, ...args, ...extra], { allowFail: true, timeoutMs: 120_000 });

  beforeAll(async () => {
    args = [
      '--prefix', prefix, '--no-build',
      '--iface', 'eth1', '--iface', '192.0.2.1',
      '--etcd-endpoints', 'http://192.0.2.254:2379',
      '--cni-bin-dir', '/opt/cni/bin', '--cni-conf-dir', '/etc/cni/net.d',
      '--hostname-override', 'node1',
    ];
    first = await install();
    firstSnap = snapshot(prefix);
  });
  afterAll(() => {
    rmSync(prefix, { recursive: true, force: true });
  });

  it('installs without starting anything (prefix), saying so', () => {
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/systemd: not started \(--prefix .* is not \/\)/);
    expect(first.stdout).toMatch(/done: [1-9]\d* file\(s\) changed/);
  });

  it('writes wrappers that run this checkout\'s build with this node', () => {
    const programs = ['weftd', 'weftctl', 'weft-proxy'];
    for (const p of programs) {
      const f = join(prefix, 'usr/local/bin', p);
      expect(statSync(f).mode & 0o777).toBe(0o755);
      expect(readFileSync(f, 'utf8')).toContain(`exec ${process.execPath} ${nodeFlagsFor(p).map((x) => `${x} `).join('')}${repo}/dist/cli/${p}.js "$@"`);
    }
  });

  it('the installed weftctl wrapper runs', async () => {
    const r = await run(join(prefix, 'usr/local/bin/weftctl'), ['--help'], { allowFail: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: weftctl');
  });

  it('writes the env files with the options, readable only by root', () => {
    const f = join(prefix, 'etc/weft/weftd.env');
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(envFile(f)).toMatchObject({
      WEFTD_IFACE: 'eth1,192.0.2.1',
      WEFTD_ETCD_ENDPOINTS: 'http://192.0.2.254:2379',
      WEFTD_IP_MASQ: 'true',
      WEFTD_HEALTHZ_IP: '127.0.0.1',
      WEFTD_HEALTHZ_PORT: '9808',
      WEFTD_CNI_SOCKET: '/run/weft/cni.sock',
    });
    // Unset options stay commented out: an empty WEFTD_PUBLIC_IP= would be a value.
    expect(envFile(f)).not.toHaveProperty('WEFTD_PUBLIC_IP');
    expect(envFile(join(prefix, 'etc/weft/weft-proxy.env'))).toMatchObject({
      WEFT_PROXY_ETCD_ENDPOINTS: 'http://192.0.2.254:2379',
      WEFT_PROXY_PROXY_MODE: 'iptables',
      WEFT_PROXY_HOSTNAME_OVERRIDE: 'node1',
      WEFT_PROXY_HEALTHZ_BIND_ADDRESS: '127.0.0.1:10256',
    });
  });

  it.runIf(existsSync('/usr/bin/systemctl'))('enables the units offline (wants/ symlinks in the prefix)', () => {
    for (const u of units) {
      expect(readlinkSync(join(prefix, 'etc/systemd/system/multi-user.target.wants', u))).toBe(`/etc/systemd/system/${u}`);
      expect(first.stdout).toContain(`enabled ${u} (offline`);
    }
  });

  it('copies the unit files verbatim', () => {
    for (const u of units) {
      expect(readFileSync(join(prefix, 'etc/systemd/system', u), 'utf8')).toBe(readFileSync(join(repo, 'systemd', u), 'utf8'));
    }
  });

  it('installs the CNI plugin pair and a conflist (weftctl install-cni, via staging)', () => {
    expect(statSync(join(prefix, 'opt/cni/bin/weft')).mode & 0o777).toBe(0o755);
    expect(existsSync(join(prefix, 'opt/cni/bin/weft-cni.cjs'))).toBe(true);
    const conflist = JSON.parse(readFileSync(join(prefix, 'etc/cni/net.d/10-weft.conflist'), 'utf8'));
    expect(conflist).toMatchObject({ name: 'weft', plugins: [{ type: 'weft' }] });
  });

  it('a second run changes nothing and exits 0', async () => {
    const second = await install();
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('done: 0 file(s) changed');
    expect(second.stdout).not.toContain('wrote ');
    expect(snapshot(prefix)).toEqual(firstSnap);
  });

  it('keeps an edited env file unless --reconfigure, then keeps a .bak', async () => {
    const f = join(prefix, 'etc/weft/weftd.env');
    const edited = readFileSync(f, 'utf8').replace('WEFTD_HEALTHZ_PORT=9808', 'WEFTD_HEALTHZ_PORT=9818');
    writeFileSync(f, edited, { mode: 0o600 });
    const kept = await install();
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain(`kept ${f}`);
    expect(readFileSync(f, 'utf8')).toBe(edited);

    const re = await install(['--reconfigure']);
    expect(re.code).toBe(0);
    expect(envFile(f).WEFTD_HEALTHZ_PORT).toBe('9808');
    expect(readFileSync(`${f}.bak`, 'utf8')).toBe(edited);
  });

  it('refuses unknown options and unsafe values with exit code 2, writing nothing', async () => {
    const before = snapshot(prefix);
    const bad = await run('bash', [script, '--prefix', prefix, '--bogus'], { allowFail: true });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown option: --bogus');
    const unsafe = await run('bash', [script, '--prefix', prefix, '--iface', 'eth1; reboot'], { allowFail: true });
    expect(unsafe.code).toBe(2);
    expect(snapshot(prefix)).toEqual(before);
  });

  it('fails clearly when the build is missing and --no-build is given', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'weft-ops-src-'));
    try {
      writeFileSync(join(empty, 'package.json'), '{\n  "name": "weft"\n}\n');
      const r = await run('bash', [script, '--prefix', prefix, '--src', empty, '--no-build'], { allowFail: true });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/node_modules is missing and --no-build was given/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('scripts/install-weft.sh --uninstall', () => {
  const prefix = mkdtempSync(join(tmpdir(), 'weft-ops-uninstall-'));
  afterAll(() => rmSync(prefix, { recursive: true, force: true }));
  const files = () => Object.keys(snapshot(prefix)).sort();
  const sh = (args: string[]) => run('bash', [script, '--prefix', prefix, ...args], { allowFail: true, timeoutMs: 120_000 });

  it('removes what the manifest lists, keeps the env files until --purge, and can be repeated', async () => {
    expect((await sh(['--no-build'])).code).toBe(0);
    expect(files()).toContain('usr/local/bin/weftd');

    const un = await sh(['--uninstall']);
    expect(un.code).toBe(0);
    expect(un.stdout).toMatch(/uninstalled: [1-9]\d* file\(s\) removed/);
    expect(files()).toEqual(['etc/weft/weft-proxy.env', 'etc/weft/weftd.env', 'var/lib/weft/install-manifest']);

    const purge = await sh(['--uninstall', '--purge']);
    expect(purge.code).toBe(0);
    expect(files()).toEqual([]);

    const again = await sh(['--uninstall']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to uninstall');
  });
});

describe('scripts/install-weft.sh --no-proxy --no-cni (a node that keeps kube-proxy and its CNI)', () => {
  const prefix = mkdtempSync(join(tmpdir(), 'weft-ops-partial-'));
  afterAll(() => rmSync(prefix, { recursive: true, force: true }));

  it('installs weftd and weftctl only, and lists only them', async () => {
    const r = await run('bash', [script, '--prefix', prefix, '--no-build', '--no-proxy', '--no-cni'], { allowFail: true, timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const files = Object.keys(snapshot(prefix)).filter((f) => !f.includes('.wants/')).sort();
    expect(files).toEqual([
      'etc/systemd/system/weftd.service',
      'etc/weft/weftd.env',
      'usr/local/bin/weftctl',
      'usr/local/bin/weftd',
      'var/lib/weft/install-manifest',
    ]);
    expect(readFileSync(join(prefix, 'var/lib/weft/install-manifest'), 'utf8')).not.toMatch(/proxy|cni/);
  });
});

describe('scripts/install-weft.sh option forms and flannel adoption', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'weft-ops-forms-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const sh = (args: string[]) => run('bash', [script, '--no-build', '--no-systemd', ...args], { allowFail: true, timeoutMs: 120_000 });

  it('every value option works as --opt=value exactly as --opt value (docs/migration.md step 0)', async () => {
    const opts: Array<[string, string]> = [
      ['--iface', 'eth1'], ['--public-ip', '192.0.2.1'], ['--etcd-endpoints', 'https://etcd:2379'], ['--etcd-prefix', '/coreos.com/network'],
      ['--etcd-cafile', '/etc/flannel/ca.pem'], ['--etcd-certfile', '/etc/flannel/client.pem'], ['--etcd-keyfile', '/etc/flannel/client-key.pem'],
      ['--weftd-arg', '--etcd-cafile=/etc/flannel/ca.pem'], ['--proxy-mode', 'iptables'], ['--cluster-cidr', '10.244.0.0/16'],
      ['--hostname-override', 'node1'], ['--proxy-arg', '--masquerade-all'], ['--cni-bin-dir', '/opt/cni/bin'], ['--cni-conf-dir', '/etc/cni/net.d'],
    ];
    const spaced = join(tmp, 'spaced');
    const joined = join(tmp, 'joined');
    const a = await sh(['--prefix', spaced, ...opts.flat()]);
    const b = await sh([`--prefix=${joined}`, ...opts.map(([k, v]) => `${k}=${v}`)]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    for (const f of ['etc/weft/weftd.env', 'etc/weft/weft-proxy.env']) {
      expect(readFileSync(join(joined, f), 'utf8')).toBe(readFileSync(join(spaced, f), 'utf8'));
    }
    // Split at the first "=" only.
    expect(envFile(join(joined, 'etc/weft/weftd.env')).WEFTD_EXTRA_ARGS).toBe('--etcd-cafile=/etc/flannel/ca.pem');
    // Every value option of --help was exercised in both forms.
    const help = await run('bash', [script, '--help']);
    const valueOpts = [...help.stdout.matchAll(/^ {2}(--[a-z0-9-]+) [A-Z]/gm)].map((m) => m[1]!).filter((o) => o !== '--prefix' && o !== '--src');
    expect(valueOpts.filter((o) => !opts.some(([k]) => k === o))).toEqual([]);
  });

  it('weftctl install-cni takes --opt=value as --opt value too', async () => {
    const weftctl = (args: string[]) => run(process.execPath, [join(repo, 'dist/cli/weftctl.js'), 'install-cni', ...args], { allowFail: true });
    const opts: Array<[string, string]> = [['--name', 'foo'], ['--bridge', 'br9'], ['--subnet-file', '/s.env'], ['--cni-version', '0.4.0'], ['--flannel-conf-dir', join(tmp, 'nowhere')]];
    const a = await weftctl(['--bin-dir', join(tmp, 'ca/bin'), '--conf-dir', join(tmp, 'ca/conf'), ...opts.flat()]);
    const b = await weftctl([`--bin-dir=${join(tmp, 'cb/bin')}`, `--conf-dir=${join(tmp, 'cb/conf')}`, ...opts.map(([k, v]) => `${k}=${v}`)]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const conf = readFileSync(join(tmp, 'cb/conf/10-foo.conflist'), 'utf8');
    expect(conf).toBe(readFileSync(join(tmp, 'ca/conf/10-foo.conflist'), 'utf8'));
    expect(JSON.parse(conf)).toMatchObject({ cniVersion: '0.4.0', name: 'foo', plugins: [{ bridge: 'br9', subnetFile: '/s.env' }] });
  });

  it('refuses a value on a flag and an empty value, exit 2', async () => {
    const p = join(tmp, 'refused');
    const flag = await sh([`--prefix=${p}`, '--no-start=yes']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--no-start takes no value');
    const empty = await sh([`--prefix=${p}`, '--iface=']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('--iface needs a value');
  });

  it('adopts flannel\'s network when its conflist is in the CNI conf dir; --no-adopt-flannel does not', async () => {
    const p = join(tmp, 'flannel');
    mkdirSync(join(p, 'etc/cni/net.d'), { recursive: true });
    writeFileSync(join(p, 'etc/cni/net.d/10-flannel.conflist'), JSON.stringify({
      name: 'cbr0', cniVersion: '0.3.1', plugins: [{ type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } }, { type: 'portmap', capabilities: { portMappings: true } }],
    }));
    const r = await sh(['--prefix', p]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("cni: adopted flannel's network");
    const conf = JSON.parse(readFileSync(join(p, 'etc/cni/net.d/10-weft.conflist'), 'utf8'));
    expect(conf.name).toBe('cbr0');
    expect(conf.plugins.map((x: { type: string }) => x.type)).toEqual(['weft', 'portmap']);
    expect(conf.plugins[0].bridge).toBe('cni0');
    // flannel's file is the operator's to remove (migration step 3) ...
    expect(existsSync(join(p, 'etc/cni/net.d/10-flannel.conflist'))).toBe(true);
    rmSync(join(p, 'etc/cni/net.d/10-flannel.conflist'));
    // ... after which a re-run (an upgrade) keeps the adopted network and changes nothing.
    const again = await sh(['--prefix', p]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("adopted flannel's network from the earlier install's");
    expect(again.stdout).toContain('done: 0 file(s) changed');
    const no = await sh(['--prefix', p, '--no-adopt-flannel']);
    expect(no.code, no.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(p, 'etc/cni/net.d/10-weft.conflist'), 'utf8'))).toMatchObject({ name: 'weft', plugins: [{ bridge: 'weft0' }] });
  });
});

describe('scripts/install-deps.sh', () => {
  // CI (.ci/run) and scripts/test.sh run it before the tests, so here it is
  // the second run: it must find everything and change nothing.
  it('a second run finds every package installed and exits 0', async () => {
    const r = await run('bash', [join(repo, 'scripts', 'install-deps.sh')], { allowFail: true, timeoutMs: 600_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('install-deps: all Debian packages present');
  });
});

describe('systemd units', () => {
  const unit = (name: string) => readFileSync(join(repo, 'systemd', name), 'utf8');

  it.each([
    ['weftd.service', '/etc/weft/weftd.env', 'http://${WEFTD_HEALTHZ_IP}:${WEFTD_HEALTHZ_PORT}/readyz'],
    ['weft-proxy.service', '/etc/weft/weft-proxy.env', 'http://${WEFT_PROXY_HEALTHZ_BIND_ADDRESS}/healthz'],
  ])('%s restarts forever with a bounded readiness probe', (name, envPath, url) => {
    const u = unit(name);
    expect(u).toContain(`EnvironmentFile=${envPath}`);
    expect(u).toMatch(/^Restart=always$/m);
    expect(u).toMatch(/^RestartSec=\d+s$/m);
    expect(u).toMatch(/^StartLimitIntervalSec=0$/m);
    expect(u).toMatch(/^LimitNOFILE=\d+$/m);
    expect(u).toMatch(/^KillMode=mixed$/m);
    const probe = /^ExecStartPost=(.*)$/m.exec(u)?.[1] ?? '';
    expect(probe).toContain(url);
    // Bounded: curl gives up within --retry-max-time, below TimeoutStartSec.
    const maxTime = Number(/--retry-max-time (\d+)/.exec(probe)?.[1]);
    const startTimeout = Number(/^TimeoutStartSec=(\d+)$/m.exec(u)?.[1]);
    expect(maxTime).toBeGreaterThan(0);
    expect(startTimeout).toBeGreaterThan(maxTime);
    // No teardown on stop: nothing runs on ExecStop.
    expect(u).not.toMatch(/^ExecStop/m);
    // Ordering after etcd but never pulling a (possibly disabled) local etcd in.
    expect(u).toMatch(/^After=.*etcd\.service/m);
    expect(u).not.toMatch(/^(Wants|Requires)=.*etcd/m);
  });

  const analyze = existsSync('/usr/bin/systemd-analyze');
  it.runIf(analyze)('systemd-analyze verify finds nothing but the not-yet-installed binaries', async () => {
    const r = await run('systemd-analyze', ['verify', join(repo, 'systemd/weftd.service'), join(repo, 'systemd/weft-proxy.service')], { allowFail: true });
    const complaints = r.stderr
      .split('\n')
      .filter((l) => l.trim() !== '')
      .filter((l) => !/Command \/usr\/local\/bin\/(weftd|weft-proxy) is not executable/.test(l));
    expect(complaints).toEqual([]);
  });
});
