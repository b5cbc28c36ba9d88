/**
 * V8 flags the long-running daemons are started with, in one place: the
 * bin scripts' shebang (scripts/postbuild.mjs), the lab, the benchmarks and
 * the installer's wrappers all read them from here.
 *
 * `--max-semi-space-size=1` (MiB) caps V8's young generation, which grows
 * to 16 MiB per semi-space under a burst of allocation (a full sync, a watch
 * burst of 1000 leases) and is rarely given back: measured with
 * `node bench/memory/run.mjs`, it takes weft-proxy at 10 000 Services from
 * ~203 to ~171 MB and costs the renderers under 10%. `--optimize-for-size`
 * was measured too and rejected: a further 30-40 MB less, but rendering
 * 2.5x slower (docs/proxy-memory.md).
 */
export const DAEMON_NODE_FLAGS: Readonly<Record<string, readonly string[]>> = {
  weftd: ['--max-semi-space-size=1'],
  'weft-proxy': ['--max-semi-space-size=1'],
};

/** Flags for one program (none for short-lived ones such as weftctl). */
export function nodeFlagsFor(program: string): readonly string[] {
  return DAEMON_NODE_FLAGS[program] ?? [];
}
