import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/core/log.js';
import {
  VxlanPeerFilter,
  parseFilterCounter,
  peerAddress,
  peerFilterRule,
  renderPeerFilter,
} from '../../../src/backends/vxlan/peer-filter.js';
import { FakeNft } from '../../../src/netfilter/nft-fake.js';
import { FILTER_NFT_CASES, fakeSetElements } from '../../helpers/vxlan-filter-cases.js';

const logged = () => {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: 'debug', write: (l) => lines.push(l) }) };
};

describe('peerAddress validates peer PublicIPs from etcd', () => {
  it('accepts unicast IPv4 in canonical form', () => {
    expect(peerAddress('192.0.2.7')).toEqual({ ok: true, addr: '192.0.2.7' });
    expect(peerAddress('010.1.2.3')).toEqual({ ok: true, addr: '10.1.2.3' });
  });
  it.each([
    ['', 'not an IPv4'],
    ['192.0.2.300', 'not an IPv4'],
    ['192.0.2.1 }; flush ruleset; add element ip x y {', 'not an IPv4'],
    ['example.com', 'not an IPv4'],
    ['0.0.0.0', '0.0.0.0/8'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['127.0.0.1', 'loopback'],
  ])('refuses %j', (v, why) => {
    const r = peerAddress(v);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.reason).toContain(why);
  });
  it('refuses non-strings', () => {
    expect(peerAddress(null).ok).toBe(false);
    expect(peerAddress(3232235777).ok).toBe(false);
  });
});

describe('rendering', () => {
  it('refuses a port outside 1..65535', () => {
    expect(() => peerFilterRule(0)).toThrow(/port/);
    expect(() => renderPeerFilter(70000, [], false)).toThrow(/port/);
  });
  it('reads the counter of the rule as nft prints it, and only of our rule', () => {
    expect(parseFilterCounter(['udp dport 8472 ip saddr != @peers counter packets 7 bytes 658 drop'], 8472)).toEqual({ packets: 7, bytes: 658 });
    expect(parseFilterCounter(['udp dport 8472 ip saddr != @peers counter drop'], 8472)).toEqual({ packets: 0, bytes: 0 });
    expect(parseFilterCounter(['udp dport 4789 ip saddr != @peers counter packets 7 bytes 658 drop'], 8472)).toBeUndefined();
    expect(parseFilterCounter(['udp dport 8472 counter packets 7 bytes 658 drop'], 8472)).toBeUndefined();
  });
});

describe('FakeNft accepts and refuses the filter transactions as nft does', () => {
  it.each(FILTER_NFT_CASES.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const nft = new FakeNft();
    for (const b of c.before) await nft.apply(b);
    const before = nft.dump();
    const r = await nft.apply(c.text).then(
      () => 'ok',
      (e: { code?: string }) => e.code,
    );
    expect(r).toBe(c.ok ? 'ok' : 'ERR_NFT');
    if (!c.ok) expect(nft.dump()).toBe(before);
  });
});

describe('VxlanPeerFilter', () => {
  it('installs table, set and counted drop rule; then only replaces the set when peers change', async () => {
    const nft = new FakeNft();
    const { log } = logged();
    const f = new VxlanPeerFilter(nft, 8472, log);
    expect(await f.sync(['192.0.2.3', '192.0.2.2', '192.0.2.2'])).toBe(true);
    expect(await nft.listChain('ip', 'weft-vxlan', 'input')).toEqual(['udp dport 8472 ip saddr != @peers counter drop']);
    expect(fakeSetElements(nft.dump())).toEqual(['192.0.2.2', '192.0.2.3']);
    expect(f.stats.peers).toBe(2);
    const n = nft.applied.length;
    expect(await f.sync(['192.0.2.2', '192.0.2.3'])).toBe(false);
    expect(nft.applied.length).toBe(n);
    expect(await f.sync(['192.0.2.4'])).toBe(true);
    expect(nft.applied.at(-1)).toBe('flush set ip weft-vxlan peers\nadd element ip weft-vxlan peers { 192.0.2.4 }\n');
    expect(fakeSetElements(nft.dump())).toEqual(['192.0.2.4']);
    await f.sync([]);
    expect(fakeSetElements(nft.dump())).toEqual([]);
    expect(await nft.listChain('ip', 'weft-vxlan', 'input')).toHaveLength(1);
  });

  it('leaves invalid addresses out with one log line each; never pastes them into nft text', async () => {
    const nft = new FakeNft();
    const { log, lines } = logged();
    const f = new VxlanPeerFilter(nft, 8472, log);
    const evil = '192.0.2.9 }; flush ruleset; add element ip weft-vxlan peers { 6.6.6.6';
    await f.sync(['192.0.2.2', evil, '0.0.0.0']);
    await f.sync(['192.0.2.2', evil, '0.0.0.0']);
    expect(fakeSetElements(nft.dump())).toEqual(['192.0.2.2']);
    expect(nft.applied.join('')).not.toContain('flush ruleset');
    expect(lines.filter((l) => l.includes('peer address left out of the vxlan peer filter'))).toHaveLength(2);
  });

  it('rewrites a table that vanished or was altered, and counts the repair', async () => {
    const nft = new FakeNft();
    const f = new VxlanPeerFilter(nft, 8472, logged().log);
    await f.sync(['192.0.2.2']);
    nft.flushRuleset();
    expect(await f.sync(['192.0.2.2'])).toBe(true);
    expect(fakeSetElements(nft.dump())).toEqual(['192.0.2.2']);
    await nft.apply('add rule ip weft-vxlan input accept\n');
    await f.sync(['192.0.2.2']);
    expect(await nft.listChain('ip', 'weft-vxlan', 'input')).toEqual(['udp dport 8472 ip saddr != @peers counter drop']);
    expect(f.stats.repairs).toBe(2);
    // Another port (config changed): rewritten for the new one.
    const other = new VxlanPeerFilter(nft, 4789, logged().log);
    await other.sync(['192.0.2.2']);
    expect(await nft.listChain('ip', 'weft-vxlan', 'input')).toEqual(['udp dport 4789 ip saddr != @peers counter drop']);
  });

  it('exports its counters and removes its table', async () => {
    const nft = new FakeNft();
    const f = new VxlanPeerFilter(nft, 8472, logged().log);
    await f.sync(['192.0.2.2']);
    const names = f.metrics().map((m) => m.name);
    expect(names).toContain('weft_vxlan_peer_filter_dropped_packets_total');
    expect(f.metrics().find((m) => m.name === 'weft_vxlan_peer_filter_peers')!.value).toBe(1);
    await f.remove();
    expect(await nft.listTable('ip', 'weft-vxlan')).toBeUndefined();
  });
});

describe('VxlanPeerFilter self-repair of the set', () => {
  it('rewrites an unchanged set every refreshEvery syncs, so a set emptied by hand comes back', async () => {
    const nft = new FakeNft();
    const f = new VxlanPeerFilter(nft, 8472, logged().log, 3);
    await f.sync(['192.0.2.2']);
    await nft.apply('flush set ip weft-vxlan peers\n');
    expect(await f.sync(['192.0.2.2'])).toBe(false);
    expect(fakeSetElements(nft.dump())).toEqual([]);
    expect(await f.sync(['192.0.2.2'])).toBe(false);
    expect(await f.sync(['192.0.2.2'])).toBe(true);
    expect(fakeSetElements(nft.dump())).toEqual(['192.0.2.2']);
  });
});
