/** A call still waiting for its answer, and how to fail it. */
interface Pending {
  due: number;
  reject: (err: Error) => void;
}

/**
 * Time limits for the Redis calls of one store, kept by one timer. A timer per call would cost more
 * than the call's own JavaScript: when calls run one after another, each start and end makes Node
 * create and drop a timer list. Here the timer is set for the oldest call in flight and left running
 * when calls end, so a client that locks in a loop sets about one timer per limit period.
 */
export class Deadlines {
  private readonly pending = new Set<Pending>();
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;

  constructor(private readonly ms: number) {}

  /** `reply`, or a rejection once the time limit has passed. */
  bound<T>(reply: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call: Pending = { due: Date.now() + this.ms, reject };
      this.pending.add(call);
      if (this.timerAt === Infinity) this.arm(call.due);
      reply.then(
        value => { this.pending.delete(call); resolve(value); },
        (err: Error) => { this.pending.delete(call); reject(err); },
      );
    });
  }

  private arm(at: number): void {
    this.timerAt = at;
    this.timer = setTimeout(() => this.expire(), at - Date.now());
    this.timer.unref(); // a pending Redis call keeps the process alive through its socket, not through this
  }

  /** Fails the calls that are due, and waits for the next one that is not. */
  private expire(): void {
    this.timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const call of this.pending) {
      if (call.due > now) {
        next = Math.min(next, call.due);
        continue;
      }
      this.pending.delete(call);
      call.reject(new Error(`timed out after ${this.ms} ms`));
    }
    if (next < Infinity) this.arm(next);
  }
}
