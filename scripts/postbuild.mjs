// Marks the CLI entry points executable after tsc (npm links them as bins).
import { chmodSync, existsSync, readdirSync } from 'node:fs';
const dir = new URL('../dist/cli/', import.meta.url);
if (existsSync(dir)) {
  for (const f of readdirSync(dir)) if (f.endsWith('.js')) chmodSync(new URL(f, dir), 0o755);
}
