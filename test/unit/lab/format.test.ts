import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../../src/lab/format.js';
import type { LabStatus } from '../../../src/lab/lab.js';

const status: LabStatus = {
  id: 'demo',
  etcd: 'http://192.0.2.254:2379',
  backend: 'host-gw',
  network: '10.244.0.0/16',
  phase: 'ready',
  etcdRunning: true,
  hosts: [
    {
      name: 'h1',
      netns: 'demo-h1',
      underlayIp: '192.0.2.1',
      subnet: '10.244.7.0/24',
      mtu: 1500,
      weftd: { pid: 321, running: false },
      pods: [{ name: 'h1-p1', ip: '10.244.7.2', netns: 'demo-h1-p1' }],
    },
  ],
};

describe('lab status table', () => {
  it('shows every host and pod with subnet, address and weftd state', () => {
    expect(formatStatus(status)).toBe(
      [
        'lab demo (ready)  backend host-gw  network 10.244.0.0/16  etcd http://192.0.2.254:2379 running',
        'NAME     NETNS       ADDRESS     SUBNET         MTU   WEFTD',
        'h1       demo-h1     192.0.2.1   10.244.7.0/24  1500  pid 321 STOPPED',
        '  h1-p1  demo-h1-p1  10.244.7.2',
        '',
      ].join('\n'),
    );
  });
});
