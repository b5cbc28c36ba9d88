/**
 * subnet.env on a full filesystem: a tiny tmpfs mounted in a private mount
 * namespace (`unshare -m`, so nothing is mounted on the host and it vanishes
 * with the process), filled up, then written to by the real writeSubnetEnv.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { isRoot } from '../helpers/netns.js';

const repo = join(import.meta.dirname, '..', '..');

// Runs inside the mount namespace: old subnet.env written first, the disk filled, then the new write.
const script = `
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const { writeSubnetEnv } = await import(${JSON.stringify(join(repo, 'dist/store/subnet-env.js'))});
const { parseCidr } = await import(${JSON.stringify(join(repo, 'dist/core/ip.js'))});
const mnt = process.argv[2];
const file = join(mnt, 'subnet.env');
const env = (n) => ({ network: parseCidr('10.244.0.0/16'), subnet: parseCidr('10.244.' + n + '.0/24'), mtu: 1450, ipMasq: true });
writeSubnetEnv(file, env(1));
let filled = 0;
try { for (;;) { writeFileSync(join(mnt, 'fill-' + filled), Buffer.alloc(4096)); filled++; } } catch (e) { if (e.code !== 'ENOSPC') throw e; }
const out = { filled };
for (let i = 0; i < 3; i++) {
  try { writeSubnetEnv(file, env(2)); out.wrote = true; } catch (e) { out.code = e.code; out.message = e.message; out.errno = e.details?.errno; }
}
out.files = readdirSync(mnt).filter((f) => !f.startsWith('fill-'));
out.content = readFileSync(file, 'utf8');
console.log(JSON.stringify(out));
`;

describe.skipIf(!isRoot)('subnet.env on a full filesystem', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'weft-senv-full-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  it('the error names the file, no temporary file is left, the old file stays intact', async () => {
    const mnt = join(dir, 'mnt');
    const js = join(dir, 'fill.mjs');
    writeFileSync(js, script);
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mkdir -p "$1" && mount -t tmpfs -o size=64k weft-test "$1" && exec "$2" "$3" "$1"', 'sh', mnt, process.execPath, js], { timeoutMs: 60_000 });
    const out = JSON.parse(r.stdout) as { filled: number; wrote?: boolean; code?: string; message?: string; errno?: string; files: string[]; content: string };
    expect(out.filled).toBeGreaterThan(0);
    expect(out.wrote).toBeUndefined();
    expect(out.code).toBe('ERR_FILE_WRITE');
    expect(out.errno).toBe('ENOSPC');
    expect(out.message).toContain(`cannot write ${join(mnt, 'subnet.env')}`);
    // Three failed tries, no subnet.env.tmp-<pid> left behind.
    expect(out.files).toEqual(['subnet.env']);
    expect(out.content).toContain('FLANNEL_SUBNET=10.244.1.1/24');
  });
});
