import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../../src/core/ip.js';
import { bridgeLines, manualPodIp, type PodAttachRequest } from '../../../src/lab/attacher.js';
import { CniAttacher } from '../../../src/lab/cni-attacher.js';

const req: PodAttachRequest = {
  labId: 'demo',
  hostNetns: 'demo-h2',
  podNetns: 'demo-h2-p3',
  podName: 'h2-p3',
  index: 3,
  hostVeth: 'demo-p3',
  subnet: parseCidr('10.244.7.0/24'),
  mtu: 1450,
  subnetFile: '/run/weft-lab/demo/h2/subnet.env',
  workDir: '/run/weft-lab/demo/h2',
};

describe('pod attachers', () => {
  it('manual: pod K gets .(1+K), the bridge holds .1 with the subnet MTU', () => {
    expect(manualPodIp(req.subnet, 3)).toBe('10.244.7.4');
    expect(bridgeLines(req.subnet, 1450)).toEqual(['addr replace 10.244.7.1/24 dev weft0', 'link set weft0 mtu 1450 up']);
  });

  it('cni: runs the plugin for the pod netns with the host subnet.env and lab-local IPAM state', () => {
    const a = new CniAttacher({ plugin: '/opt/cni/bin/weft', conf: { hairpinMode: false } });
    expect(a.confFor(req)).toEqual({
      cniVersion: '1.0.0',
      name: 'weft',
      type: 'weft',
      subnetFile: '/run/weft-lab/demo/h2/subnet.env',
      dataDir: '/run/weft-lab/demo/h2/cni-networks',
      hairpinMode: false,
    });
    expect(a.envFor('ADD', req)).toMatchObject({
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'demo-h2-p3',
      CNI_NETNS: '/run/netns/demo-h2-p3',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/opt/cni/bin',
    });
    expect(() => new CniAttacher({ plugin: '' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
