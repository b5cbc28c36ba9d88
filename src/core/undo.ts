/**
 * Undo stack: push the inverse right after each side effect; on failure run
 * them in reverse. Undo errors are collected, not thrown, so every step runs.
 */
export class UndoStack {
  private readonly steps: Array<{ what: string; fn: () => unknown | Promise<unknown> }> = [];

  push(what: string, fn: () => unknown | Promise<unknown>): void {
    this.steps.push({ what, fn });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Forget the steps (the operation succeeded). */
  commit(): void {
    this.steps.length = 0;
  }

  /** Runs every undo step in reverse order; returns the failures. */
  async rollback(): Promise<Array<{ what: string; error: unknown }>> {
    const failures: Array<{ what: string; error: unknown }> = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.fn();
      } catch (error) {
        failures.push({ what: step.what, error });
      }
    }
    return failures;
  }
}
