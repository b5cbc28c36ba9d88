import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';
import { NetnsSandbox, isRoot } from '../helpers/netns.js';

// vagrant up + verify once, offline, inside a namespace of the test's own
// (vagrant/offline-up.sh). Skips, saying why, when this machine cannot.
const repo = join(import.meta.dirname, '..', '..');
const script = join(repo, 'vagrant', 'offline-up.sh');
const tools = ['/usr/bin/vagrant', '/usr/sbin/libvirtd', '/usr/sbin/virtlogd', '/usr/bin/virsh'];
const missing = tools.filter((t) => !existsSync(t));
const box = '/var/cache/weft/vagrant/current/weft-bookworm.box';
const why = !isRoot ? 'not root' : missing.length ? `missing ${missing.join(', ')}` : !existsSync(box) ? `no box at ${box} (bash scripts/vagrant-box.sh)` : '';
if (why) console.log(`vagrant test skipped: ${why}`);

describe.skipIf(why !== '')('vagrant up (offline, libvirt)', () => {
  const sandbox = new NetnsSandbox();
  const work = mkdtempSync(join(tmpdir(), 'weft-vagrant-'));
  afterAll(async () => {
    await sandbox.cleanup();
    rmSync(work, { recursive: true, force: true });
  });
  it('comes up and passes verify', async () => {
    const ns = await sandbox.create('vagrant');
    const t0 = Date.now();
    const r = await run('ip', ['netns', 'exec', ns, 'unshare', '--mount', '--propagation', 'private', 'bash', script, work, box], { allowFail: true });
    console.log(`vagrant up + verify: ${Math.round((Date.now() - t0) / 1000)}s\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('offline-up: ');
    expect(r.stdout).toContain('PASS');
  }, 3_600_000);
});
