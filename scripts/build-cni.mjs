// Bundles the standalone CNI plugin into one CommonJS file (fast start: one
// file to read and compile, no module resolution) and puts the C shim beside
// it as dist/cni/weft, so dist/cni holds a ready-to-install plugin pair.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, chmodSync } from 'node:fs';

// `--outdir <dir>` builds elsewhere (tests build a private copy so parallel suites never read a half-written file).
const root = new URL('../', import.meta.url);
const i = process.argv.indexOf('--outdir');
const out = i > 0 ? new URL(`file://${process.argv[i + 1].replace(/\/?$/, '/')}`) : new URL('dist/cni/', root);
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [new URL('src/cni/main.ts', root).pathname],
  outfile: new URL('weft-cni.cjs', out).pathname,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const shim = new URL('native/build/Release/weft-cni-shim', root);
if (existsSync(shim)) {
  copyFileSync(shim, new URL('weft', out));
  chmodSync(new URL('weft', out), 0o755);
} else {
  console.warn('build-cni: native/build/Release/weft-cni-shim missing (npm run build:native); dist/cni/weft not made');
}
