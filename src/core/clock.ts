/** Time source, injectable so lease policy is tested with a fake clock. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export class FakeClock implements Clock {
  constructor(private t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A handle from Timers.set, passed back to Timers.clear. */
export type TimerHandle = unknown;

/** A clock that can also wake code up: what schedulers (the runner) take, so tests drive time. */
export interface Timers extends Clock {
  /** Calls fn once after ms; the timer does not keep the process alive. */
  set(fn: () => void, ms: number): TimerHandle;
  clear(handle: TimerHandle): void;
}

export const systemTimers: Timers = {
  now: () => Date.now(),
  set(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clear(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/**
 * Timers on a fake clock: nothing fires until `advance` moves time past a
 * timer's due time; timers due at once fire in due order (then set order).
 */
export class FakeTimers extends FakeClock implements Timers {
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void }>();

  set(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.due.set(id, { at: this.now() + Math.max(0, ms), fn });
    return id;
  }

  clear(handle: TimerHandle): void {
    this.due.delete(handle as number);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.due.size;
  }

  /** Ms until the next timer is due (undefined when none is set). */
  nextDueIn(): number | undefined {
    let next: number | undefined;
    for (const t of this.due.values()) next = next === undefined ? t.at : Math.min(next, t.at);
    return next === undefined ? undefined : next - this.now();
  }

  /** Moves time forward by ms, firing every timer that falls due, in order. */
  override advance(ms: number): void {
    const end = this.now() + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.due) if (e[1].at <= end && (!first || e[1].at < first[1].at)) first = e;
      if (!first) break;
      this.due.delete(first[0]);
      super.advance(Math.max(0, first[1].at - this.now()));
      first[1].fn();
    }
    super.advance(Math.max(0, end - this.now()));
  }
}
