import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/core/log.js';
import { installDaemonSignals } from '../../../src/cli/signals.js';

/** Emits to the listeners only (no real signal); SIGTERM is left alone: the test runner may listen to it. */
function setup(reload?: () => string | undefined) {
  const lines: string[] = [];
  const log = createLogger({ format: 'json', write: (l) => void lines.push(l) });
  const stop = new AbortController();
  let dumps = 0;
  const remove = installDaemonSignals({ log, stop, stopMessage: 'stopping', dump: () => ({ peers: ++dumps }), reload, exit: () => {} });
  const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { remove, stop, parsed };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('daemon signal handlers', () => {
  it('SIGUSR1 logs a state dump with the daemon\'s fields and stops nothing', async () => {
    const s = setup();
    try {
      process.emit('SIGUSR1', 'SIGUSR1');
      process.emit('SIGUSR1', 'SIGUSR1');
      const dumps = s.parsed().filter((l) => l.msg === 'state dump');
      expect(dumps.map((d) => d.peers)).toEqual([1, 2]);
      expect(dumps[0]).toMatchObject({ signal: 'SIGUSR1', pid: process.pid });
      expect(s.stop.signal.aborted).toBe(false);
    } finally {
      s.remove();
    }
  });

  it('SIGHUP runs the reload, or says it is ignored; never stops', async () => {
    const a = setup(() => 'data path reconcile');
    try {
      process.emit('SIGHUP', 'SIGHUP');
      await settle();
      expect(a.parsed().find((l) => l.signal === 'SIGHUP')).toMatchObject({ reloaded: 'data path reconcile' });
    } finally {
      a.remove();
    }
    const b = setup(() => undefined);
    try {
      process.emit('SIGHUP', 'SIGHUP');
      await settle();
      expect(b.parsed().find((l) => l.signal === 'SIGHUP')?.msg).toBe('SIGHUP ignored: restart to apply changes');
      expect(b.stop.signal.aborted).toBe(false);
    } finally {
      b.remove();
    }
  });

  it('after removal a listener stays for SIGUSR1 and SIGHUP (Node\'s defaults never come back)', () => {
    const s = setup();
    s.remove();
    expect(process.listenerCount('SIGUSR1')).toBeGreaterThan(0);
    expect(process.listenerCount('SIGHUP')).toBeGreaterThan(0);
  });
});
