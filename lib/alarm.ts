import { MAX_TIMER_MS, steadyNow } from './timing';

/**
 * One timer for many deadlines: it rings once by the earliest time it was set for, then may be set
 * again. Setting it for a later time while it is armed costs a comparison, not a timer, so callers
 * that track many deadlines (calls in flight, held leases) arm about one timer per period. Unref'd:
 * a deadline never keeps the process alive by itself.
 */
export class Alarm {
  private timer?: NodeJS.Timeout;
  private at = Infinity;

  constructor(private readonly ring: () => void) {}

  /** Makes sure it rings by `at` (ms on the steady clock, timing.ts#steadyNow). */
  setBy(at: number): void {
    if (at >= this.at) return;
    clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(() => {
      this.at = Infinity;
      this.ring();
    }, Math.min(at - steadyNow(), MAX_TIMER_MS)); // rung early, its owner re-checks and sets it again
    this.timer.unref();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.at = Infinity;
  }
}
