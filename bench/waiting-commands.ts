import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandCount, CommandCounter } from './command-count';
import type { LockClient } from './contenders';
import { settleAll } from './handoff';
import { nowMs, randomBetween } from './stats';

export interface WaitingPlan {
  waiters: number;
  holdMs: number;
  /** Releases counted one by one after the hold: each wakes the clients still waiting. */
  releases: number;
}

export interface WaitingResult {
  /** Commands per second on all servers while the waiters wait and the lock stays held. */
  perSec: CommandCount;
  /** The same over the second half of the hold only: what waiting costs once every waiter is set up. */
  steadyPerSec: CommandCount;
  /**
   * Per waiter, everything it took to wait through the first release: from the waiters' start until
   * one of them has the lock (and the others are back to waiting).
   */
  perWaiterPerRelease: CommandCount;
  /**
   * Per waiter per release, only what releases cause: from each release until the next holder has
   * the lock, summed over `plan.releases` releases and divided by the waiters waiting at each.
   */
  atReleasePerWaiter: CommandCount;
}

const START_SPREAD = 50;
/** After a waiter has the lock, let the others finish their attempt before counting (ms). */
const SETTLE = 50;

/** Hands over values in the order they were put, to whoever takes them (now or later). */
class Handover<T> {
  private readonly items: T[] = [];
  private readonly takers: Array<(item: T) => void> = [];

  put(item: T): void {
    const taker = this.takers.shift();
    if (taker) taker(item);
    else this.items.push(item);
  }

  take(): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!);
    return new Promise(resolve => this.takers.push(resolve));
  }
}

/**
 * `clients[0]` holds a lock for `holdMs` while `plan.waiters` other clients wait for it; then the
 * lock is released `plan.releases` times, each new holder keeping it until the commands its
 * handoff caused are counted. Measures what waiting costs the servers, and what a release costs.
 */
export async function measureWaitingCommands(clients: LockClient[], counter: CommandCounter, plan: WaitingPlan, name: string): Promise<WaitingResult> {
  if (clients.length < plan.waiters + 1) throw new Error(`${plan.waiters} waiters need ${plan.waiters + 1} clients`);
  if (plan.releases > plan.waiters) throw new Error(`${plan.releases} releases need as many waiters`);
  const lockName = `${name}-waiting`;
  const holder = await clients[0].acquire(lockName);

  let openGate!: () => void;
  const gate = new Promise<void>(resolve => { openGate = resolve; });
  /** One "let go" per new holder, in the order they got the lock. */
  const holders = new Handover<() => void>();
  const start = await counter.snapshot();
  const startedAt = nowMs();
  const waiting = clients.slice(1, plan.waiters + 1).map(async client => {
    await sleep(randomBetween(0, START_SPREAD));
    const held = await client.acquireWaiting(lockName);
    await Promise.race([ new Promise<void>(letGo => holders.put(letGo)), gate ]);
    await held.release();
  });
  const done = settleAll(waiting);
  // Fails if the waiters all ended before the next one got the lock; only awaited through races below.
  const noHolder = done.then(() => { throw new Error('the waiters ended before one of them got the lock'); });
  noHolder.catch(() => undefined);

  let result: WaitingResult;
  try {
    await sleep(plan.holdMs / 2);
    const halfway = await counter.snapshot();
    const halfwayAt = nowMs();
    await sleep(plan.holdMs / 2);
    const beforeRelease = await counter.snapshot();
    const steadySeconds = (nowMs() - halfwayAt) / 1000;
    const heldSeconds = (nowMs() - startedAt) / 1000;
    let release = () => holder.release();
    let before = beforeRelease;
    let throughFirst: CommandCount | undefined;
    const atReleases: CommandCount = { all: 0, sent: 0 };
    let waitersWoken = 0;
    for (let k = 0; k < plan.releases; k++) {
      await release();
      const letGo = await Promise.race([ holders.take(), noHolder ]);
      await sleep(SETTLE);
      const after = await counter.snapshot();
      const caused = counter.since(before, after);
      atReleases.all += caused.all;
      atReleases.sent += caused.sent;
      waitersWoken += plan.waiters - k;
      throughFirst ??= counter.since(start, after);
      before = after;
      release = async () => letGo();
    }

    const waited = counter.since(start, beforeRelease);
    const steady = counter.since(halfway, beforeRelease);
    result = {
      perSec: { all: waited.all / heldSeconds, sent: waited.sent / heldSeconds },
      steadyPerSec: { all: steady.all / steadySeconds, sent: steady.sent / steadySeconds },
      perWaiterPerRelease: { all: throughFirst!.all / plan.waiters, sent: throughFirst!.sent / plan.waiters },
      atReleasePerWaiter: { all: atReleases.all / waitersWoken, sent: atReleases.sent / waitersWoken },
    };
  } catch (err) {
    openGate();
    await done.catch(() => undefined);
    throw err;
  }
  openGate();
  await done; // the rest of the queue must pass the lock on without error too
  return result;
}
