import { rmSync } from 'node:fs';
import { silentLogger, type Logger } from '../core/log.js';
import { run } from '../exec/run.js';
import { listNetns, withLock } from './common.js';
import { validateLabId } from './names.js';
import { pidsInNetns, stopProcs } from './procs.js';
import { labDir, readState, writeState, type ProcRecord } from './state.js';

export interface LabDownResult {
  /** False when there was no state for this id (down is idempotent). */
  existed: boolean;
  stoppedPids: number[];
  /** PIDs found inside the lab's namespaces that were not recorded (killed too). */
  strayPids: number[];
  removedNamespaces: string[];
}

/**
 * Removes exactly what the state file records: stops recorded processes
 * (start time checked, SIGTERM, bounded wait, SIGKILL), kills what still
 * runs inside the lab's own namespaces, deletes the namespaces (their links
 * go with them) and the state directory. Safe to repeat.
 */
export async function labDown(id: string, opts: { log?: Logger; graceMs?: number } = {}): Promise<LabDownResult> {
  validateLabId(id);
  return withLock(id, async () => {
    const log = (opts.log ?? silentLogger).child({ lab: id });
    const state = readState(id);
    const result: LabDownResult = { existed: !!state, stoppedPids: [], strayPids: [], removedNamespaces: [] };
    if (!state) {
      rmSync(labDir(id), { recursive: true, force: true });
      return result;
    }
    state.phase = 'deleting';
    writeState(state);
    // Clients first (spawned tools, weftd), then kube-apiserver, etcd last, so daemons can exit cleanly.
    const order = (p: ProcRecord) => (p.key === 'etcd' ? 3 : p.key === 'kube-apiserver' ? 2 : p.key.startsWith('weftd:') ? 1 : 0);
    for (const rank of [0, 1, 2, 3]) {
      const procs = state.processes.filter((p) => order(p) === rank);
      result.stoppedPids.push(...(await stopProcs(procs, { graceMs: opts.graceMs })));
    }
    const existing = new Set(await listNetns());
    for (const ns of [...state.namespaces].reverse()) {
      if (!existing.has(ns)) continue;
      // Only our namespaces are swept: whatever runs in them was started for the lab.
      const stray = await pidsInNetns(ns);
      for (const pid of stray) {
        try {
          process.kill(pid, 'SIGKILL');
          result.strayPids.push(pid);
        } catch {
          /* gone */
        }
      }
      await run('ip', ['netns', 'del', ns]);
      result.removedNamespaces.push(ns);
    }
    rmSync(labDir(id), { recursive: true, force: true });
    log.info(
      { namespaces: result.removedNamespaces.length, stopped: result.stoppedPids.length, stray: result.strayPids.length },
      'lab removed',
    );
    return result;
  });
}
