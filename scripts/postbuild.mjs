// After tsc: marks the CLI entry points executable (npm links them as bins)
// and gives the daemons' shebangs their V8 flags (src/cli/node-flags.ts).
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
const dir = new URL('../dist/cli/', import.meta.url);
if (existsSync(dir)) {
  const { nodeFlagsFor } = await import(new URL('node-flags.js', dir).href);
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.js')) continue;
    const file = new URL(f, dir);
    const flags = nodeFlagsFor(f.slice(0, -3));
    if (flags.length) {
      const text = readFileSync(file, 'utf8');
      const body = text.startsWith('#!') ? text.slice(text.indexOf('\n') + 1) : text;
      // `env -S` splits the rest of the line into node and its flags.
      writeFileSync(file, `#!/usr/bin/env -S node ${flags.join(' ')}\n${body}`);
    }
    chmodSync(file, 0o755);
  }
}
