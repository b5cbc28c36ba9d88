/**
 * weftd as a drop-in for flanneld, as a flannel user would try it: the
 * command lines of flannel's own documentation (Documentation/running.md,
 * the `args` of Documentation/kube-flannel.yml) and a systemd unit written
 * for flanneld with FLANNELD_* variables start weftd unchanged (only the
 * etcd address is the lab's, and the subnet.env path goes to a temporary
 * directory so nothing is written outside it), each against real etcd in a
 * lab namespace, and each gets a lease and writes subnet.env. Then, table
 * driven over docs/weftd.md's "flanneld flags" table: each flag works or
 * logs the documented warning, and a bad value, given as a flag or as its
 * FLANNELD_ variable, exits 2 naming it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labEtcd, labTarget, labUp, weftdScript } from '../../src/lab/index.js';
import { uniqueLabId } from '../helpers/lab.js';
import { isRoot } from '../helpers/netns.js';

const id = uniqueLabId('fcmd');
const ETCD = 'http://192.0.2.254:2379'; // the lab's etcd, in place of the docs' addresses
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}';

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50)); // bounded poll
  }
}

interface Run {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

/**
 * `weftd argv` in h1 with exactly `env` (plus PATH): nothing of the parent's
 * environment leaks in, so FLANNELD_* come only from the case under test.
 */
