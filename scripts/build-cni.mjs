// Bundles the standalone CNI plugin into one CommonJS file (fast start: one
// file to read and compile, no module resolution) and puts the C shim beside
// it as dist/cni/weft and the native addon as dist/cni/weft-cni.node (the
// bundle loads it from its own folder for flock(2)), so dist/cni holds a
// ready-to-install plugin.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, chmodSync, renameSync } from 'node:fs';

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
  // CommonJS has no import.meta (esbuild would leave it empty and warn); code that needs its own path uses __filename there.
  define: { 'import.meta.url': 'undefined' },
  logLevel: 'warning',
});
const shim = new URL('native/build/Release/weft-cni-shim', root);
if (existsSync(shim)) {
  copyFileSync(shim, new URL('weft', out));
  chmodSync(new URL('weft', out), 0o755);
} else {
  console.warn('build-cni: native/build/Release/weft-cni-shim missing (npm run build:native); dist/cni/weft not made');
}
const addon = new URL('native/build/Release/weft_native.node', root);
if (existsSync(addon)) {
  // Temp file + rename: a running plugin never loads a half-written addon.
  const tmp = new URL(`weft-cni.node.tmp-${process.pid}`, out);
  copyFileSync(addon, tmp);
  chmodSync(tmp, 0o644);
  renameSync(tmp, new URL('weft-cni.node', out));
} else {
  console.warn('build-cni: native/build/Release/weft_native.node missing (npm run build:native); the bundle will lock through util-linux flock(1)');
}
