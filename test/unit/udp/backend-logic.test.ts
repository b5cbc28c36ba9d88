import { describe, expect, it } from 'vitest';
import { parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import type { Lease } from '../../../src/store/types.js';
import { parseUdpConfig, resolveUdpOptions, udpMtu } from '../../../src/backends/udp/config.js';
import { renderSamples, udpMetrics } from '../../../src/backends/udp/metrics.js';
import { diffPeers, planPeers } from '../../../src/backends/udp/peers.js';
import { packageRoot, ADDON_RELATIVE_PATH } from '../../../src/backends/udp/native.js';
import { backendTypes } from '../../../src/backends/backend.js';
import '../../../src/backends/udp/index.js';

const lease = (subnet: string, publicIp: string, type = 'udp'): Lease => ({
  subnet: parseCidr(subnet),
  attrs: { PublicIP: publicIp, BackendType: type },
});

describe('udp config', () => {
  it('defaults Port to 8285 and reads it case-insensitively', () => {
    expect(parseUdpConfig({ type: 'udp', raw: { Type: 'udp' } }).port).toBe(8285);
    expect(parseUdpConfig({ type: 'udp', raw: { Type: 'udp', Port: 0 } }).port).toBe(8285);
    expect(parseUdpConfig({ type: 'udp', raw: { type: 'udp', port: 9000 } }).port).toBe(9000);
  });

  it.each([70000, -1, 1.5, '8285'])('rejects Port %s with ERR_CONFIG', (port) => {
    try {
      parseUdpConfig({ type: 'udp', raw: { Type: 'udp', Port: port } });
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe('ERR_CONFIG');
    }
  });

  it('computes the TUN MTU as iface MTU - 28', () => {
    expect(udpMtu(1500)).toBe(1472);
    expect(udpMtu(9000)).toBe(8972);
    expect(() => udpMtu(90)).toThrow();
  });

  it('validates local options', () => {
    expect(resolveUdpOptions().tunName).toBe('weft-udp');
    expect(() => resolveUdpOptions({ tunName: 'a-name-longer-than-15' })).toThrow(/tunName/);
    expect(() => resolveUdpOptions({ tunName: 'bad/name' })).toThrow(/tunName/);
    expect(() => resolveUdpOptions({ batch: 0 })).toThrow(/batch/);
  });

  it('registers backend type "udp" without loading the addon', () => {
    expect(backendTypes()).toContain('udp');
  });

  it('finds the package root for the addon path', () => {
    expect(ADDON_RELATIVE_PATH).toBe('native/build/Release/weft_native.node');
    expect(packageRoot()).toMatch(/\/work\/main$|[^/]+$/);
  });
});

describe('udp peer plan', () => {
  const own = lease('10.244.1.0/24', '192.0.2.1');

  it('keeps udp leases of other hosts, sorted, and says why others are skipped', () => {
    const plan = planPeers(
      [
        lease('10.244.3.0/24', '192.0.2.3'),
        own,
        lease('10.244.2.0/24', '192.0.2.2'),
        lease('10.244.4.0/24', '192.0.2.4', 'vxlan'),
        lease('10.244.5.0/24', 'not-an-ip'),
      ],
      own,
      8285,
    );
    expect(plan.peers).toEqual([
      { net: parseIPv4('10.244.2.0'), prefixLen: 24, ip: parseIPv4('192.0.2.2'), port: 8285 },
      { net: parseIPv4('10.244.3.0'), prefixLen: 24, ip: parseIPv4('192.0.2.3'), port: 8285 },
    ]);
    expect(plan.skipped.map((s) => s.reason)).toEqual(['own subnet', 'backend vxlan', 'bad PublicIP "not-an-ip"']);
  });

  it("takes flanneld's udp leases (no BackendType, read as '') as peers", () => {
    const plan = planPeers([lease('10.244.3.0/24', '192.0.2.3', ''), lease('10.244.4.0/24', '192.0.2.4', 'host-gw')], own, 8285);
    expect(plan.peers).toEqual([{ net: parseIPv4('10.244.3.0'), prefixLen: 24, ip: parseIPv4('192.0.2.3'), port: 8285 }]);
    expect(plan.skipped.map((s) => s.reason)).toEqual(['backend host-gw']);
  });

  it('keeps one entry per subnet (the last lease wins)', () => {
    const plan = planPeers([lease('10.244.2.0/24', '192.0.2.2'), lease('10.244.2.0/24', '192.0.2.22')], own, 8285);
    expect(plan.peers).toHaveLength(1);
    expect(plan.peers[0]!.ip).toBe(parseIPv4('192.0.2.22'));
  });

  it('counts added, removed and changed entries', () => {
    const a = planPeers([lease('10.244.2.0/24', '192.0.2.2'), lease('10.244.3.0/24', '192.0.2.3')], own, 8285).peers;
    const b = planPeers([lease('10.244.2.0/24', '192.0.2.20'), lease('10.244.4.0/24', '192.0.2.4')], own, 8285).peers;
    expect(diffPeers(a, a)).toEqual({ added: 0, removed: 0 });
    expect(diffPeers(a, b)).toEqual({ added: 2, removed: 2 });
    expect(diffPeers([], a)).toEqual({ added: 2, removed: 0 });
  });
});

describe('udp metrics', () => {
  it('renders counters, per-reason drops and the peer gauge', () => {
    const samples = udpMetrics(
      {
        counters: { udp_sent_packets: 5, tun_write_packets: 3 },
        rxDrops: { unknown_peer: 2, spoofed_source: 1 },
        txDrops: { no_route: 4 },
      },
      2,
    );
    const text = renderSamples(samples);
    expect(text).toContain('weft_udp_udp_sent_packets_total 5');
    expect(text).toContain('weft_udp_dropped_packets_total{direction="rx",reason="unknown_peer"} 2');
    expect(text).toContain('weft_udp_dropped_packets_total{direction="tx",reason="no_route"} 4');
    expect(text).toContain('weft_udp_peers 2');
    expect(text.match(/# TYPE weft_udp_dropped_packets_total counter/g)).toHaveLength(1);
  });
});
