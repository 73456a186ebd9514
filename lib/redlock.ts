import { checkClusterKeys, checkCount, checkFunction, checkLeaseTtl, checkNames, checkOptions } from './arguments';
import type { Logger } from './boot';
import type { RedlockConfig } from './config';
import { Alarm } from './alarm';
import { Doorbell } from './doorbell';
import { LockBusyError, LockError, LockLostError, LockUnavailableError, NodeOutcome } from './errors';
import { lockKey, newLockValue, OWNER, wakeChannel } from './keys';
import { keepAlive } from './lease';
import { LocalQueue } from './local-queue';
import { Lock, LockOwner } from './lock';
import { acquireQuorum, QuorumResult, unreachable } from './quorum';
import { heldHere, partlyHeldHere, runHolding } from './reentrancy';
import { ReleaseSubscriber } from './release-subscriber';
import { JobRun, readLastRun } from './schedule/last-run';
import type { LockStore, WaitingAttempt } from './store';
import { FAIR_TICKET_TTL, MAX_TIMER_MS, quorum, retryDelay, steadyNow, waitBudget } from './timing';

/** Per-call overrides of the retry settings in `config.redlock`. */
export interface LockOptions {
  retryCount?: number;
  retryDelay?: number;
  retryJitter?: number;
  /** Give up after this many ms in total (0: as long as node-redlock would, see `waitBudget`). */
  waitTimeout?: number;
  /** Grant the lock to waiters in arrival order (one name on one logical Redis node). */
  fair?: boolean;
}

export interface UsingOptions extends LockOptions {
  /** Stop extending after this long (ms); defaults to `config.redlock.maxHold`. */
  maxHold?: number;
}

export type Settings = Pick<RedlockConfig, 'prefix' | 'ttl' | 'retryCount' | 'retryDelay' | 'retryJitter' | 'driftFactor' | 'waitTimeout' | 'maxHold' | 'commandTimeout' | 'fair'>;

/** Gives a lock's turn in the local queue back (local-queue.ts). */
type LeaveQueue = () => void;

/** How one `lock()` call waits (Redlock#waitPlan). */
interface WaitPlan {
  /** How long it may wait in all (ms). */
  budget: number;
  delay: number;
  jitter: number;
  fair: boolean;
}

/** Why Redis last refused a lock() call (whyNotAcquired), and when. */
interface Refusal {
  error: LockBusyError | LockUnavailableError;
  at: number;
}

/** Ends a held lock at close instead of releasing it. */
type Closer = () => Promise<unknown>;

/** The lock client mounted on `app.redlock`. */
export class Redlock implements LockOwner {
  /** Locks this process holds, each with the function that gives its turn in the local queue back. */
  private readonly held = new Map<Lock, LeaveQueue>();
  /**
   * One alarm for every held lock: it forgets those whose lease ran out. Not cancelled on release, so
   * a client that locks and unlocks in a loop arms one timer per lease, not one per lock.
   */
  private readonly sweeper = new Alarm(() => this.sweep());
  /** Locks a using() keeps alive, with the signal it aborts when the lease is lost. */
  private readonly leaseSignals = new Map<Lock, AbortSignal>();
  /** How close() ends a held lock other than by releasing it (see `endAtClose`). */
  private readonly closers = new Map<Lock, Closer>();
  private readonly queue = new LocalQueue();
  private readonly subscribers: ReleaseSubscriber[];
  /** Where this client hears the releases it waits for (keys.ts#wakeChannel). */
  readonly wakeChannel: string;
  /** Waiters to wake when the client closes. */
  private readonly bells = new Set<Doorbell>();
  /** Names of the scheduled jobs this app locks fleet-wide. */
  readonly jobNames = new Set<string>();
  private closed = false;
  /** lock() calls that have their local turn and may be talking to Redis: close() waits for them. */
  private active = 0;
  private whenIdle?: () => void;
  private defaults?: WaitPlan;
  /** Why Redis last refused the caller of each key that is asking it, for the local callers behind it (`busyHere`). */
  private readonly refusals = new Map<string, Refusal>();

