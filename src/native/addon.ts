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

let cached: Record<string, unknown> | undefined;
let cachedError: Error | undefined;

/**
 * Loads native/build/Release/weft_native.node once (the udp data path and
 * small OS helpers such as `pipe`); throws NativeAddonMissingError with the
 * reason when it cannot. Callers check for the entry points they need.
 */
export function loadAddon(): Record<string, unknown> {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  try {
    const root = packageRoot();
    const path = join(root, ADDON_RELATIVE_PATH);
    if (!existsSync(path)) {
      throw new NativeAddonMissingError(`native addon not built: ${path} missing (run npm run build:native)`, { path });
    }
    cached = createRequire(join(root, 'package.json'))(path) as Record<string, unknown>;
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
