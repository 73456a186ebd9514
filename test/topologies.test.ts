import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import calculateSlot from 'cluster-key-slot';
import mm from 'egg-mock';
import Redis, { Cluster } from 'ioredis';
import { connectRedlock } from '../lib/boot';
import { defaultConfig, RedlockConfig } from '../lib/config';
import type { Lock } from '../lib/lock';
import type { Redlock } from '../lib/redlock';
import type { RedisLike } from '../lib/store';
import { script, SCRIPTS } from '../lib/scripts';
import { eventually, MemoryLogger, scriptCalls } from './support/clients';
import { killAll, RedisServer, startRedisCluster } from './support/redis-server';

/**
 * Exercised on each topology: exclusion, multi-name, fencing, waking a waiter (by hand-over on
 * Sentinel, by the release channel on a Cluster), fairness.
 */
function behavesAsOneNode(redlock: () => Redlock, other: () => Redlock) {
  it('excludes, and issues increasing fencing tokens', async () => {
    const first = await redlock().lock('topo', 5000);
    assert.equal(await other().tryLock('topo', 1000), null);
    await first.unlock();
    const second = await other().lock('topo', 5000);
    assert.ok(second.fencingToken > first.fencingToken);
    await second.unlock();
  });

  it('takes several names all or none', async () => {
    const both = await redlock().lock([ 'multi:a', 'multi:b', '{order}:1', '{order}:2' ], 5000);
    assert.equal(both.fencingTokens.length, 4);
    assert.equal(await other().tryLock('multi:b', 1000), null);
    const held = await other().lock('multi:z', 5000);
    await both.unlock();
    const err = await redlock().lock([ 'multi:a', 'multi:z' ], 1000, { retryCount: 0 }).catch(e => e);
    assert.equal(err.name, 'LockBusyError');
    assert.ok(await other().tryLock('multi:a', 1000), 'the failed multi-name attempt left nothing behind');
    await held.unlock();
  });

  // Braces: a '{' that opens no tag, and a tag followed by a '}' (the companion keys must share the slot).
  for (const name of [ 'wake', 'wake{odd', '{x}}y' ]) {
    for (const fair of [ false, true ]) {
      it(`wakes a${fair ? ' fair' : ''} waiter of '${name}' with the release (companion keys in the right slot)`, async () => {
        const held = await redlock().lock(name, 20000, { fair });
        const waiter = other().lock(name, 1000, { waitTimeout: 10000, fair });
        await sleep(300);
        const releasedAt = Date.now();
        await held.unlock();
        await (await waiter).unlock();
        assert.ok(Date.now() - releasedAt < 5000, 'not the 20 s lease');
      });
    }
  }
}

