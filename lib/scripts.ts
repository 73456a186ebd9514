/**
 * The Lua scripts, one place. Every key comes through KEYS[] so Cluster routing and ACL key
 * patterns see it; values and durations come through ARGV.
 */

/** Takes every key or none. Returns 1, or { key, value, pttl } of the first key someone else holds. */
export const ACQUIRE = `
for _, key in ipairs(KEYS) do
  local holder = redis.call('get', key)
  if holder then return { key, holder, redis.call('pttl', key) } end
end
for _, key in ipairs(KEYS) do redis.call('set', key, ARGV[1], 'PX', ARGV[2]) end
return 1`;

/**
 * Fair acquire of one key: waiters queue in KEYS[2] (zset: member = lock value, score = arrival ms)
 * with a ticket deadline each in KEYS[3] (hash); the lock goes only to the oldest live ticket, and a
 * waiter that stops renewing its ticket (it gave up or died) drops out when the deadline passes.
 * ARGV: value, ttl, ticket ttl. Returns 1, or { key, holder, pttl } — pttl -3 when the key is free
 * but `holder` is an older waiter, first in line.
 */
export const ACQUIRE_FAIR = `
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
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
  return 1
end
redis.call('zadd', KEYS[2], 'NX', now, ARGV[1])
redis.call('hset', KEYS[3], ARGV[1], now + tonumber(ARGV[3]))
redis.call('pexpire', KEYS[2], ARGV[3])
redis.call('pexpire', KEYS[3], ARGV[3])
if holder then return { KEYS[1], holder, redis.call('pttl', KEYS[1]) } end
return { KEYS[1], head, -3 }`;

/** A fair waiter that gives up leaves the queue, and wakes the next one if the key is free. */
export const LEAVE_QUEUE = `
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('hdel', KEYS[3], ARGV[1])
if redis.call('exists', KEYS[1]) == 0 then redis.call('publish', KEYS[1] .. ':released', '') end
return 1`;

/**
 * Deletes the keys that still hold our value and wakes their waiters on `<key>:released` (the
 * channel format of keys.ts#releaseChannel); returns how many it deleted.
 */
export const RELEASE = `
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[1] then
    n = n + redis.call('del', key)
    redis.call('publish', key .. ':released', ARGV[1])
  end
end
return n`;

/** Sets a new lease on every key if all still hold our value; returns 1, or 0 touching nothing. */
export const EXTEND = `
for _, key in ipairs(KEYS) do
  if redis.call('get', key) ~= ARGV[1] then return 0 end
end
for _, key in ipairs(KEYS) do redis.call('pexpire', key, ARGV[2]) end
return 1`;

/** Command names as defined on each client; prefixed so they cannot clash with a borrowed client's own. */
export const COMMANDS = {
  redlockAcquire: ACQUIRE,
  redlockAcquireFair: ACQUIRE_FAIR,
  redlockLeaveQueue: LEAVE_QUEUE,
  redlockRelease: RELEASE,
  redlockExtend: EXTEND,
} as const;

export type CommandName = keyof typeof COMMANDS;
