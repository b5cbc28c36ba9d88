import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { contains, parseCidr, parseIPv4 } from '../../src/core/ip.js';
import { CniAttacher, labDown, labExec, labUp, topologyFromLab, verifyPing } from '../../src/lab/index.js';
import { repoRoot } from '../../src/lab/weftd.js';
import { isRoot } from '../helpers/netns.js';
import { netnsOf, uniqueLabId } from '../helpers/lab-util.js';

// The weft CNI plugin as built by tsc; the lab swaps it in for the manual attacher.
const plugin = join(repoRoot, 'dist/cni/main.js');

describe.skipIf(!isRoot || !existsSync(plugin))('lab pods attached by the weft CNI plugin', () => {
  const id = uniqueLabId('cn');
  afterAll(async () => {
    await labDown(id);
  });

  it('gives each pod an address in its host subnet, reachable across hosts, with IPAM state inside the lab dir', async () => {
    const st = await labUp({ id, hosts: 2, podsPerHost: 1, startWeftd: false, attacher: new CniAttacher({ plugin }) });
    for (const h of st.hosts) {
      for (const p of h.pods) expect(contains(parseCidr(h.subnet!), parseIPv4(p.ip!))).toBe(true);
    }
    const eth0 = await labExec(id, 'h1-p1', ['ip', '-o', '-4', 'addr', 'show', 'eth0']);
    expect(eth0.stdout).toContain(st.hosts[0]!.pods[0]!.ip!);
    const checks = await verifyPing(topologyFromLab(id), { count: 1 });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    await labDown(id);
    expect(await netnsOf(id)).toEqual([]);
  });
});
