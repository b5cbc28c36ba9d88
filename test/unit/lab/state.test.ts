import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkState, readState, statePath, writeState, type LabState } from '../../../src/lab/state.js';
import { prefixEnd } from '../../../src/lab/etcd.js';
import { labNetworkConfig } from '../../../src/lab/lab.js';

const sample = (id: string): LabState => ({
  version: 1,
  id,
  createdAt: '2024-01-01T00:00:00.000Z',
  phase: 'creating',
  backend: 'host-gw',
  network: '10.244.0.0/16',
  weftdArgs: [],
  startWeftd: false,
  attacher: 'manual',
  etcd: { endpoint: 'http://192.0.2.254:2379', dataDir: '/x' },
  switchNetns: `${id}-sw`,
  switchBridge: `${id}-br`,
  namespaces: [`${id}-sw`],
  processes: [{ key: 'etcd', netns: `${id}-sw`, pid: 77, startTime: 1234, argv: ['etcd'], log: '/x/etcd.log' }],
  hosts: [],
  spawned: 0,
});

describe('lab state file', () => {
  let dir: string;
  const saved = process.env.WEFT_LAB_RUN_DIR;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-lab-unit-'));
    process.env.WEFT_LAB_RUN_DIR = dir;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.WEFT_LAB_RUN_DIR;
    else process.env.WEFT_LAB_RUN_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('round-trips through the file under <root>/<id>/state.json', () => {
    writeState(sample('s1'));
    expect(statePath('s1')).toBe(join(dir, 's1', 'state.json'));
    expect(readState('s1')).toEqual(sample('s1'));
    expect(readState('nosuch')).toBeUndefined();
  });

  it('refuses state that down could not act on safely', () => {
    expect(() => checkState({ ...sample('a'), version: 2 })).toThrow(expect.objectContaining({ code: 'ERR_LAB_STATE' }));
    const noStart = { ...sample('a'), processes: [{ key: 'etcd', pid: 5 }] };
    expect(() => checkState(noStart)).toThrow(expect.objectContaining({ code: 'ERR_LAB_STATE' }));
    mkdirSync(join(dir, 'bad'), { recursive: true });
    writeFileSync(join(dir, 'bad', 'state.json'), '{not json');
    expect(() => readState('bad')).toThrow(expect.objectContaining({ code: 'ERR_LAB_STATE' }));
  });
});

describe('etcd helpers', () => {
  it('computes the range end of a key prefix', () => {
    expect(Buffer.from(prefixEnd('/coreos.com/network/subnets/'), 'base64').toString()).toBe('/coreos.com/network/subnets0');
    expect(Buffer.from(prefixEnd('a'), 'base64').toString()).toBe('b');
  });

  it('writes flannel network config JSON', () => {
    expect(JSON.parse(labNetworkConfig('10.244.0.0/16', 'vxlan'))).toEqual({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
  });
});