  constructor(
    readonly stores: LockStore[],
    readonly settings: Settings,
    private readonly logger: Pick<Logger, 'warn'> = console,
  ) {
    this.wakeChannel = wakeChannel(settings.prefix, newLockValue());
    this.subscribers = stores.map(store => new ReleaseSubscriber(store, settings.commandTimeout, this.wakeChannel, (key, at, value) => this.passOn(key, at, value)));
  }

  /** Whether close() has begun: no lock is granted any more. */
  get isClosed(): boolean {
    return this.closed;
  }

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
   * Acquires every name or none. While someone else holds it, waits to be woken by the release
   * (or until the holder's lease runs out), within `waitTimeout`. Rejects with LockBusyError (who
   * holds it, for how long) or LockUnavailableError (which nodes failed and why).
   */
  async lock(names: string | string[], ttl: number = this.settings.ttl, options?: LockOptions): Promise<Lock> {
    const sorted = checkNames(names);
    checkLeaseTtl(ttl, this.driftFactor);
    const plan = options === undefined && sorted.length === 1 ? this.defaultPlan : this.waitPlan(checkOptions<LockOptions>(options), sorted.length);
    const deadline = steadyNow() + plan.budget;
    const keys = sorted.map(n => this.key(n));
    if (this.stores[0].clustered) checkClusterKeys(sorted, keys);
    if (this.closed) throw closedError(keys);

    const reentered = heldHere(this, keys);
    if (reentered) return reentered.reenter();
    const selfHeld = partlyHeldHere(this, keys);
    if (selfHeld.length > 0) {
      throw new LockBusyError(keys, [], `this call chain itself (it holds ${selfHeld.join(', ')} through another lock)`, 0, 0);
    }

    const leave = this.queue.tryEnter(keys) ?? await this.queue.enter(keys, deadline);
    if (!leave) throw this.busyHere(keys);
    this.active++;
    try {
      if (this.closed) throw closedError(keys); // the turn came from close() releasing the lock ahead
      const lock = await this.acquire(sorted, keys, ttl, deadline, plan);
      this.track(lock, leave);
      if (this.closed) {
        // Granted while closing, maybe after close() released what it held: nobody would release this one.
        await lock.unlock(true).catch(() => undefined);
        throw closedError(keys);
      }
      return lock;
    } catch (err) {
      leave();
      throw err;
    } finally {
      if (--this.active === 0) this.whenIdle?.();
    }
  }

  /** How a one-name `lock()` waits without options: the configured defaults, checked once. */
  private get defaultPlan(): WaitPlan {
    this.defaults ??= this.waitPlan({}, 1);
    return this.defaults;
  }

  /** How one `lock()` call waits: its options over the configured defaults, checked. */
  private waitPlan(opts: Partial<LockOptions>, names: number): WaitPlan {
    const retryCount = checkCount(opts.retryCount ?? this.settings.retryCount, 'options.retryCount', -1);
    const delay = checkCount(opts.retryDelay ?? this.settings.retryDelay, 'options.retryDelay', 0);
    const jitter = checkCount(opts.retryJitter ?? this.settings.retryJitter, 'options.retryJitter', 0);
    const waitTimeout = checkCount(opts.waitTimeout ?? this.settings.waitTimeout, 'options.waitTimeout', 0);
    if (opts.fair !== undefined && typeof opts.fair !== 'boolean') throw new TypeError(`[egg-distributed-lock] options.fair must be a boolean, got ${typeof opts.fair}`);
    if (opts.fair && (names > 1 || this.stores.length > 1)) {
      // Independent masters could each put a different waiter first, and then nobody wins a quorum.
      throw new TypeError('[egg-distributed-lock] options.fair needs one name on one logical Redis node (single, Cluster or Sentinel), not several masters');
    }
    // config.redlock.fair (one logical node: checked at boot) applies where it can: to one name.
    const fair = opts.fair ?? (this.settings.fair && names === 1);
    const budget = retryCount === 0 ? 0 : waitTimeout || waitBudget(retryCount, delay, jitter);
    // Beyond the longest timer is forever for a wait (the local queue times out a caller by a timer).
    return { budget: budget > MAX_TIMER_MS ? Infinity : budget, delay, jitter, fair };
  }

