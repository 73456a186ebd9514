import assert from 'node:assert/strict';
import type Redis from 'ioredis';
import { FencedValue, StaleTokenError } from '../lib/fencing';
import type { Redlock } from '../lib/redlock';
import { eventually, inspect, redlockOn } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

for (const masters of [ 1, 3 ]) {
  describe(`fencing tokens on ${masters === 1 ? 'a single node' : '3 independent masters'}`, () => {
    let servers: RedisServer[];
    let views: Redis[];
    let a: Redlock;
    let b: Redlock;

    before(async () => {
      servers = await startRedisServers(masters);
      views = servers.map(inspect);
      a = await redlockOn(servers);
      b = await redlockOn(servers);
    });
    after(async () => {
      await a.close();
      await b.close();
      views.forEach(v => v.disconnect());
      await killAll(servers);
    });

    it('strictly increase per name across holders', async () => {
      const tokens: number[] = [];
      for (let i = 0; i < 30; i++) {
        const lock = await (i % 2 ? a : b).lock('fenced', 5000);
        tokens.push(lock.fencingToken);
        await lock.unlock();
      }
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i] > tokens[i - 1], `token ${i}: ${tokens[i]} after ${tokens[i - 1]}`);
      assert.ok(Number.isSafeInteger(tokens[0]));
    });

    it('keep increasing when a node loses its counters (expiry, restart without persistence)', async () => {
      const first = await a.lock('forgetful', 5000);
      await first.unlock();
      await views[0].flushall(); // a master that restarted empty
      const second = await b.lock('forgetful', 5000);
      assert.ok(second.fencingToken > first.fencingToken, `${second.fencingToken} > ${first.fencingToken}`);
      await second.unlock();
    });

    it('keep increasing when the server clock is behind the last token (a clock stepped back)', async () => {
      const first = await a.lock('stepped', 5000);
      await first.unlock();
      // As if the tokens so far had been issued while every server's clock ran a day ahead.
      const ahead = first.fencingToken + 86400 * 1e6;
      for (const view of views) await view.set('JOB_LOCKER_stepped:fence', String(ahead), 'PX', 60000);
      const second = await b.lock('stepped', 5000);
      assert.equal(second.fencingToken, ahead + 1);
      await second.unlock();
      const third = await a.lock('stepped', 5000);
      assert.equal(third.fencingToken, ahead + 2);
      await third.unlock();
    });

    it('gives each name of a multi-name lock its own token', async () => {
      const before = await a.lock('m2', 5000);
      await before.unlock();
      const lock = await a.lock([ 'm2', 'm1' ], 5000);
      assert.deepEqual(lock.names, [ 'm1', 'm2' ]);
      assert.equal(lock.fencingTokens.length, 2);
      assert.ok(lock.fencingTokens[1] > before.fencingToken);
      await lock.unlock();
    });

    it('lets a guarded resource refuse a holder whose lease ran out', async () => {
      const resource = new FencedValue(views[0], 'account:7');
      const stale = await a.lock('account:7', 5000);
      assert.equal(await resource.read(stale.fencingToken), null);
      for (const view of views) await view.pexpire('JOB_LOCKER_account:7', 1); // the holder was paused past its lease
      await new Promise(resolve => setTimeout(resolve, 10));
      const fresh = await b.lock('account:7', 5000);
      await resource.write(fresh.fencingToken, '100');
      const err = await resource.write(stale.fencingToken, '50').catch(e => e);
      assert.ok(err instanceof StaleTokenError);
      assert.equal(err.highestSeen, fresh.fencingToken);
      assert.match(err.message, /account:7 refused fencing token \d+: token \d+ has been used since/);
      assert.equal(await resource.read(fresh.fencingToken), '100');
      await assert.rejects(resource.read(-1), TypeError);
      await fresh.unlock();
    });
  });
}

describe('fencing tokens across a failover (Sentinel, Cluster)', () => {
  let servers: RedisServer[];
  let views: Redis[];

  before(async () => {
    servers = await startRedisServers(2);
    views = servers.map(inspect);
  });
  after(async () => {
    views.forEach(v => v.disconnect());
    await killAll(servers);
  });

  it('keep increasing when the promoted replica missed the last grants (asynchronous replication)', async () => {
    const [ master, replica ] = servers;
    const [ masterView, replicaView ] = views;
    await masterView.config('SET', 'repl-diskless-sync-delay', '0'); // sync at once, not in 5 s
    await replicaView.replicaof('127.0.0.1', master.port);
    const before = await redlockOn([ master ]);
    const after = await redlockOn([ replica ]);
    try {
      let last = 0;
      const grant = async () => {
        const lock = await before.lock('failover', 5000);
        last = lock.fencingToken;
        await lock.unlock();
      };
      for (let i = 0; i < 3; i++) await grant();
      const counter = await masterView.get('JOB_LOCKER_failover:fence');
      await eventually(async () => assert.equal(await replicaView.get('JOB_LOCKER_failover:fence'), counter), 10000);
      // The link drops: the replica misses the next grants, then is promoted (as Sentinel would).
      await replicaView.replicaof('NO', 'ONE');
      for (let i = 0; i < 3; i++) await grant();
      const promoted = await after.lock('failover', 5000);
      assert.ok(promoted.fencingToken > last, `token ${promoted.fencingToken} after a failover, ${last} issued before it`);
      await promoted.unlock();
    } finally {
      await before.close();
      await after.close();
    }
  });
});
