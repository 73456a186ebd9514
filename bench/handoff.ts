import { setTimeout as sleep } from 'node:timers/promises';
import type { LockClient } from './contenders';
import { nowMs, percentile, randomBetween } from './stats';

export interface HandoffPlan {
  waiters: number;
  rounds: number;
}

export interface HandoffResult {
  /** One per handoff: from the holder calling release to the next holder's acquire resolving (ms). */
  gapsMs: number[];
  p50Ms: number;
  p99Ms: number;
  /**
   * How long the holder's own release call took, median (ms): the handoff cannot be shorter than
   * that plus a round trip, and on a machine that wakes slowly from idle it is the bulk of the gap.
   */
  releaseP50Ms: number;
  /** Times a client got the lock while another still held it: must be 0 for any lock worth the name. */
  overlaps: number;
}

/** Waiters start over this many ms, so they do not retry in lockstep as no real fleet would. */
const START_SPREAD = 50;
/**
 * The holder releases 50–350 ms after the last waiter started: every waiter is well into its wait,
 * and a polling waiter is at a random point of its retry period (node-redlock: 100–300 ms), so the
 * gap is not flattered or penalised by a lucky phase.
 */
const RELEASE_AFTER: [number, number] = [ 50, 350 ];
/** Each waiter holds the lock this long before passing it on (ms). */
const HOLD: [number, number] = [ 5, 20 ];

/**
 * `clients[0]` takes the lock, `plan.waiters` other clients queue for it, then the lock is passed
 * down the chain: each new holder holds briefly and releases. Every handoff's gap is recorded.
 */
export async function measureHandoff(clients: LockClient[], plan: HandoffPlan, name: string): Promise<HandoffResult> {
  if (clients.length < plan.waiters + 1) throw new Error(`${plan.waiters} waiters need ${plan.waiters + 1} clients`);
  const gapsMs: number[] = [];
  const releasesMs: number[] = [];
  let overlaps = 0;
  for (let round = 0; round < plan.rounds; round++) {
    const chain = await passDown(clients.slice(0, plan.waiters + 1), `${name}-${plan.waiters}w-${round}`);
    gapsMs.push(...chain.gapsMs);
    releasesMs.push(...chain.releasesMs);
    overlaps += chain.overlaps;
  }
  return { gapsMs, p50Ms: percentile(gapsMs, 50), p99Ms: percentile(gapsMs, 99), releaseP50Ms: percentile(releasesMs, 50), overlaps };
}

/** One chain: `holder` takes the lock, every one of `waiters` gets it in turn. */
async function passDown([ holder, ...waiters ]: LockClient[], lockName: string): Promise<Pick<HandoffResult, 'gapsMs' | 'overlaps'> & { releasesMs: number[] }> {
  const gapsMs: number[] = [];
  const releasesMs: number[] = [];
  let overlaps = 0;
  let releasedAt = 0;
  let holders = 1;
  const passOn = async (release: () => Promise<void>) => {
    holders--;
    releasedAt = nowMs();
    await release();
    releasesMs.push(nowMs() - releasedAt);
  };

  const first = await holder.acquire(lockName);
  const spread = waiters.length > 1 ? START_SPREAD : 0;
  const waiting = waiters.map(async client => {
    await sleep(randomBetween(0, spread));
    const held = await client.acquireWaiting(lockName);
    gapsMs.push(nowMs() - releasedAt);
    if (++holders > 1) overlaps++;
    await sleep(randomBetween(...HOLD));
    await passOn(() => held.release());
  });
  const done = settleAll(waiting);
  done.catch(() => undefined); // a waiter failing now is reported below, not as an unhandled rejection
  try {
    await sleep(spread + randomBetween(...RELEASE_AFTER));
    await passOn(() => first.release());
  } catch (err) {
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  return { gapsMs, releasesMs, overlaps };
}

/** Waits for every promise, then rethrows the first failure: nothing is left running behind an error. */
export async function settleAll(promises: Array<Promise<unknown>>): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
