import { createHash } from 'node:crypto';

/**
 * The Lua scripts, one place. Every key comes through KEYS[] so Cluster routing and ACL key
 * patterns see it; values and durations come through ARGV. Lock keys hold only the owner value
 * (node-redlock's format); fencing counters, fair queues and records live in companion keys.
 */

/**
 * Issues the next fencing token of one lock key from its counter `fence_key`: max(counter + 1,
 * server time in µs), written back. Grants are far rarer than one per µs, so tokens follow the clock.
 * - On the same data the counter alone makes them increase, whatever the clock does.
 * - When the counter is lost or behind (a restart without persistence, a failover to a replica that
 *   missed the last grants: replication is asynchronous) the clock carries on above the tokens
 *   issued before, unless the new server's clock is behind the old one's by more than the time
 *   since the last grant. A counter of its own (INCR, seeded from the clock) would repeat tokens
 *   after such a failover.
 * - With independent masters the lock's token is the highest of its quorum's (quorum.ts), and two
 *   quorums need not share the master that issued the earlier one: only clock-following tokens compare.
 *
 * Counters expire a day after the last grant, so one-off names (`order:42`) leave nothing behind.
 * Writing after TIME needs effects replication, the default from Redis 5 on (the oldest supported).
 */
const NEXT_FENCE = `
local function now_us()
  local t = redis.call('time')
  return t[1] * 1000000 + t[2]
end
local function next_fence(fence_key)
  local token = math.max(tonumber(redis.call('get', fence_key) or '0') + 1, now_us())
  redis.call('set', fence_key, string.format('%.0f', token), 'PX', 86400000)
  return token
end
`;

/**
 * A waiter joins the waiter queue of a key (zset: member = its client's wake channel, score = arrival µs),
 * which lives as long as the holder's lease plus `slack` ms: its waiters check again when that
 * lease ends, and so renew it, unless a release woke them first.
 */
const JOIN_WAITERS = `
local function join_waiters(queue_key, wake, holder_pttl, slack)
  redis.call('zadd', queue_key, 'NX', now_us(), wake)
  local keep = math.max(holder_pttl, 0) + tonumber(slack)
  if redis.call('pttl', queue_key) < keep then redis.call('pexpire', queue_key, keep) end
end
`;

/**
 * Tells the waiters of a key that it is free, as `wake_by` says (store.ts#WakeBy). 'broadcast' (a
 * Cluster without sharded pub/sub): on `<key>:released` (keys.ts#releaseChannel), which all of them
 * hear. 'publish', or 'spublish' on a Cluster: only the first waiter in the queue still listening on
 * its client's channel, told `<message>\n<key>`. The publish counts the receivers, so a waiter whose
 * process died is dropped and the next one tried — one waiter wakes, not a herd (a live client that no
 * longer waits for the key passes the wake on: see LEAVE). On a Cluster only SPUBLISH counts them
 * truly: a shard channel (in the key's slot, keys.ts#shardedWakeChannel) is subscribed on the node
 * that owns the slot, while PUBLISH counts only the receivers connected to the node that ran it.
 */
const ANNOUNCE_FREE = `
local function announce_free(key, queue_key, message, wake_by)
  if wake_by == 'broadcast' then
    redis.call('publish', key .. ':released', message)
    return
  end
  -- EXISTS first: most releases have no waiters, and on an absent key it costs less than ZRANGE
  if redis.call('exists', queue_key) == 0 then return end
  while true do
    local head = redis.call('zrange', queue_key, 0, 0)[1]
    if not head or redis.call(wake_by, head, message .. '\\n' .. key) > 0 then return end
    redis.call('zrem', queue_key, head)
  end
end
`;

/**
 * Takes every lock key or none. KEYS: n lock keys, their n fencing counters, their n waiter queues;
 * ARGV: value, ttl, how releases wake (ANNOUNCE_FREE), and for a waiter its client's wake channel,
 * the queue's slack (ms) and whether it may have queued already ('1'). A waiter that finds a key
 * held waits in that key's queue only: queued first for another of its keys, it would take that
 * key's wakes from the waiters behind it without being able to take the key, so it leaves that
 * queue and passes on the wake if the key is free. One that gets the keys leaves their queues.
 * A key that already holds `value` is taken again: a value belongs to one lock() call, so an earlier
 * attempt of that call was granted there and its reply was lost with the connection (its undo could
 * not be sent either); otherwise the call would wait out its own lease as another holder's. Others
 * may have queued for it meanwhile, so undoing it announces it free.
 * Returns { 1, token… }, or { 0, key, holder value, pttl } of the first key someone else holds.
 */