  /**
   * Whether a quorum of nodes' subscribers already listens on this client's wake channel (see
   * `acquire`): a release that frees the lock runs on a quorum, so one of them wakes this client.
   */
  private get listening(): boolean {
    return this.subscribers.filter(s => s.ready).length >= this.quorum;
  }

  /**
   * The Redis side of `lock()`. A client that does not listen for wakes yet makes a plain first
   * attempt, which is all an uncontended lock costs. When busy it listens for wakes (its wake
   * channel; on a Cluster see ReleaseSubscriber) and attempts again, now joining the
   * keys' waiter queues (a release between the two is then not missed), then sleeps until a release
   * wakes this waiter or the holder's lease runs out. A client that already listens joins the queues
   * with its first attempt. When nodes fail, retry after retryDelay + jitter. A waiter that gives up
   * leaves the queues.
   */
  private async acquire(names: string[], keys: string[], ttl: number, deadline: number, plan: WaitPlan): Promise<Lock> {
    const value = newLockValue();
    let first: QuorumResult | undefined;
    if (!plan.fair && (deadline <= steadyNow() || !this.listening)) {
      first = await acquireQuorum(this.stores, keys, value, ttl, this.driftFactor);
      if (first.granted) return new Lock(this, names, keys, value, first.expiration, first.tokens!);
    }
    return this.wait(names, keys, value, ttl, deadline, plan, first);
  }

  /** `acquire` from its first failed attempt on (or, for a listening client or a fair waiter, from the start). */
  private async wait(names: string[], keys: string[], value: string, ttl: number, deadline: number, plan: WaitPlan,
    first?: QuorumResult): Promise<Lock> {
    const { fair } = plan;
    const bell = new Doorbell();
    this.bells.add(bell);
    let waiting: WaitingAttempt | undefined = fair ? { fairTicketTtl: FAIR_TICKET_TTL } : undefined;
    let unwatch: (() => void) | undefined;
    const watch = async () => {
      unwatch = await this.watchReleases(keys, () => bell.ring());
      waiting = { ...waiting, wake: this.wakeChannel };
    };
    let granted = false;
    let refusal: Refusal | undefined;
    try {
      if (!first && deadline > steadyNow() && this.listening) await watch();
      for (let attempt = 1; ; attempt++) {
        if (!first && this.closed) throw closedError(keys); // woken by close(): no further attempt
        const result = first ?? await acquireQuorum(this.stores, keys, value, ttl, this.driftFactor, waiting);
        first = undefined;
        if (result.granted) {
          granted = true;
          return new Lock(this, names, keys, value, result.expiration, result.tokens!);
        }
        if (waiting?.wake && !waiting.queued) waiting = { ...waiting, queued: true };
        const error = whyNotAcquired(keys, result.outcomes, attempt);
        refusal = { error, at: steadyNow() };
        for (const key of keys) this.refusals.set(key, refusal);
        const left = deadline - steadyNow();
        if (left <= 0 || this.closed) throw error;
        if (!(error instanceof LockBusyError)) {
          await bell.wait(Math.min(retryDelay(plan.delay, plan.jitter), left));
        } else if (!unwatch) {
          await watch();
        } else {
          // A lease with no expiry cannot be waited out: pace by retryDelay; a fair waiter renews its ticket.
          const wait = error.remainingMs > 0 ? error.remainingMs + 1 : retryDelay(plan.delay, plan.jitter);
          await bell.wait(Math.min(wait, left, fair ? FAIR_TICKET_TTL / 3 : Infinity));
        }
      }
    } finally {
      for (const key of keys) if (this.refusals.get(key) === refusal) this.refusals.delete(key);
      this.bells.delete(bell);
      unwatch?.();
      if (waiting && !granted) {
        await Promise.all(this.stores.map(store => store.leaveQueues(keys, value, waiting!).catch(() => undefined)));
      }
    }
  }

  /**
   * Listens, on every node that answers, for the releases of `keys` that wake this waiter. Returns
   * once a quorum of nodes listens (or every node has answered): a node that is down or hung would
   * otherwise hold every wait up for the command timeout. A late node listens from when it answers.
   */
  private async watchReleases(keys: string[], ring: () => void): Promise<() => void> {
    const stops: Array<() => void> = [];
    let stopped = false;
    const watches = this.subscribers.map(subscriber => subscriber.watch(keys, ring).then(stop => {
      if (stopped) stop();
      else stops.push(stop);
    }));
    await whenEnoughFulfilled(watches, this.quorum);
    return () => {
      stopped = true;
      for (const stop of stops) stop();
    };
  }

