import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

// The Vagrant files cannot run here (no VMs); what can be checked is checked:
// syntax, the node layout, and the interface choice that keeps weftd off the
// NAT interface (flannel issue 98), in a namespace shaped like a Vagrant VM.
const repo = join(import.meta.dirname, '..', '..');
const vagrantfile = join(repo, 'vagrant', 'Vagrantfile');
const provision = join(repo, 'vagrant', 'provision.sh');

describe('vagrant/', () => {
  it('provision.sh parses (bash -n)', async () => {
    const r = await run('bash', ['-n', provision], { allowFail: true });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it.runIf(existsSync('/usr/bin/ruby'))('ruby -c accepts the Vagrantfile', async () => {
    const r = await run('ruby', ['-c', vagrantfile], { allowFail: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Syntax OK');
  });

  // The Vagrantfile evaluated with a stub Vagrant module: node layout and env overrides.
  const layout = (env: Record<string, string>) =>
    run(
      'ruby',
      [
        '-rsocket',
        '-e',
        'module Vagrant; def self.configure(_v); end; end; load ARGV[0]; puts NODES.map { |n| "#{n[:name]}=#{n[:ip]}" }.join(","); puts "#{MGMT_NET}/#{MGMT_PREFIX}"; puts ETCD_IP',
        vagrantfile,
      ],
      { allowFail: true, env: { ...process.env, ...env } },
    );

  it.runIf(existsSync('/usr/bin/ruby'))('defines three nodes on 192.168.56.0/24 by default, etcd on the first', async () => {
    const r = await layout({});
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'node1=192.168.56.11,node2=192.168.56.12,node3=192.168.56.13',
      '192.168.121.0/24',
      '192.168.56.11',
    ]);
    const v = readFileSync(vagrantfile, 'utf8');
    expect(v).toContain("ENV.fetch('WEFT_VAGRANT_BOX', 'debian/bookworm64')");
    expect(v).toMatch(/private_network', ip: node\[:ip\]/);
  });

  it.runIf(existsSync('/usr/bin/ruby'))('takes the private and management networks and node count from env', async () => {
    const r = await layout({ WEFT_VAGRANT_NET: '192.0.2.0/24', WEFT_VAGRANT_MGMT_NET: '198.51.100.0/24', WEFT_VAGRANT_NODES: '1' });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['node1=192.0.2.11', '198.51.100.0/24', '192.0.2.11']);
    const bad = await layout({ WEFT_VAGRANT_NET: '192.0.2.5' });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('WEFT_VAGRANT_NET must be an IPv4 network');
    const overlap = await layout({ WEFT_VAGRANT_NET: '192.0.2.0/24', WEFT_VAGRANT_MGMT_NET: '192.0.2.0/24' });
    expect(overlap.stderr).toContain('must not overlap');
  });

  it('provision.sh keeps its npm ci stamp across rsync --delete and has an offline path', () => {
    const p = readFileSync(provision, 'utf8');
    expect(p).toContain('--exclude /.npm-ci-stamp');
    expect(p).toMatch(/OFFLINE=\$\{WEFT_OFFLINE:-0\}/);
    expect(p).toContain('use_bundle');
  });

  it('refuses unknown actions', async () => {
    const r = await run('bash', [provision, 'bogus', 'n', '1', '1', 'n=1'], { allowFail: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown action bogus');
  });
});

describe.skipIf(!isRoot)('provision.sh iface: the interface holding the private IP, not the default route', () => {
  const sb = new NetnsSandbox();
  let vm = '';
  beforeAll(async () => {
    // A VM: eth0 is the NAT side with the default route, eth1 the private network.
    vm = await sb.create('opsvm');
    const nat = await sb.create('opsnat');
    const priv = await sb.create('opspn');
    await sb.link({ ns: vm, ifname: 'eth0', cidr: '192.0.2.15/28' }, { ns: nat, ifname: 'eth0', cidr: '192.0.2.1/28' });
    await sb.link({ ns: vm, ifname: 'eth1', cidr: '192.0.2.102/28' }, { ns: priv, ifname: 'eth0', cidr: '192.0.2.101/28' });
    await run('ip', ['-n', vm, 'route', 'add', 'default', 'via', '192.0.2.1']);
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('picks eth1 for the private IP although the default route uses eth0', async () => {
    const r = await run('bash', [provision, 'iface', 'node2', '192.0.2.102', '192.0.2.101', 'node2=192.0.2.102'], { netns: vm, allowFail: true });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('eth1');
  });

  it('fails clearly when no interface holds the IP', async () => {
    const r = await run('bash', [provision, 'iface', 'node3', '192.0.2.103', '192.0.2.101', 'node3=192.0.2.103'], { netns: vm, allowFail: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no interface holds 192.0.2.103');
  });
});
