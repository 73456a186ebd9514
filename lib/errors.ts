/** Why one Redis node did not grant a step, as reported back to the caller. */
export interface NodeOutcome {
  /** `host:port` (or cluster / sentinel description); never contains a password. */
  node: string;
  /** `granted`: the node did what was asked; `held`: someone else holds a key; `error`: no answer. */
  status: 'granted' | 'held' | 'error';
  /** For `held`: the key, the holder's identity and its remaining lease on this node. */
  key?: string;
  holder?: string;
  remainingMs?: number;
  /** For `error`: what went wrong (connection refused, timeout, script error). */
  error?: string;
}

/** Base class of every error the lock raises about the lock itself (not argument errors). */
export class LockError extends Error {
  readonly keys: string[];
  readonly outcomes: NodeOutcome[];
  constructor(message: string, keys: string[], outcomes: NodeOutcome[] = []) {
    super(message);
    this.name = new.target.name;
    this.keys = keys;
    this.outcomes = outcomes;
  }
}

/** Someone else holds the lock: says who and for how long. */
export class LockBusyError extends LockError {
  readonly holder: string;
  readonly remainingMs: number;
  readonly attempts: number;
  constructor(keys: string[], outcomes: NodeOutcome[], holder: string, remainingMs: number, attempts: number) {
    super(`[egg-distributed-lock] ${keys.join(', ')} is busy: held by ${holder} for ~${remainingMs} more ms ` +
      `(gave up after ${attempts} attempt${attempts === 1 ? '' : 's'})`, keys, outcomes);
    this.holder = holder;
    this.remainingMs = remainingMs;
    this.attempts = attempts;
  }
}

/** Too few Redis nodes answered to reach a quorum: says which nodes failed and why. */
export class LockUnavailableError extends LockError {
  /** Why: which nodes failed, or what else kept the lock from being granted. */
  readonly reason: string;
  constructor(keys: string[], outcomes: NodeOutcome[], reason?: string) {
    const failed = outcomes.filter(o => o.status === 'error').map(o => `${o.node} (${o.error})`);
    const why = reason ?? `no quorum: ${failed.length} of ${outcomes.length} Redis nodes failed: ${failed.join('; ')}`;
    super(`[egg-distributed-lock] ${keys.length > 0 ? keys.join(', ') : 'Redis'} is unavailable: ${why}`, keys, outcomes);
    this.reason = why;
  }
}

/** A lease that this process held is gone (expired, taken over, or past its hold cap). */
export class LockLostError extends LockError {
  constructor(keys: string[], reason: string, outcomes: NodeOutcome[] = []) {
    super(`[egg-distributed-lock] lease on ${keys.join(', ')} was lost: ${reason}`, keys, outcomes);
  }
}
