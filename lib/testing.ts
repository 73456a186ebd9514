import { newLockValue } from './keys';
import type { Redlock } from './redlock';
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

/** Makes `name` look held by another machine (`holder`) for `ttl` ms; resolves to a release function. */
export async function holdElsewhere(redlock: Redlock, name: string, ttl = 60000, holder = 'another-machine/1'): Promise<() => Promise<void>> {
  const key = redlock.key(name);
  const value = newLockValue(holder);
  await Promise.all(redlock.stores.map(store => store.setValue(key, value, ttl)));
  return async () => {
    await Promise.all(redlock.stores.map(store => store.release([ key ], value)));
  };
}

const STEPS = [ 'acquire', 'leaveQueues', 'release', 'extend', 'getValue', 'setValue' ] as const;

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
