import { describe, expect, it } from 'vitest';
import { etcdArgv } from '../../../src/lab/etcd.js';
import { labEnv } from '../../../src/lab/common.js';
import { weftdArgv, weftdPaths } from '../../../src/lab/weftd.js';
import { nodeFlagsFor } from '../../../src/cli/node-flags.js';

describe('lab process command lines', () => {
  it('starts weftd with flannel flag names, the lab files, and extra args last', () => {
    const argv = weftdArgv(weftdPaths('/run/weft-lab/x/h2'), { subnetLeaseTtl: 10, extra: ['--log-level', 'debug'] });
    // node, the daemon's V8 flags (a small young generation keeps its RSS down), the script, then flags.
    const flags = nodeFlagsFor('weftd');
    expect(flags).toContain('--max-semi-space-size=1');
    expect(argv.slice(0, 1 + flags.length)).toEqual([process.execPath, ...flags]);
    expect(argv[1 + flags.length]).toMatch(/weftd\.js$/);
    expect(argv.slice(2 + flags.length)).toEqual([
      '--etcd-endpoints', 'http://192.0.2.254:2379',
      '--iface', 'eth0',
      '--subnet-file', '/run/weft-lab/x/h2/subnet.env',
      '--state-dir', '/run/weft-lab/x/h2/state',
      '--ip-masq',
      '--cni-socket', '/run/weft-lab/x/h2/cni.sock',
      '--subnet-lease-ttl', '10',
      '--log-level', 'debug',
    ]);
    expect(weftdArgv(weftdPaths('/d'), {})).not.toContain('--subnet-lease-ttl');
  });

  it('runs etcd on the underlay for clients and on the switch loopback for peers', () => {
    const argv = etcdArgv('x', '/run/weft-lab/x/etcd');
    const flag = (f: string) => argv[argv.indexOf(f) + 1];
    expect(flag('--listen-client-urls')).toBe('http://192.0.2.254:2379,http://127.0.0.1:2379');
    expect(flag('--listen-peer-urls')).toBe('http://127.0.0.1:2380');
    expect(flag('--data-dir')).toBe('/run/weft-lab/x/etcd');
  });

  it('does not pass ETCD_* or WEFTD_* variables of the caller on', () => {
    expect(labEnv({ PATH: '/bin', ETCD_NAME: 'x', WEFTD_IFACE: 'wlan0', HOME: '/root' })).toEqual({ PATH: '/bin', HOME: '/root' });
  });
});
