import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labEtcd, labExec, labUp } from '../../src/lab/index.js';
import { weftdScript } from '../../src/lab/weftd.js';
import { uniqueLabId } from '../helpers/lab.js';
import { isRoot } from '../helpers/netns.js';

const id = uniqueLabId('cf');

/** Runs weftd once on h1 against whatever config the lab's etcd holds. */
async function weftdOnce(): Promise<{ code: number | null; stderr: string }> {
  const r = await labExec(
    id,
    'h1',
    [process.execPath, weftdScript(), '--etcd-endpoints', 'http://192.0.2.254:2379', '--iface', 'eth0',
      '--subnet-file', `/run/weft-lab/${id}/h1/subnet.env`, '--state-dir', `/run/weft-lab/${id}/h1/state`, '--healthz-port', '0'],
    { allowFail: true, timeoutMs: 30_000 },
  );
  return { code: r.code, stderr: r.stderr };
}

describe.skipIf(!isRoot)('weftd refuses a bad network config', () => {
  beforeAll(async () => {
    await labUp({ id, hosts: 1, podsPerHost: 0, backend: 'host-gw', startWeftd: false });
  });
  afterAll(async () => {
    await labDown(id);
  });

  const cases: Array<[string, string, RegExp]> = [
    ['Network not a CIDR', '{"Network":"10.244.0.0/33","Backend":{"Type":"host-gw"}}', /Network/],
    ['SubnetLen out of range', '{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"host-gw"}}', /SubnetLen/],
    ['unknown backend', '{"Network":"10.244.0.0/16","Backend":{"Type":"carrier-pigeon"}}', /Backend\.Type/],
    ['SubnetMin above SubnetMax', '{"Network":"10.244.0.0/16","SubnetMin":"10.244.200.0","SubnetMax":"10.244.100.0","Backend":{"Type":"host-gw"}}', /SubnetM(in|ax)/],
    ['not JSON', '{"Network":', /JSON|config/i],
  ];
  for (const [what, config, field] of cases) {
    it(`exits non-zero naming the field: ${what}`, async () => {
      await labEtcd(id).put('/coreos.com/network/config', config);
      const r = await weftdOnce();
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/ERR_CONFIG/);
      expect(r.stderr).toMatch(field);
    });
  }
});
