import { steadyNow } from './timing';

/**
 * Singleflight inside one process: callers that want the same key take turns in arrival order, so
 * only the head of each queue talks to Redis and everyone behind it waits here, at no Redis cost.
 * Redis stays the source of truth: the queue only decides who in this process asks next.
 */
export class LocalQueue {
  private readonly queues = new Map<string, Array<(granted: boolean) => void>>();

  /** Takes the turn for every key at once if nobody in this process has any of them; else null. */
  tryEnter(keys: string[]): (() => void) | null {
    if (keys.some(key => this.queues.has(key))) return null;
    for (const key of keys) this.queues.set(key, []);
    return this.leaver(keys);
  }

  /**
   * Takes the turn for every key (in the given, sorted, order so two callers cannot deadlock),
   * waiting until `deadline` (ms on the steady clock, timing.ts#steadyNow). Resolves to a function
   * that gives the turns back, or to null when the deadline passed first (holding no turn).
   */
  async enter(keys: string[], deadline: number): Promise<(() => void) | null> {
    for (const [ i, key ] of keys.entries()) {
      if (!await this.take(key, deadline)) {
        for (const taken of keys.slice(0, i)) this.next(taken);
        return null;
      }
    }
    return this.leaver(keys);
  }

  /** Gives the turns for `keys` back, once however often it is called. */
  private leaver(keys: string[]): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      for (const key of keys) this.next(key);
    };
  }

  private take(key: string, deadline: number): Promise<boolean> {
    const waiting = this.queues.get(key);
    if (!waiting) {
      this.queues.set(key, []);
      return Promise.resolve(true);
    }
    if (deadline <= steadyNow()) return Promise.resolve(false);
    return new Promise(resolve => {
      const timer = deadline === Infinity ? undefined : setTimeout(() => {
        waiting.splice(waiting.indexOf(turn), 1);
        resolve(false);
      }, deadline - steadyNow());
      const turn = (granted: boolean) => {
        clearTimeout(timer);
        resolve(granted);
      };
      waiting.push(turn);
    });
  }

  /** Hands the turn for `key` to the next caller in line, or frees it. */
  private next(key: string): void {
    const waiting = this.queues.get(key);
    const turn = waiting?.shift();
    if (turn) turn(true);
    else this.queues.delete(key);
  }
}
