// The dependency rules of .dependency-cruiser.cjs, checked on the real tree and
// on small fixtures that break each rule, so the lint step is known to fail.
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');
const CRUISE = join(ROOT, 'node_modules/.bin/depcruise');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');

interface Outcome {
  code: number;
  out: string;
}

async function cruise(cwd: string, extra: string[] = []): Promise<Outcome> {
  try {
    const r = await run(CRUISE, ['src', '--config', CONFIG, '--output-type', 'err', ...extra], { cwd });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A throwaway tree with a tsconfig and the given src/ files. */
async function fixture(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-lint-'));
  dirs.push(dir);
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' } }));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

/** A fixture with these files fails the lint, naming the rule. */
async function expectViolation(files: Record<string, string>, rule: string): Promise<void> {
  const r = await cruise(await fixture(files));
  expect(r.code).not.toBe(0);
  expect(r.out).toContain(rule);
}

describe('dependency rules', () => {
  it('the tree itself has no new violation', async () => {
    const r = await cruise(ROOT, ['--ignore-known']);
    expect(r.out).toContain('no dependency violations found');
    expect(r.code).toBe(0);
  }, 60_000);

  it('an import cycle fails, type-only imports included', async () => {
    await expectViolation(
      {
        'src/a.ts': "import type { B } from './b.js';\nexport type A = B | 1;\n",
        'src/b.ts': "import type { A } from './a.js';\nexport type B = A | 2;\n",
      },
      'no-circular',
    );
  }, 60_000);

  it('child_process outside src/exec fails', async () => {
    await expectViolation({ 'src/proxy/x.ts': "import { spawn } from 'node:child_process';\nexport const s = spawn;\n" }, 'spawn-only-in-exec');
  }, 60_000);

  it('the process runner from outside kernel/netfilter fails, and is allowed inside', async () => {
    await expectViolation(
      {
        'src/exec/run.ts': 'export const run = 1;\n',
        'src/proxy/x.ts': "import { run } from '../exec/run.js';\nexport const r = run;\n",
      },
      'runner-only-in-side-effect-layer',
    );
    const good = await fixture({
      'src/exec/run.ts': 'export const run = 1;\n',
      'src/kernel/x.ts': "import { run } from '../exec/run.js';\nexport const r = run;\n",
    });
    expect((await cruise(good)).code).toBe(0);
  }, 60_000);
});
