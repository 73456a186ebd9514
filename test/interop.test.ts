import assert from 'node:assert/strict';
import Redis from 'ioredis';
import NodeRedlock from 'redlock';
import type { Redlock } from '../lib/redlock';
import { redlockOn } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

// node-redlock 4 and this plugin, on the same 3 masters and the same key, must exclude each other.
describe('wire compatibility with node-redlock', () => {
  let servers: RedisServer[];
  let ours: Redlock;
  let clients: Redis[];
  let theirs: NodeRedlock;

  before(async () => {
    servers = await startRedisServers(3);
    ours = await redlockOn(servers);
    clients = servers.map(s => new Redis({ port: s.port, host: '127.0.0.1' }));
    theirs = new NodeRedlock(clients as any, { retryCount: 0 });
  });
  after(async () => {
    await ours.close();
    clients.forEach(c => c.disconnect());
    await killAll(servers);
  });

  it('sees a node-redlock lock as busy, and takes it once node-redlock releases', async () => {
    const foreign = await theirs.lock('JOB_LOCKER_shared', 5000);
    const err = await ours.lock('shared', 1000, { retryCount: 0 }).catch(e => e);
    assert.equal(err.name, 'LockBusyError');
    assert.match(err.message, /held by another client \(value [0-9a-f]{12}…\)/);
    await foreign.unlock();
    const mine = await ours.lock('shared', 5000);
    assert.equal(await mine.unlock(), true);
  });

  it('makes node-redlock wait for our lock, and lets it extend and release its own', async () => {
    const mine = await ours.lock('shared', 5000);
    await assert.rejects(theirs.lock('JOB_LOCKER_shared', 1000), { name: 'LockError' });
    assert.equal(await mine.unlock(), true);
    const foreign = await theirs.lock('JOB_LOCKER_shared', 1000);
    await foreign.extend(5000);
    assert.equal(await ours.tryLock('shared', 1000), null);
    await foreign.unlock();
    assert.ok(await ours.tryLock('shared', 1000));
  });
});
