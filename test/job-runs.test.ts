import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import type { Redlock } from '../lib/redlock';
import { JobSettings, lockedTask } from '../lib/schedule/locked-task';
import { inspect, MemoryLogger, redlockOn } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

/** A scheduled run's record and window, driven through the task wrapper against real servers. */
describe('scheduled runs: records and windows at the edges', () => {
  const realNow = Date.now;
  let servers: RedisServer[];
  let views: Redis[];
  let worker: Redlock;
  let other: Redlock;
  const job = (name: string, ttl = 5000): JobSettings => ({ name, ttl, onUnavailable: 'skip', maxHold: 60000, clockTolerance: 5000 });

  before(async () => {
    servers = await startRedisServers(1);
    views = servers.map(inspect);
  });
  beforeEach(async () => {
    await views[0].flushall();
    [ worker, other ] = await Promise.all([ redlockOn(servers), redlockOn(servers) ]);
  });
  afterEach(async () => {
    Date.now = realNow;
    await worker.close();
    await other.close();
  });
  after(async () => {
    views.forEach(v => v.disconnect());
    await killAll(servers);
  });

  it('records a run that returned just before its app closed as it ended, not as cut short by the close', async () => {
    let closing: Promise<void> | undefined;
    const task = async () => {
      setImmediate(() => { closing = worker.close(); }); // a deploy's close arrives as the task has just returned
      return 'done';
    };
    assert.equal(await lockedTask(task, {}, job('race'), worker, new MemoryLogger())({}), 'done');
    await closing;
    const last = await other.lastRun('race');
    assert.deepEqual([ last!.outcome, last!.error ], [ 'succeeded', undefined ]);
  });

  it('records a run that lost its lease and ends after its app closed as lease-lost, not left "running"', async () => {
    const logger = new MemoryLogger();
    let open!: () => void;
    const gate = new Promise<void>(resolve => { open = resolve; });
    const run = lockedTask(() => gate, {}, job('lost', 1000), worker, logger)({});
    await sleep(100);
    await views[0].del(worker.key('lost')); // the lease is lost (a failover, a flush…)
    while (!logger.lines.some(l => /lease lost/.test(l))) await sleep(50); // the next extension finds it gone
    const closing = worker.close(); // a deploy while the task winds down
    open();
    await run;
    await closing;
    const last = await other.lastRun('lost');
    assert.equal(last!.outcome, 'lease-lost', JSON.stringify(last));
  });

  it('counts a cron fire as its tick\'s also when the wall clock was stepped back 1.5 s after its timer was set', async () => {
    const settings = { cron: '*/10 * * * * *' };
    const tick = Math.ceil(realNow() / 10000) * 10000 + 10000;
    const runs: string[] = [];
    Date.now = () => tick - 1500; // machine A: the timer fires at the real tick, its clock reading 1.5 s less
    await lockedTask(async () => { runs.push('A'); }, settings, job('stepped'), worker, new MemoryLogger())({});
    Date.now = () => tick + 50; // machine B, its clock right, fires the same tick
    await lockedTask(async () => { runs.push('B'); }, settings, job('stepped'), other, new MemoryLogger())({});
    assert.deepEqual(runs, [ 'A' ]);
  });
});