describe('Redis Cluster as one logical node', function() {
  this.timeout(60000);
  let nodes: RedisServer[] = [];
  let views: Redis[] = [];
  let config: RedlockConfig;
  let a: Redlock;
  let b: Redlock;

  before(async () => {
    nodes = await startRedisCluster(3);
    views = nodes.map(n => new Redis({ port: n.port }));
    config = { ...defaultConfig, connectTimeout: 5000, cluster: { nodes: [{ host: '127.0.0.1', port: nodes[0].port }] } };
    [ a, b ] = await Promise.all([ connectRedlock(config, new MemoryLogger()), connectRedlock(config, new MemoryLogger()) ]);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    views.forEach(v => v.disconnect());
    await killAll(nodes);
  });

  /** The node that owns `key`'s slot now. */
  async function ownerOf(key: string): Promise<RedisServer> {
    const slot = calculateSlot(key);
    const ranges = await views[0].cluster('SLOTS');
    const port = ranges.find(([ low, high ]) => slot >= low && slot <= high)![2][1];
    return nodes.find(n => n.port === port)!;
  }

  /** Moves `key`'s slot, with its keys, to another node, as `redis-cli --cluster reshard` does. */
  async function moveSlotOf(key: string): Promise<void> {
    const slot = calculateSlot(key);
    const from = nodes.indexOf(await ownerOf(key));
    const to = (from + 1) % nodes.length;
    const [ source, target ] = [ views[from], views[to] ];
    const [ sourceId, targetId ] = await Promise.all([ source.cluster('MYID'), target.cluster('MYID') ]);
    await target.cluster('SETSLOT', slot, 'IMPORTING', sourceId);
    await source.cluster('SETSLOT', slot, 'MIGRATING', targetId);
    for (let keys = await source.cluster('GETKEYSINSLOT', slot, 100); keys.length > 0; keys = await source.cluster('GETKEYSINSLOT', slot, 100)) {
      await source.migrate('127.0.0.1', nodes[to].port, '', 0, 5000, 'KEYS', ...keys);
    }
    for (const view of views) await view.cluster('SETSLOT', slot, 'NODE', targetId);
  }

  /** Lock scripts run so far, on every node of the Cluster. */
  async function clusterScriptCalls(): Promise<number> {
    const calls = await Promise.all(views.map(scriptCalls));
    return calls.reduce((sum, n) => sum + n, 0);
  }

  it('hands a released lock to the first queued waiter only, by SPUBLISH in the key\'s slot: one attempt per release', async () => {
    assert.equal(a.stores[0].wakeBy, 'spublish');
    const others = await Promise.all([ 1, 2 ].map(() => connectRedlock(config, new MemoryLogger())));
    const queue = a.stores[0].client as unknown as Cluster;
    try {
      let held = await a.lock('chain', 20000);
      const waiting: Array<Promise<Lock>> = [];
      for (const [ i, client ] of [ b, ...others ].entries()) {
        waiting.push(client.lock('chain', 20000, { waitTimeout: 30000 }));
        while (await queue.zcard('{JOB_LOCKER_chain}:waiters') < i + 1) await sleep(5);
      }
      for (const [ i, next ] of waiting.entries()) {
        const before = await clusterScriptCalls();
        await held.unlock();
        held = await next;
        await sleep(300); // room for any other waiter to have been woken and tried
        assert.equal(await clusterScriptCalls() - before, 2, `handoff ${i}: the release and the woken waiter's attempt only`);
      }
      await held.unlock();
      assert.equal(await queue.exists('{JOB_LOCKER_chain}:waiters'), 0, 'no queue is left behind');
    } finally {
      await Promise.all(others.map(o => o.close()));
    }
  });

  it('wakes a waiter for names in several slots, two of them sharing one (each slot\'s wakes on its own shard channel)', async () => {
    const names = [ 'spread:a', 'spread:b', '{spread}:1', '{spread}:2' ];
    assert.equal(new Set(names.map(n => calculateSlot(`JOB_LOCKER_${n}`))).size, 3);
    // Not the first name, nor the first of its slot: the waiter queues for them under other slots' and names' channels.
    const held = await a.lock([ 'spread:b', '{spread}:2' ], 20000);
    const waiting = b.lock(names, 20000, { waitTimeout: 10000 });
    await sleep(300);
    const releasedAt = Date.now();
    await held.unlock();
    await (await waiting).unlock();
    assert.ok(Date.now() - releasedAt < 5000, 'woken by the release, not by the 20 s lease');
  });

  it('a waiter for names in two slots, blocked in one, leaves the other\'s queue: it does not take wakes it cannot use', async () => {
    const queue = new Cluster([{ host: '127.0.0.1', port: nodes[0].port }]);
    const third = await connectRedlock(config, new MemoryLogger());
    try {
      assert.notEqual(calculateSlot('JOB_LOCKER_pair:a'), calculateSlot('JOB_LOCKER_pair:b'));
      const b1 = await a.lock('pair:b', 20000);
      const both = b.lock([ 'pair:a', 'pair:b' ], 5000, { waitTimeout: 30000 }); // queues on pair:b
      both.catch(() => undefined);
      while (await queue.zcard('{JOB_LOCKER_pair:b}:waiters') < 1) await sleep(5);
      const a1 = await a.lock('pair:a', 20000); // now the waiter for both is blocked in pair:a's slot
      const single = third.lock('pair:b', 5000, { waitTimeout: 30000 });
      while (await queue.zcard('{JOB_LOCKER_pair:b}:waiters') < 2) await sleep(5);
      const releasedAt = Date.now();
      await b1.unlock();
      await (await single).unlock();
      assert.ok(Date.now() - releasedAt < 10000, 'the waiter of pair:b alone was woken by the release, not by the 20 s lease');
      await a1.unlock();
      await (await both).unlock();
    } finally {
      await third.close();
      queue.disconnect();
    }
  });

  it('releases a lock over several slots on every healthy node when one slot\'s node hangs', async () => {
    const lock = await a.lock([ 'pair:a', 'pair:b' ], 30000);
    const hung = await ownerOf('JOB_LOCKER_pair:a');
    hung.pause();
    try {
      await assert.rejects(lock.unlock(), /unavailable/);
    } finally {
      hung.resume();
    }
    const other = await b.tryLock('pair:b', 1000);
    assert.ok(other, 'pair:b, on a healthy node, was released');
    await other.unlock();
  });

  it('without sharded pub/sub (a Redis 6 Cluster) still wakes waiters, by broadcast on the key\'s release channel', async () => {
    const [ holder, waiter ] = await Promise.all([ 1, 2 ].map(() => connectRedlock(config, new MemoryLogger())));
    try {
      for (const client of [ holder, waiter ]) client.stores[0].wakeBy = 'broadcast'; // what detectShardedWakes leaves on Redis 6
      const held = await holder.lock('old-cluster', 20000);
      const waiting = waiter.lock('old-cluster', 1000, { waitTimeout: 10000 });
      await sleep(300);
      const releasedAt = Date.now();
      await held.unlock();
      await (await waiting).unlock();
      assert.ok(Date.now() - releasedAt < 5000, 'not the 20 s lease');
    } finally {
      await Promise.all([ holder.close(), waiter.close() ]);
    }
  });

  it('a waiter whose shard subscriber was cut checks again once the Cluster has subscribed it again (a release may have gone unheard)', async () => {
    const key = 'JOB_LOCKER_resubscribed';
    const held = await a.lock('resubscribed', 30000);
    const waiting = b.lock('resubscribed', 30000, { waitTimeout: 25000 });
    waiting.catch(() => undefined);
    const queue = a.stores[0].client as unknown as Cluster;
    while (await queue.zcard(`{${key}}:waiters`) < 1) await sleep(5);
    const owner = new Redis({ port: (await ownerOf(key)).port });
    try {
      // In one pipeline, so the release surely runs while the shard subscriber is gone.
      const replies = await owner.pipeline().client('KILL', 'TYPE', 'pubsub')
        .eval(SCRIPTS.RELEASE, 2, key, `{${key}}:waiters`, held.value, 'spublish')
        .exec();
      assert.deepEqual(replies!.map(([ , reply ]) => reply), [ 1, 1 ], 'the shard subscriber cut, then the lock released');
    } finally {
      owner.disconnect();
    }
    const releasedAt = Date.now();
    const lock = await waiting;
    assert.ok(Date.now() - releasedAt < 10000, `got the free lock ${Date.now() - releasedAt} ms after the release: at the 30 s lease`);
    assert.equal(await held.unlock(), false, 'the holder\'s key was released behind its back');
    await lock.unlock();
  });

  /** Two lock clients on Cluster clients borrowed as egg-redis builds them (an ioredis Cluster with its defaults). */
  async function borrowedPair(): Promise<{ clients: Redlock[]; close: () => Promise<void> }> {
    const clusters = [ 0, 1 ].map(() => new Cluster([{ host: '127.0.0.1', port: nodes[0].port }]));
    const borrowed = { ...defaultConfig, connectTimeout: 5000, redis: 'default' };
    const clients = await Promise.all(clusters.map(c => connectRedlock(borrowed, new MemoryLogger(), () => c as unknown as RedisLike)));
    return {
      clients,
      close: async () => {
        await Promise.all(clients.map(c => c.close()));
        clusters.forEach(c => c.disconnect());
      },
    };
  }

  [ false, true ].forEach(borrowed => {
    it(`a waiter queued before its key's slot moved to another node is woken by the release there (${borrowed ? 'borrowed egg-redis Cluster' : 'the plugin\'s own Cluster clients'})`, async () => {
      const pair = borrowed ? await borrowedPair() : { clients: [ a, b ], close: async () => undefined };
      const [ holder, waiter ] = pair.clients;
      const key = `JOB_LOCKER_moved-${borrowed}`;
      try {
        const held = await holder.lock(`moved-${borrowed}`, 30000);
        const waiting = waiter.lock(`moved-${borrowed}`, 30000, { waitTimeout: 25000 });
        waiting.catch(() => undefined);
        const queue = a.stores[0].client as unknown as Cluster;
        while (await queue.zcard(`{${key}}:waiters`) < 1) await sleep(5);
        const before = await ownerOf(key);
        await moveSlotOf(key);
        assert.notEqual(await ownerOf(key), before);
        const releasedAt = Date.now();
        assert.equal(await held.unlock(), true, 'released on the slot\'s new node');
        const lock = await waiting;
        assert.ok(Date.now() - releasedAt < 10000, `got the free lock ${Date.now() - releasedAt} ms after the release: at the 30 s lease`);
        await lock.unlock();
      } finally {
        await pair.close();
      }
    });
  });

  it('refuses a name with a \'}\' that closes no hash tag, and says why (its companion keys could not share its slot)', async () => {
    for (const name of [ 'wake}odd', '{}wake', 'a{}b}c' ]) {
      await assert.rejects(a.lock(name, 1000), (err: Error) => err instanceof RangeError && err.message.includes(`only to close a hash tag ('{order}:1'), or the plugin's keys beside the lock would land in another slot; got '${name}'`));
    }
    await assert.rejects(a.tryLock([ 'fine', 'odd}' ], 1000), /got 'odd}'/);
  });

  it('loads its scripts on every node, so none meets NOSCRIPT (an undo is not re-sent as EVAL)', async () => {
    const fresh = await connectRedlock(config, new MemoryLogger());
    try {
      await Promise.all(views.map(view => view.script('FLUSH')));
      (fresh.stores[0].client as unknown as Cluster).nodes().forEach(node => node.emit('ready')); // as a reconnect does
      const shas = Object.values(SCRIPTS).map(lua => script(lua).sha);
      await eventually(async () => {
        for (const view of views) assert.deepEqual(await view.script('EXISTS', ...shas), shas.map(() => 1));
      });
    } finally {
      await fresh.close();
    }
  });

  it('refuses to boot an app whose scheduled job has such a name, instead of failing every fire', async () => {
    process.env.REDLOCK_TEST_CONFIG = JSON.stringify(config);
    const app = mm.app({ baseDir: path.join(__dirname, 'fixtures/apps/cluster-odd-job-app'), cache: false });
    try {
      await assert.rejects(app.ready(), /a lock name may contain '}' only to close a hash tag .* got 'report}v2'/);
    } finally {
      await app.close();
      delete process.env.REDLOCK_TEST_CONFIG;
    }
  });

  it('spreads the test names over several slots (so multi-slot locks are really exercised)', () => {
    assert.notEqual(calculateSlot('JOB_LOCKER_multi:a'), calculateSlot('JOB_LOCKER_multi:b'));
    assert.equal(calculateSlot('JOB_LOCKER_{order}:1'), calculateSlot('JOB_LOCKER_{order}:2'));
    assert.ok(a.stores[0].client instanceof Cluster);
  });

  behavesAsOneNode(() => a, () => b);
});

