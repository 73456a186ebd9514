import { Alarm } from './alarm';
import { LockLostError } from './errors';
import type { Lock } from './lock';
import { canLease, extensionDue, steadyNow } from './timing';

/**
 * Keeps a lock's lease alive while work runs: extends it half-way through each remaining lease,
 * retries when Redis does not answer, and calls `onLost` once — the moment the lock is known to be
 * gone, when its lease runs out without an extension, or when `maxHold` is reached (the last
 * extension is cut to end at `maxHold`). Returns a function that stops it.
 */
export function keepAlive(lock: Lock, ttl: number, maxHold: number, onLost: (err: LockLostError) => void): () => void {
  const holdUntil = steadyNow() + maxHold;
  let capped = false;
  let stopped = false;
  let extendTimer: NodeJS.Timeout | undefined;

  const lose = (err: LockLostError) => {
    if (stopped) return;
    stop();
    onLost(err);
  };
  const stopWatching = whenLeaseEnds(lock, () => lose(new LockLostError(lock.keys, capped
    ? `held for maxHold (${maxHold} ms), so it was no longer extended`
    : 'the lease ran out before Redis confirmed an extension')));
  const stop = () => {
    stopped = true;
    clearTimeout(extendTimer);
    stopWatching();
  };
  const scheduleExtension = () => {
    if (stopped || capped) return;
    extendTimer = setTimeout(async () => {
      const wanted = holdUntil - steadyNow();
      capped = wanted <= ttl;
      try {
        // A last piece shorter than the drift allowance cannot be a lease: let the lease end at maxHold.
        if (canLease(wanted, lock.owner.driftFactor)) await lock.extend(Math.min(ttl, wanted));
      } catch (err) {
        if (err instanceof LockLostError) return lose(err);
        // Unavailable: keep trying until the lease runs out; the expiry timer reports the loss.
        capped = false;
      }
      scheduleExtension();
    }, Math.max(1, extensionDue(steadyNow(), lock.expiration)));
  };

  scheduleExtension();
  return stop;
}

/**
 * Calls `onEnd` once the lock's lease has run out by this process's clock, following any
 * extensions (the timer re-arms while time is left). Returns a function that cancels it.
 */
function whenLeaseEnds(lock: Lock, onEnd: () => void): () => void {
  const alarm: Alarm = new Alarm(() => (lock.remainingMs > 0 ? alarm.setBy(lock.expiration) : onEnd()));
  alarm.setBy(lock.expiration);
  return () => alarm.cancel();
}
