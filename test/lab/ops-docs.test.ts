import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../src/exec/run.js';

// docs/operations.md carries a flags table per program; this keeps it from
// drifting: every long flag in a program's --help must appear in the doc as
// `--flag` inside a table row.
const repo = join(import.meta.dirname, '..', '..');
const doc = readFileSync(join(repo, 'docs', 'operations.md'), 'utf8');
const tableRows = doc.split('\n').filter((l) => l.startsWith('|'));

async function longFlags(script: string, args: string[] = []): Promise<string[]> {
  const r = await run(process.execPath, [join(repo, 'dist', 'cli', script), ...args, '--help'], { allowFail: true });
  expect(r.code, r.stderr).toBe(0);
  const flags = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s{2}(?:-\w, )?(--[a-z0-9-]+)/.exec(line);
    if (m && m[1] !== '--help') flags.add(m[1]!);
  }
  return [...flags];
}

const programs: Array<[string, string, string[]]> = [
  ['weftd', 'weftd.js', []],
  ['weft-proxy', 'weft-proxy.js', []],
  ['weftctl', 'weftctl.js', []],
  ['weftctl install-cni', 'weftctl.js', ['install-cni']],
  ['weftctl apply', 'weftctl.js', ['apply']],
  ['weftctl config set', 'weftctl.js', ['config', 'set']],
  ['weftctl leases', 'weftctl.js', ['leases']],
];

describe('docs/operations.md flags tables', () => {
  it.each(programs)('lists every flag of %s', async (_name, script, args) => {
    if (!existsSync(join(repo, 'dist', 'cli', script))) throw new Error(`dist/cli/${script} missing: npm run build`);
    const flags = await longFlags(script, args);
    expect(flags.length).toBeGreaterThan(0);
    const missing = flags.filter((f) => !tableRows.some((row) => row.includes(`\`${f}`) || row.includes(` ${f} `) || row.includes(`${f}\``)));
    // Global weftctl flags are documented in prose above its table.
    const undocumented = missing.filter((f) => !doc.includes(`\`${f} `));
    expect(undocumented).toEqual([]);
  });
});

describe('docs/operations.md installer table', () => {
  it('lists every option of scripts/install-weft.sh --help', async () => {
    const r = await run('bash', [join(repo, 'scripts', 'install-weft.sh'), '--help'], { allowFail: true });
    expect(r.code).toBe(0);
    const opts = [...r.stdout.matchAll(/^ {2}(--[a-z0-9-]+)/gm)].map((m) => m[1]!);
    expect(opts.length).toBeGreaterThan(10);
    expect(opts.filter((o) => !tableRows.some((row) => row.includes(`\`${o}`) || row.includes(`${o}\``) || row.includes(` ${o} `)))).toEqual([]);
  });
});
