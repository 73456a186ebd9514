import { setTimeout as sleep } from 'node:timers/promises';
import { checkCount, checkFunction, checkNames, checkOptions, checkTtl } from './arguments';
import type { RedlockConfig } from './config';
import { LockBusyError, LockError, LockLostError, LockUnavailableError, NodeOutcome } from './errors';
import { lockKey, newLockValue } from './keys';
import { keepAlive } from './lease';
import { Lock, LockOwner } from './lock';
import { acquireQuorum, unreachable } from './quorum';
import { JobRun, readLastRun } from './schedule/last-run';
import type { LockStore } from './store';
import { quorum, retryDelay } from './timing';

/** Per-call overrides of the retry settings in `config.redlock`. */
export interface LockOptions {
  retryCount?: number;
  retryDelay?: number;
  retryJitter?: number;
  /** Give up after this many ms in total (0: only retryCount bounds the wait). */
  waitTimeout?: number;
}

export interface UsingOptions extends LockOptions {
  /** Stop extending after this long (ms); defaults to `config.redlock.maxHold`. */
  maxHold?: number;
}

export type Settings = Pick<RedlockConfig, 'prefix' | 'ttl' | 'retryCount' | 'retryDelay' | 'retryJitter' | 'driftFactor' | 'waitTimeout' | 'maxHold'>;

interface Logger {
  warn(...args: unknown[]): void;
}

/** The lock client mounted on `app.redlock`. */
export class Redlock implements LockOwner {
  private readonly held = new Set<Lock>();
  /** Names of the scheduled jobs this app locks fleet-wide. */
  readonly jobNames = new Set<string>();
  private closed = false;

  constructor(
    readonly stores: LockStore[],
    readonly settings: Settings,
    private readonly logger: Logger = console,
  ) {}

  get driftFactor(): number {
    return this.settings.driftFactor;
  }

  /** How many nodes must agree: N/2+1 of independent masters, or the single logical node. */
  get quorum(): number {
    return quorum(this.stores.length);
  }

  /** The Redis key of a lock name. */
  key(name: string): string {
    return lockKey(this.settings.prefix, name);
  }

  /**
   * Acquires every name or none, retrying while it is busy. Rejects with LockBusyError (who holds it,
   * for how long) or LockUnavailableError (which nodes failed and why).
   */
  async lock(names: string | string[], ttl: number = this.settings.ttl, options?: LockOptions): Promise<Lock> {
    const sorted = checkNames(names);
    checkTtl(ttl);
    const opts = checkOptions<LockOptions>(options);
    const retryCount = checkCount(opts.retryCount ?? this.settings.retryCount, 'options.retryCount', -1);
    const delay = checkCount(opts.retryDelay ?? this.settings.retryDelay, 'options.retryDelay', 0);
    const jitter = checkCount(opts.retryJitter ?? this.settings.retryJitter, 'options.retryJitter', 0);
    const waitTimeout = checkCount(opts.waitTimeout ?? this.settings.waitTimeout, 'options.waitTimeout', 0);
    if (this.closed) throw new LockUnavailableError(sorted.map(n => this.key(n)), [], 'the lock client is closed');

    const keys = sorted.map(n => this.key(n));
    const value = newLockValue();
    const deadline = waitTimeout > 0 ? Date.now() + waitTimeout : Infinity;
    for (let attempt = 1; ; attempt++) {
      const result = await acquireQuorum(this.stores, keys, value, ttl, this.driftFactor);
      if (result.granted) {
        const lock = new Lock(this, sorted, keys, value, result.expiration);
        this.held.add(lock);
        return lock;
      }
      const wait = retryDelay(delay, jitter);
      if ((retryCount >= 0 && attempt > retryCount) || Date.now() + wait > deadline || this.closed) {
        throw failure(keys, result.outcomes, attempt);
      }
      await sleep(wait);
    }
  }

  /** One attempt: the lock, or null when someone else holds it. Rejects only when Redis is unavailable. */
  async tryLock(name: string | string[], ttl: number = this.settings.ttl): Promise<Lock | null> {
    try {
      return await this.lock(name, ttl, { retryCount: 0 });
    } catch (err) {
      if (err instanceof LockBusyError) return null;
      throw err;
    }
  }

  /**
   * Runs `routine` under the lock: extends the lease while it runs, aborts `signal` the moment the
   * lease is lost, and always releases. If the lease was lost, rejects with LockLostError even when
   * the routine finished, because its work was not protected.
   */
  async using<T>(
    names: string | string[],
    ttl: number,
    routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T,
    options?: UsingOptions,
  ): Promise<T> {
    checkFunction(routine, 'routine');
    const maxHold = checkCount(checkOptions<UsingOptions>(options).maxHold ?? this.settings.maxHold, 'options.maxHold', 1);
    const lock = await this.lock(names, ttl, options);
    const controller = new AbortController();
    const stop = keepAlive(lock, ttl, maxHold, err => controller.abort(err));
    try {
      const result = await routine(controller.signal, lock);
      if (controller.signal.aborted) throw controller.signal.reason;
      return result;
    } finally {
      stop();
      await lock.unlock().catch((err: Error) => this.logger.warn('[egg-distributed-lock] release of %s failed: %s', lock.keys.join(', '), err.message));
    }
  }

  /** The last recorded run of a scheduled job (any machine), or null when none is recorded. */
  lastRun(name: string): Promise<JobRun | null> {
    return readLastRun(this.stores, this.settings.prefix, name);
  }

  /** The last run of every scheduled job this app locks, by job name. */
  async jobs(): Promise<Record<string, JobRun | null>> {
    const names = [ ...this.jobNames ].sort();
    const runs = await Promise.all(names.map(name => this.lastRun(name)));
    return Object.fromEntries(names.map((name, i) => [ name, runs[i] ]));
  }

  /** Locks this process holds now. */
  get locks(): Lock[] {
    return [ ...this.held ];
  }

  forget(lock: Lock): void {
    this.held.delete(lock);
  }

  /** Releases every lock this process holds, then quits the clients the plugin created. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.locks.map(lock => lock.unlock().catch((err: Error) => {
      this.logger.warn('[egg-distributed-lock] release of %s at close failed: %s', lock.keys.join(', '), err.message);
    })));
    await Promise.all(this.stores.map(store => store.close()));
  }
}

/** Explains a failed acquisition: busy (who holds it, for how long) or unavailable (which nodes failed). */
export function failure(keys: string[], outcomes: NodeOutcome[], attempts: number): LockError {
  if (unreachable(outcomes)) return new LockUnavailableError(keys, outcomes);
  const held = outcomes.filter(o => o.status === 'held');
  if (held.length === 0) {
    return new LockUnavailableError(keys, outcomes, 'the lease ran out while it was being acquired (Redis too slow for this ttl)');
  }
  const counts = new Map<string, number>();
  for (const o of held) counts.set(o.holder!, (counts.get(o.holder!) ?? 0) + 1);
  const holder = [ ...counts ].sort((a, b) => b[1] - a[1])[0][0];
  const remainingMs = Math.max(...held.filter(o => o.holder === holder).map(o => o.remainingMs ?? 0));
  return new LockBusyError(keys, outcomes, holder, remainingMs, attempts);
}

export { Lock, LockLostError };
