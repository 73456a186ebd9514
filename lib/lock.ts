import { LockLostError, LockUnavailableError } from './errors';
import { extendQuorum, quorumGranted, releaseQuorum, unreachable } from './quorum';
import type { LockStore } from './store';
import { checkLeaseTtl } from './arguments';
import { steadyNow } from './timing';

/** What a Lock needs from the client that made it. */
export interface LockOwner {
  readonly stores: LockStore[];
  readonly driftFactor: number;
  forget(lock: Lock): void;
}

/** A lease on one or more keys, held by this process until `expiration` unless extended. */
export class Lock {
  private released = false;
  /** Holds by the call chain that owns it (see reentrancy.ts); Redis is released when it drops to 0. */
  private holds = 1;

  constructor(
    /** The client that made it. */
    readonly owner: LockOwner,
    /** The names as given (sorted, distinct). */
    readonly names: string[],
    /** The Redis keys, `${prefix}_${name}`. */
    readonly keys: string[],
    /** The random owner value stored in every key. */
    readonly value: string,
    /**
     * When the lease ends unless extended (clock drift already taken off), in epoch-scale ms of this
     * process's steady clock (timing.ts#steadyNow), which does not follow steps of the wall clock.
     */
    public expiration: number,
    /** Fencing token of each name, in `names` order: strictly increasing per name across holders. */
    readonly fencingTokens: number[],
  ) {}

  /**
   * The fencing token (of the first name, for a multi-name lock: see `fencingTokens`). Hand it to
   * the guarded resource with every access; the resource rejects tokens lower than one it has seen.
   */
  get fencingToken(): number {
    return this.fencingTokens[0];
  }

  /** The name, or the names joined by `,` for a multi-name lock. */
  get name(): string {
    return this.names.join(',');
  }

  /** The Redis key, or the keys joined by `,` for a multi-name lock. */
  get key(): string {
    return this.keys.join(',');
  }

  /** Whether it has been released (by its last unlock(), or at close). */
  get isReleased(): boolean {
    return this.released;
  }

  /** Whether this process still holds it: not released, and the lease has not run out. */
  get isHeld(): boolean {
    return !this.released && this.expiration > steadyNow();
  }

  /** Milliseconds left on the lease by this process's clock; 0 once it has run out. */
  get remainingMs(): number {
    return Math.max(0, this.expiration - steadyNow());
  }

  /**
   * Sets the lease to `ttl` ms from now. Rejects with LockLostError when the lock is no longer
   * ours (expired, taken, or released), LockUnavailableError when too few nodes answered.
   */
  async extend(ttl: number): Promise<this> {
    checkLeaseTtl(ttl, this.owner.driftFactor);
    if (this.released) throw new LockLostError(this.keys, 'it was already released');
    // Past its lease this process has let it go (the next local caller may have its turn), even if the key lingers.
    if (!this.isHeld) throw new LockLostError(this.keys, 'its lease had already run out');
    const result = await extendQuorum(this.owner.stores, this.keys, this.value, ttl, this.owner.driftFactor);
    // Granted in time, and still held here: not answered after the lease ran out, when this process
    // had already let the lock go (a late extension does not take it back).
    if (result.granted && this.isHeld) {
      this.expiration = result.expiration;
      return this;
    }
    if (!result.granted && unreachable(result.outcomes)) throw new LockUnavailableError(this.keys, result.outcomes);
    // Lost: no longer held here, though its lease may have time left by this process's clock (a
    // nested lock() must not re-enter it, the next local caller may ask Redis), and what Redis still
    // keeps of it (a late extension, a minority of masters) is freed. Lost, not released by its holder.
    this.expiration = Math.min(this.expiration, steadyNow());
    this.owner.forget(this);
    await releaseQuorum(this.owner.stores, this.keys, this.value).catch(() => undefined);
    throw new LockLostError(this.keys, quorumGranted(result.outcomes)
      ? 'its lease ran out before Redis confirmed the extension'
      : 'it expired or another client holds it now', result.outcomes);
  }

  /** Holds by its call chain (reentrancy.ts): each lock()/using() of it that has not given its hold back. */
  get holdCount(): number {
    return this.holds;
  }

  /** One more hold by the call chain that owns it; each hold is given back by one unlock(). */
  reenter(): this {
    this.holds++;
    return this;
  }

  /**
   * Gives back one hold; the last one releases the lock. Resolves false when it had already expired
   * or been taken (it never deletes a lock someone else holds); rejects with LockUnavailableError
   * only when too few nodes answered to tell while the lease may still run. `all` releases
   * regardless of holds (closing the app).
   */
  async unlock(all = false): Promise<boolean> {
    if (this.released) return false;
    if (this.holds > 1 && !all) {
      this.holds--;
      return this.isHeld; // an outer hold releases it (and asks Redis); this one answers from what this process knows
    }
    const wasHeld = this.isHeld; // past its lease by this process's clock it had expired: unanswered, that is the answer
    const result = await releaseQuorum(this.owner.stores, this.keys, this.value);
    if (!result.granted && unreachable(result.outcomes) && wasHeld) throw new LockUnavailableError(this.keys, result.outcomes);
    this.released = true;
    this.owner.forget(this);
    return result.granted;
  }
}
