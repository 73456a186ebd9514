import { createHash } from 'node:crypto';

/**
 * The Lua scripts, one place. Every key comes through KEYS[] so Cluster routing and ACL key
 * patterns see it; values and durations come through ARGV. Lock keys hold only the owner value
 * (node-redlock's format); fencing counters, fair queues and records live in companion keys.
 */

/**
 * Issues the next fencing token of one lock key from its counter KEYS[i]: max(counter + 1, server
 * time in µs). The time floor keeps tokens increasing when a counter is lost (expired, a restart
 * without persistence, a failover to a replica that missed the last write), and lets counters
 * expire so that one-off names (`order:42`) leave nothing behind for long.
 */
const NEXT_FENCE = `
local function next_fence(fence_key, now)
  local token = math.max(tonumber(redis.call('get', fence_key) or '0') + 1, now)
  local text = string.format('%.0f', token)
  redis.call('set', fence_key, text, 'PX', 86400000)
  return text
end
local function now_us()
  local t = redis.call('time')
  return t[1] * 1000000 + t[2]
end
-- Before Redis 7, writing after TIME needs effects replication; from 7 on it is the only mode.
pcall(redis.replicate_commands)
`;

/**
 * Wakes the first waiter in the queue `queue_key` that still listens on its channel: PUBLISH counts
 * the receivers, so a waiter that left without saying so (it crashed, or gave up while Redis was out
 * of reach) is dropped and the next one is tried. Only that one waiter wakes: no herd per release.
 */
const WAKE_NEXT = `
local function wake_next(queue_key, message)
  while true do
    local head = redis.call('zrange', queue_key, 0, 0)[1]
    if not head then return end
    if redis.call('publish', head, message) > 0 then return end
    redis.call('zrem', queue_key, head)
  end
end
`;

/**
 * Takes every lock key or none. KEYS: n lock keys, their n fencing counters, their n waiter queues;
 * ARGV: value, ttl, and for a waiter its wake channel and the queue's slack (ms). A waiter that
 * finds a key held joins that key's queue (zset: member = wake channel, score = arrival µs), which
 * lives as long as the holder's lease plus the slack; one that gets the keys leaves their queues.
 * Returns { 1, token… }, or { 0, key, holder value, pttl } of the first key someone else holds.
 */
export const ACQUIRE = `${NEXT_FENCE}
local n = #KEYS / 3
local wake = ARGV[3]
for i = 1, n do
  local holder = redis.call('get', KEYS[i])
  if holder then
    local pttl = redis.call('pttl', KEYS[i])
    if wake then
      local queue = KEYS[2 * n + i]
      redis.call('zadd', queue, 'NX', now_us(), wake)
      local keep = math.max(pttl, 0) + tonumber(ARGV[4])
      if redis.call('pttl', queue) < keep then redis.call('pexpire', queue, keep) end
    end
    return { 0, KEYS[i], holder, pttl }
  end
end
local now = now_us()
local reply = { 1 }
for i = 1, n do
  redis.call('set', KEYS[i], ARGV[1], 'PX', ARGV[2])
  reply[i + 1] = next_fence(KEYS[n + i], now)
  if wake then redis.call('zrem', KEYS[2 * n + i], wake) end
end
return reply`;

/**
 * Fair acquire of one key: waiters queue in KEYS[2] (zset: member = lock value, score = arrival µs)
 * with a ticket deadline each in KEYS[3] (hash); the lock goes only to the oldest live ticket, and a
 * waiter that stops renewing its ticket (it gave up or died) drops out when the deadline passes.
 * KEYS[4] is the fencing counter. ARGV: value, ttl, ticket ttl. Returns { 1, token }, or
 * { 0, key, holder, pttl } — pttl -3 when the key is free but `holder` is an older waiter, first in line.
 */
export const ACQUIRE_FAIR = `${NEXT_FENCE}
local us = now_us()
local now = math.floor(us / 1000)
local head
while true do
  head = redis.call('zrange', KEYS[2], 0, 0)[1]
  if not head or tonumber(redis.call('hget', KEYS[3], head) or '0') > now then break end
  redis.call('zrem', KEYS[2], head)
  redis.call('hdel', KEYS[3], head)
end
local holder = redis.call('get', KEYS[1])
if not holder and (not head or head == ARGV[1]) then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('zrem', KEYS[2], ARGV[1])
  redis.call('hdel', KEYS[3], ARGV[1])
  return { 1, next_fence(KEYS[4], us) }
end
if not redis.call('zscore', KEYS[2], ARGV[1]) then
  -- arrival order: strictly after the last waiter, even within the same millisecond
  local last = redis.call('zrange', KEYS[2], -1, -1, 'WITHSCORES')[2]
  redis.call('zadd', KEYS[2], math.max(us, (tonumber(last) or 0) + 1), ARGV[1])
end
redis.call('hset', KEYS[3], ARGV[1], now + tonumber(ARGV[3]))
redis.call('pexpire', KEYS[2], ARGV[3])
redis.call('pexpire', KEYS[3], ARGV[3])
if holder then return { 0, KEYS[1], holder, redis.call('pttl', KEYS[1]) } end
return { 0, KEYS[1], head, -3 }`;

