import { closeSync, fstatSync, openSync, statSync, type Stats } from 'node:fs';
import { InvalidEnvError, UnknownContainerError } from './errors.js';
import type { NetnsRef } from './kernel.js';

/** A plain /run/netns name: usable with `ip -n` and as an ip -batch word. */
const NAMED_RE = /^\/(?:var\/)?run\/netns\/([A-Za-z0-9_.-]+)$/;

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Opens a runtime-given netns path and checks it before anything is done
 * with it: it exists (else code 3), it is a network namespace (nsfs: the same
 * device as our own /proc/self/ns/net), and it is none of the host namespaces
 * (`hostPaths`: our own, the named host of tests, init's), since a
 * container's default route there would capture the host's traffic.
 * The descriptor is checked (fstat), so the path cannot change in between.
 */
export function openContainerNetns(path: string, hostPaths: readonly string[]): NetnsRef {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UnknownContainerError(`netns ${path} does not exist`, { netns: path });
    throw new InvalidEnvError('CNI_NETNS', `cannot open ${JSON.stringify(path)}: ${code ?? String(err)}`);
  }
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  try {
    const st = fstatSync(fd);
    const own = statSync('/proc/self/ns/net');
    if (st.dev !== own.dev || !st.isFile()) throw new InvalidEnvError('CNI_NETNS', `${JSON.stringify(path)} is not a network namespace`);
    for (const h of hostPaths) {
      const hs = statOrUndefined(h);
      if (hs && hs.dev === st.dev && hs.ino === st.ino) {
        throw new InvalidEnvError('CNI_NETNS', `${JSON.stringify(path)} is the host's own network namespace (same as ${h}); refusing to configure it`);
      }
    }
  } catch (err) {
    close();
    throw err;
  }
  const m = NAMED_RE.exec(path);
  return { path, ref: m ? path : `/proc/${process.pid}/fd/${fd}`, close };
}
