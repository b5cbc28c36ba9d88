import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../core/errors.js';

/** The native addon is not built (run `npm run build:native`). */
export class NativeAddonMissingError extends WeftError {
  override readonly code = 'ERR_NATIVE_ADDON_MISSING';
}

/** Walks up from this module to the package root (works from src/ and dist/). */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'weft') return dir;
      } catch {
        /* not ours; keep walking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new NativeAddonMissingError('package root (package.json of weft) not found', { from });
    dir = up;
  }
}

export const ADDON_RELATIVE_PATH = 'native/build/Release/weft_native.node';

/**
 * The addon's name beside the standalone CNI plugin bundle (`weft-cni.cjs`):
 * scripts/build-cni.mjs puts it in dist/cni and `weftctl install-cni` into the
 * CNI bin dir, so the bundle loads it without the weft package.
 */
export const BUNDLED_ADDON_NAME = 'weft-cni.node';

/** This module's folder: import.meta in ESM (src/, dist/); the esbuild CommonJS bundle has only __filename. */
function moduleDir(): string | undefined {
  try {
    if (import.meta.url) return dirname(fileURLToPath(import.meta.url));
  } catch {
    /* bundled: import.meta is empty */
  }
  return typeof __filename === 'string' ? dirname(__filename) : undefined;
}

/** Where the addon may be, in order: beside this module (the installed bundle), then the package's build output. */
export function addonCandidates(from: string | undefined = moduleDir()): string[] {
  if (!from) return [];
  const out = [join(from, BUNDLED_ADDON_NAME)];
  try {
    out.push(join(packageRoot(from), ADDON_RELATIVE_PATH));
  } catch {
    /* not inside the weft package (an installed bundle) */
  }
  return out;
}

let cached: Record<string, unknown> | undefined;
let cachedError: Error | undefined;

/**
 * Loads the addon once (the udp data path and small OS helpers such as
 * `pipe` and `flockAsync`) from the first of addonCandidates() that exists;
 * throws NativeAddonMissingError with the reason when it cannot. Callers
 * check for the entry points they need.
 */
export function loadAddon(): Record<string, unknown> {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  try {
    const candidates = addonCandidates();
    const path = candidates.find((p) => existsSync(p));
    if (!path) {
      throw new NativeAddonMissingError(`native addon not built: none of ${candidates.join(', ') || '(no module path)'} exists (run npm run build:native)`, { candidates });
    }
    cached = createRequire(path)(path) as Record<string, unknown>;
    return cached;
  } catch (err) {
    cachedError =
      err instanceof NativeAddonMissingError
        ? err
        : new NativeAddonMissingError(`native addon failed to load: ${(err as Error).message}`, {}, { cause: err });
    throw cachedError;
  }
}

/** One entry point of the addon, or undefined when the addon is not built or predates it. */
export function addonFunction<F extends (...args: never[]) => unknown>(name: string): F | undefined {
  try {
    const fn = loadAddon()[name];
    return typeof fn === 'function' ? (fn as F) : undefined;
  } catch {
    return undefined;
  }
}