/** A fair waiter that gives up leaves the queue, and wakes the fair waiters if the key is free. */
export const LEAVE_FAIR_QUEUE = `
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('hdel', KEYS[3], ARGV[1])
if redis.call('exists', KEYS[1]) == 0 then redis.call('publish', KEYS[1] .. ':released', '') end
return 1`;

/**
 * A waiter that gives up leaves the waiter queues (KEYS: n lock keys, then their n queues; ARGV:
 * its wake channel), and wakes the next waiter of a key that is free: it may have been woken for a
 * release it will not take.
 */
export const LEAVE_WAITERS = `${WAKE_NEXT}
local n = #KEYS / 2
for i = 1, n do
  redis.call('zrem', KEYS[n + i], ARGV[1])
  if redis.call('exists', KEYS[i]) == 0 then wake_next(KEYS[n + i], '') end
end
return 1`;

/**
 * Deletes the keys (KEYS: n lock keys, then their n waiter queues) that still hold our value ARGV[1];
 * wakes the first waiter of each in its queue, and publishes on `<key>:released` (keys.ts#releaseChannel)
 * for those that wait without a queue (fair waiters, and every waiter on a Cluster). Returns how
 * many keys it deleted.
 */
export const RELEASE = `${WAKE_NEXT}
local n = #KEYS / 2
local deleted = 0
for i = 1, n do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    deleted = deleted + redis.call('del', KEYS[i])
    redis.call('publish', KEYS[i] .. ':released', ARGV[1])
    wake_next(KEYS[n + i], ARGV[1])
  end
end
return deleted`;

/** Sets a new lease on every key if all still hold our value; returns 1, or 0 touching nothing. */
export const EXTEND = `
for _, key in ipairs(KEYS) do
  if redis.call('get', key) ~= ARGV[1] then return 0 end
end
for _, key in ipairs(KEYS) do redis.call('pexpire', key, ARGV[2]) end
return 1`;

/**
 * A resource guarded by fencing tokens (fencing.ts), kept in a hash KEYS[1] = { value, fence }:
 * a read or write with a token lower than the highest seen is refused, so a holder that lost its
 * lease (paused, partitioned) can neither act on nor overwrite what a later holder did.
 * ARGV: token, 'read' | 'write', value. Returns { 1, value } or { 0, highest token seen }.
 */
export const FENCED_ACCESS = `
local seen = redis.call('hget', KEYS[1], 'fence')
if seen and tonumber(ARGV[1]) < tonumber(seen) then return { 0, seen } end
redis.call('hset', KEYS[1], 'fence', ARGV[1])
if ARGV[2] == 'write' then redis.call('hset', KEYS[1], 'value', ARGV[3]) end
return { 1, redis.call('hget', KEYS[1], 'value') }`;

/** The lock stores' scripts by name. */
export const SCRIPTS = { ACQUIRE, ACQUIRE_FAIR, LEAVE_FAIR_QUEUE, LEAVE_WAITERS, RELEASE, EXTEND } as const;

export type ScriptName = keyof typeof SCRIPTS;

export interface Script {
  lua: string;
  sha: string;
}

/** A script with its SHA1, as EVALSHA wants it. */
export function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

interface EvalClient {
  evalsha(...args: Array<string | number>): Promise<unknown>;
  eval(...args: Array<string | number>): Promise<unknown>;
}

/**
 * Runs a script by EVALSHA and, the first time a server has not seen it (NOSCRIPT), by EVAL.
 * Not ioredis's defineCommand: in `npm run bench` its per-call wrapper cost 15–25 % of the
 * throughput of 50 parallel clients against calling evalsha directly.
 */
export async function runScript(client: EvalClient, { lua, sha }: Script, keys: string[], args: Array<string | number>): Promise<unknown> {
  try {
    return await client.evalsha(sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err;
    return client.eval(lua, keys.length, ...keys, ...args);
  }
}
