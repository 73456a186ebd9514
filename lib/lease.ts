import { LockLostError } from './errors';
import type { Lock } from './lock';
import { extensionDue } from './timing';

/**
 * Keeps a lock's lease alive while work runs: extends it half-way through each remaining lease,
 * retries when Redis does not answer, and calls `onLost` once — the moment the lock is known to be
 * gone, when its lease runs out without an extension, or when `maxHold` is reached (the last
 * extension is cut to end at `maxHold`). Returns a function that stops it.
 */
export function keepAlive(lock: Lock, ttl: number, maxHold: number, onLost: (err: LockLostError) => void): () => void {
  const holdUntil = Date.now() + maxHold;
  let capped = false;
  let stopped = false;
  let extendTimer: NodeJS.Timeout | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;

  const stop = () => {
    stopped = true;
    clearTimeout(extendTimer);
    clearTimeout(expiryTimer);
  };
  const lose = (err: LockLostError) => {
    if (stopped) return;
    stop();
    onLost(err);
  };
  const watchExpiry = () => {
    clearTimeout(expiryTimer);
    expiryTimer = setTimeout(() => {
      if (lock.remainingMs > 0) return watchExpiry();
      lose(new LockLostError(lock.keys, capped
        ? `held for maxHold (${maxHold} ms), so it was no longer extended`
        : 'the lease ran out before Redis confirmed an extension'));
    }, lock.remainingMs);
  };
  const scheduleExtension = () => {
    if (stopped || capped) return;
    extendTimer = setTimeout(async () => {
      const wanted = holdUntil - Date.now();
      capped = wanted <= ttl;
      try {
        if (wanted > 0) await lock.extend(Math.min(ttl, wanted));
        if (!stopped) watchExpiry();
      } catch (err) {
        if (err instanceof LockLostError) return lose(err);
        // Unavailable: keep trying until the lease runs out; the expiry timer reports the loss.
        capped = false;
      }
      scheduleExtension();
    }, Math.max(10, extensionDue(Date.now(), lock.expiration)));
  };

  watchExpiry();
  scheduleExtension();
  return stop;
}