  /**
   * A wake for a key no caller of this client waits for. With N masters every master wakes the
   * waiter, and the later wakes land once it holds the lock: nothing to do. Otherwise its leave did
   * not reach Redis (or came too late): leave the queue now, which wakes the next waiter if the key
   * is free — and the fair queue too, for the wake's value: a wake forwarded to the head of the fair
   * queue names the head, here a ticket this client left behind, which would otherwise keep
   * bouncing wakes with the waiter behind it until it lapses.
   */
  private passOn(key: string, store: LockStore, value: string): void {
    if (this.heldOn([ key ])) return;
    store.leaveEveryQueue(key, this.wakeChannel, value).catch(() => undefined);
  }

  /**
   * The error for a caller that waited its whole budget behind other callers of this process: this
   * process holds the lock, or the caller ahead was told why not by Redis (busy elsewhere, or Redis
   * unavailable), or that caller's attempt is still under way.
   */
  private busyHere(keys: string[]): LockError {
    const held = this.heldOn(keys);
    if (held) return new LockBusyError(keys, [], `${OWNER} (this process)`, held.remainingMs, 0);
    const refusal = keys.map(key => this.refusals.get(key)).find(Boolean);
    if (!refusal) return new LockBusyError(keys, [], `${OWNER} (this process, whose call ahead is acquiring it)`, 0, 0);
    const { error, at } = refusal;
    if (error instanceof LockUnavailableError) return new LockUnavailableError(keys, error.outcomes, error.reason);
    return new LockBusyError(keys, error.outcomes, error.holder, Math.max(0, error.remainingMs - (steadyNow() - at)), 0);
  }

  /** A lock this client holds on any of `keys`. */
  private heldOn(keys: string[]): Lock | undefined {
    return this.locks.find(lock => lock.keys.some(key => keys.includes(key)));
  }

  /** Keeps a granted lock's turn in the local queue until it is released or its lease runs out. */
  private track(lock: Lock, leave: LeaveQueue): void {
    this.held.set(lock, leave);
    this.sweeper.setBy(lock.expiration);
  }

