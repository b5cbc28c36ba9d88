import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel } from '../../src/kernel/kernel.js';
import { selectInterface } from '../../src/kernel/iface.js';
import { kernelConformance } from '../helpers/kernel-conformance.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

describe.skipIf(!isRoot)('kernel adapters against the real kernel', () => {
  const sb = new NetnsSandbox();
  let peer: string;
  let count = 0;
  let current: string | undefined;

  beforeAll(async () => {
    peer = await sb.create('peer');
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  // Each case gets a fresh namespace with eth0 = 192.0.2.1/24 (veth to `peer`).
  kernelConformance(
    async () => {
      current = await sb.create(`k${count++}`);
      await sb.link({ ns: current, ifname: 'eth0', cidr: '192.0.2.1/24' }, { ns: peer, ifname: `p${count}`, cidr: undefined });
      return createKernel({ netns: current });
    },
    async () => {
      if (current) await sb.exec(current, 'ip', ['link', 'del', 'eth0'], true);
    },
  );

  it('selectInterface finds eth0 by name and by IP inside a namespace', async () => {
    const ns = await sb.create('iface');
    await sb.link({ ns, ifname: 'eth0', cidr: '192.0.2.3/24' }, { ns: peer, ifname: 'pif' });
    const k = createKernel({ netns: ns });
    expect(await selectInterface({ ifaces: ['eth0'] }, k)).toMatchObject({ name: 'eth0', ifaceAddr: '192.0.2.3', mtu: 1500 });
    expect(await selectInterface({ ifaces: ['192.0.2.3'], publicIp: '192.0.2.33' }, k)).toMatchObject({ publicIp: '192.0.2.33' });
    await expect(selectInterface({}, k)).rejects.toMatchObject({ code: 'ERR_INTERFACE_NOT_FOUND' });
  });
});
