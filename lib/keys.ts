import { randomFillSync } from 'node:crypto';
import { hostname } from 'node:os';

/** The one place the key format lives: `${prefix}_${name}` (or the bare name with an empty prefix). */
export function lockKey(prefix: string, name: string): string {
  return prefix ? `${prefix}_${name}` : name;
}

/**
 * The keys the plugin keeps beside a lock key: fencing counter, waiter queue, fair queue and
 * tickets, a job's last run. A lock name may not end in one (arguments.ts#checkName): `order:fence`
 * would be the fencing counter of `order`.
 */
export const COMPANIONS = { fence: ':fence', waiters: ':waiters', queue: ':queue', tickets: ':tickets', lastRun: ':last' } as const;

/** Where a scheduled job's last run is recorded, beside its lock key. */
export function lastRunKey(prefix: string, name: string): string {
  return `${lockKey(prefix, name)}${COMPANIONS.lastRun}`;
}

/** The channel a release of `key` is announced on where waiters cannot be queued (a Cluster: scripts.ts ANNOUNCE_FREE). */
export function releaseChannel(key: string): string {
  return `${key}:released`;
}

/**
 * The channel one lock client listens on for the keys it waits for (`clientId`: a random value of
 * newLockValue). The waiter queues hold it, and a release wakes the first of them with
 * `<released value>\n<key>` (scripts.ts ANNOUNCE_FREE).
 */
export function wakeChannel(prefix: string, clientId: string): string {
  return `${prefix}:wake:${clientId}`;
}

/**
 * On a Cluster a release wakes a waiter by SPUBLISH, which may only name a shard channel in the slot
 * of the key its script runs on: the client's wake channel, tagged like a companion key of `key`.
 */
export function shardedWakeChannel(key: string, wake: string): string {
  return companionKey(key, `:${wake}`, true);
}

/**
 * A key that lives beside a lock key (`:fence`, `:waiters`, `:queue`, `:tickets`). In a Redis Cluster a script
 * may only touch one slot, so there it shares the lock key's hash tag, or makes the whole lock key
 * its tag when it has none; elsewhere it is simply `<key><suffix>`, under the same prefix.
 */
export function companionKey(key: string, suffix: string, clustered: boolean): string {
  return !clustered || hashTag(key) !== undefined ? `${key}${suffix}` : `{${key}}${suffix}`;
}

/** What lies between a key's first `{` and the first `}` after it, if anything: all a Cluster hashes of the key. */
function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/**
 * Whether a Cluster can keep companion keys in the slot of `key`: one made its own hash tag must
 * not contain a `}`, which would end that tag early (`{a}b}:fence` hashes `a`, where `a}b` hashes whole).
 */
export function fitsOneClusterSlot(key: string): boolean {
  return hashTag(key) !== undefined || !key.includes('}');
}

/** This process, as other processes see it in a busy error. */
export const OWNER = `${hostname()}/${process.pid}`;

/**
 * A lock value: 32 random hex characters (what node-redlock stores) followed by who holds it.
 * node-redlock only compares values for equality, so the suffix keeps the two wire-compatible.
 */
export function newLockValue(owner = OWNER): string {
  if (poolOffset + 16 > randomPool.length) {
    randomFillSync(randomPool); // one call for 256 values: per-value calls showed in the bench profile
    poolOffset = 0;
  }
  poolOffset += 16;
  return `${randomPool.toString('hex', poolOffset - 16, poolOffset)}@${owner}`;
}

const randomPool = Buffer.alloc(4096);
let poolOffset = randomPool.length;

/** Who holds a key, read from its value; values written by other clients are shown as such. */
export function holderOf(value: string): string {
  const at = value.indexOf('@');
  return at === 32 ? value.slice(at + 1) : `another client (value ${value.slice(0, 12)}…)`;
}
