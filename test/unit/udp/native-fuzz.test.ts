import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../../src/backends/udp/native.js';

function haveGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// The pure C packet code under AddressSanitizer + UBSan: random and mutated
// valid packets through every parser. Any out-of-bounds access aborts the
// harness (non-zero exit), so "never crash on bad input" is checked at the
// byte level, not only by the daemon surviving a flood.
describe.skipIf(!haveGcc())('C packet code under ASan/UBSan fuzzing', () => {
  it('survives 100k random and mutated packets', () => {
    const root = packageRoot();
    const dir = mkdtempSync(join(tmpdir(), 'weft-fuzz-'));
    try {
      const bin = join(dir, 'fuzz');
      execFileSync('gcc', [
        '-O1', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all',
        '-I', join(root, 'native/src'),
        join(root, 'native/test/fuzz.c'), join(root, 'native/src/packet.c'), join(root, 'native/src/peers.c'),
        '-o', bin,
      ]);
      const out = execFileSync(bin, ['100000', '12345'], { encoding: 'utf8', env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1' } });
      expect(out).toMatch(/^ok 100000 /);
      // The mutations reach every stage: accepted packets and each header fault.
      for (const reason of ['ok', 'unknown_peer', 'short', 'bad_version', 'bad_ihl', 'length_mismatch', 'bad_checksum', 'spoofed_source']) {
        expect(Number(new RegExp(`${reason}=(\\d+)`).exec(out)?.[1])).toBeGreaterThan(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