function weftd(argv: string[], env: Record<string, string>): Run {
  const envArgs = Object.entries({ PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env }).map(([k, v]) => `${k}=${v}`);
  const proc = spawn('ip', ['netns', 'exec', labTarget(id, 'h1'), 'env', '-i', ...envArgs, process.execPath, weftdScript(), ...argv], {
    env: {},
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

const running: Run[] = [];
let dir = '';
let n = 0;

/** A fresh subnet.env path and state directory (weft-only: given as WEFTD_STATE_DIR). */
function paths(): { subnetFile: string; stateDir: string } {
  n += 1;
  return { subnetFile: join(dir, `subnet-${n}.env`), stateDir: join(dir, `state-${n}`) };
}

/** Starts weftd, waits for subnet.env (or `logRe`), stops it with SIGTERM; returns file + log. */
async function startUntilLease(argv: string[], env: Record<string, string>, subnetFile: string, logRe?: RegExp): Promise<{ env: string; log: string }> {
  const r = weftd(argv, env);
  running.push(r);
  try {
    await until(`subnet.env at ${subnetFile}`, () => r.proc.exitCode !== null || (existsSync(subnetFile) && (!logRe || logRe.test(r.out()))));
    if (r.proc.exitCode !== null) throw new Error(`weftd exited ${r.proc.exitCode} before writing ${subnetFile}:\n${r.out()}`);
    return { env: readFileSync(subnetFile, 'utf8'), log: r.out() };
  } finally {
    if (r.proc.exitCode === null) r.proc.kill('SIGTERM');
    await r.exited;
  }
}

/** Runs weftd to its exit (usage errors exit at once). */
async function runToExit(argv: string[], env: Record<string, string> = {}): Promise<{ code: number | null; log: string }> {
  const r = weftd(argv, env);
  running.push(r);
  const killer = setTimeout(() => r.proc.kill('SIGKILL'), 30_000);
  const code = await r.exited;
  clearTimeout(killer);
  return { code, log: r.out() };
}

/**
 * A unit file as a flanneld package ships it, reduced to what systemd would
 * do with it here: Environment= and EnvironmentFile= give the environment,
 * ExecStart= (with `\` continuations, split into words like systemd) the argv.
 */
function parseUnit(text: string): { env: Record<string, string>; argv: string[] } {
  const joined = text.replace(/\\\n/g, ' ');
  const env: Record<string, string> = {};
  let argv: string[] = [];
  const words = (s: string) => [...s.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  for (const line of joined.split('\n').map((l) => l.trim())) {
    const m = /^(\w+)=(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'Environment') for (const w of words(m[2]!)) { const i = w.indexOf('='); env[w.slice(0, i)] = w.slice(i + 1); }
    if (m[1] === 'EnvironmentFile') {
      for (const l of readFileSync(m[2]!.replace(/^-/, ''), 'utf8').split('\n')) {
        const e = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(l.trim());
        if (e) env[e[1]!] = e[2]!.replace(/^"(.*)"$/, '$1');
      }
    }
    if (m[1] === 'ExecStart') argv = words(m[2]!);
  }
  return { env, argv };
}

describe.skipIf(!isRoot)('flanneld command lines start weftd unchanged', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'weft-flannel-cmd-'));
    await labUp({ id, hosts: 1, podsPerHost: 0, backend: 'host-gw', startWeftd: false });
    await labEtcd(id).put('/coreos.com/network/config', CONFIG);
    await labEtcd(id).put('/vxlan/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  }, 120_000);
  afterAll(async () => {
    for (const r of running) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
    await labDown(id);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  // Verbatim from flannel's docs, the etcd address (and subnet.env path) swapped for the lab's.
  const documented: Array<[string, (p: { subnetFile: string }) => string[], RegExp]> = [
    // running.md "Running manually": no arguments (the endpoint comes from FLANNELD_ETCD_ENDPOINTS below).
    ['running.md: flanneld (no arguments)', () => [], /FLANNEL_IPMASQ=false/],
    // running.md "Multiple networks".
    ['running.md: flanneld -subnet-file /vxlan.env -etcd-prefix=/vxlan/network', (p) => ['-subnet-file', p.subnetFile, '-etcd-prefix=/vxlan/network'], /FLANNEL_MTU=1450/],
    // running.md "Interface selection" (-iface, -public-ip) in the Go single-dash form.
    ['running.md: -iface string -public-ip string', () => ['-etcd-endpoints=' + ETCD, '-iface=eth0', '-public-ip', '192.0.2.1'], /FLANNEL_SUBNET=10\.244\./],
    // The etcd-mode line of flannel's configuration docs / distribution units.
    ['flanneld -etcd-endpoints=http://... -iface=eth0 -ip-masq', () => ['-etcd-endpoints=' + ETCD, '-iface=eth0', '-ip-masq'], /FLANNEL_IPMASQ=true/],
    // Booleans as Go reads them, verbosity as klog's.
    ['--ip-masq=true -v=2 --iface eth0', () => ['--etcd-endpoints', ETCD, '--ip-masq=true', '-v=2', '--iface', 'eth0'], /FLANNEL_IPMASQ=true/],
  ];
  for (const [what, argvOf, expected] of documented) {
    it(`${what}: leases a subnet and writes subnet.env`, async () => {
      const p = paths();
      const argv = argvOf(p);
      // What a command line does not say comes from the environment a service manager would give
      // (the lab host has no default route, so the interface too).
      const env = { FLANNELD_ETCD_ENDPOINTS: ETCD, FLANNELD_IFACE: 'eth0', FLANNELD_SUBNET_FILE: p.subnetFile, WEFTD_STATE_DIR: p.stateDir, WEFTD_HEALTHZ_PORT: '0' };
      const r = await startUntilLease(argv, env, p.subnetFile);
      expect(r.env).toMatch(/^FLANNEL_NETWORK=10\.244\.0\.0\/16$/m);
      expect(r.env).toMatch(/^FLANNEL_SUBNET=10\.244\.\d+\.1\/24$/m);
      expect(r.env).toMatch(expected);
    }, 60_000);
  }

  it('a flanneld.service with Environment=/EnvironmentFile= FLANNELD_* variables: its ExecStart, run with that environment', async () => {
    const p = paths();
    const envFile = join(dir, 'flanneld.env');
    writeFileSync(envFile, [
      '# /etc/sysconfig/flanneld',
      `FLANNELD_ETCD_ENDPOINTS="${ETCD}"`,
      'FLANNELD_ETCD_PREFIX=/coreos.com/network',
      'FLANNELD_IFACE=eth0',
      'FLANNELD_IP_MASQ=true',
      `FLANNELD_SUBNET_FILE=${p.subnetFile}`,
      'FLANNELD_IPTABLES_RESYNC=5',
      '',
    ].join('\n'));
    const unit = [
      '[Unit]',
      'Description=Flanneld overlay address etcd agent',
      'After=network-online.target',
      '[Service]',
      'Type=notify',
      `EnvironmentFile=-${envFile}`,
      `Environment="FLANNELD_PUBLIC_IP=192.0.2.1" "FLANNELD_SUBNET_LEASE_RENEW_MARGIN=60" "WEFTD_STATE_DIR=${p.stateDir}" "WEFTD_HEALTHZ_PORT=0"`,
      'ExecStart=/usr/bin/flanneld \\',
      '  -v=2',
      'Restart=always',
      '[Install]',
      'WantedBy=multi-user.target',
      '',
    ].join('\n');
    const { env, argv } = parseUnit(unit);
    expect(argv[0]).toBe('/usr/bin/flanneld');
    expect(env.FLANNELD_IP_MASQ).toBe('true');
    // The unit's binary is swapped for weftd; its arguments and environment stay.
    const r = await startUntilLease(argv.slice(1), env, p.subnetFile, /flanneld flag accepted without effect/);
    expect(r.env).toMatch(/^FLANNEL_IPMASQ=true$/m);
    expect(r.env).toMatch(/^FLANNEL_SUBNET=10\.244\.\d+\.1\/24$/m);
    // FLANNELD_SUBNET_LEASE_RENEW_MARGIN is one of the documented warnings.
    expect(r.log).toMatch(/subnetLeaseRenewMargin/);
    const third = /^FLANNEL_SUBNET=10\.244\.(\d+)\.1\/24$/m.exec(r.env)![1];
    const lease = await labEtcd(id).get(`/coreos.com/network/subnets/10.244.${third}.0-24`);
    expect(lease).toContain('"PublicIP":"192.0.2.1"');
  }, 60_000);

  it("kube-flannel.yml's `--ip-masq --kube-subnet-mgr` parses and fails clearly without an API server (not a usage error)", async () => {
    const r = await runToExit(['--ip-masq', '--kube-subnet-mgr'], { WEFTD_HEALTHZ_PORT: '0', WEFTD_STATE_DIR: paths().stateDir });
    expect(r.code).toBe(1);
    expect(r.log).toMatch(/ERR_KUBE_(CONFIG|NODE_NAME)/);
  }, 60_000);

  // docs/weftd.md "flanneld flags", one row each: a warning, or the effect.
  const warned: Array<[string, string[], RegExp]> = [
    ['-public-ipv6', ['-public-ipv6=2001:db8::1'], /publicIpv6/],
    ['-subnet-lease-renew-margin', ['-subnet-lease-renew-margin=30'], /subnetLeaseRenewMargin/],
    ['-iptables-forward-rules=false', ['-iptables-forward-rules=false'], /iptablesForwardRules/],
    ['-ip-masq-fully-random-disable', ['-ip-masq-fully-random-disable'], /ipMasqFullyRandomDisable/],
    ['-ip-blackhole-route', ['-ip-blackhole-route'], /ipBlackholeRoute/],
    ['-charon-executable-path', ['-charon-executable-path=/usr/sbin/charon'], /charonExecutablePath/],
    ['-charon-viciurl', ['-charon-viciurl=unix:///var/run/charon.vici'], /charonViciurl/],
    ['klog -vmodule', ['-vmodule=main=2'], /vmodule/],
    ['klog -log_dir', ['-log_dir=/tmp'], /log_dir/],
    ['klog -logtostderr=false', ['-logtostderr=false'], /logtostderr/],
    ['klog -alsologtostderr', ['-alsologtostderr'], /alsologtostderr/],
  ];
  for (const [what, flags, flagName] of warned) {
    it(`${what}: accepted, leases, and logs the documented warning`, async () => {
      const p = paths();
      const r = await startUntilLease(['-etcd-endpoints', ETCD, '-iface=eth0', `-subnet-file=${p.subnetFile}`, ...flags], { WEFTD_STATE_DIR: p.stateDir, WEFTD_HEALTHZ_PORT: '0' }, p.subnetFile, /flanneld flag accepted without effect/);
      const warning = r.log.split('\n').find((l) => /flanneld flag accepted without effect/.test(l) && flagName.test(l));
      expect(warning, r.log).toBeDefined();
    }, 60_000);
  }

  const applied: Array<[string, string[], (r: { env: string; log: string }) => void]> = [
    ['-iface-can-reach', ['-iface-can-reach=192.0.2.254'], (r) => expect(r.log).toMatch(/interface chosen by --iface-can-reach/)],
    ['-iface-regex', ['-iface-regex=^eth'], (r) => expect(r.env).toMatch(/FLANNEL_SUBNET=/)],
    ['-ip-masq=false', ['-ip-masq=false'], (r) => expect(r.env).toMatch(/^FLANNEL_IPMASQ=false$/m)],
    ['-ip-masq=1', ['-ip-masq=1'], (r) => expect(r.env).toMatch(/^FLANNEL_IPMASQ=true$/m)],
    ['-iptables-resync', ['-iptables-resync=7'], (r) => expect(r.log).not.toMatch(/flanneld flag accepted without effect.*iptablesResync/)],
  ];
  for (const [what, flags, check] of applied) {
    it(`${what}: applied`, async () => {
      const p = paths();
      const r = await startUntilLease(['-etcd-endpoints', ETCD, `-subnet-file=${p.subnetFile}`, ...(flags[0]!.startsWith('-iface') ? [] : ['-iface=eth0']), ...flags], { WEFTD_STATE_DIR: p.stateDir, WEFTD_HEALTHZ_PORT: '0' }, p.subnetFile);
      check(r);
    }, 60_000);
  }

  it('-version prints the version and exits 0', async () => {
    const r = await runToExit(['-version']);
    expect(r.code).toBe(0);
    expect(r.log.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 60_000);

  // A bad value, as a flag and as its FLANNELD_ variable: exit 2 naming it.
  const bad: Array<[string, string, string]> = [
    ['healthz-port', 'HEALTHZ_PORT', 'abc'],
    ['ip-masq', 'IP_MASQ', 'maybe'],
    ['subnet-lease-renew-margin', 'SUBNET_LEASE_RENEW_MARGIN', '5000'],
    ['iptables-resync', 'IPTABLES_RESYNC', '0'],
    ['v', 'V', 'loud'],
    ['iptables-forward-rules', 'IPTABLES_FORWARD_RULES', 'nope'],
    ['subnet-lease-ttl', 'SUBNET_LEASE_TTL', '-1'],
  ];
  for (const [flag, variable, value] of bad) {
    it(`-${flag}=${value} exits 2 naming the flag`, async () => {
      const r = await runToExit([`-${flag}=${value}`]);
      expect(r.code, r.log).toBe(2);
      expect(r.log).toContain(`--${flag}`);
    }, 60_000);
    it(`FLANNELD_${variable}=${value} exits 2 naming the variable`, async () => {
      const r = await runToExit([], { [`FLANNELD_${variable}`]: value });
      expect(r.code, r.log).toBe(2);
      expect(r.log).toContain(`FLANNELD_${variable}`);
    }, 60_000);
  }

  it('an unknown flag exits 2 naming it', async () => {
    const r = await runToExit(['-no-such-flag']);
    expect(r.code).toBe(2);
    expect(r.log).toMatch(/no-such-flag/);
  }, 60_000);
});