describe('Redis Sentinel as one logical node', function() {
  this.timeout(60000);
  let master: RedisServer;
  let sentinel: RedisServer;
  let a: Redlock;
  let b: Redlock;

  before(async () => {
    master = await RedisServer.start();
    const dir = mkdtempSync(path.join(tmpdir(), 'redlock-sentinel-'));
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1\nsentinel down-after-milliseconds mymaster 5000\n`);
    sentinel = await RedisServer.start([ '--sentinel', '--dir', dir ], conf);
    const config = { ...defaultConfig, connectTimeout: 5000, sentinel: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: 'mymaster' } };
    [ a, b ] = await Promise.all([ connectRedlock(config, new MemoryLogger()), connectRedlock(config, new MemoryLogger()) ]);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await killAll([ sentinel, master ].filter(Boolean));
  });

  it('finds the master through the sentinel', async () => {
    const lock = await a.lock('via-sentinel', 5000);
    const view = new Redis({ port: master.port });
    try {
      assert.equal(await view.get('JOB_LOCKER_via-sentinel'), lock.value);
    } finally {
      view.disconnect();
    }
    await lock.unlock();
  });

  behavesAsOneNode(() => a, () => b);
});

describe('Redis Sentinel failover', function() {
  this.timeout(120000);
  let master: RedisServer;
  let replica: RedisServer;
  let sentinel: RedisServer;
  let sentinelView: Redis;
  let config: RedlockConfig;

  before(async () => {
    [ master, replica ] = await Promise.all([ RedisServer.start(), RedisServer.start() ]);
    const replicaView = new Redis({ port: replica.port });
    await replicaView.replicaof('127.0.0.1', master.port);
    while (!(await replicaView.info('replication')).includes('master_link_status:up')) await sleep(50);
    replicaView.disconnect();
    const dir = mkdtempSync(path.join(tmpdir(), 'redlock-sentinel-'));
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1\nsentinel down-after-milliseconds mymaster 5000\n`);
    sentinel = await RedisServer.start([ '--sentinel', '--dir', dir ], conf);
    sentinelView = new Redis({ port: sentinel.port });
    while ((await sentinelView.call('SENTINEL', 'REPLICAS', 'mymaster') as unknown[]).length === 0) await sleep(100);
    config = { ...defaultConfig, connectTimeout: 5000, sentinel: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: 'mymaster' } };
  });
  after(async () => {
    sentinelView?.disconnect();
    await killAll([ sentinel, replica, master ].filter(Boolean));
  });

  /** Connections the sentinel has open. */
  const sentinelConnections = async () => String(await sentinelView.client('LIST')).trim().split('\n').length;

  it('a planned failover: clients connected to the old master move to the new one once Sentinel switches (locks, and wakes)', async () => {
    const connectionsBefore = await sentinelConnections();
    const [ before, waiter ] = await Promise.all([ 1, 2 ].map(() => connectRedlock(config, new MemoryLogger())));
    const oldMaster = new Redis({ port: master.port });
    const newMaster = new Redis({ port: replica.port });
    try {
      const held = await before.lock('handed', 30000);
      const waiting = waiter.lock('handed', 30000, { waitTimeout: 25000 });
      waiting.catch(() => undefined);
      while (await newMaster.zcard('JOB_LOCKER_handed:waiters') < 1) await sleep(20); // queued, and replicated
      for (let i = 0; ; i++) { // refused while the replica is not yet known to be in sync
        try {
          await sentinelView.call('SENTINEL', 'FAILOVER', 'mymaster');
          break;
        } catch (err) {
          if (i > 100) throw err;
          await sleep(200);
        }
      }
      while (Number((await sentinelView.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster') as string[])[1]) !== replica.port) await sleep(20);
      const switchedAt = Date.now();
      // Released on the new master: the waiter, whose wake subscription was on the old one, is woken.
      await eventually(async () => assert.equal(before.stores[0].client.stream?.remotePort, replica.port, 'moved to the new master'));
      for (let i = 0; ; i++) {
        try {
          assert.equal(await held.unlock(), true);
          break;
        } catch (err) { // unavailable while reconnecting
          if (i > 100) throw err;
          await sleep(50);
        }
      }
      const releasedAt = Date.now();
      await (await waiting).unlock();
      assert.ok(Date.now() - releasedAt < 3000, `the waiter got the lock ${Date.now() - releasedAt} ms after its release on the new master`);
      // Sentinel demotes the old master only seconds later; until then it still takes writes.
      let lastOnOld = -1;
      for (let i = 0; Date.now() - switchedAt < 5000; i++) {
        const lock = await before.tryLock(`probe-${i}`, 30000).catch(() => null);
        if (lock && await oldMaster.get(`JOB_LOCKER_probe-${i}`).catch(() => null) === lock.value) lastOnOld = Date.now() - switchedAt;
        await sleep(50);
      }
      assert.ok(lastOnOld < 3000, `took locks on the demoted master ${lastOnOld} ms after the switch, where clients connecting now take them on the new one`);
    } finally {
      oldMaster.disconnect();
      newMaster.disconnect();
      await Promise.all([ before.close(), waiter.close() ]);
    }
    await eventually(async () => assert.equal(await sentinelConnections(), connectionsBefore, 'close() left a connection to the sentinel open'));
  });

  it('closes its connections to the sentinels also while the master is down (a reconnecting client never ends)', async () => {
    const connectionsBefore = await sentinelConnections();
    const client = await connectRedlock(config, new MemoryLogger());
    const current = [ master, replica ].find(server => server.port === client.stores[0].client.stream?.remotePort)!;
    await current.kill();
    await eventually(async () => assert.equal(client.stores[0].client.status, 'reconnecting'));
    await client.close();
    await eventually(async () => assert.equal(await sentinelConnections(), connectionsBefore, 'close() left a connection to the sentinel open'));
  });
});
