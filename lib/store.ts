import calculateSlot from 'cluster-key-slot';
import { Deadlines } from './deadlines';
import { COMPANIONS, companionKey, shardedWakeChannel } from './keys';
import type { SentinelSwitches } from './sentinel-switches';
import { WAITER_QUEUE_SLACK } from './timing';
import { runScript, script, Script, ScriptName, SCRIPTS } from './scripts';

/** What ioredis (4 or 5, plain or Cluster) offers that the store uses: enough to borrow egg-redis clients. */
export interface RedisLike {
  status: string;
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(reconnect?: boolean): void;
  [command: string]: any;
}

/**
 * Resolves when `client` is connected; rejects after `timeoutMs`, or at its first connection error
 * when `failOnError` (boot wants to know at once that a node refuses connections).
 */
export function whenReady(client: RedisLike, timeoutMs: number, failOnError = false): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      client.removeListener('ready', done);
      client.removeListener('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onError = (err: Error) => failOnError && done(err);
    const timer = setTimeout(() => done(new Error(`not connected after ${timeoutMs} ms`)), timeoutMs);
    client.once('ready', done);
    client.on('error', onError);
  });
}

export type AcquireReply =
  | { granted: true; /** fencing token of each key, in order */ tokens: number[] }
  | {
    granted: false; key: string; holder: string; remainingMs: number;
    /** The key is free, but `holder` is an older fair waiter first in line; `remainingMs` is what its ticket has left. */
    firstInLine?: boolean;
  };

/** How a waiting attempt differs from a first one. */
export interface WaitingAttempt {
  /** Take the one key in arrival order (scripts.ts ACQUIRE_FAIR), renewing a ticket this long (ms). */
  fairTicketTtl?: number;
  /** Join the keys' waiter queues under this client's wake channel when they are held (see `handsOver`). */
  wake?: string;
  /** An earlier attempt may have joined the queues: one that gets the keys leaves them. */
  queued?: boolean;
}

/**
 * How a release wakes the waiters of a key (scripts.ts ANNOUNCE_FREE): the first queued one by
 * PUBLISH on its client's wake channel; on a Cluster by SPUBLISH on its client's wake channel for
 * that key's slot (Redis 7); or, on a Cluster without sharded pub/sub, every waiter of the key by
 * broadcast.
 */
export type WakeBy = 'publish' | 'spublish' | 'broadcast';

/** Scripts that can grant a lock: not re-sent once their caller has given up (see runScript). */
const GRANTING = new Set<ScriptName>([ 'ACQUIRE', 'ACQUIRE_FAIR' ]);

const LOADED = Object.fromEntries(Object.entries(SCRIPTS).map(([ name, lua ]) => [ name, script(lua) ])) as Record<ScriptName, Script>;

/** Loads the lock scripts on a connection each time it comes up, and now if it is up. */
function loadScriptsOn(connection: RedisLike): void {
  const load = () => {
    for (const { lua } of Object.values(LOADED)) connection.script('LOAD', lua).catch(() => undefined);
  };
  connection.on('ready', load);
  if (connection.status === 'ready') load();
}

/** Waits for every promise, then rethrows the first failure: one slot's node failing does not stop the others. */
async function settleAll<T>(promises: Array<Promise<T>>): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map(r => (r as PromiseFulfilledResult<T>).value);
}

function acquireReply(reply: unknown, keyPrefix: string): AcquireReply {
  const [ granted, ...rest ] = reply as [ number, ...Array<string | number> ];
  if (granted === 1) return { granted: true, tokens: rest.map(Number) };
  const [ key, holder, pttl, ticketLeft ] = rest as [ string, string, number, number | undefined ];
  const refused = { granted: false as const, key: key.slice(keyPrefix.length), holder };
  // pttl -3: the key is free, but `holder` is first in the fair queue (scripts.ts ACQUIRE_FAIR)
  return pttl === -3 ? { ...refused, remainingMs: ticketLeft!, firstInLine: true } : { ...refused, remainingMs: pttl };
}

/**
 * One logical Redis: a single server, a Sentinel-managed master or a whole Cluster. Runs the lock
 * scripts with a time limit, so a hung node counts as failed instead of stalling the quorum.
 */
export class LockStore {
  private readonly deadlines: Deadlines;
  /**
   * How releases here wake waiters: on a Cluster 'broadcast' until `detectShardedWakes` finds SPUBLISH.
   * Writable so that tests and the bench can run the Redis 6 fallback on a Redis 7 Cluster; every
   * client of one Cluster must wake the same way.
   */
  wakeBy: WakeBy;
  /**
   * ioredis's `keyPrefix`, which it puts before every key it sends: keys that come back from Redis
   * (in script replies and wake messages) carry it, and lose it here. Not on a Cluster (config.ts).
   */
  readonly keyPrefix: string;
  /** Whether the client is a Redis Cluster's: a script may touch only one slot's keys (keys.ts#companionKey). */
  readonly clustered: boolean;
  /** An acquire script's reply, read (one function for every call, not a closure per call). */
  private readonly acquired = (reply: unknown): AcquireReply => acquireReply(reply, this.keyPrefix);

