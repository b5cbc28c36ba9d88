import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { join } from 'node:path';
import { run } from '../../src/exec/run.js';
import { labDown, labExec, labSpawn, labStatus, labUp, labServePods, topologyFromLab, verifyCurl, verifyPing, type LabStatus } from '../../src/lab/index.js';
import { repoRoot } from '../../src/lab/weftd.js';
import { labDir, readState } from '../../src/lab/state.js';
import { isRoot } from '../helpers/netns.js';
import { netnsOf, pidAlive, rootTraces, uniqueLabId } from '../helpers/lab-util.js';

// The development fallback (no weftd): subnets and host-gw routes set by the lab itself.
describe.skipIf(!isRoot)('lab up / status / exec / down', () => {
  const id = uniqueLabId('lc');
  let st: LabStatus;
  let rootBefore: string[];

  beforeAll(async () => {
    rootBefore = await rootTraces(id);
    st = await labUp({ id, hosts: 2, podsPerHost: 2, startWeftd: false });
  });
  afterAll(async () => {
    await labDown(id);
  });

  it('reports the status JSON shape with one subnet per host and pod addresses inside it', () => {
    const s = labStatus(id);
    expect(s).toMatchObject({ id, etcd: 'http://192.0.2.254:2379', phase: 'ready', etcdRunning: true });
    expect(s.hosts.map((h) => [h.name, h.underlayIp, h.subnet])).toEqual([
      ['h1', '192.0.2.1', '10.244.1.0/24'],
      ['h2', '192.0.2.2', '10.244.2.0/24'],
    ]);
    expect(s.hosts[1]!.pods).toEqual([
      { name: 'h2-p1', ip: '10.244.2.2', netns: `${id}-h2-p1` },
      { name: 'h2-p2', ip: '10.244.2.3', netns: `${id}-h2-p2` },
    ]);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  it('runs commands in hosts and pods, passing exit codes through', async () => {
    const r = await labExec(id, 'h1', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(r.stdout).toContain('192.0.2.1/24');
    const fail = await labExec(id, 'h2-p1', ['sh', '-c', 'exit 3'], { allowFail: true });
    expect(fail.code).toBe(3);
    await expect(labExec(id, 'h9', ['true'])).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('a pod reaches a pod on the other host and the etcd on the switch', async () => {
    const ping = await labExec(id, 'h1-p1', ['ping', '-c', '1', '-W', '2', st.hosts[1]!.pods[1]!.ip!], { allowFail: true });
    expect(ping.stdout).toContain('1 received');
    const etcd = await labExec(id, 'h2', ['curl', '-sS', '--max-time', '3', 'http://192.0.2.254:2379/health']);
    expect(etcd.stdout).toContain('true');
  });

  it('verify-ping passes across the lab and fails for an address nobody holds', async () => {
    const topo = topologyFromLab(id);
    const checks = await verifyPing(topo, { count: 1 });
    expect(checks).toHaveLength(12);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    topo.pods = [topo.pods[0]!, { name: 'ghost', ip: '10.244.2.99' }];
    const bad = await verifyPing(topo, { count: 1, timeoutSec: 1 });
    expect(bad.map((c) => [c.to, c.ok])).toEqual([['ghost', false]]);
  });

  it('verify-curl reaches the pod HTTP servers from every pod and a port on every host from the switch', async () => {
    const served = await labServePods(id, { port: 8080 });
    expect(served.map((s) => s.pod)).toEqual(['h1-p1', 'h1-p2', 'h2-p1', 'h2-p2']);
    const serve = (name: string, port: number) => [process.execPath, '-e', `require('http').createServer((q, s) => s.end('${name}\\n')).listen(${port})`];
    for (const h of ['h1', 'h2']) await labSpawn(id, h, serve(`node-${h}`, 30080));
    await waitFor(async () => (await labExec(id, 'sw', ['curl', '-s', '--max-time', '1', 'http://192.0.2.2:30080/'], { allowFail: true })).code === 0, {
      timeoutMs: 10_000,
      what: 'host server',
    });
    const target = `${st.hosts[1]!.pods[1]!.ip}:8080`;
    const checks = await verifyCurl(topologyFromLab(id), { clusterIp: target, nodePort: 30080, expect: '-' });
    expect(checks.map((c) => [c.kind, c.from, c.to, c.ok])).toEqual([
      ['clusterip', 'h1-p1', 'service', true],
      ['clusterip', 'h1-p2', 'service', true],
      ['clusterip', 'h2-p1', 'service', true],
      ['clusterip', 'h2-p2', 'service', true],
      ['nodeport', 'switch', 'h1', true],
      ['nodeport', 'switch', 'h2', true],
    ]);
    expect(checks[0]!.answer).toBe(`h2-p2 ${st.hosts[1]!.pods[1]!.ip}`);
    expect(checks[5]!.answer).toBe('node-h2');
    const refused = await verifyCurl(topologyFromLab(id), { clusterIp: `${st.hosts[0]!.pods[0]!.ip}:8081`, timeoutSec: 1 });
    expect(refused.every((c) => !c.ok)).toBe(true);
  });

  it.skipIf(!existsSync(join(repoRoot, 'dist/lab/verify.js')))('scripts/verify-ping exits 0 for the lab and 1 with a dead target', async () => {
    const script = join(repoRoot, 'scripts/verify-ping');
    const ok = await run(script, ['--lab', id, '--count', '1'], { allowFail: true });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('all 12 checks passed');
    const bad = await run(script, ['--lab', id, '--count', '1', '--timeout', '1', '--pod', 'ghost=10.244.2.99'], { allowFail: true });
    expect(bad.code).toBe(1);
  });

  it.skipIf(!existsSync(join(repoRoot, 'dist/cli/weftctl.js')))('weftctl lab status --json and lab exec work from the CLI', async () => {
    const cli = join(repoRoot, 'dist/cli/weftctl.js');
    const status = await run(process.execPath, [cli, 'lab', 'status', '--id', id, '--json']);
    expect(JSON.parse(status.stdout)).toEqual(JSON.parse(JSON.stringify(labStatus(id))));
    const exit7 = await run(process.execPath, [cli, 'lab', 'exec', '--id', id, 'h2-p2', '--', 'sh', '-c', 'exit 7'], { allowFail: true });
    expect(exit7.code).toBe(7);
    const ip = await run(process.execPath, [cli, 'lab', 'exec', '--id', id, 'h1', '--', 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
    expect(ip.stdout).toContain('192.0.2.1/24');
  });

  it('adds nothing to the root namespace', async () => {
    expect(await rootTraces(id)).toEqual(rootBefore);
  });

  it('down stops recorded processes, removes namespaces and state, and is idempotent', async () => {
    const spawned = await labSpawn(id, 'h1-p1', ['sleep', '600']);
    expect(pidAlive(spawned.pid)).toBe(true);
    const etcdPid = readState(id)!.processes.find((p) => p.key === 'etcd')!.pid;
    const r = await labDown(id);
    expect(r.existed).toBe(true);
    expect(r.stoppedPids).toEqual(expect.arrayContaining([spawned.pid, etcdPid]));
    expect(r.removedNamespaces).toHaveLength(7);
    await waitFor(() => !pidAlive(spawned.pid) && !pidAlive(etcdPid), { timeoutMs: 5000, what: 'processes gone' });
    expect(await netnsOf(id)).toEqual([]);
    expect(existsSync(labDir(id))).toBe(false);
    expect((await labDown(id)).existed).toBe(false);
    expect(() => labStatus(id)).toThrow(expect.objectContaining({ code: 'ERR_LAB_NOT_FOUND' }));
  });
});
