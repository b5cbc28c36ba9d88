import { describe, expect, it } from 'vitest';
import { hasOsPipe } from '../../../src/exec/pipe.js';
import { run, runStreaming } from '../../../src/exec/run.js';

describe('runStreaming: a child fed while the caller is still producing', () => {
  it('gets every piece, in order, and its output comes back at end()', async () => {
    const child = runStreaming('cat', []);
    for (let i = 0; i < 50; i++) await child.write(`line ${i}\n`.repeat(200));
    // "line 0\n".."line 9\n" are 7 characters, the other 40 lines 8.
    expect(child.written).toBe(10 * 200 * 7 + 40 * 200 * 8);
    const r = await child.end();
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(50 * 200);
    expect(lines[0]).toBe('line 0');
    expect(lines.at(-1)).toBe('line 49');
  });

  it('abort() kills the child before it sees the end of its input', async () => {
    // `sh` runs each line as it reads it: the line after the abort never runs.
    const child = runStreaming('sh', [], { allowFail: true });
    await child.write('echo before\n');
    child.abort();
    await child.write('echo after\n');
    const r = await child.end();
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('after');
  });

  it('a failing child rejects end() with its stderr; allowFail returns the code instead', async () => {
    const bad = runStreaming('sh', ['-c', 'cat >/dev/null; echo refused line 3 >&2; exit 3']);
    await bad.write('x\n');
    await expect(bad.end()).rejects.toMatchObject({ code: 'ERR_EXEC', exitCode: 3, stderr: expect.stringContaining('refused line 3') });
    const tolerated = runStreaming('sh', ['-c', 'exit 4'], { allowFail: true });
    expect((await tolerated.end()).code).toBe(4);
  });

  it('run() is the same thing with all its input at once', async () => {
    expect((await run('cat', [], { input: 'a\nb\n' })).stdout).toBe('a\nb\n');
  });

  it.skipIf(!hasOsPipe())('stdinByPath: the child can open its stdin by path as /dev/fd/0 (a socket pair cannot)', async () => {
    const byPath = runStreaming('sh', ['-c', 'cat /dev/fd/0'], { stdinByPath: true });
    for (let i = 0; i < 20; i++) await byPath.write(`piece ${i}\n`.repeat(1000));
    const r = await byPath.end();
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(20 * 1000);
    expect(r.stdout.endsWith('piece 19\n')).toBe(true);
    // What libuv hands a child by default: opening it by path fails (ENXIO), the reason for stdinByPath.
    const plain = await run('sh', ['-c', 'cat /dev/fd/0'], { input: 'x\n', allowFail: true });
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/No such device or address/);
  });

  it('a child started ahead of its input is not timed out while it waits', async () => {
    const child = runStreaming('cat', [], { timeoutMs: 50 });
    await new Promise((r) => setTimeout(r, 150));
    expect(child.exited).toBe(false);
    await child.write('late\n');
    expect((await child.end()).stdout).toBe('late\n');
  });
});
