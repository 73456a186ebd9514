import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import { LockBusyError, LockLostError, LockUnavailableError } from '../lib/errors';
import { newLockValue } from '../lib/keys';
import { Lock } from '../lib/lock';
import type { Redlock } from '../lib/redlock';
import { SCRIPTS } from '../lib/scripts';
import { holdElsewhere } from '../lib/testing';
import { eventually, inspect, lockKeysOn, redlockOn, scriptCalls } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

for (const masters of [ 1, 3 ]) {
  describe(`lock engine on ${masters === 1 ? 'a single node' : '3 independent masters'}`, () => {
    let servers: RedisServer[];
    let redlock: Redlock;
    let other: Redlock;
    let views: Redis[];

    before(async () => {
      servers = await startRedisServers(masters);
      views = servers.map(inspect);
    });
    beforeEach(async () => {
      await Promise.all(servers.map(s => s.restart()));
      await Promise.all(views.map(v => v.flushall()));
      redlock = await redlockOn(servers);
      other = await redlockOn(servers);
    });
    afterEach(async () => {
      await redlock.close();
      await other.close();
    });
    after(async () => {
      views.forEach(v => v.disconnect());
      await killAll(servers);
    });

    it('stores a random owner value under `${prefix}_${name}` with the lease as PX', async () => {
      const lock = await redlock.lock('report', 5000);
      assert.equal(lock.key, 'JOB_LOCKER_report');
      assert.deepEqual(lock.keys, [ 'JOB_LOCKER_report' ]);
      await eventually(async () => {
        for (const view of views) {
          assert.equal(await view.get('JOB_LOCKER_report'), lock.value);
          const pttl = await view.pttl('JOB_LOCKER_report');
          assert.ok(pttl > 4000 && pttl <= 5000, `pttl ${pttl}`);
        }
      });
      assert.match(lock.value, /^[0-9a-f]{32}@.+\/\d+$/);
      assert.ok(lock.remainingMs > 4000 && lock.remainingMs <= 5000);
      assert.equal(await lock.unlock(), true);
      await eventually(async () => {
        for (const view of views) assert.equal(await view.exists('JOB_LOCKER_report'), 0);
      });
    });

    it('lets exactly one of 50 concurrent contenders in at a time, and all of them eventually', async () => {
      const clients = [ redlock, other, ...await Promise.all([ 1, 2, 3 ].map(() => redlockOn(servers))) ];
      let inside = 0;
      let maxInside = 0;
      let done = 0;
      try {
        await Promise.all(Array.from({ length: 50 }, async (_, i) => {
          const lock = await clients[i % clients.length].lock('counter', 5000, { retryCount: -1, retryDelay: 5, retryJitter: 10 });
          inside++;
          maxInside = Math.max(maxInside, inside);
          await sleep(2);
          inside--;
          done++;
          assert.equal(await lock.unlock(), true);
        }));
      } finally {
        await Promise.all(clients.slice(2).map(c => c.close()));
      }
      assert.equal(maxInside, 1);
      assert.equal(done, 50);
    });

    it('says who holds a busy lock and for how long', async () => {
      const held = await other.lock('busy', 3000);
      const err = await redlock.lock('busy', 1000, { retryCount: 2, retryDelay: 10, retryJitter: 0 }).catch(e => e);
      assert.ok(err instanceof LockBusyError, String(err));
      assert.equal(err.holder, held.value.split('@')[1]);
      assert.ok(err.remainingMs > 2000 && err.remainingMs <= 3000, String(err.remainingMs));
      assert.equal(err.attempts, 3);
      assert.match(err.message, /JOB_LOCKER_busy is busy: held by .+\/\d+ for ~\d+ more ms \(gave up after 3 attempts\)/);
      // Busy once a quorum refused: a third master's answer may come after the error.
      assert.ok(err.outcomes.filter(o => o.status === 'held').length >= Math.floor(masters / 2) + 1);
      assert.equal(await redlock.tryLock('busy', 1000), null);
      assert.equal(await held.unlock(), true);
    });

    it('costs one script per master for an attempt that finds the lock busy (nothing to undo)', async () => {
      const held = await other.lock('refused', 5000);
      const calls = async () => (await Promise.all(views.map(scriptCalls))).reduce((a, b) => a + b, 0);
      const before = await calls();
      assert.equal(await redlock.tryLock('refused', 1000), null);
      await sleep(100); // room for a late master's answer, and anything sent after it
      assert.equal(await calls() - before, masters);
      await held.unlock();
    });

    it('never releases a lock that expired and was taken by someone else', async () => {
      const mine = await redlock.lock('owner', 100);
      await sleep(150);
      const theirs = await other.lock('owner', 5000);
      assert.equal(await mine.unlock(), false);
      await eventually(async () => {
        for (const view of views) assert.equal(await view.get('JOB_LOCKER_owner'), theirs.value);
      });
      await assert.rejects(mine.extend(1000), LockLostError);
      assert.equal(await theirs.unlock(), true);
      assert.equal(await theirs.unlock(), false, 'a second unlock is a no-op');
    });

    it('frees an expired lease for the next client', async () => {
      await redlock.lock('expiring', 100);
      assert.equal(await other.tryLock('expiring', 100), null);
      await sleep(150);
      const next = await other.tryLock('expiring', 1000);
      assert.ok(next);
    });

    it('extends a lease it still owns', async () => {
      const lock = await redlock.lock('extended', 300);
      await sleep(150);
      await lock.extend(2000);
      assert.ok(lock.remainingMs > 1800);
      await sleep(300);
      assert.equal(await other.tryLock('extended', 1000), null, 'still held past the first lease');
      for (const view of views) assert.ok(await view.pttl('JOB_LOCKER_extended') > 1000);
    });

    it('takes all names or none', async () => {
      const both = await redlock.lock([ 'b', 'a', 'a' ], 5000);
      assert.deepEqual(both.names, [ 'a', 'b' ]);
      assert.equal(both.name, 'a,b');
      assert.equal(await other.tryLock('b', 1000), null);
      await both.unlock();

      const b = await other.lock('b', 5000);
      const err = await redlock.lock([ 'a', 'b' ], 5000, { retryCount: 0 }).catch(e => e);
      assert.ok(err instanceof LockBusyError);
      assert.deepEqual(err.keys, [ 'JOB_LOCKER_a', 'JOB_LOCKER_b' ]);
      await eventually(async () => {
        for (const view of views) assert.equal(await view.exists('JOB_LOCKER_a'), 0, 'no partial lock left behind');
      });
      await b.unlock();
    });

    it('keeps the lease alive in using(), then releases', async () => {
      const result = await redlock.using('job', 200, async (signal, lock) => {
        await sleep(600);
        assert.equal(signal.aborted, false);
        assert.equal(await other.tryLock('job', 100), null);
        return lock.value;
      });
      assert.match(result, /@/);
      await eventually(async () => {
        for (const view of views) assert.equal(await view.exists('JOB_LOCKER_job'), 0);
      });
      assert.equal(redlock.locks.length, 0);
    });

    it('passes a routine\'s error through using(), and still releases', async () => {
      await assert.rejects(redlock.using('throws', 1000, async () => { throw new Error('routine failed'); }), /routine failed/);
      await eventually(async () => {
        for (const view of views) assert.equal(await view.exists('JOB_LOCKER_throws'), 0);
      });
      assert.equal(redlock.locks.length, 0);
    });

    it('aborts the signal the moment the lease is lost, and using() rejects', async () => {
      let seen: unknown;
      const err = await redlock.using('stolen', 300, async signal => {
        for (const view of views) await view.set('JOB_LOCKER_stolen', 'someone-else', 'PX', 5000);
        await new Promise(resolve => signal.addEventListener('abort', resolve));
        seen = signal.reason;
        return 'finished anyway';
      }).catch(e => e);
      assert.ok(seen instanceof LockLostError);
      assert.equal(err, seen);
      for (const view of views) assert.equal(await view.get('JOB_LOCKER_stolen'), 'someone-else', 'the new holder keeps it');
    });

    it('rejects using() whose routine ended after its lease without a timer noticing (a blocked event loop, a takeover)', async () => {
      const blocked = await redlock.using('blocked', 100, () => {
        const until = Date.now() + 250;
        while (Date.now() < until); // the routine's last step blocks the event loop past the lease
        return 'committed';
      }).catch(e => e);
      assert.ok(blocked instanceof LockLostError, `using() gave ${blocked}`);
      assert.match(blocked.message, /its lease ran out while the routine ran/);

      const taken = await redlock.using('taken-at-end', 5000, async () => {
        for (const view of views) await view.set('JOB_LOCKER_taken-at-end', 'someone-else', 'PX', 5000);
        return 'committed'; // returns before any extension could notice
      }).catch(e => e);
      assert.ok(taken instanceof LockLostError, `using() gave ${taken}`);
      assert.match(taken.message, /another client held it when the routine ended/);
      for (const view of views) assert.equal(await view.get('JOB_LOCKER_taken-at-end'), 'someone-else');
    });

    it('does not re-enter a lock that an extension found taken, though its lease has time left here', async () => {
      let lost: Lock | undefined;
      let nested: Lock | null | undefined;
      const outcome = await redlock.using('taken-over', 600, async (signal, lock) => {
        for (const view of views) await view.set('JOB_LOCKER_taken-over', 'another-client', 'PX', 10000);
        await new Promise(resolve => signal.addEventListener('abort', resolve)); // the extension at ~300 ms is refused
        lost = lock;
        nested = await redlock.tryLock('taken-over', 1000);
      }).catch(e => e);
      assert.equal(nested, null, 'busy (held by another client), not re-entered');
      assert.ok(lost && !lost.isHeld && lost.remainingMs === 0, 'not held here once known lost');
      assert.ok(outcome instanceof LockLostError, `using() gave ${outcome}`);
      assert.match(outcome.message, /another client holds it now/);
      for (const view of views) assert.equal(await view.get('JOB_LOCKER_taken-over'), 'another-client');
    });

    it('keeps the default lease (config ttl) alive in using() when no ttl is given', async () => {
      const short = await redlockOn(servers, { ttl: 300 });
      try {
        const result = await short.using('default-ttl', undefined, async signal => {
          await sleep(700); // past the first lease: only an extension keeps it
          return signal.aborted;
        });
        assert.equal(result, false);
      } finally {
        await short.close();
      }
    });

    it('rejects a using() whose routine released the lock itself, and leaves an outer using()\'s hold alone', async () => {
      const solo = await redlock.using('self-released', 5000, async (_signal, lock) => lock.unlock()).catch(e => e);
      assert.ok(solo instanceof LockLostError, `using() gave ${solo}`);
      assert.match(solo.message, /the routine released it itself before it ended/);

      const outer = await redlock.using('nested-release', 400, async signal => {
        const inner = await redlock.using('nested-release', 400, async (_s, lock) => lock.unlock()).catch(e => e);
        assert.ok(inner instanceof LockLostError, `the inner using() gave ${inner}`);
        assert.equal(await other.tryLock('nested-release', 1000), null, 'the outer using() still holds it');
        await sleep(700); // past the first lease: the outer lease is still extended
        return signal.aborted ? `aborted: ${signal.reason?.message}` : 'done';
      });
      assert.equal(outer, 'done');
      for (const view of views) assert.equal(await view.exists('JOB_LOCKER_nested-release'), 0, 'released by the outer using()');
    });

    it('aborts a running using() when the client closes (close releases its lock), and using() rejects', async () => {
      const running = redlock.using('closing-using', 5000, signal => new Promise((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason));
      })).catch(e => e);
      await sleep(100);
      await redlock.close();
      const err = await running;
      assert.ok(err instanceof LockLostError, String(err));
      assert.match(err.message, /the lock client is closing and released it/);
      for (const view of views) assert.equal(await view.exists('JOB_LOCKER_closing-using'), 0);
    });

    it('does not extend a lease that already ran out here, even if its key lingers in Redis', async () => {
      const lock = await redlock.lock('lapsed', 100);
      for (const view of views) await view.pexpire('JOB_LOCKER_lapsed', 5000); // the key outlives the local lease
      await sleep(150);
      const err = await lock.extend(60000).catch(e => e);
      assert.ok(err instanceof LockLostError, `extend() gave ${err?.constructor?.name}`);
      assert.match(err.message, /its lease had already run out/);
      for (const view of views) assert.ok(await view.pttl('JOB_LOCKER_lapsed') < 10000, 'not extended in Redis');
    });

    it('does not take back a lease that ran out while an extension was answered: released, and refused', async () => {
      const patient = await redlockOn(servers, { commandTimeout: 5000 });
      try {
        const lock = await patient.lock('late-extension', 300);
        const extending = lock.extend(60000).catch(e => e);
        // Redis extends the key at once; the event loop is blocked past the lease before it reads the reply.
        const until = performance.now() + 500;
        while (performance.now() < until);
        const err = await extending;
        assert.ok(err instanceof LockLostError, `extend() gave ${err?.constructor?.name}`);
        assert.match(err.message, /its lease ran out before Redis confirmed the extension/);
        assert.equal(lock.isHeld, false);
        assert.deepEqual(patient.locks, []);
        for (const view of views) assert.equal(await view.exists('JOB_LOCKER_late-extension'), 0, 'released, not left extended for a minute');
      } finally {
        await patient.close();
      }
    });

    it('frees a lock whose extension was granted after its own validity, and does not blame another client', async () => {
      const patient = await redlockOn(servers, { commandTimeout: 5000 });
      try {
        const lock = await patient.lock('slow-extension', 60000);
        servers.forEach(s => s.pause());
        const extending = lock.extend(1000).catch(e => e); // valid for ~1 s from now
        await sleep(1500);
        servers.forEach(s => s.resume()); // Redis extends it now, after that second
        const err = await extending;
        assert.ok(err instanceof LockLostError, `extend() gave ${err?.constructor?.name}`);
        assert.match(err.message, /its lease ran out before Redis confirmed the extension/);
        assert.deepEqual(patient.locks, []);
        for (const view of views) assert.equal(await view.exists('JOB_LOCKER_slow-extension'), 0, 'freed, not left with our value');
      } finally {
        servers.forEach(s => s.resume());
        await patient.close();
      }
    });

    it('times its lease and its command time limits by a steady clock: a wall clock stepped back a minute changes neither', async () => {
      const wallClock = Date.now;
      const stepBack = () => { Date.now = () => wallClock() - 60000; }; // NTP steps the clock back
      try {
        const lock = await redlock.lock('stepped-back', 200);
        stepBack();
        assert.ok(lock.remainingMs <= 200, `${lock.remainingMs} ms left of a 200 ms lease`);
        await sleep(250);
        assert.equal(lock.isHeld, false, 'its lease ran out on time');
        Date.now = wallClock;

        servers.forEach(s => s.pause()); // commands in flight on hung nodes must still fail at their time limit
        const started = performance.now();
        const attempt = redlock.lock('stepped-back-hung', 1000, { retryCount: 0 }).catch(e => e);
        await sleep(50);
        stepBack(); // while the commands are in flight
        const err = await attempt;
        assert.ok(performance.now() - started < 10000, `the 500 ms command time limit took ${performance.now() - started} ms`);
        assert.ok(err instanceof LockUnavailableError, `lock() gave ${err?.constructor?.name}`);
        assert.match(err.message, /timed out after 500 ms/);
      } finally {
        Date.now = wallClock;
        servers.forEach(s => s.resume());
      }
    });

    it('stops extending at maxHold', async () => {
      const start = Date.now();
      const err = await redlock.using('runaway', 200, signal => new Promise((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason));
      }), { maxHold: 500 }).catch(e => e);
      assert.ok(err instanceof LockLostError);
      assert.match(err.message, /maxHold/);
      assert.ok(Date.now() - start >= 450, `lost after ${Date.now() - start} ms`);
    });

    it('tells a caller that waited behind another caller of this process who holds the lock elsewhere, and for how long', async () => {
      const release = await holdElsewhere(other, 'elsewhere', 30000, 'web-9/1234');
      const ahead = redlock.lock('elsewhere', 1000, { waitTimeout: 1500 }).catch(e => e);
      const behind = await redlock.lock('elsewhere', 1000, { waitTimeout: 300 }).catch(e => e);
      assert.ok(behind instanceof LockBusyError, String(behind));
      assert.equal(behind.holder, 'web-9/1234');
      assert.ok(behind.remainingMs > 25000 && behind.remainingMs <= 30000, `remainingMs ${behind.remainingMs}`);
      assert.equal(await redlock.tryLock('elsewhere', 1000), null);
      assert.ok(await ahead instanceof LockBusyError);
      await release();
      const mine = await redlock.lock('mine', 30000);
      const here = await redlock.lock('mine', 1000, { retryCount: 0 }).catch(e => e);
      assert.match(here.message, /held by .* \(this process\)/);
      await mine.unlock();
    });

    it('tells a caller behind another caller of this process the reason that one was given, not "0 nodes failed"', async () => {
      await Promise.all(views.map(view => view.call('CLIENT', 'PAUSE', '200', 'WRITE'))); // a 10 ms lease is over before it is granted
      const ahead = redlock.lock('slow', 10, { waitTimeout: 5000 }); // then tries again after retryDelay, and gets it
      let behind: unknown = null;
      for (let i = 0; behind === null && i < 100; i++) { // null while the attempt ahead is under way
        await sleep(10);
        behind = await redlock.tryLock('slow', 1000).catch(e => e);
      }
      assert.ok(behind instanceof LockUnavailableError, String(behind));
      assert.match(behind.message, /the lease ran out while it was being acquired \(Redis too slow for this ttl\)/);
      await (await ahead).unlock();
    });

    it('unlock() of a re-entered lock resolves false once the lock was taken (only the last hold releases)', async () => {
      let inner: boolean | undefined;
      const outcome = await redlock.using('taken', 1000, async signal => {
        const nested = await redlock.lock('taken', 1000); // re-enters
        await Promise.all(views.map(v => v.set('JOB_LOCKER_taken', 'someone-else', 'PX', 60000)));
        while (!signal.aborted) await sleep(20); // the next extension finds it taken
        inner = await nested.unlock();
      }).catch(e => e);
      assert.ok(outcome instanceof LockLostError, String(outcome));
      assert.equal(inner, false);
      for (const view of views) assert.equal(await view.get('JOB_LOCKER_taken'), 'someone-else');
    });

    it('rejects bad arguments with errors that name them', async () => {
      await assert.rejects(redlock.lock('' as string), /name must have 1 to 1024 characters/);
      await assert.rejects(redlock.lock(42 as any), /name must be a string/);
      await assert.rejects(redlock.lock([], 1000), /names must have 1 to 10000 names, got 0/);
      const many = Array.from({ length: 60000 }, (_, i) => `n${i}`); // their keys would overflow one call's arguments
      await assert.rejects(redlock.lock(many, 1000), /names must have 1 to 10000 names, got 60000/);
      // Lone surrogates would reach Redis as U+FFFD: 's\uD800' and 's\uD801' would be one lock.
      await assert.rejects(redlock.lock('s\uD800', 1000), /name must be well-formed Unicode, got "s\\ud800" \(a lone surrogate\)/);
      await assert.rejects(redlock.lock([ 'm\uDC00', 'ok' ], 1000), /names\[0\] must be well-formed Unicode/);
      await (await redlock.lock('emoji:😀', 1000)).unlock(); // a surrogate pair is one well-formed character
      await assert.rejects(redlock.lock([ 'a', 7 as any ], 1000), /names\[1\] must be a string/);
      await assert.rejects(redlock.lock('x'.repeat(2000)), RangeError);
      await assert.rejects(redlock.lock('order:fence'), /name must not end in :fence, :waiters, :queue, :tickets, :last \(the plugin keeps its own keys beside each lock's key under those\), got 'order:fence'/);
      await assert.rejects(redlock.lock([ 'a', 'report:last' ]), /names\[1\] must not end in/);
      await assert.rejects(redlock.lock('a', 0), /ttl must be between 1 and/);
      await assert.rejects(redlock.lock('a', 1.5), /ttl must be an integer/);
      await assert.rejects(redlock.lock('a', 2), /ttl must be more than the clock-drift allowance \(2 ms for driftFactor 0.01: such a lease is over before it is granted\), got 2/);
      await assert.rejects(redlock.lock('a', 100, { retryCount: -2 }), /options.retryCount/);
      await assert.rejects(redlock.lock('a', 100, 'fast' as any), /options must be an object/);
      await assert.rejects(redlock.using('a', 100, undefined as any), /routine must be a function/);
      const lock = await redlock.lock('a', 1000);
      await assert.rejects(lock.extend(-5), RangeError);
      await assert.rejects(lock.extend(2), /ttl must be more than the clock-drift allowance/);
      assert.ok(lock.isHeld, 'a refused extension leaves the lease alone');
      await lock.unlock();
      await eventually(async () => {
        for (const view of views) assert.deepEqual(await lockKeysOn(view), [], 'no lock left behind');
      });
    });

    it('releases what it holds at close and refuses new locks after', async () => {
      await redlock.lock('left-open', 60000);
      await redlock.lock([ 'x', 'y' ], 60000);
      await redlock.close();
      for (const view of views) assert.deepEqual(await lockKeysOn(view), []);
      await assert.rejects(redlock.lock('late'), /closed/);
    });

    if (masters === 1) {
      it('does not re-send a timed-out acquisition that met NOSCRIPT after its undo ran (no lock left behind)', async () => {
        const quick = await redlockOn(servers, { commandTimeout: 300 });
        try {
          await views[0].script('FLUSH');
          await views[0].script('LOAD', SCRIPTS.RELEASE); // the undo's script is cached, the acquisition's is not
          servers[0].pause();
          const err = await quick.tryLock('noscript', 60000).catch(e => e);
          servers[0].resume(); // runs the acquisition (NOSCRIPT), then the undo (nothing to delete)
          assert.ok(err instanceof LockUnavailableError, `tryLock() gave ${err}`);
          await sleep(300); // room for a late EVAL of the acquisition
          assert.equal(await views[0].exists('JOB_LOCKER_noscript'), 0, 'no lock left behind for a minute');
        } finally {
          servers[0].resume();
          await quick.close();
        }
      });

      [ false, true ].forEach(fair => {
        it(`takes the lock when an earlier attempt of the same call was granted but its reply was lost${fair ? ' (fair)' : ''}`, async () => {
          const cut = await redlockOn(servers, { commandTimeout: 1000 });
          try {
            servers[0].pause();
            const attempt = cut.lock('lost-reply', 10000, { waitTimeout: 5000, fair }).catch(e => e);
            await sleep(100); // the attempt waits in the paused server's socket
            (cut.stores[0].client as any).stream.destroy(); // the connection is cut before the reply
            await sleep(1300); // the attempt timed out; its undo could not be sent on the cut connection
            servers[0].resume(); // the server now runs the attempt: the key holds the call's value
            const lock = await attempt;
            assert.ok(lock instanceof Lock, `lock() gave ${lock?.message ?? lock}`);
            assert.equal(await views[0].get('JOB_LOCKER_lost-reply'), lock.value);
            assert.equal(await lock.unlock(), true);
          } finally {
            servers[0].resume();
            await cut.close();
          }
        });
      });

      it('fails fast with an unavailable error when the node is down', async () => {
        await servers[0].kill();
        const start = Date.now();
        const err = await redlock.lock('down', 1000, { retryCount: 1 }).catch(e => e);
        assert.ok(err instanceof LockUnavailableError, String(err));
        assert.match(err.message, new RegExp(`127.0.0.1:${servers[0].port}`));
        assert.ok(Date.now() - start < 2000);
        await assert.rejects(redlock.tryLock('down', 1000), LockUnavailableError);
      });

      it('tells a caller that waited behind another caller of this process what Redis told that one: unavailable, not busy', async () => {
        await servers[0].kill();
        const ahead = redlock.lock('down', 1000, { waitTimeout: 1500 }).catch(e => e);
        const behind = await redlock.lock('down', 1000, { waitTimeout: 300 }).catch(e => e);
        assert.ok(behind instanceof LockUnavailableError, String(behind));
        assert.match(behind.message, new RegExp(`127.0.0.1:${servers[0].port}`));
        await assert.rejects(redlock.tryLock('down', 1000), LockUnavailableError, 'not null (busy)');
        assert.ok(await ahead instanceof LockUnavailableError);
      });

      it('unlock() of a lock whose lease ran out long ago resolves false while Redis is down (it had expired)', async () => {
        const lock = await redlock.lock('expired', 100);
        const held = await redlock.lock('held', 60000);
        await sleep(300);
        await servers[0].kill();
        assert.equal(await lock.unlock(), false);
        await assert.rejects(held.unlock(), LockUnavailableError, 'with its lease running it cannot tell');
      });

      it('fails every call in flight on a hung node at its command timeout, and leaks no lock once the node wakes', async () => {
        const held = await Promise.all([ 'x', 'y', 'z' ].map(name => redlock.lock(name, 60000)));
        servers[0].pause();
        let outcomes: PromiseSettledResult<unknown>[];
        const guard = new AbortController();
        try {
          // Started at different moments, so the one time-limit timer must re-arm for each later call.
          const calls: Array<Promise<unknown>> = [];
          for (const lock of held) {
            calls.push(lock.unlock());
            await sleep(150);
          }
          calls.push(redlock.lock('hung', 60000, { retryCount: 0 }));
          outcomes = await Promise.race([
            Promise.allSettled(calls),
            sleep(20000, null, { signal: guard.signal }).then(() => { throw new Error('a call on the hung node never settled'); }),
          ]);
        } finally {
          guard.abort();
          servers[0].resume();
        }
        for (const outcome of outcomes) {
          assert.equal(outcome.status, 'rejected');
          const err = (outcome as PromiseRejectedResult).reason;
          assert.ok(err instanceof LockUnavailableError, String(err));
          assert.match(err.message, /timed out after 500 ms/);
        }
        // A timed-out command may still run: the node now runs the queued releases, the acquisition and
        // the release its failed attempt sent after it. Nothing is left locked.
        await eventually(async () => assert.deepEqual(await lockKeysOn(views[0]), []));
        assert.ok(await other.tryLock('hung', 1000), 'the timed-out attempt left nothing behind');
        assert.equal(await held[0].unlock(), false, 'releasing again finds the key gone, and deletes nothing');
      });
    } else {
      it('keeps working with one of three masters down', async () => {
        await servers[2].kill();
        const lock = await redlock.lock('degraded', 5000);
        assert.equal(await other.tryLock('degraded', 1000), null);
        assert.equal(await lock.unlock(), true);
        assert.ok(await other.tryLock('degraded', 1000));
      });

      it('is unavailable with two of three masters down, naming them', async () => {
        await servers[1].kill();
        await servers[2].kill();
        const err = await redlock.lock('quorumless', 1000, { retryCount: 0 }).catch(e => e);
        assert.ok(err instanceof LockUnavailableError, String(err));
        assert.match(err.message, /no quorum: 2 of 3 Redis nodes failed/);
        assert.match(err.message, new RegExp(`127.0.0.1:${servers[1].port}`));
        assert.match(err.message, new RegExp(`127.0.0.1:${servers[2].port}`));
        assert.equal(await views[0].exists('JOB_LOCKER_quorumless'), 0, 'the one granted node was released');
      });

      it('extends on the other two while a master hangs, also a lease shorter than the command timeout', async () => {
        servers[2].pause();
        try {
          const lock = await redlock.lock('hung-extend', 300); // the command timeout is 500 ms
          await lock.extend(300);
          assert.ok(lock.remainingMs > 0);
          assert.equal(await lock.unlock(), true);
          const result = await redlock.using('hung-using', 400, async signal => {
            await sleep(1000); // two and a half leases
            return signal.aborted;
          });
          assert.equal(result, false, 'using() lost a lease that two of three masters extended');
        } finally {
          servers[2].resume();
        }
      });

      it('times out a paused master instead of hanging, and still locks on the other two', async () => {
        servers[0].pause();
        try {
          const lock = await redlock.lock('paused', 5000);
          assert.equal(lock.keys[0], 'JOB_LOCKER_paused');
          assert.equal(await lock.unlock(), true);
        } finally {
          servers[0].resume();
        }
      });
    }
  });
}

