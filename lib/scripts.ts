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
  redlockRelease: RELEASE,
  redlockExtend: EXTEND,
} as const;

export type CommandName = keyof typeof COMMANDS;
