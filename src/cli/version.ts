import { readFileSync } from 'node:fs';

/** weft's version from package.json (src/cli and dist/cli both sit two levels below it). */
export function weftVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
