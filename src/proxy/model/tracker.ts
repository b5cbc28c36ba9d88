/**
 * kube-proxy's change tracker, reduced to its idea: remember an object's value
 * from before its first change since the last checkout; at checkout compare
 * with the value now and drop it when the changes cancelled out (added then
 * deleted, updated back and forth). Mode-independent: trackers feed every
 * renderer.
 */
export interface Change<V> {
  previous: V;
  current: V;
}

export class ChangeTracker<V> {
  private readonly pending = new Map<string, { previous: V; at: number }>();

  /**
   * @param read the value for a key as the sources describe it right now
   * @param equal true when two values render the same rules
   */
  constructor(
    private readonly read: (key: string) => V,
    private readonly equal: (a: V, b: V) => boolean,
  ) {}

  /** Call before mutating the state `read` looks at; `at` is when the change was triggered (ms). */
  willChange(key: string, at: number): void {
    if (!this.pending.has(key)) this.pending.set(key, { previous: this.read(key), at });
  }

  /** Keys with recorded changes (cancelled ones included until checkout). */
  get size(): number {
    return this.pending.size;
  }

  /** Returns the real changes (with their first trigger time) and forgets all pending ones. */
  checkout(): Map<string, Change<V> & { at: number }> {
    const out = new Map<string, Change<V> & { at: number }>();
    for (const [key, { previous, at }] of this.pending) {
      const current = this.read(key);
      if (!this.equal(previous, current)) out.set(key, { previous, current, at });
    }
    this.pending.clear();
    return out;
  }
}

/** Structural equality for the plain data the model keeps (arrays, maps, records). */
export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a, mapReplacer) === JSON.stringify(b, mapReplacer);
}

function mapReplacer(_k: string, v: unknown): unknown {
  return v instanceof Map ? [...v.entries()] : v;
}