export const ACQUIRE = `${NEXT_FENCE}${JOIN_WAITERS}${ANNOUNCE_FREE}
local n = #KEYS / 3
local wake = ARGV[4]
local retaken = {}
for i = 1, n do
  local holder = not redis.call('set', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) and redis.call('get', KEYS[i])
  if holder == ARGV[1] then
    redis.call('pexpire', KEYS[i], ARGV[2]) -- ours already (see above)
    retaken[i] = true
  elseif holder then
    for j = 1, i - 1 do -- all or none: undo what this call took, announcing what others may have queued for
      redis.call('del', KEYS[j])
      if retaken[j] then announce_free(KEYS[j], KEYS[2 * n + j], ARGV[1], ARGV[3]) end
    end
    local pttl = redis.call('pttl', KEYS[i])
    if wake then
      join_waiters(KEYS[2 * n + i], wake, pttl, ARGV[5])
      for j = 1, n do
        if j ~= i and redis.call('zrem', KEYS[2 * n + j], wake) == 1 and redis.call('exists', KEYS[j]) == 0 then
          announce_free(KEYS[j], KEYS[2 * n + j], '', ARGV[3])
        end
      end
    end
    return { 0, KEYS[i], holder, pttl }
  end
end
local reply = { 1 }
for i = 1, n do
  reply[i + 1] = next_fence(KEYS[n + i])
  if ARGV[6] == '1' then redis.call('zrem', KEYS[2 * n + i], wake) end
end
return reply`;

/**
 * Fair acquire of one key: waiters queue in KEYS[2] (zset: member = lock value, score = arrival µs)
 * with a ticket each in KEYS[3] (hash: value → "<deadline> <wake channel>"); the lock goes only to
 * the oldest live ticket, and a waiter that stops renewing its ticket (it gave up or died) drops out
 * when the deadline passes. KEYS[4] is the fencing counter, KEYS[5] the waiter queue that releases
 * wake. ARGV: value, ttl, ticket ttl, how releases wake (ANNOUNCE_FREE), and once its client
 * listens its wake channel and the queue slack (as ACQUIRE). A waiter that finds the key free while
 * an older one is first in line wakes that one. A client makes one fair call per key at a time
 * (local-queue.ts), so a ticket with the caller's wake channel but another value was left behind by
 * an earlier call whose leave was lost: it is dropped, not woken (the wake would come back to this
 * client, which would ring its own waiter, in a loop until the ticket lapsed).
 * Returns { 1, token }, or { 0, key, holder, pttl } — pttl -3 when the key is free but `holder` is
 * an older waiter, first in line, followed by the ms its ticket has left: a waiter behind a head
 * that died sleeps until the ticket lapses instead of asking again and again.
 */
export const ACQUIRE_FAIR = `${NEXT_FENCE}${JOIN_WAITERS}
local us = now_us()
local now = math.floor(us / 1000)
local head, head_deadline, head_wake
while true do
  head = redis.call('zrange', KEYS[2], 0, 0)[1]
  if not head then break end
  head_deadline, head_wake = string.match(redis.call('hget', KEYS[3], head) or '0', '^(%d+) ?(.*)$')
  head_deadline = tonumber(head_deadline)
  -- drops lapsed tickets, and one this client left behind: with its wake channel but another value
  local stale = ARGV[5] and head_wake == ARGV[5] and head ~= ARGV[1]
  if head_deadline > now and not stale then break end
  redis.call('zrem', KEYS[2], head)
  redis.call('hdel', KEYS[3], head)
end
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] or (not holder and (not head or head == ARGV[1])) then -- ours already: see ACQUIRE
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('zrem', KEYS[2], ARGV[1])
  redis.call('hdel', KEYS[3], ARGV[1])
  if ARGV[5] then redis.call('zrem', KEYS[5], ARGV[5]) end
  return { 1, next_fence(KEYS[4]) }
end
if not redis.call('zscore', KEYS[2], ARGV[1]) then
  -- arrival order: strictly after the last waiter, even within the same millisecond
  local last = redis.call('zrange', KEYS[2], -1, -1, 'WITHSCORES')[2]
  redis.call('zadd', KEYS[2], math.max(us, (tonumber(last) or 0) + 1), ARGV[1])
end
redis.call('hset', KEYS[3], ARGV[1], string.format('%.0f %s', now + tonumber(ARGV[3]), ARGV[5] or ''))
redis.call('pexpire', KEYS[2], ARGV[3])
redis.call('pexpire', KEYS[3], ARGV[3])
local pttl = holder and redis.call('pttl', KEYS[1]) or 0
if ARGV[5] then join_waiters(KEYS[5], ARGV[5], pttl, ARGV[6]) end
if holder then return { 0, KEYS[1], holder, pttl } end
-- the head's own value: a client with no waiter for the key left a ticket behind, and drops it (Redlock#passOn)
if head_wake ~= '' and ARGV[4] ~= 'broadcast' then redis.call(ARGV[4], head_wake, head .. '\\n' .. KEYS[1]) end
return { 0, KEYS[1], head, -3, head_deadline - now }`;

