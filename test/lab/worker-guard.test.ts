import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { vitestTargetReason } from '../helpers/lab-worker-guard.js';

// The lab setup file must refuse signals aimed at vitest and still let tests stop their own children.
describe('lab worker guard', () => {
  it('refuses to signal this worker, the vitest main process and our process group', () => {
    expect(() => process.kill(process.ppid, 'SIGTERM')).toThrow(/refused: the vitest main process/);
    expect(() => process.kill(process.pid, 'SIGKILL')).toThrow(/refused: this vitest worker/);
    expect(vitestTargetReason(-process.pid)).toBeDefined();
    expect(vitestTargetReason(0)).toBeDefined();
  });

  it('still signals a child the test started', async () => {
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    expect(vitestTargetReason(child.pid!)).toBeUndefined();
    process.kill(child.pid!, 'SIGKILL');
    const [, sig] = await once(child, 'exit');
    expect(sig).toBe('SIGKILL');
  });
});
