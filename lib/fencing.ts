import { FENCED_ACCESS, runScript, script } from './scripts';
import type { RedisLike } from './store';

const FENCED = script(FENCED_ACCESS);

/** A guarded resource refused an access because a later lock holder has used it since. */
export class StaleTokenError extends Error {
  constructor(readonly key: string, readonly token: number, readonly highestSeen: number) {
    super(`[egg-distributed-lock] ${key} refused fencing token ${token}: token ${highestSeen} has been used since`);
    this.name = 'StaleTokenError';
  }
}

/**
 * A value in Redis guarded by fencing tokens: every read and write carries the lock's
 * `fencingToken`, and one lower than the highest seen is refused with StaleTokenError. Use it (or
 * the same rule in your own store, see the README's SQL example) for data a lock protects, so a
 * holder whose lease ran out while it was paused cannot clobber the next holder's work.
 */
export class FencedValue {
  constructor(private readonly client: RedisLike, readonly key: string) {}

  read(token: number): Promise<string | null> {
    return this.access(token, 'read');
  }

  async write(token: number, value: string): Promise<void> {
    await this.access(token, 'write', value);
  }

  private async access(token: number, op: 'read' | 'write', value = ''): Promise<string | null> {
    if (!Number.isSafeInteger(token) || token < 0) throw new TypeError(`[egg-distributed-lock] token must be a lock's fencingToken, got ${token}`);
    const [ ok, result ] = await runScript(this.client as any, FENCED, [ this.key ], [ token, op, value ]) as [ number, string | null ];
    if (ok !== 1) throw new StaleTokenError(this.key, token, Number(result));
    return result;
  }
}
