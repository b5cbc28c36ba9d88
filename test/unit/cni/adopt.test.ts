import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findFlannelConf } from '../../../src/cni/adopt.js';
import { installCni, resolveInstall } from '../../../src/cni/install.js';

// kube-flannel's cni-conf.json, as its DaemonSet writes it to 10-flannel.conflist.
const kubeFlannel = {
  name: 'cbr0',
  cniVersion: '0.3.1',
  plugins: [
    { type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};

describe('flannel conflist adoption', () => {
  let d = '';
  beforeEach(() => {
    d = mkdtempSync(join(tmpdir(), 'weft-adopt-'));
  });
  afterEach(() => rmSync(d, { recursive: true, force: true }));
  const put = (name: string, v: unknown) => writeFileSync(join(d, name), typeof v === 'string' ? v : JSON.stringify(v));

  it('finds kube-flannel\'s conflist: network cbr0, the bridge plugin\'s default cni0, portmap noted', () => {
    put('05-junk.conf', '{not json');
    put('10-flannel.conflist', kubeFlannel);
    expect(findFlannelConf(d)).toEqual({ file: join(d, '10-flannel.conflist'), name: 'cbr0', bridge: 'cni0', portmap: true, hairpinMode: true, isDefaultGateway: true });
  });

  it('takes the delegate\'s bridge and mtu and the entry\'s ipam.dataDir (what the flannel plugin hands host-local); a single .conf works too', () => {
    put('10-fl.conf', { name: 'mynet', type: 'flannel', dataDir: '/var/lib/cni/flannel', ipam: { dataDir: '/srv/cni' }, delegate: { bridge: 'mynet0', mtu: 1400, ipMasq: true, ipam: { dataDir: '/ignored' } } });
    expect(findFlannelConf(d)).toMatchObject({ name: 'mynet', bridge: 'mynet0', mtu: 1400, ipMasq: true, dataDir: '/srv/cni', portmap: false });
  });

  it('refuses what it cannot adopt faithfully, naming file and field', () => {
    put('10-flannel.conflist', { ...kubeFlannel, plugins: [{ type: 'flannel', delegate: { type: 'ipvlan' } }] });
    expect(() => findFlannelConf(d)).toThrow(expect.objectContaining({ code: 'ERR_FLANNEL_CONF', field: 'delegate.type' }));
    put('10-flannel.conflist', { ...kubeFlannel, plugins: [{ type: 'flannel', ipam: { dataDir: '/x\n-j ACCEPT' } }] });
    expect(() => findFlannelConf(d)).toThrow(expect.objectContaining({ field: 'ipam.dataDir' }));
    put('10-flannel.conflist', { ...kubeFlannel, name: '../etc' });
    expect(() => findFlannelConf(d)).toThrow(expect.objectContaining({ field: 'name' }));
  });

  it('no flannel conflist: auto keeps weft\'s own network, --adopt-flannel assumes cbr0/cni0', () => {
    put('99-other.conflist', { name: 'x', plugins: [{ type: 'bridge' }] });
    expect(resolveInstall({ confDir: d }).adoption).toBeUndefined();
    expect(resolveInstall({ confDir: d, adoptFlannel: 'yes' }).options).toMatchObject({ name: 'cbr0', weftConf: { bridge: 'cni0' } });
  });

  it('refuses a --name or --bridge other than flannel\'s while adopting; --no-adopt-flannel allows it', () => {
    put('10-flannel.conflist', kubeFlannel);
    expect(() => resolveInstall({ confDir: d, name: 'weft' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: '--name' }));
    expect(() => resolveInstall({ confDir: d, weftConf: { bridge: 'weft0' } })).toThrow(expect.objectContaining({ field: '--bridge' }));
    expect(resolveInstall({ confDir: d, name: 'weft', adoptFlannel: 'no' }).adoption).toBeUndefined();
  });

  it('installs 10-weft.conflist with network cbr0 on bridge cni0 beside flannel\'s (which still sorts first)', () => {
    put('10-flannel.conflist', kubeFlannel);
    put('weft', 'shim');
    put('weft-cni.cjs', 'bundle');
    const conf = join(d, 'conf');
    installCni({ sourceDir: d, binDir: join(d, 'bin'), confDir: conf, flannelConfDir: d, weftConf: { subnetFile: '/s.env' } });
    const c = JSON.parse(readFileSync(join(conf, '10-weft.conflist'), 'utf8'));
    expect(c.name).toBe('cbr0');
    expect(c.plugins[0]).toMatchObject({ type: 'weft', bridge: 'cni0', hairpinMode: true, isDefaultGateway: true, subnetFile: '/s.env' });
    // flannel's chain had the runtime's portmap: kept, and not linked from elsewhere.
    expect(c.plugins[1]).toMatchObject({ type: 'portmap', capabilities: { portMappings: true } });
    expect(existsSync(join(d, 'bin', 'portmap'))).toBe(false);
  });

  it('a re-run after flannel\'s conflist was moved away keeps the adopted network (an upgrade never falls back to weft0)', () => {
    put('10-flannel.conflist', kubeFlannel);
    put('weft', 'shim');
    put('weft-cni.cjs', 'bundle');
    const opts = { sourceDir: d, binDir: join(d, 'bin'), confDir: d, weftConf: { subnetFile: '/s.env' } };
    installCni(opts);
    const first = readFileSync(join(d, '10-weft.conflist'), 'utf8');
    rmSync(join(d, '10-flannel.conflist'));
    const again = resolveInstall(opts);
    expect(again.adoption).toMatchObject({ previous: true, name: 'cbr0', bridge: 'cni0', portmap: true });
    installCni(opts);
    expect(readFileSync(join(d, '10-weft.conflist'), 'utf8')).toBe(first);
    // Only --no-adopt-flannel goes back to weft's own network.
    expect(resolveInstall({ ...opts, adoptFlannel: 'no' }).adoption).toBeUndefined();
  });
});
