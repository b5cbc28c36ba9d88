import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCidr } from '../../../src/core/ip.js';
import { writeSubnetEnv } from '../../../src/store/subnet-env.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-senv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { network: parseCidr('10.244.0.0/16'), subnet: parseCidr('10.244.7.0/24'), mtu: 1450, ipMasq: true };

describe('writeSubnetEnv failures', () => {
  it('a failed rename names the file and leaves no temporary file', () => {
    // The target is a non-empty directory: the temp file is written, the rename fails.
    const target = join(dir, 'subnet.env');
    mkdirSync(target);
    writeFileSync(join(target, 'x'), '');
    let err: { code?: string; message?: string; details?: Record<string, unknown> } = {};
    try {
      writeSubnetEnv(target, env);
    } catch (e) {
      err = e as never;
    }
    expect(err.code).toBe('ERR_FILE_WRITE');
    expect(err.message).toContain(`cannot write ${target}`);
    expect(err.details?.path).toBe(target);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a directory that cannot be created names the file', () => {
    writeFileSync(join(dir, 'plain'), '');
    const target = join(dir, 'plain', 'run', 'subnet.env');
    expect(() => writeSubnetEnv(target, env)).toThrow(`cannot write ${target}`);
  });
});
