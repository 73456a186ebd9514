/**
 * What a waiter sleeps on: `wait(ms)` ends after `ms` or as soon as the bell rings (a release was
 * published, or the client is closing). A ring while nobody waits is kept for the next `wait`, so a
 * release that lands between two attempts is not lost.
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
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}