/**
 * A waiter that gives up leaves the queues it joined, and announces a key that is free: it may have
 * been woken for a release it will not take. A client woken for a key it no longer waits for passes
 * the wake on the same way. KEYS: n lock keys, their n waiter queues, and for a fair waiter (n = 1)
 * the fair queue and tickets; ARGV: its client's wake channel, how releases wake (ANNOUNCE_FREE),
 * and for a fair waiter its value.
 */
export const LEAVE = `${ANNOUNCE_FREE}
local n = ARGV[3] and 1 or #KEYS / 2
if ARGV[3] then
  redis.call('zrem', KEYS[3], ARGV[3])
  redis.call('hdel', KEYS[4], ARGV[3])
end
for i = 1, n do
  redis.call('zrem', KEYS[n + i], ARGV[1])
  if redis.call('exists', KEYS[i]) == 0 then announce_free(KEYS[i], KEYS[n + i], '', ARGV[2]) end
end
return 1`;

/**
 * Deletes the keys (KEYS: n lock keys, then their n waiter queues) that still hold our value ARGV[1],
 * and announces each (ARGV[2]: how, see ANNOUNCE_FREE). Returns how many keys it deleted.
 */
export const RELEASE = `${ANNOUNCE_FREE}
local n = #KEYS / 2
local deleted = 0
for i = 1, n do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    deleted = deleted + redis.call('del', KEYS[i])
    announce_free(KEYS[i], KEYS[n + i], ARGV[1], ARGV[2])
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

/**
 * Writes a scheduled job's last-run record (KEYS[1], JSON with `startedAt`) unless it holds a newer
 * run's: a run that learns late that it lost its lease must not overwrite the record of the run that
 * took the lock meanwhile (the same run's records, 'running' then its end, share one startedAt).
 * ARGV: the record, its startedAt, how long to keep it (ms). Returns 1 when written.
 */
export const SAVE_RECORD = `
local old = redis.call('get', KEYS[1])
if old then
  local ok, run = pcall(cjson.decode, old)
  local started = ok and type(run) == 'table' and tonumber(run.startedAt)
  if started and started > tonumber(ARGV[2]) then return 0 end
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`;

/** The lock stores' scripts by name. */
export const SCRIPTS = { ACQUIRE, ACQUIRE_FAIR, LEAVE, RELEASE, EXTEND, SAVE_RECORD } as const;

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
 * The EVAL goes out after whatever was sent on the connection since, so it is not sent when
 * `stillWanted()` says the caller has given up: a timed-out acquisition's undo would otherwise run
 * before the acquisition it undoes, leaving a lock nobody holds.
 * Not ioredis's defineCommand: in `npm run bench` its per-call wrapper cost 15–25 % of the
 * throughput of 50 parallel clients against calling evalsha directly.
 */
export function runScript(client: EvalClient, { lua, sha }: Script, keys: string[], args: Array<string | number>,
  stillWanted?: () => boolean): Promise<unknown> {
  return client.evalsha(sha, keys.length, ...keys, ...args).catch((err: Error) => {
    if (!String(err?.message).startsWith('NOSCRIPT') || (stillWanted && !stillWanted())) throw err;
    return client.eval(lua, keys.length, ...keys, ...args);
  });
}