describe('quorum answers while masters are down or hung', () => {
  const withMasters = async (n: number, commandTimeout: number, run: (servers: RedisServer[], views: Redis[], redlock: Redlock) => Promise<void>) => {
    const servers = await startRedisServers(n);
    const views = servers.map(inspect);
    const redlock = await redlockOn(servers, { commandTimeout });
    try {
      await run(servers, views, redlock);
    } finally {
      servers.forEach(s => s.resume());
      await redlock.close();
      views.forEach(v => v.disconnect());
      await killAll(servers);
    }
  };

  // Busy whatever the hung master says: 2 of 5 may fail or refuse, 1 of 3.
  ([[ 5, [ 0 ], [ 1, 2 ]], [ 3, [], [ 0, 1 ]]] as Array<[number, number[], number[]]>).forEach(([ n, down, heldOn ]) => {
    it(`${n} masters, ${down.length ? 'one down and ' : ''}one hung, held elsewhere on ${heldOn.length}: busy at once, not at the command timeout`, () =>
      withMasters(n, 10000, async (servers, views, redlock) => {
        for (const i of heldOn) await views[i].set('JOB_LOCKER_decided', 'someone-else', 'PX', 60000);
        for (const i of down) await servers[i].kill();
        servers[n - 1].pause();
        const start = Date.now();
        assert.equal(await redlock.tryLock('decided', 1000), null);
        assert.ok(Date.now() - start < 5000, `answered after ${Date.now() - start} ms (the command timeout is 10 s)`);
      }));
  });

  it('undoes a refused attempt on a slow master before the same call\'s next attempt reaches it (no quorum lost to a late undo)', () =>
    withMasters(3, 5000, async (servers, views, redlock) => {
      const other = newLockValue('another-machine/1');
      for (const view of views.slice(0, 2)) await view.set('JOB_LOCKER_late-undo', other, 'PX', 60000);
      servers[2].pause(); // its answers, and anything queued behind them, wait
      const waiting = redlock.lock('late-undo', 10000, { waitTimeout: 4000 });
      await sleep(300); // refused by the first two; the third has not answered
      await views[1].del('JOB_LOCKER_late-undo'); // the other holder's lease ends on the second
      await redlock.stores[1].client.publish(redlock.wakeChannel, `${other}\nJOB_LOCKER_late-undo`); // as its release would wake
      await sleep(300); // the next attempt: granted on the second, queued on the third
      servers[2].resume();
      const lock = await waiting;
      await sleep(300); // every answer and undo in
      const held = (await Promise.all(views.map(v => v.get('JOB_LOCKER_late-undo')))).filter(v => v === lock.value).length;
      assert.ok(held >= 2, `held on ${held} of 3 masters while lock() resolved`);
      await lock.unlock();
    }));

  it('a refused attempt waits for a hung master once, not again for its undo there', () =>
    withMasters(3, 1000, async (servers, views, redlock) => {
      await views[1].set('JOB_LOCKER_hung-undo', 'someone-else', 'PX', 60000); // held on the second only
      servers[2].pause(); // granted on the first, refused on the second: the third decides, and hangs
      const start = Date.now();
      assert.equal(await redlock.tryLock('hung-undo', 5000), null);
      assert.ok(Date.now() - start < 1900, `refused after ${Date.now() - start} ms (one command timeout is 1 s)`);
      assert.equal(await views[0].exists('JOB_LOCKER_hung-undo'), 0, 'undone on the first');
    }));

  it('a busy error decided before the hung master answered keeps the outcomes it was thrown with', () =>
    withMasters(3, 3000, async (servers, views, redlock) => {
      for (const view of views.slice(0, 2)) await view.set('JOB_LOCKER_snapshot', 'someone-else', 'PX', 60000);
      servers[2].pause();
      const err = await redlock.lock('snapshot', 1000, { retryCount: 0 }).catch(e => e);
      assert.ok(err instanceof LockBusyError, String(err));
      const atThrow = JSON.stringify(err.outcomes);
      servers[2].resume();
      await sleep(300); // the hung master's late grant (undone by the release queued behind it)
      assert.equal(JSON.stringify(err.outcomes), atThrow);
      await eventually(async () => assert.equal(await views[2].exists('JOB_LOCKER_snapshot'), 0));
    }));

  [ 'unlock', 'using' ].forEach(via => {
    it(`${via}(): a lease running when released is not called expired because no quorum answered before it ran out`, () =>
      withMasters(3, 2500, async (servers, _views, redlock) => {
        const outage = async () => {
          await servers[0].kill();
          servers[2].pause(); // the release waits 2.5 s for it, past the 1.5 s lease
        };
        if (via === 'unlock') {
          const lock = await redlock.lock('late-answer', 1500);
          await outage();
          await assert.rejects(lock.unlock(), LockUnavailableError);
        } else {
          // The release cannot tell, so using() keeps the routine's result (and logs a warning).
          assert.equal(await redlock.using('late-answer', 1500, async () => { await outage(); return 'done'; }), 'done');
        }
      }));
  });
});
