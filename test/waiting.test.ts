import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import { LockBusyError, LockUnavailableError } from '../lib/errors';
import type { Lock } from '../lib/lock';
import type { Redlock } from '../lib/redlock';
import { eventually, inspect, redlockOn, scriptCalls } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

describe('waiting, singleflight and reentrancy', () => {
  let servers: RedisServer[];
  let views: Redis[];
  let holder: Redlock;
  let waiter: Redlock;

  before(async () => {
    servers = await startRedisServers(1);
    views = servers.map(inspect);
  });
  beforeEach(async () => {
    await views[0].flushall();
    holder = await redlockOn(servers);
    waiter = await redlockOn(servers);
  });
  afterEach(async () => {
    await holder.close();
    await waiter.close();
  });
  after(async () => {
    views.forEach(v => v.disconnect());
    await killAll(servers);
  });

  it('is woken by the release, not by polling or by the lease running out', async () => {
    const held = await holder.lock('handoff', 20000);
    const before = await scriptCalls(views[0]);
    const waiting = waiter.lock('handoff', 5000, { waitTimeout: 30000 });
    await sleep(1500); // node-redlock's default pace would have made ~7 attempts by now
    const whileWaiting = await scriptCalls(views[0]) - before;
    assert.ok(whileWaiting <= 2, `${whileWaiting} lock scripts while waiting (an attempt, then one after subscribing)`);
    const releasedAt = Date.now();
    await held.unlock();
    const lock = await waiting;
    assert.ok(Date.now() - releasedAt < 10000, 'acquired long before the 20 s lease would have run out');
    const total = await scriptCalls(views[0]) - before;
    assert.ok(total <= 4, `${total} lock scripts: expected the two above, one release and one more attempt`);
    assert.equal(await views[0].get('JOB_LOCKER_handoff'), lock.value);
  });

  describe('hand-over to the first queued waiter', () => {
    let others: Redlock[];
    const queue = 'JOB_LOCKER_chain:waiters';
    beforeEach(async () => {
      others = await Promise.all([ 1, 2, 3 ].map(() => redlockOn(servers)));
    });
    afterEach(async () => {
      await Promise.all(others.map(o => o.close()));
    });

    /**
     * Starts a waiter (a separate client, as another process would be) and waits until it has
     * queued; resolves to `{ waiting }` (a bare promise would be awaited along).
     */
    async function queueUp(client: Redlock, queued: number, options = { waitTimeout: 30000 }): Promise<{ waiting: Promise<Lock> }> {
      const waiting = client.lock('chain', 20000, options);
      waiting.catch(() => undefined); // awaited by the test
      while (await views[0].zcard(queue) < queued) await sleep(5);
      return { waiting };
    }

    it('wakes only the first waiter per release, in arrival order: one attempt per release, not one per waiter', async () => {
      const clients = [ waiter, ...others ];
      let held = await holder.lock('chain', 20000);
      const waiting: Array<Promise<Lock>> = [];
      for (const [ i, client ] of clients.entries()) waiting.push((await queueUp(client, i + 1)).waiting);
      for (const [ i, next ] of waiting.entries()) {
        const before = await scriptCalls(views[0]);
        await held.unlock();
        held = await next;
        await sleep(300); // room for any other waiter to have been woken and tried
        assert.equal(await scriptCalls(views[0]) - before, 2, `handoff ${i}: the release and the woken waiter's attempt only`);
        assert.equal(await views[0].get('JOB_LOCKER_chain'), held.value);
        assert.equal(await views[0].zcard(queue), clients.length - i - 1, 'the new holder left the queue');
      }
      await held.unlock();
      assert.equal(await views[0].exists(queue), 0, 'no queue is left behind');
    });

    /** Makes `client` wait once, through a release: its lock client then listens on its wake channel. */
    async function waitOnce(client: Redlock): Promise<void> {
      const held = await holder.lock('chain', 20000);
      const { waiting } = await queueUp(client, 1);
      await held.unlock();
      await (await waiting).unlock();
    }

    /** A stale entry is first in line when the lock is released: the live waiter behind must still be woken at once. */
    async function releasePast(stale: string): Promise<void> {
      const held = await holder.lock('chain', 20000);
      const { waiting: next } = await queueUp(others[0], 1);
      await views[0].zadd(queue, 0, stale);
      const releasedAt = Date.now();
      await held.unlock();
      await (await next).unlock();
      assert.ok(Date.now() - releasedAt < 10000, 'woken by the release, not by the 20 s lease running out');
      assert.equal(await views[0].exists(queue), 0, 'the stale entry left the queue');
    }

    it('skips a queued waiter whose process died (nobody listens on its channel), and wakes the next', () => releasePast('JOB_LOCKER:wake:crashed'));

    it('a client woken for a key it no longer waits for (its leave never reached Redis) passes the wake on', async () => {
      await waitOnce(waiter);
      await releasePast(waiter.wakeChannel);
    });

    it('once a client has waited, its next wait joins the queue with its first attempt: no SUBSCRIBE, no re-check', async () => {
      await waitOnce(waiter);
      const held = await holder.lock('chain', 20000);
      const fresh = await scriptCalls(views[0]);
      const { waiting: first } = await queueUp(others[0], 1); // a fresh client: attempt, SUBSCRIBE, re-check
      assert.equal(await scriptCalls(views[0]) - fresh, 2);
      const listening = await scriptCalls(views[0]);
      const { waiting: second } = await queueUp(waiter, 2); // the listening client: one attempt, and it is queued
      assert.equal(await scriptCalls(views[0]) - listening, 1);
      await held.unlock();
      await (await first).unlock();
      await (await second).unlock();
    });

    it('a waiter that gives up leaves the queue; one leaving while the key is free wakes the next', async () => {
      await holder.lock('chain', 20000);
      const { waiting: quitter } = await queueUp(waiter, 1, { waitTimeout: 300 });
      const { waiting: stayer } = await queueUp(others[0], 2);
      assert.ok(await quitter.catch(e => e) instanceof LockBusyError);
      const [ stayerChannel ] = await views[0].zrange(queue, 0, -1);
      assert.equal(stayerChannel, others[0].wakeChannel);
      assert.equal(await views[0].zcard(queue), 1, 'only the waiter still waiting is queued');

      // The lease runs out silently (no release is published) and a queued waiter then leaves: it
      // may have been woken for a release it will not take, so its leaving wakes the next one.
      await views[0].del('JOB_LOCKER_chain');
      await views[0].zadd(queue, 0, 'JOB_LOCKER_chain:wake:leaving');
      const leftAt = Date.now();
      await waiter.stores[0].leaveQueues([ 'JOB_LOCKER_chain' ], 'v', { wake: 'JOB_LOCKER_chain:wake:leaving' });
      await (await stayer).unlock();
      assert.ok(Date.now() - leftAt < 10000, 'woken by the leave, not by the 20 s lease the waiter saw');
    });
  });

  it('a waiter for several names does not take the wake of a name it cannot have from that name\'s next waiter', async () => {
    const other = await redlockOn(servers);
    try {
      const a = await holder.lock('pair-a', 20000);
      await holder.lock('pair-b', 20000);
      const both = waiter.lock([ 'pair-a', 'pair-b' ], 5000, { waitTimeout: 30000 });
      both.catch(() => undefined);
      while (await views[0].zcard('JOB_LOCKER_pair-a:waiters') < 1) await sleep(5); // queued on a, its first busy name
      const single = other.lock('pair-a', 5000, { waitTimeout: 15000 });
      while (await views[0].zcard('JOB_LOCKER_pair-a:waiters') < 2) await sleep(5);
      const releasedAt = Date.now();
      await a.unlock(); // wakes the first of a's queue: the waiter for both, which then finds b held
      const got = await single;
      assert.ok(Date.now() - releasedAt < 7500, 'the waiter of a alone got it at its deadline, not woken when it was free');
      assert.deepEqual(await views[0].zrange('JOB_LOCKER_pair-b:waiters', 0, -1), [ waiter.wakeChannel ], 'the waiter for both waits on b');
      assert.deepEqual(await views[0].zrange('JOB_LOCKER_pair-a:waiters', 0, -1), [], 'and no longer on a');
      await got.unlock();
      await holder.close(); // releases b: the waiter for both now gets both
      assert.deepEqual((await both).names, [ 'pair-a', 'pair-b' ]);
    } finally {
      await other.close();
    }
  });

  it('a multi-name attempt that re-takes a key still holding its value, then finds another name busy, wakes that key\'s waiters as it undoes it', async () => {
    // Its earlier attempt was granted 'undo:a' and the reply lost: the key holds the call's value, and a waiter queued for it.
    const orphan = await holder.lock('undo:a', 20000);
    const waiting = waiter.lock('undo:a', 20000, { waitTimeout: 30000 });
    while (await views[0].zcard('JOB_LOCKER_undo:a:waiters') < 1) await sleep(5);
    const busy = await redlockOn(servers);
    try {
      await busy.lock('undo:b', 20000);
      const reply = await holder.stores[0].acquire([ 'JOB_LOCKER_undo:a', 'JOB_LOCKER_undo:b' ], orphan.value, 20000);
      assert.equal(reply.granted, false);
      const undoneAt = Date.now();
      await (await waiting).unlock();
      assert.ok(Date.now() - undoneAt < 5000, 'woken by the undo, not by the 20 s lease');
    } finally {
      await busy.close();
    }
  });

  it('a waiter whose subscriber connection dropped checks again once it is subscribed again (a release may have gone unheard)', async () => {
    const held = await holder.lock('resubscribed', 20000);
    const waiting = waiter.lock('resubscribed', 5000, { waitTimeout: 30000 });
    waiting.catch(() => undefined);
    while (await views[0].zcard('JOB_LOCKER_resubscribed:waiters') < 1) await sleep(5);
    await views[0].client('KILL', 'TYPE', 'pubsub'); // the waiter's pub/sub connection drops
    const releasedAt = Date.now();
    await held.unlock(); // published while nobody listens: the release drops the waiter from the queue
    const lock = await waiting;
    assert.ok(Date.now() - releasedAt < 10000, `got the free lock ${Date.now() - releasedAt} ms after the release: at the 20 s lease, not on reconnecting`);
    assert.equal(await views[0].get('JOB_LOCKER_resubscribed'), lock.value);
  });

  it('wakes waiters through clients with an ioredis keyPrefix (the wake names the prefixed key)', async () => {
    const prefixed = () => redlockOn(servers, { clients: [{ host: '127.0.0.1', port: servers[0].port, keyPrefix: 'app:' }] });
    const [ first, second ] = await Promise.all([ prefixed(), prefixed() ]);
    try {
      const held = await first.lock('prefixed', 20000);
      assert.equal(await views[0].get('app:JOB_LOCKER_prefixed'), held.value);
      const waiting = second.lock('prefixed', 5000, { waitTimeout: 30000 });
      while (await views[0].zcard('app:JOB_LOCKER_prefixed:waiters') < 1) await sleep(5);
      const releasedAt = Date.now();
      await held.unlock();
      const lock = await waiting;
      assert.ok(Date.now() - releasedAt < 10000, `got it ${Date.now() - releasedAt} ms after the release: at the 20 s lease, not woken`);
      assert.ok(lock.fencingToken > held.fencingToken);
      const err = await first.lock('prefixed', 1000, { retryCount: 0 }).catch(e => e);
      assert.equal(err.outcomes[0].key, 'JOB_LOCKER_prefixed', 'outcomes name the lock key, not the prefixed Redis key');
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('falls back to the holder\'s lease when no release is published (a crashed holder, node-redlock)', async () => {
    await views[0].set('JOB_LOCKER_silent', 'f'.repeat(32), 'PX', 400);
    const before = await scriptCalls(views[0]);
    const lock = await waiter.lock('silent', 5000, { waitTimeout: 10000 });
    assert.equal(await views[0].get('JOB_LOCKER_silent'), lock.value);
    assert.ok(await scriptCalls(views[0]) - before <= 4, 'woken once, at the end of the lease');
  });

  it('gives up at waitTimeout with a busy error that says who holds it', async () => {
    await holder.lock('timeout', 20000);
    const err = await waiter.lock('timeout', 1000, { waitTimeout: 300 }).catch(e => e);
    assert.ok(err instanceof LockBusyError);
    assert.match(err.message, /held by .+\/\d+ for ~\d+ more ms/);
  });

  it('lets callers of one process wait behind one another: one Redis waiter, arrival order kept', async () => {
    const held = await holder.lock('queue', 20000);
    const before = await scriptCalls(views[0]);
    const order: number[] = [];
    const locks: Array<Promise<Lock>> = [];
    for (let i = 0; i < 10; i++) {
      locks.push(waiter.lock('queue', 5000, { waitTimeout: 30000 }).then(async lock => {
        order.push(i);
        await lock.unlock();
        return lock;
      }));
    }
    await sleep(500);
    const whileWaiting = await scriptCalls(views[0]) - before;
    assert.ok(whileWaiting <= 2, `${whileWaiting} lock scripts while 10 callers wait`);
    await held.unlock();
    await Promise.all(locks);
    assert.deepEqual(order, [ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 ]);
    assert.equal(await waiter.tryLock('queue', 1000) !== null, true, 'free again at the end');
  });

  it('waits behind a caller of this process when its bound is beyond Node\'s longest timer, not 1 ms', async () => {
    for (const options of [{ waitTimeout: 2 ** 32 }, { retryCount: 1e8 }]) {
      const held = await waiter.lock('long-bound', 5000);
      const queued = waiter.lock('long-bound', 5000, options);
      await sleep(300);
      await held.unlock();
      const next = await queued;
      assert.equal(await views[0].get('JOB_LOCKER_long-bound'), next.value, JSON.stringify(options));
      await next.unlock();
    }
  });

  it('tells tryLock "busy" without a round trip while this process holds the name', async () => {
    const held = await waiter.lock('local', 5000);
    const before = await scriptCalls(views[0]);
    assert.equal(await waiter.tryLock('local', 1000), null);
    assert.equal(await scriptCalls(views[0]), before);
    await held.unlock();
    assert.ok(await waiter.tryLock('local', 1000));
  });

  it('frees the local turn when a lease runs out without unlock()', async () => {
    await waiter.lock('forgotten', 200); // never unlocked
    const next = await waiter.lock('forgotten', 1000, { waitTimeout: 5000 });
    assert.equal(await views[0].get('JOB_LOCKER_forgotten'), next.value);
  });

  it('frees each forgotten lease at its own end, also behind a longer one taken first', async () => {
    const long = await waiter.lock('forgotten-long', 60000);
    await waiter.lock('forgotten-short', 300); // never unlocked
    // Rejects as busy unless the short lease is forgotten at its end, not at the long one's.
    const next = await waiter.lock('forgotten-short', 1000, { waitTimeout: 5000 });
    assert.deepEqual(waiter.locks.map(lock => lock.name).sort(), [ 'forgotten-long', 'forgotten-short' ]);
    assert.equal(await long.unlock(), true);
    assert.equal(await next.unlock(), true);
    assert.deepEqual(waiter.locks, []);
  });

  it('re-enters inside using(): the same lock with one more hold, while other call chains wait', async () => {
    // A call chain that starts outside using(), once the routine lets it go.
    let letGo!: () => void;
    const outsider = new Promise<void>(resolve => { letGo = resolve; })
      .then(() => waiter.lock('reentrant', 1000, { waitTimeout: 10000 }));
    let outerValue = '';
    await waiter.using('reentrant', 5000, async (_signal, outer) => {
      outerValue = outer.value;
      letGo();
      const inner = await waiter.lock('reentrant', 5000);
      assert.equal(inner, outer);
      const nested = await waiter.using('reentrant', 5000, async (_s, lock) => lock);
      assert.equal(nested, outer);
      assert.equal(await inner.unlock(), true);
      assert.equal(await views[0].get('JOB_LOCKER_reentrant'), outer.value, 'still held after the inner unlock');
      assert.equal(await waiter.tryLock('reentrant', 1000), outer, 'tryLock re-enters too');
      await outer.unlock();
      await sleep(100);
      assert.equal(await views[0].get('JOB_LOCKER_reentrant'), outer.value, 'the outside chain is still waiting');
    });
    const lock = await outsider;
    assert.notEqual(lock.value, outerValue);
    assert.equal(await views[0].get('JOB_LOCKER_reentrant'), lock.value, 'the outside chain got it after using() ended');
  });

  it('a nested using() with a shorter ttl leaves the lease to the outer one, which keeps it alive', async () => {
    let innerSignal: AbortSignal | undefined;
    await waiter.using('nested-ttl', 2000, async outerSignal => {
      await sleep(600);
      await waiter.using('nested-ttl', 300, async signal => {
        innerSignal = signal;
        await sleep(800); // longer than the inner ttl
      });
      const left = await views[0].pttl('JOB_LOCKER_nested-ttl');
      assert.ok(left > 300, `the lease left after the inner using() is ${left} ms: the inner ttl cut it short`);
      await sleep(400);
      assert.equal(await holder.tryLock('nested-ttl', 1000), null, 'another client got the lock under the outer routine');
      assert.equal(outerSignal.aborted, false);
      assert.equal(innerSignal, outerSignal, 'the inner routine is told of a loss by the same signal');
    });
    assert.equal(await views[0].exists('JOB_LOCKER_nested-ttl'), 0, 'released once the outer using() ends');
  });

  it('does not re-enter from work that outlives using(): a timer set inside it asks Redis like anyone', async () => {
    let later!: Promise<unknown>;
    await waiter.using('outlived', 5000, async () => {
      later = sleep(300).then(() => waiter.lock('outlived', 5000, { waitTimeout: 500 }));
    });
    const other = await holder.lock('outlived', 10000);
    const err = await later.catch(e => e);
    assert.ok(err instanceof LockBusyError, `the late lock() got ${err?.constructor?.name} while another client holds the name`);
    assert.doesNotMatch(err.message, /call chain itself/);
    assert.equal(await views[0].get('JOB_LOCKER_outlived'), other.value);
  });

  it('refuses a lock that overlaps one the call chain holds through another lock, instead of deadlocking', async () => {
    await waiter.using('a', 5000, async () => {
      const err = await waiter.lock([ 'a', 'b' ], 1000).catch(e => e);
      assert.ok(err instanceof LockBusyError);
      assert.match(err.message, /this call chain itself \(it holds JOB_LOCKER_a through another lock\)/);
    });
  });

  it('with fair: true, grants the lock in arrival order across clients', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, () => redlockOn(servers)));
    try {
      const held = await holder.lock('fair', 20000, { fair: true });
      const order: number[] = [];
      const done: Array<Promise<void>> = [];
      for (let i = 0; i < clients.length; i++) {
        done.push(clients[i].lock('fair', 5000, { fair: true, waitTimeout: 30000 }).then(async lock => {
          order.push(i);
          await lock.unlock();
        }));
        while (await views[0].zcard('JOB_LOCKER_fair:queue') < i + 1) await sleep(5); // arrived and queued
      }
      await held.unlock();
      await Promise.all(done);
      assert.deepEqual(order, [ 0, 1, 2, 3, 4, 5 ]);
      assert.equal(await views[0].exists('JOB_LOCKER_fair:queue', 'JOB_LOCKER_fair:tickets'), 0, 'the queue is gone');
    } finally {
      await Promise.all(clients.map(c => c.close()));
    }
  });

  it('with fair: true, a waiter that gives up leaves the queue and lets the next one in', async () => {
    const held = await holder.lock('fair-exit', 20000, { fair: true });
    const quitter = waiter.lock('fair-exit', 1000, { fair: true, waitTimeout: 300 }).catch(e => e);
    while (await views[0].zcard('JOB_LOCKER_fair-exit:queue') < 1) await sleep(5);
    const patient = await redlockOn(servers);
    try {
      const next = patient.lock('fair-exit', 1000, { fair: true, waitTimeout: 30000 });
      assert.ok(await quitter instanceof LockBusyError);
      await held.unlock();
      const lock = await next;
      assert.equal(await views[0].get('JOB_LOCKER_fair-exit'), lock.value);
    } finally {
      await patient.close();
    }
  });

  /** The client's next leave of a queue is lost, as when its connection drops just then. */
  function loseNextLeave(client: Redlock): void {
    const store: any = client.stores[0];
    store.leaveQueues = () => {
      delete store.leaveQueues;
      return Promise.reject(new Error('timed out'));
    };
  }

  /** Releases `held`; `next` must get the lock at once, in a handful of scripts (not at the 5 s ticket lapse). */
  async function assertPromptHandOver(held: Lock, next: Promise<Lock>, otherwise: string): Promise<void> {
    const scriptsBefore = await scriptCalls(views[0]);
    const releasedAt = Date.now();
    await held.unlock();
    const lock = await next;
    const scripts = await scriptCalls(views[0]) - scriptsBefore;
    assert.ok(Date.now() - releasedAt < 2500, `granted ${Date.now() - releasedAt} ms after the release: at the 5 s ticket lapse`);
    assert.ok(scripts < 20, `${scripts} lock scripts for one hand-over: ${otherwise}`);
    await lock.unlock();
  }

  it('with fair: true, a ticket left behind by a live client (its leave was lost) is dropped at the first wake, not bounced until it lapses', async () => {
    const fairWaiter = await redlockOn(servers);
    try {
      const held = await holder.lock('fair-lost', 30000);
      loseNextLeave(waiter);
      const quitter = waiter.lock('fair-lost', 30000, { fair: true, waitTimeout: 500 }).catch(e => e);
      while (await views[0].zcard('JOB_LOCKER_fair-lost:queue') < 1) await sleep(5);
      const next = fairWaiter.lock('fair-lost', 30000, { fair: true, waitTimeout: 20000 });
      while (await views[0].zcard('JOB_LOCKER_fair-lost:queue') < 2) await sleep(5);
      assert.ok(await quitter instanceof LockBusyError);
      assert.equal(await views[0].zcard('JOB_LOCKER_fair-lost:queue'), 2, 'its ticket stayed');
      await assertPromptHandOver(held, next, 'wakes bounced between the two clients');
    } finally {
      await fairWaiter.close();
    }
  });

  it('with fair: true, a ticket the same client left behind is dropped by its next fair call, not woken in a loop', async () => {
    const queue = 'JOB_LOCKER_fair-own:queue';
    const held = await holder.lock('fair-own', 30000);
    loseNextLeave(waiter);
    assert.ok(await waiter.lock('fair-own', 30000, { fair: true, waitTimeout: 300 }).catch(e => e) instanceof LockBusyError);
    const [ stale ] = await views[0].zrange(queue, 0, -1);
    assert.ok(stale, 'its ticket stayed');
    const next = waiter.lock('fair-own', 30000, { fair: true, waitTimeout: 20000 });
    while (!(await views[0].zrange(queue, 0, -1)).some(member => member !== stale)) await sleep(5);
    await assertPromptHandOver(held, next, 'the client woke itself for its own stale ticket');
  });

  it('with fair: true, a waiter behind a dead first-in-line sleeps until its ticket lapses instead of asking again and again', async () => {
    // What a process that died while first in the fair queue leaves behind: a ticket with 4 s left.
    const [ sec, usec ] = (await views[0].time()).map(Number);
    const dead = 'deaddeaddeaddeaddeaddeaddeaddead@gone/1';
    await views[0].zadd('JOB_LOCKER_fair-dead:queue', sec * 1e6 + usec, dead);
    await views[0].hset('JOB_LOCKER_fair-dead:tickets', dead, `${sec * 1000 + Math.floor(usec / 1000) + 4000} JOB_LOCKER:wake:gone`);
    const eager = await redlockOn(servers, { retryDelay: 0, retryJitter: 0 }); // a valid config: pacing by it would spin
    try {
      const before = await scriptCalls(views[0]);
      const lock = await eager.lock('fair-dead', 5000, { fair: true, waitTimeout: 20000 });
      const calls = await scriptCalls(views[0]) - before;
      await lock.unlock();
      assert.ok(calls <= 8, `${calls} scripts while the dead ticket lapsed`);
    } finally {
      await eager.close();
    }
  });

  it('refuses fair: true over several names, while config.fair leaves them unfair', async () => {
    await assert.rejects(waiter.lock([ 'x', 'y' ], 1000, { fair: true }), /options.fair needs one name on one logical Redis node/);
    const fairByDefault = await redlockOn(servers, { fair: true });
    try {
      const both = await fairByDefault.lock([ 'x', 'y' ], 1000);
      await both.unlock();
      assert.equal(await fairByDefault.using([ 'x', 'y' ], 1000, async (_signal, lock) => lock.names.length), 2);
      const one = await fairByDefault.lock('x', 1000);
      assert.equal(await views[0].exists('JOB_LOCKER_x:tickets'), 0, 'a fair grant leaves no ticket behind');
      await one.unlock();
    } finally {
      await fairByDefault.close();
    }
  });

  it('at close, a caller queued in this process behind a held lock gives up instead of taking it', async () => {
    await waiter.lock('closing-queued', 60000);
    const queued = waiter.lock('closing-queued', 60000, { waitTimeout: 30000 }).catch(e => e);
    await sleep(50);
    await waiter.close();
    const err = await queued;
    assert.ok(err instanceof LockUnavailableError, String(err));
    assert.match(err.message, /the lock client is closed/);
    assert.equal(await views[0].exists('JOB_LOCKER_closing-queued'), 0, 'no lock left in Redis');
  });

  it('at close, waits for an attempt in flight and releases what it was granted', async () => {
    servers[0].pause(); // the attempt stays in flight until the server answers
    const inFlight = waiter.lock('closing-in-flight', 60000).catch(e => e);
    await sleep(50);
    const closed = waiter.close();
    await sleep(100);
    servers[0].resume();
    await closed;
    const err = await inFlight;
    assert.ok(err instanceof LockUnavailableError, `lock() gave ${err?.constructor?.name} after close()`);
    assert.equal(await views[0].exists('JOB_LOCKER_closing-in-flight'), 0, 'no lock left in Redis');
  });

  it('wakes its waiters when the client closes', async () => {
    await holder.lock('closing', 20000);
    const waiting = waiter.lock('closing', 1000, { waitTimeout: 30000 }).catch(e => e);
    await sleep(200);
    await waiter.close();
    const err = await waiting;
    assert.ok(err instanceof LockBusyError || err instanceof LockUnavailableError, String(err));
  });
});

