import { AsyncLocalStorage } from 'node:async_hooks';
import type { Lock, LockOwner } from './lock';

/**
 * Reentrancy by call chain: code running inside `using(name, …)` — and everything it awaits — holds
 * `name`, so a nested `lock`/`tryLock`/`using` of the same names gets the same Lock with one more
 * hold instead of waiting for itself. Other call chains of the process still wait. (A plain
 * `lock()` cannot mark its caller's chain: Node gives an async function no way to change the
 * context its caller continues in.)
 */
const heldByChain = new AsyncLocalStorage<ReadonlyMap<string, Lock>>();

/**
 * The Lock of `owner` this call chain already holds on exactly these keys, if any. Work started
 * inside `using()` that outlives it (a timer, a listener, a promise not awaited) keeps the chain's
 * context: a lock released or run out since then is not held, and must not be re-entered.
 */
export function heldHere(owner: LockOwner, keys: string[]): Lock | undefined {
  const held = heldByChain.getStore();
  const lock = held?.get(keys[0]);
  const same = lock && heldBy(lock, owner) && lock.keys.length === keys.length && keys.every(k => held!.get(k) === lock);
  return same ? lock : undefined;
}

/** Keys of `keys` this call chain holds through other locks of `owner`. */
export function partlyHeldHere(owner: LockOwner, keys: string[]): string[] {
  const held = heldByChain.getStore();
  return held ? keys.filter(k => heldBy(held.get(k), owner)) : [];
}

function heldBy(lock: Lock | undefined, owner: LockOwner): boolean {
  return lock?.owner === owner && lock.isHeld;
}

/** Runs `fn` as a call chain that holds `lock`. */
export function runHolding<T>(lock: Lock, fn: () => T): T {
  const held = new Map(heldByChain.getStore());
  for (const key of lock.keys) held.set(key, lock);
  return heldByChain.run(held, fn);
}
