/** The timing math of the Redlock algorithm, in one place. */

/**
 * Milliseconds on this process's steady clock, on the epoch scale. Leases, command time limits and
 * waits are timed with it, not with Date.now(): a wall clock stepped back (NTP, a VM resumed) would
 * otherwise stretch a lease this process believes it still holds, or a command's time limit.
 */
export function steadyNow(): number {
  return Math.floor(performance.timeOrigin + performance.now()); // whole ms, as Date.now(): durations derived from it are ttls
}

/** The longest delay Node's timers take (~24.8 days): a longer one fires after 1 ms instead. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Majority of `n` independent masters (N/2+1); a single logical node needs itself. */
export function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Clocks of the lock holder and the Redis servers may run at slightly different rates: allow for it. */
export function clockDrift(ttl: number, driftFactor: number): number {
  return Math.round(ttl * driftFactor) + 2;
}

/** Whether a lease of `ttl` ms outlasts its drift allowance: a shorter one is over before it is granted. */
export function canLease(ttl: number, driftFactor: number): boolean {
  return ttl > clockDrift(ttl, driftFactor);
}

/**
 * Until when a lease granted by a quorum can be trusted: measured from the moment the request was
 * sent (not answered), minus the drift allowance. Non-positive validity means it is not a lock.
 */
export function leaseEnd(startedAt: number, ttl: number, driftFactor: number): number {
  return startedAt + ttl - clockDrift(ttl, driftFactor);
}

/** Delay before the next attempt: node-redlock's retryDelay plus a random jitter to de-synchronise contenders. */
export function retryDelay(delay: number, jitter: number): number {
  return delay + Math.floor(Math.random() * (jitter + 1));
}

/** When an automatic extension is due: half-way through the remaining lease, so one failed try leaves time for another. */
export function extensionDue(now: number, expiration: number): number {
  return Math.max(0, Math.floor((expiration - now) / 2));
}

/**
 * How long `lock()` waits in all when no waitTimeout is given: as long as node-redlock's retries
 * would take (retryCount × (retryDelay + mean jitter)), so the settings keep their meaning even
 * though waiting is now woken by releases rather than paced by the delay. -1 retries: no limit.
 */
export function waitBudget(retryCount: number, delay: number, jitter: number): number {
  return retryCount < 0 ? Infinity : retryCount * (delay + jitter / 2);
}

/**
 * A fair waiter's place in the queue lapses this long after it was last renewed (a waiter renews it
 * every third of this), so one that gave up or died holds the queue up for at most this long.
 */
export const FAIR_TICKET_TTL = 5000;

/**
 * A waiter queue outlives the lease of the lock it waits on by this much: its waiters re-check when
 * that lease ends (and so renew the queue) unless a release woke them first.
 */
export const WAITER_QUEUE_SLACK = 10000;