  /** Forgets the held locks whose lease has run out (by this process's clock); waits for the next. */
  private sweep(): void {
    let next = Infinity;
    for (const lock of this.locks) {
      if (lock.remainingMs === 0) this.forget(lock);
      else next = Math.min(next, lock.expiration);
    }
    if (next < Infinity) this.sweeper.setBy(next);
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
   * the routine finished, because its work was not protected. Inside the routine the names are held
   * by the call chain: nested lock/using of the same names re-enter instead of waiting.
   */
  async using<T>(
    names: string | string[],
    ttl: number | undefined,
    routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T,
    options?: UsingOptions,
  ): Promise<T> {
    checkFunction(routine, 'routine');
    ttl ??= this.settings.ttl; // as lock() takes it: the lease is then extended by the same ttl
    const maxHold = checkCount(checkOptions<UsingOptions>(options).maxHold ?? this.settings.maxHold, 'options.maxHold', 1);
    const lock = await this.lock(names, ttl, options);
    // Re-entered (a using() of the same names up the call chain): that one keeps the lease alive and
    // watches it. A second keepAlive would set the lease to this ttl, cutting it short under the outer routine.
    const outer = this.leaseSignals.get(lock);
    const lease = outer ? undefined : this.keepAlive(lock, ttl, maxHold);
    const signal = outer ?? lease!.signal;
    const holds = lock.holdCount; // this using()'s hold included
    let released: boolean | undefined;
    const release = () => lock.unlock().catch((err: Error) => {
      this.logger.warn('[egg-distributed-lock] release of %s failed: %s', lock.key, err.message);
      return true; // unknown, not known lost: the lease runs out by itself
    });
    try {
      const run = () => Promise.resolve(routine(signal, lock));
      const result = await (lease ? this.runUnderLease(lock, signal, run) : runHolding(lock, run));
      lease?.stop();
      if (signal.aborted) throw signal.reason;
      if (lock.isReleased || lock.holdCount < holds) {
        // The routine gave this using()'s hold back itself: giving it back again would release an
        // outer using()'s (or a scheduled fire's) hold under its running routine.
        released = false;
        throw new LockLostError(lock.keys, 'the routine released it itself before it ended (using() releases it)');
      }
      // A routine whose last step blocked the event loop past the lease returns before any timer could say so.
      if (!lock.isHeld) throw new LockLostError(lock.keys, 'its lease ran out while the routine ran (the event loop was blocked past it)');
      released = await release();
      if (!released) throw new LockLostError(lock.keys, 'another client held it when the routine ended');
      return result;
    } finally {
      lease?.stop();
      if (released === undefined) await release();
    }
  }

  /**
   * Runs `fn` as a call chain that holds `lock` while its lease is kept alive (by using(), or by a
   * scheduled fire), `signal` aborted when it is lost: a nested lock()/using() of its names
   * re-enters, and a nested using() runs under that lease instead of extending it to its own ttl.
   */
  async runUnderLease<T>(lock: Lock, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    this.leaseSignals.set(lock, signal);
    try {
      return await runHolding(lock, fn);
    } finally {
      this.leaseSignals.delete(lock);
    }
  }

  /**
   * Extends `lock` while a using() runs; its signal is aborted the moment the lease is lost, or when
   * the client closes under the routine (close() releases the lock).
   */
  private keepAlive(lock: Lock, ttl: number, maxHold: number): { signal: AbortSignal; stop: () => void } {
    const controller = new AbortController();
    const stop = keepAlive(lock, ttl, maxHold, err => controller.abort(err));
    this.endAtClose(lock, () => {
      controller.abort(new LockLostError(lock.keys, 'the lock client is closing and released it'));
      return lock.unlock(true);
    });
    return { signal: controller.signal, stop };
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
    return [ ...this.held.keys() ];
  }

  /** Stops tracking a lock (released, or its lease ran out) and lets the next local caller ask Redis. */
  forget(lock: Lock): void {
    const leave = this.held.get(lock);
    if (!leave) return;
    this.held.delete(lock);
    this.closers.delete(lock);
    leave();
  }

  /**
   * Has close() end a held lock with `end` instead of releasing it: a scheduled fire that is still
   * running keeps its fire window (schedule/locked-task.ts).
   */
  endAtClose(lock: Lock, end: Closer): void {
    if (this.held.has(lock)) this.closers.set(lock, end);
  }

  /**
   * Releases every lock this process holds and wakes its waiters; waits for the lock() calls still
   * talking to Redis, which give up (leaving their queues, releasing what they were granted
   * meanwhile); then quits the clients the plugin created.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const bell of this.bells) bell.ring();
    await Promise.all(this.locks.map(lock => (this.closers.get(lock) ?? (() => lock.unlock(true)))().catch((err: Error) => {
      this.logger.warn('[egg-distributed-lock] release of %s at close failed: %s', lock.key, err.message);
    })));
    if (this.active > 0) await new Promise<void>(resolve => { this.whenIdle = resolve; });
    this.sweeper.cancel();
    for (const subscriber of this.subscribers) subscriber.close();
    await Promise.all(this.stores.map(store => store.close()));
  }
}

/** Resolves once `needed` of `promises` have fulfilled, or every one has settled. */
function whenEnoughFulfilled(promises: Array<Promise<unknown>>, needed: number): Promise<void> {
  return new Promise(resolve => {
    let fulfilled = 0;
    let settled = 0;
    const onFulfilled = () => ++fulfilled >= needed && resolve();
    const onSettled = () => ++settled === promises.length && resolve();
    promises.forEach(promise => promise.then(onFulfilled, () => undefined).then(onSettled));
  });
}

function closedError(keys: string[]): LockUnavailableError {
  return new LockUnavailableError(keys, [], 'the lock client is closed');
}

/** Explains a failed acquisition: busy (who holds it, for how long) or unavailable (which nodes failed). */
export function whyNotAcquired(keys: string[], outcomes: NodeOutcome[], attempts: number): LockBusyError | LockUnavailableError {
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