  /** On Sentinel: moves the store's connections (the client, the wake subscriber) to a new master at once. */
  switches?: SentinelSwitches;

  constructor(
    readonly client: RedisLike,
    /** Address for logs and errors; never holds a password. */
    readonly node: string,
    /** Whether the plugin created the client (and so may quit it), or borrowed it from egg-redis. */
    readonly owned: boolean,
    commandTimeout: number,
  ) {
    this.deadlines = new Deadlines(commandTimeout);
    this.clustered = client.isCluster === true;
    this.wakeBy = this.clustered ? 'broadcast' : 'publish';
    this.keyPrefix = client.options?.keyPrefix ?? '';
    // Load the scripts whenever a connection is (re)established, before anything else is sent on
    // it: an EVALSHA that meets NOSCRIPT is re-sent as EVAL *after* commands queued behind it, so
    // a release could overtake the acquisition it should undo (and an undo is not re-sent at all).
    // A Cluster routes SCRIPT LOAD to one node only: there every node's connection loads them.
    if (this.clustered) {
      for (const node of client.nodes()) loadScriptsOn(node);
      client.on('+node', loadScriptsOn);
    } else {
      loadScriptsOn(client);
    }
  }

  get ready(): boolean {
    return this.client.status === 'ready';
  }

  private companion(key: string, suffix: string): string {
    return companionKey(key, suffix, this.clustered);
  }

  private waiterQueues(keys: string[]): string[] {
    return keys.map(key => this.companion(key, COMPANIONS.waiters));
  }

  private fairQueueKeys(key: string): string[] {
    return [ key, this.companion(key, COMPANIONS.queue), this.companion(key, COMPANIONS.tickets) ];
  }

  /** Whether a release here wakes only the first queued waiter (not every waiter: see WakeBy). */
  get handsOver(): boolean {
    return this.wakeBy !== 'broadcast';
  }

  /**
   * On a Cluster, hands over by SPUBLISH when the servers know it (Redis 7) and the client can
   * subscribe shard channels on the right nodes (ioredis 5 with `shardedSubscribers`); else keeps
   * waking by broadcast. Run once at boot.
   */
  async detectShardedWakes(): Promise<void> {
    const { client } = this;
    if (!this.clustered || client.options?.shardedSubscribers === undefined) return;
    try {
      const [ spublish ] = await this.bounded(client.command('INFO', 'spublish')) as unknown[];
      if (spublish) this.wakeBy = 'spublish';
    } catch {
      // an old server, or none answering now: broadcast still wakes every waiter
    }
  }

  /**
   * The channel this client's waiters of `keys` (one slot) are woken on. By SPUBLISH it must be in
   * their slot: the first key's shard wake channel, which the subscriber listens on (it subscribes
   * that of every key waited for).
   */
  private wakeFor(keys: string[], wake: string): string {
    return this.wakeBy === 'spublish' && wake ? shardedWakeChannel(keys[0], wake) : wake;
  }

  /** Takes every key or none, with a fencing token for each (scripts.ts NEXT_FENCE). */
  acquire(keys: string[], value: string, ttl: number, waiting: WaitingAttempt = {}): Promise<AcquireReply> {
    const { wake } = waiting;
    const queueArgs = (group: string[]) => (wake && this.handsOver ? [ this.wakeFor(group, wake), WAITER_QUEUE_SLACK, waiting.queued ? '1' : '0' ] : []);
    if (waiting.fairTicketTtl) {
      const keysFair = [ ...this.fairQueueKeys(keys[0]), this.companion(keys[0], COMPANIONS.fence), ...this.waiterQueues(keys) ];
      return this.run('ACQUIRE_FAIR', keysFair, [ value, ttl, waiting.fairTicketTtl, this.wakeBy, ...queueArgs(keys) ]).then(this.acquired);
    }
    const args = (group: string[]) => [ value, ttl, this.wakeBy, ...queueArgs(group) ];
    const groups = this.slotGroups(keys);
    if (groups.length === 1) return this.run('ACQUIRE', this.acquireKeys(keys), args(keys)).then(this.acquired);
    return this.acquireGroups(groups, keys, value, args, wake && this.handsOver ? wake : undefined);
  }

  /**
   * A Cluster lock over several slots is taken group by group. When a group is held, the groups
   * already taken are undone, and a waiter leaves the queues of the groups after it (joined by an
   * earlier attempt): there it would take wakes it cannot use from the waiters behind it.
   */
  private async acquireGroups(groups: string[][], keys: string[], value: string, args: (group: string[]) => Array<string | number>,
    wake?: string): Promise<AcquireReply> {
    const tokens = new Map<string, number>();
    for (const [ i, group ] of groups.entries()) {
      const reply = this.acquired(await this.run('ACQUIRE', this.acquireKeys(group), args(group)));
      if (!reply.granted) {
        await settleAll([
          ...groups.slice(0, i).map(taken => this.releaseGroup(taken, value)),
          ...(wake ? groups.slice(i + 1).map(later => this.leaveGroup(later, wake)) : []),
        ]);
        return reply;
      }
      group.forEach((key, k) => tokens.set(key, reply.tokens[k]));
    }
    return { granted: true, tokens: keys.map(key => tokens.get(key)!) };
  }

