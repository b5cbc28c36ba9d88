import { describe, expect, it } from 'vitest';
import { staleOverlayDevices } from '../../../src/backends/stale-devices.js';
import type { Link } from '../../../src/kernel/links.js';

const link = (name: string, kind?: string): Link => ({ index: 1, name, mtu: 1450, mac: '02:00:00:00:00:01', up: true, ...(kind ? { kind } : {}) });

describe('staleOverlayDevices', () => {
  const links = [link('lo'), link('eth0', 'veth'), link('weft.1', 'vxlan'), link('weft.42', 'vxlan'), link('weft.7', 'bridge'), link('flannel.1', 'vxlan'), link('weft.x', 'vxlan')];

  it('names weft.<VNI> vxlan devices the running backend does not use', () => {
    expect(staleOverlayDevices(links, undefined)).toEqual(['weft.1', 'weft.42']);
    expect(staleOverlayDevices(links, 'weft.42')).toEqual(['weft.1']);
  });

  it('leaves links of another kind, another prefix or another name shape alone', () => {
    expect(staleOverlayDevices([link('weft.7', 'bridge'), link('flannel.1', 'vxlan'), link('weft.x', 'vxlan'), link('weft0', 'tun')], undefined)).toEqual([]);
  });

  it("also covers the running device's own custom prefix, but no other", () => {
    const more = [...links, link('ovl.3', 'vxlan'), link('ovl.9', 'vxlan'), link('other.3', 'vxlan')];
    expect(staleOverlayDevices(more, 'ovl.9')).toEqual(['weft.1', 'weft.42', 'ovl.3']);
    expect(staleOverlayDevices(more, undefined)).toEqual(['weft.1', 'weft.42']);
  });
});
