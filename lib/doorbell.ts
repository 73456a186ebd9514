/**
 * What a waiter sleeps on: `wait(ms)` ends after `ms` or as soon as the bell rings (a release was
 * published, or the client is closing). A ring while nobody waits is kept for the next `wait`, so a
 * release that lands between two attempts is not lost.
 */
export class Doorbell {
  private rung = false;
  private wake?: () => void;
  private lastRelease?: string;

  /**
   * `release` identifies what was released (the released lock's value): with N masters the same
   * release is published by every master, and should wake the waiter once, not N times.
   */
  ring(release?: string): void {
    if (release !== undefined && release !== '' && release === this.lastRelease) return;
    this.lastRelease = release;
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