  /** The keys ACQUIRE takes: the lock keys, their fencing counters, their waiter queues. */
  private acquireKeys(keys: string[]): string[] {
    return [ ...keys, ...keys.map(key => this.companion(key, COMPANIONS.fence)), ...this.waiterQueues(keys) ];
  }

  /** A waiter that gives up leaves the queues it joined (and announces a key it finds free). */
  async leaveQueues(keys: string[], value: string, waiting: WaitingAttempt): Promise<void> {
    const wake = waiting.wake ?? '';
    if (waiting.fairTicketTtl) return this.leaveEveryQueue(keys[0], wake, value);
    await settleAll(this.slotGroups(keys).map(group => this.leaveGroup(group, wake)));
  }

  /** Leaves the waiter queue of `key` and, for `value`, its fair queue; announces the key if it is free. */
  async leaveEveryQueue(key: string, wake: string, value: string): Promise<void> {
    const [ , queue, tickets ] = this.fairQueueKeys(key);
    await this.run('LEAVE', [ key, ...this.waiterQueues([ key ]), queue, tickets ], [ this.wakeFor([ key ], wake), this.wakeBy, value ]);
  }

  private leaveGroup(keys: string[], wake: string): Promise<unknown> {
    return this.run('LEAVE', [ ...keys, ...this.waiterQueues(keys) ], [ this.wakeFor(keys, wake), this.wakeBy ]);
  }

  /** How many of `keys` still held `value` and were deleted. */
  release(keys: string[], value: string): Promise<number> {
    const groups = this.slotGroups(keys);
    return groups.length === 1 ? this.releaseGroup(keys, value) : this.releaseGroups(groups, value);
  }

  /**
   * Undoes a failed attempt of a lock() call: a release never re-sent as EVAL after NOSCRIPT, which
   * would go out behind the same call's next attempt and could delete what that one was granted
   * (the same value). A key it leaves runs out by its lease, or that next attempt takes it again.
   */
  undo(keys: string[], value: string): Promise<number> {
    const groups = this.slotGroups(keys);
    return groups.length === 1 ? this.releaseGroup(keys, value, false) : this.releaseGroups(groups, value, false);
  }

  private releaseGroup(keys: string[], value: string, resend = true): Promise<number> {
    return this.run('RELEASE', [ ...keys, ...this.waiterQueues(keys) ], [ value, this.wakeBy ], resend).then(Number);
  }

  /** A Cluster lock over several slots is released in every group, also when one group's node fails. */
  private async releaseGroups(groups: string[][], value: string, resend = true): Promise<number> {
    const released = await settleAll(groups.map(group => this.releaseGroup(group, value, resend)));
    return released.reduce((sum, n) => sum + n, 0);
  }

  /** True when every key still held `value` and now has a lease of `ttl` ms. */
  async extend(keys: string[], value: string, ttl: number): Promise<boolean> {
    for (const group of this.slotGroups(keys)) {
      if (Number(await this.run('EXTEND', group, [ value, ttl ])) !== 1) return false;
    }
    return true;
  }

  async close(): Promise<void> {
    this.switches?.close();
    if (!this.owned) return;
    await this.bounded(this.client.quit()).catch(() => undefined);
    // Also after a QUIT: only disconnect() stops the failoverDetector that config.redlock.sentinel may set.
    this.client.disconnect();
  }

  /** A script may only touch keys of one Cluster slot; elsewhere all keys go in one script. */
  private slotGroups(keys: string[]): string[][] {
    if (!this.clustered || keys.length === 1) return [ keys ];
    const bySlot = new Map<number, string[]>();
    for (const key of keys) {
      const slot = calculateSlot(key);
      bySlot.set(slot, [ ...(bySlot.get(slot) ?? []), key ]);
    }
    return [ ...bySlot.values() ];
  }

  /** A plain value (a job's last-run record), bounded by the command timeout like every lock step. */
  async getValue(key: string): Promise<string | null> {
    return this.bounded(this.client.get(key));
  }

  /** Writes a job's last-run record for `ttl` ms unless the key holds a later run's (scripts.ts SAVE_RECORD). */
  async saveRecord(key: string, record: string, startedAt: number, ttl: number): Promise<void> {
    await this.run('SAVE_RECORD', [ key ], [ record, startedAt, ttl ]);
  }

  private run(name: ScriptName, keys: string[], args: Array<string | number>, resend = true): Promise<unknown> {
    let gaveUp = false;
    const reply = this.bounded(runScript(this.client as any, LOADED[name], keys, args, () => resend && !gaveUp));
    if (GRANTING.has(name)) reply.catch(() => { gaveUp = true; });
    return reply;
  }

  /** `reply`, or a rejection once the command timeout has passed: no Redis call of the plugin may wait forever. */
  bounded<T>(reply: Promise<T>): Promise<T> {
    return this.deadlines.bound(reply);
  }
}
