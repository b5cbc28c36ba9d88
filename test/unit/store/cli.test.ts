import { Command } from 'commander';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { parseCidr } from '../../../src/core/ip.js';
import { registerConfigCommands, registryFromOptions } from '../../../src/store/cli.js';
import { MemoryRegistry } from '../../../src/store/memory-registry.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-store-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** weftctl's root program with this area's commands on a MemoryRegistry. */
function weftctl(registry: MemoryRegistry) {
  let out = '';
  const seen: unknown[] = [];
  const program = new Command('weftctl')
    .option('--etcd-endpoints <urls>', 'etcd', 'http://127.0.0.1:2379')
    .option('--etcd-prefix <prefix>', 'prefix', '/coreos.com/network')
    .exitOverride();
  registerConfigCommands(program, {
    makeRegistry: (opts) => {
      seen.push(opts);
      return registry;
    },
    out: (t) => (out += t),
  });
  return {
    run: async (...args: string[]) => {
      out = '';
      await program.parseAsync(['node', 'weftctl', ...args]);
      return out;
    },
    seen,
  };
}

describe('weftctl config', () => {
  it('set from flags writes flannel JSON and prints it; get prints it back', async () => {
    const reg = new MemoryRegistry();
    const cli = weftctl(reg);
    const printed = await cli.run('config', 'set', '--network', '10.244.0.0/16', '--backend', 'vxlan', '--vni', '4', '--direct-routing');
    const json = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":4,"DirectRouting":true}}';
    expect(printed).toContain(json);
    expect(printed).toContain('backend vxlan');
    expect(await reg.getConfig()).toBe(json);
    expect(await cli.run('config', 'get')).toBe(json + '\n');
  });

  it('set -f validates the file first and refuses a bad one without writing', async () => {
    const reg = new MemoryRegistry();
    const cli = weftctl(reg);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"Network":"10.244.0.0/16","SubnetLen":31}');
    await expect(cli.run('config', 'set', '-f', bad)).rejects.toMatchObject({ code: 'ERR_CONFIG', field: 'SubnetLen' });
    expect(await reg.getConfig()).toBeUndefined();
    const good = join(dir, 'good.json');
    writeFileSync(good, '{"network":"10.1.0.0/16","backend":{"type":"host-gw"}}');
    await cli.run('config', 'set', '-f', good);
    expect(JSON.parse((await reg.getConfig())!)).toEqual({ network: '10.1.0.0/16', backend: { type: 'host-gw' } });
  });

  it('refuses flags that make no sense, naming them', async () => {
    const cli = weftctl(new MemoryRegistry());
    await expect(cli.run('config', 'set', '--backend', 'vxlan')).rejects.toMatchObject({ field: '--network' });
    await expect(cli.run('config', 'set', '--network', '10.244.0.0/16', '--subnet-len', 'x')).rejects.toMatchObject({
      field: '--subnet-len',
    });
    await expect(cli.run('config', 'set', '--network', '10.244.0.0/16', '--backend', 'gre')).rejects.toMatchObject({
      field: 'Backend.Type',
    });
  });

  it('get says clearly when there is no config', async () => {
    const cli = weftctl(new MemoryRegistry());
    await expect(cli.run('config', 'get')).rejects.toMatchObject({ code: 'ERR_CONFIG_MISSING' });
  });

  it('passes the global etcd options through', async () => {
    const cli = weftctl(new MemoryRegistry());
    await cli.run('--etcd-prefix', '/x/network', 'leases', '--etcd-username', 'u');
    expect(cli.seen[0]).toMatchObject({ etcdPrefix: '/x/network', etcdUsername: 'u', etcdEndpoints: 'http://127.0.0.1:2379' });
  });
});

describe('weftctl leases', () => {
  it('prints a table with "never" for reservations, and JSON', async () => {
    const clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'));
    const reg = new MemoryRegistry({ clock });
    await reg.createLease(parseCidr('10.244.2.0/24'), { PublicIP: '192.0.2.2', BackendType: 'vxlan', BackendData: { VNI: 1 } }, 3600);
    await reg.createLease(parseCidr('10.244.1.0/24'), { PublicIP: '192.0.2.1', BackendType: 'host-gw' }, undefined);
    const cli = weftctl(reg);
    const table = await cli.run('leases');
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SUBNET\s+PUBLIC-IP\s+BACKEND\s+EXPIRES$/);
    expect(lines[1]).toMatch(/^10\.244\.1\.0\/24\s+192\.0\.2\.1\s+host-gw\s+never$/);
    expect(lines[2]).toMatch(/^10\.244\.2\.0\/24\s+192\.0\.2\.2\s+vxlan\s+2030-01-01T01:00:00Z/);
    const json = JSON.parse(await cli.run('leases', '--json'));
    expect(json).toEqual([
      { subnet: '10.244.1.0/24', publicIp: '192.0.2.1', backendType: 'host-gw', backendData: null, reservation: true, expiration: null },
      {
        subnet: '10.244.2.0/24',
        publicIp: '192.0.2.2',
        backendType: 'vxlan',
        backendData: { VNI: 1 },
        reservation: false,
        expiration: '2030-01-01T01:00:00.000Z',
      },
    ]);
  });
});

describe('weftctl leases with flanneld udp leases and refused keys', () => {
  it('lists a lease without BackendType as (none) and the refused keys after the table', async () => {
    const reg = new MemoryRegistry();
    reg.putRaw('10.244.3.0-24', '{"PublicIP":"192.0.2.3","PublicIPv6":null}');
    reg.putRaw('10.244.3.0-24&x', '{"PublicIP":"192.0.2.9","BackendType":"udp"}');
    reg.putRaw('10.244.4.0-24', 'junk');
    const out = await weftctl(reg).run('leases');
    const lines = out.trimEnd().split('\n');
    expect(lines[1]).toMatch(/^10\.244\.3\.0\/24\s+192\.0\.2\.3\s+\(none\)\s+never$/);
    expect(lines).toHaveLength(7); // table, blank line, title, header, two refused keys
    expect(out).toMatch(/refused keys/);
    expect(out).toMatch(/10\.244\.3\.0-24&x\s+key\s/);
    expect(out).toMatch(/10\.244\.4\.0-24\s+value\s/);
    const json = JSON.parse(await weftctl(reg).run('leases', '--json'));
    expect(json).toEqual([
      { subnet: '10.244.3.0/24', publicIp: '192.0.2.3', backendType: '', backendData: null, reservation: true, expiration: null },
    ]);
  });
});

describe('registryFromOptions', () => {
  it('refuses an endpoint that is not a URL', () => {
    expect(() => registryFromOptions({ etcdEndpoints: '127.0.0.1:2379' })).toThrow(/--etcd-endpoints/);
  });
});
