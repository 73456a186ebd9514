import { MAX_TIMER_MS } from './timing';

/**
 * What a waiter sleeps on: `wait(ms)` ends after `ms` or as soon as the bell rings (a release woke
 * the waiter, or the client is closing). A ring while nobody waits is kept for the next `wait`, so a
 * release that lands during an attempt is not lost. With N masters one release rings once per
 * master: rings during an attempt that succeeds cost nothing, and after one that failed the next
 * master's ring is what makes the waiter try again (that master may have released only after the
 * attempt reached it), so none is dropped.
 */
export class Doorbell {
  private rung = false;
  private wake?: () => void;

  ring(): void {
    this.rung = true;
    this.wake?.();
  }

  wait(ms: number): Promise<void> {
    if (this.rung) {
      this.rung = false;
      return Promise.resolve();
    }
    return new Promise(resolve => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        this.rung = false;
        resolve();
      };
      const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS)); // ending early, the waiter just checks again
      this.wake = done;
    });
  }
}
