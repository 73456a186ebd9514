import { Alarm } from './alarm';
import { steadyNow } from './timing';

/** A call still waiting for its answer, and how to fail it; linked to the other calls in flight. */
interface Pending {
  due: number;
  reject: (err: Error) => void;
  prev?: Pending;
  next?: Pending;
}

/**
 * Time limits for the Redis calls of one store, kept by one Alarm. A timer per call would cost more
 * than the call's own JavaScript: when calls run one after another, each start and end makes Node
 * create and drop a timer list. Here the alarm is set for the oldest call in flight and left running
 * when calls end, so a client that locks in a loop sets about one timer per limit period. The calls
 * in flight are a linked list, so adding and removing one allocates nothing beyond the call itself.
 */
export class Deadlines {
  private first?: Pending;
  private readonly alarm = new Alarm(() => this.expire());

  constructor(private readonly ms: number) {}

  /** `reply`, or a rejection once the time limit has passed. */
  bound<T>(reply: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call: Pending = { due: steadyNow() + this.ms, reject, prev: undefined, next: this.first };
      if (this.first) this.first.prev = call;
      this.first = call;
      this.alarm.setBy(call.due);
      reply.then(
        value => { this.remove(call); resolve(value); },
        (err: Error) => { this.remove(call); reject(err); },
      );
    });
  }

  private remove(call: Pending): void {
    if (call.prev) call.prev.next = call.next;
    else if (this.first === call) this.first = call.next;
    else return; // already removed: it timed out
    if (call.next) call.next.prev = call.prev;
    call.prev = call.next = undefined;
  }

  /** Fails the calls that are due, and waits for the next one that is not. */
  private expire(): void {
    const now = steadyNow();
    let next = Infinity;
    for (let call = this.first; call;) {
      const after = call.next;
      if (call.due > now) {
        next = Math.min(next, call.due);
      } else {
        this.remove(call);
        call.reject(new Error(`timed out after ${this.ms} ms`));
      }
      call = after;
    }
    if (next < Infinity) this.alarm.setBy(next);
  }
}
