import { afterAll, describe, expect, it } from 'vitest';
import { ShellPool } from '../../../src/cni/shell-pool.js';

describe('ShellPool', () => {
  const pool = new ShellPool(2);
  afterAll(() => pool.close());

  it('passes arguments verbatim (quotes, spaces, $) and stdin through a here-document', async () => {
    const r = await pool.run('printf', ['%s|', "it's", 'a b', '$HOME', '']);
    expect(r.stdout).toBe("it's|a b|$HOME||");
    const c = await pool.run('cat', [], { input: 'line1\nWEFTEOF\n$(echo no)\n' });
    expect(c.stdout).toBe('line1\nWEFTEOF\n$(echo no)\n');
  });

  it('reports exit codes, throws ExecError unless allowFail, and keeps working after', async () => {
    expect((await pool.run('sh', ['-c', 'echo oops >&2; exit 3'], { allowFail: true })).code).toBe(3);
    const err = await pool.run('false', []).catch((e) => e);
    expect(err.code).toBe('ERR_EXEC');
    expect((await pool.run('echo', ['ok'])).stdout).toBe('ok\n');
  });

  it('runs more commands than shells concurrently, each getting its own output', async () => {
    const outs = await Promise.all(Array.from({ length: 9 }, (_, i) => pool.run('echo', [`n${i}`])));
    expect(outs.map((o) => o.stdout.trim())).toEqual(Array.from({ length: 9 }, (_, i) => `n${i}`));
  });
});
