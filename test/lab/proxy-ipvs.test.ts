import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { waitFor } from '../../src/core/async.js';
import { errorMessage } from '../../src/core/errors.js';
import { run } from '../../src/exec/run.js';
import { ExecIptables } from '../../src/netfilter/iptables.js';
import { ExecIpset } from '../../src/proxy/ipvs/clients.js';
import { checkIpvsKernel } from '../../src/proxy/ipvs/kernel.js';
import { planIpvs } from '../../src/proxy/ipvs/plan.js';
import { removeIpvsLeftovers } from '../../src/proxy/ipvs/proxier.js';
import { renderIpsets, renderIpvsIptables } from '../../src/proxy/ipvs/render.js';
import { ProxyModel } from '../../src/proxy/model/model.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';
import { ep, slice, svc } from '../unit/proxy/fixtures.js';

/** Why ipvs end-to-end tests cannot run here ('' when they can): the same message weft-proxy exits with. */
const missing = isRoot ? await checkIpvsKernel().then(() => '', (err: unknown) => errorMessage(err)) : 'needs root';
const CFG = { nodeName: 'node-a', clusterCIDR: '10.244.0.0/16', nodeIPs: ['192.0.2.1'] };

describe.skipIf(!isRoot)('ipvs mode: the parts this kernel has (ipsets, iptables rules) and the refusal', () => {
  const sb = new NetnsSandbox();
  let ns: string;
  beforeAll(async () => {
    ns = await sb.create('pipvs');
  });
  afterAll(() => sb.cleanup());

  it('ipset restore and the iptables rules are accepted by the kernel, and removed again', async () => {
    const m = new ProxyModel();
    m.upsert(svc('web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, nodePort: 30080 }], loadBalancerSourceRanges: ['198.51.100.0/24'] }, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.60' }] } } }));
    m.upsert(slice('web', [ep('10.244.1.2'), ep('10.244.2.2', 'node-b')]));
    m.applyChanges();
    const plan = planIpvs(m.servicePorts.values(), (k) => m.endpoints.get(k), CFG);
    const ipset = new ExecIpset(ns);
    const ipt = new ExecIptables('nft', ns);
    await ipset.restore(renderIpsets(plan.ipsets));
    await ipset.restore(renderIpsets(plan.ipsets)); // idempotent: swap through a temporary set
    await ipt.restore(renderIpvsIptables(CFG));
    expect((await run('ipset', ['list', 'WEFT-LOAD-BALANCER-SOURCE-CIDR'], { netns: ns })).stdout).toContain('192.0.2.60,tcp:80,198.51.100.0/24');
    expect(await ipt.save('nat')).toMatch(/-A PREROUTING -j WEFT-IPVS-SERVICES/);
    await removeIpvsLeftovers({ ipt, ipset });
    expect(await ipt.save('nat')).not.toContain('WEFT-IPVS');
    expect(await ipset.list()).toEqual([]);
  });

  it.skipIf(!missing)('weft-proxy --proxy-mode ipvs exits at start naming the missing kernel feature and the modprobe', async () => {
    const r = await run(process.execPath, ['dist/cli/weft-proxy.js', '--proxy-mode', 'ipvs', '--etcd-endpoints', '', '--manifests', '/nonexistent', '--healthz-bind-address', '', '--metrics-bind-address', ''], { netns: ns, allowFail: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_KERNEL_FEATURE');
    expect(r.stderr).toContain('IP_VS');
    expect(r.stderr).toContain('modprobe ip_vs');
  });
});

// The packet-level ipvs suite needs IP_VS and dummy links; on kernels without them it is skipped with the daemon's message.
describe.skipIf(!isRoot || !!missing)(`ipvs mode end to end${missing ? ` - skipped: ${missing}` : ''}`, () => {
  const sb = new NetnsSandbox();
  let dir = '';
  afterAll(async () => {
    await sb.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a ClusterIP answers from its endpoint through an ipvs virtual server', async () => {
    const node = await sb.create('ivnode');
    const pod = await sb.create('ivpod');
    await sb.link({ ns: pod, ifname: 'eth0', cidr: '10.244.1.2/24' }, { ns: node, ifname: 'pod1', cidr: '10.244.1.1/24' });
    await run('ip', ['-n', pod, 'route', 'add', 'default', 'via', '10.244.1.1']);
    dir = mkdtempSync(join(tmpdir(), 'weft-ipvs-e2e-'));
    writeFileSync(join(dir, 'svc.yaml'), [svc('web'), slice('web', [ep('10.244.1.2')])].map((o) => stringify(o)).join('---\n'));
    spawn('ip', ['netns', 'exec', pod, process.execPath, '-e', "require('http').createServer((q,s)=>s.end('pod\\n')).listen(8080)"], { stdio: 'ignore' }).unref();
    spawn('ip', ['netns', 'exec', node, process.execPath, 'dist/cli/weft-proxy.js', '--proxy-mode', 'ipvs', '--etcd-endpoints', '', '--manifests', dir, '--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16', '--min-sync-period', '100ms'], { stdio: 'ignore' }).unref();
    await waitFor(async () => (await run('curl', ['-s', '--max-time', '1', 'http://10.96.0.10/'], { netns: node, allowFail: true })).stdout === 'pod\n', { what: 'ClusterIP via ipvs', timeoutMs: 20_000 });
  });
});
