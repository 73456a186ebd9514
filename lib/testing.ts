import { newLockValue } from './keys';
import { acquireQuorum, releaseQuorum } from './quorum';
import { Redlock, whyNotAcquired } from './redlock';
import type { LockStore } from './store';

/**
 * Helpers for an app's own egg-mock tests (`app.runSchedule()` goes through the same lock):
 *
 *   const release = await holdElsewhere(app.redlock, 'report');   // "another machine holds it"
 *   await app.runSchedule('report');                               // skipped
 *   await release();
 *
 *   const restore = simulateRedisDown(app.redlock);                // every node fails
 *   await app.runSchedule('report');                               // skipped, error logged
 *   restore();
 */

/**
 * Makes `name` held by another machine (`holder`) for `ttl` ms, taken as that machine would take
 * it; resolves to a release function. Rejects with LockBusyError when the name is held already (by
 * the app itself, say) instead of overwriting that lock.
 */
export async function holdElsewhere(redlock: Redlock, name: string, ttl = 60000, holder = 'another-machine/1'): Promise<() => Promise<void>> {
  const keys = [ redlock.key(name) ];
  const value = newLockValue(holder);
  const taken = await acquireQuorum(redlock.stores, keys, value, ttl, redlock.driftFactor);
  if (!taken.granted) throw whyNotAcquired(keys, taken.outcomes, 1);
  return async () => {
    await releaseQuorum(redlock.stores, keys, value);
  };
}

const STEPS = [ 'acquire', 'leaveQueues', 'release', 'undo', 'extend', 'getValue', 'saveRecord' ] as const;

/** Makes every Redis node of `redlock` fail as if unreachable, until the returned function is called. */
export function simulateRedisDown(redlock: Redlock): () => void {
  const fail = (store: LockStore) => () => Promise.reject(new Error(`simulated outage of ${store.node}`));
  for (const store of redlock.stores) {
    for (const step of STEPS) Object.defineProperty(store, step, { value: fail(store), configurable: true });
  }
  return () => {
    for (const store of redlock.stores) {
      for (const step of STEPS) delete (store as any)[step];
    }
  };
}
