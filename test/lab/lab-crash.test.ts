import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { labDown, labStatus, labUp, type LabUpError } from '../../src/lab/index.js';
import { startTimeOf } from '../../src/lab/procs.js';
import { labDir, readState, writeState, type LabState } from '../../src/lab/state.js';
import { isRoot } from '../helpers/netns.js';
import { netnsOf, pidAlive, uniqueLabId } from '../helpers/lab-util.js';

describe.skipIf(!isRoot)('lab down after a crash or a failed up', () => {
  const crashed = uniqueLabId('cr');
  const failed = uniqueLabId('fa');
  const recycled = uniqueLabId('rc');
  const others: ChildProcess[] = [];

  afterAll(async () => {
    for (const id of [crashed, failed, recycled]) await labDown(id).catch(() => {});
    // Only children still running: a reaped child's PID may already be another process's.
    for (const c of others) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it('cleans a lab whose processes were killed and whose namespaces hold an unrecorded process', async () => {
    await labUp({ id: crashed, hosts: 1, podsPerHost: 1, startWeftd: false });
    await expect(labUp({ id: crashed, hosts: 1, startWeftd: false })).rejects.toMatchObject({ code: 'ERR_LAB_EXISTS' });
    // The crash: etcd dies with SIGKILL, and a process started just before
    // a crash (never recorded) keeps running in the pod namespace.
    const etcd = readState(crashed)!.processes.find((p) => p.key === 'etcd')!;
    process.kill(etcd.pid, 'SIGKILL');
    const stray = spawn('ip', ['netns', 'exec', `${crashed}-h1-p1`, 'sleep', '600'], { stdio: 'ignore', detached: true });
    stray.unref();
    others.push(stray);
    await waitFor(() => !pidAlive(etcd.pid) && pidAlive(stray.pid!), { timeoutMs: 5000, what: 'etcd dead, stray alive' });
    expect(labStatus(crashed).etcdRunning).toBe(false);

    const r = await labDown(crashed);
    expect(r.stoppedPids).toEqual([]);
    expect(r.strayPids).toEqual([stray.pid]);
    await waitFor(() => !pidAlive(stray.pid!), { timeoutMs: 5000, what: 'stray process gone' });
    expect(await netnsOf(crashed)).toEqual([]);
    expect(existsSync(labDir(crashed))).toBe(false);
  });

  it('a failing up removes what it made and names the step', async () => {
    let etcdPid = 0;
    const err = (await labUp({
      id: failed,
      hosts: 2,
      podsPerHost: 1,
      startWeftd: false,
      onStep: (step) => {
        if (step === 'pod h2-p1') {
          etcdPid = readState(failed)!.processes.find((p) => p.key === 'etcd')!.pid;
          throw new Error('injected failure');
        }
      },
    }).catch((e: unknown) => e)) as LabUpError;
    expect(err.code).toBe('ERR_LAB_UP');
    expect(err.details.step).toBe('pod h2-p1');
    expect(err.message).toContain('injected failure');
    expect(etcdPid).toBeGreaterThan(0);
    expect(pidAlive(etcdPid)).toBe(false);
    expect(await netnsOf(failed)).toEqual([]);
    expect(existsSync(labDir(failed))).toBe(false);
  });

  it('an aborted up (Ctrl-C) cleans up like a failed one', async () => {
    const ac = new AbortController();
    const id = `${failed}x`.slice(0, 8);
    const err = await labUp({ id, hosts: 1, podsPerHost: 1, startWeftd: false, signal: ac.signal, onStep: (s) => void (s === 'config' && ac.abort()) })
      .catch((e: unknown) => e)
      .finally(() => labDown(id));
    expect(err).toMatchObject({ code: 'ERR_LAB_UP', details: { step: 'routes' } });
    expect((err as Error).cause).toMatchObject({ code: 'ERR_ABORTED' });
    expect(await netnsOf(id)).toEqual([]);
  });

  it('never kills a recycled PID: same number, other start time', async () => {
    const victim = spawn('sleep', ['600'], { stdio: 'ignore', detached: true });
    victim.unref();
    others.push(victim);
    const start = startTimeOf(victim.pid!)!;
    mkdirSync(labDir(recycled), { recursive: true });
    const state: LabState = {
      version: 1, id: recycled, createdAt: new Date().toISOString(), phase: 'ready', backend: 'host-gw',
      network: '10.244.0.0/16', weftdArgs: [], startWeftd: false, attacher: 'manual',
      etcd: { endpoint: 'http://192.0.2.254:2379', dataDir: '/nonexistent' }, switchNetns: `${recycled}-sw`,
      switchBridge: `${recycled}-br`, namespaces: [], hosts: [], spawned: 1,
      processes: [{ key: 'spawn:1', netns: `${recycled}-sw`, pid: victim.pid!, startTime: start - 1, argv: ['sleep'], log: '/dev/null' }],
    };
    writeState(state);
    const r = await labDown(recycled);
    expect(r.existed).toBe(true);
    expect(r.stoppedPids).toEqual([]);
    expect(pidAlive(victim.pid!)).toBe(true);
    expect(existsSync(labDir(recycled))).toBe(false);
  });
});
