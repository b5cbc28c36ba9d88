import { addonFunction } from '../native/addon.js';

/** Both ends of pipe(2), close-on-exec. */
export interface OsPipe {
  read: number;
  write: number;
}

const pipeFn = addonFunction<() => [number, number]>('pipe');

/**
 * Whether real pipes are available (the native addon is built). libuv gives
 * a child's stdin a socket pair, which the child cannot reopen by path
 * (`/dev/fd/0` fails with ENXIO); a real pipe it can.
 */
export function hasOsPipe(): boolean {
  return pipeFn !== undefined;
}

export function osPipe(): OsPipe {
  if (!pipeFn) throw new Error('osPipe: the native addon (npm run build:native) has no pipe()');
  const [read, write] = pipeFn();
  return { read, write };
}