describe('hand-over on 3 independent masters', () => {
  let servers: RedisServer[];
  let views: Redis[];
  let clients: Redlock[];

  before(async () => {
    servers = await startRedisServers(3);
    views = servers.map(inspect);
    clients = await Promise.all([ 0, 1, 2, 3 ].map(() => redlockOn(servers)));
  });
  after(async () => {
    await Promise.all(clients.map(c => c.close()));
    views.forEach(v => v.disconnect());
    await killAll(servers);
  });

  it('queues waiters on every master and passes the lock down in arrival order, one attempt per master per release', async () => {
    const [ holder, ...waiters ] = clients;
    const queuedEverywhere = (count: number) => eventually(async () => {
      for (const view of views) assert.equal(await view.zcard('JOB_LOCKER_chain3:waiters'), count);
    }, 10000);
    let held = await holder.lock('chain3', 20000);
    const waiting: Array<Promise<Lock>> = [];
    for (const [ i, client ] of waiters.entries()) {
      const next = client.lock('chain3', 20000, { waitTimeout: 30000 });
      next.catch(() => undefined); // awaited below
      waiting.push(next);
      await queuedEverywhere(i + 1);
    }
    const calls = async () => (await Promise.all(views.map(scriptCalls))).reduce((a, b) => a + b, 0);
    for (const [ i, next ] of waiting.entries()) {
      const before = await calls();
      await held.unlock();
      held = await next;
      await sleep(300); // room for the last master's answers, and for any other waiter to have tried
      assert.equal(await calls() - before, 6, `handoff ${i}: the release and the woken waiter's attempt, on each master`);
    }
    await held.unlock();
    await eventually(async () => {
      for (const view of views) assert.equal(await view.exists('JOB_LOCKER_chain3', 'JOB_LOCKER_chain3:waiters'), 0);
    });
  });

  it('tries again when a master releases after the waiter\'s attempt for the same release reached it', async () => {
    const [ holder, waiter ] = clients;
    const held = await holder.lock('late', 20000);
    const waiting = waiter.lock('late', 20000, { waitTimeout: 30000 });
    waiting.catch(() => undefined); // awaited below
    await eventually(async () => {
      for (const view of views) assert.equal(await view.zcard('JOB_LOCKER_late:waiters'), 1);
    });
    // One master releases first and wakes the waiter, whose attempt then finds the other two still held.
    await holder.stores[0].release([ held.key ], held.value);
    await sleep(300);
    const releasedAt = Date.now();
    await Promise.all(holder.stores.slice(1).map(store => store.release([ held.key ], held.value)));
    await (await waiting).unlock();
    assert.ok(Date.now() - releasedAt < 10000, 'woken by the late masters, not by the 20 s lease running out');
  });
});

describe('waiting with one of 3 masters down or hung', () => {
  [ 'down', 'hung' ].forEach(state => {
    it(`a waiter is woken by the release, not held up by the ${state} master for the command timeout`, async () => {
      const servers = await startRedisServers(3);
      const [ holder, waiter ] = await Promise.all([ 0, 1 ].map(() => redlockOn(servers, { commandTimeout: 10000 })));
      try {
        if (state === 'down') await servers[2].kill();
        else servers[2].pause();
        // The first wait subscribes; the second finds this client listening on a quorum and joins the queues at once.
        for (const round of [ 1, 2 ]) {
          const held = await holder.lock('one-down', 20000);
          const waiting = waiter.lock('one-down', 20000, { waitTimeout: 30000 });
          await sleep(100);
          const releasedAt = Date.now();
          await held.unlock();
          await (await waiting).unlock();
          const took = Date.now() - releasedAt;
          assert.ok(took < 5000, `round ${round}: the waiter had the lock ${took} ms after the release (the command timeout is 10 s)`);
        }
      } finally {
        servers[2].resume();
        await Promise.all([ holder, waiter ].map(c => c.close()));
        await killAll(servers);
      }
    });
  });
});
