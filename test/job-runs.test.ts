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

  /** Runs `name` until `gate` opens, losing its lease on the way (another client may then take it). */
  async function loseLease(name: string, logger: MemoryLogger, gate: Promise<void>): Promise<{ run: Promise<unknown> }> {
    const run = lockedTask(() => gate, {}, job(name, 1000), worker, logger)({});
    await sleep(100);
    await views[0].del(worker.key(name)); // a failover, a flush…
    while (!logger.lines.some(l => /lease lost/.test(l))) await sleep(20); // the next extension finds it gone
    return { run };
  }

  it('records a run that lost its lease and ends after its app closed as lease-lost, not left "running"', async () => {
    let open!: () => void;
    const { run } = await loseLease('lost', new MemoryLogger(), new Promise<void>(resolve => { open = resolve; }));
    const closing = worker.close(); // a deploy while the task winds down
    open();
    await run;
    await closing;
    const last = await other.lastRun('lost');
    assert.equal(last!.outcome, 'lease-lost', JSON.stringify(last));
  });

  it('records a lost lease with its reason once: the run ending later overwrites neither it nor a newer run\'s record', async () => {
    const logger = new MemoryLogger();
    let open!: () => void;
    const { run } = await loseLease('order', logger, new Promise<void>(resolve => { open = resolve; }));
    const atLoss = (await other.lastRun('order'))!;
    assert.deepEqual([ atLoss.outcome, atLoss.error ], [ 'lease-lost', logger.lines.find(l => /lease lost/.test(l))!.split('lease lost: ')[1] ]);
    await lockedTask(async () => 'newer', {}, job('order'), other, new MemoryLogger())({}); // another machine takes it and runs
    const newer = (await other.lastRun('order'))!;
    assert.equal(newer.outcome, 'succeeded');
    open(); // the first task returns at last
    await run;
    assert.deepEqual(await other.lastRun('order'), newer);
  });

  it('keeps a newer run\'s record when an older run learns only afterwards that it lost its lease', async () => {
    const logger = new MemoryLogger();
    let open!: () => void;
    const run = lockedTask(() => new Promise<void>(resolve => { open = resolve; }), {}, job('late-loss', 2000), worker, logger)({});
    await sleep(100);
    await views[0].del(worker.key('late-loss')); // a failover, a flush: its next extension (in ~1 s) will tell
    await lockedTask(async () => 'newer', {}, job('late-loss'), other, new MemoryLogger())({}); // another machine runs meanwhile
    const newer = (await other.lastRun('late-loss'))!;
    assert.equal(newer.outcome, 'succeeded');
    while (!logger.lines.some(l => /lease lost/.test(l))) await sleep(20);
    open();
    await run;
    assert.deepEqual(await other.lastRun('late-loss'), newer);
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

  it('holds only the run at boot of an immediate task to 1 s before its tick, not a fire in its first minute', async () => {
    const settings = { cron: '*/10 * * * * *', immediate: true };
    const tick = Math.ceil(realNow() / 10000) * 10000 + 10000;
    const runs: string[] = [];
    const started = (at: number) => ({ ...job('booting'), schedulesStartedAt: () => at });
    Date.now = () => tick - 3000; // A's run at boot, 3 s before the tick: an extra run, no window
    await lockedTask(async () => { runs.push('A at boot'); }, settings, started(tick - 3010), worker, new MemoryLogger())({});
    Date.now = () => tick - 1500; // A's fire of the tick 20 s after boot, its clock stepped back 1.5 s since the timer was set
    await lockedTask(async () => { runs.push('A'); }, settings, started(tick - 21500), worker, new MemoryLogger())({});
    Date.now = () => tick + 50; // B fires the same tick
    await lockedTask(async () => { runs.push('B'); }, settings, started(tick - 21000), other, new MemoryLogger())({});
    assert.deepEqual(runs, [ 'A at boot', 'A' ]);
  });
});
