import assert from 'node:assert/strict';
import path from 'node:path';
import mm, { MockApplication } from 'egg-mock';
import type Redis from 'ioredis';
import { LockBusyError } from '../lib/errors';
import { OWNER } from '../lib/keys';
import { fireWindow } from '../lib/schedule/fire-window';
import { lockedTask } from '../lib/schedule/locked-task';
import { holdElsewhere, simulateRedisDown } from '../lib/testing';
import { eventually, inspect } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

const baseDir = path.join(__dirname, 'fixtures/apps/schedule-app');

describe('scheduled jobs under egg-mock', () => {
  let servers: RedisServer[];
  let views: Redis[];
  let app: MockApplication;
  let logged: string[];

  before(async () => {
    servers = await startRedisServers(3);
    views = servers.map(inspect);
    process.env.REDLOCK_TEST_CONFIG = JSON.stringify({ clients: servers.map(s => ({ host: '127.0.0.1', port: s.port })) });
    app = mm.app({ baseDir, cache: false });
    await app.ready();
  });
  beforeEach(async () => {
    await Promise.all(views.map(v => v.flushall()));
    (app as any).jobRuns.length = 0;
    const lines: string[] = logged = [];
    const logger = app.getLogger('scheduleLogger');
    const capture = (level: string) => (message: string) => { lines.push(`${level.toUpperCase()} ${message}`); };
    for (const level of [ 'info', 'warn', 'error' ] as const) mm(logger, level, capture(level));
  });
  afterEach(() => mm.restore());
  after(async () => {
    await app.close();
    views.forEach(v => v.disconnect());
    await killAll(servers);
  });

  const runs = () => (app as any).jobRuns as any[];

  it('locks exactly the app\'s own worker tasks, named by their path under the schedule folder (also through a symlink)', () => {
    assert.deepEqual([ ...app.redlock.jobNames ].sort(), [ 'closing', 'custom-name', 'extra', 'failing', 'linked', 'linked-dir/nested', 'long', 'report', 'sub/cleanup', 'windowed' ]);
    const pluginTasks = Object.keys((app as any).scheduleWorker.scheduleItems).filter(k => !k.startsWith(baseDir));
    assert.ok(pluginTasks.length > 0, 'egg\'s own plugins bring schedules (log rotation, multipart cleaning)');
  });

  it('refuses to boot when two different tasks would share one name (app/schedule and schedule.directory)', async () => {
    const clashing = mm.app({ baseDir: path.join(__dirname, 'fixtures/apps/same-name-jobs-app'), cache: false });
    try {
      await assert.rejects(clashing.ready(), new RegExp('schedules .*app/schedule/cleanup.js and .*jobs/cleanup.js would share ' +
        'the fleet-wide name \'cleanup\' \\(JOB_LOCKER_cleanup\\), and one would skip the other\'s fires: give one of them schedule.lock.name'));
    } finally {
      await clashing.close();
    }
  });

  it('refuses to boot when a task\'s lease is no longer than its clock-drift allowance (every fire would fail to lock)', async () => {
    const tiny = mm.app({ baseDir: path.join(__dirname, 'fixtures/apps/tiny-lease-job-app'), cache: false });
    try {
      await assert.rejects(tiny.ready(), /schedule.lock of .*tiny.js.ttl must be more than the clock-drift allowance \(2 ms for driftFactor 0.01/);
    } finally {
      await tiny.close();
    }
  });

  it('runs app.runSchedule() under JOB_LOCKER_<name>, then releases and records the run', async () => {
    await app.runSchedule('report');
    assert.equal(runs().length, 1);
    assert.deepEqual({ ...runs()[0], fireTime: undefined }, { job: 'report', name: 'report', key: 'JOB_LOCKER_report', held: true, fireTime: undefined });
    await eventually(async () => {
      for (const view of views) assert.equal(await view.exists('JOB_LOCKER_report'), 0, 'a manual run reserves no fire window');
    });
    const last = await app.redlock.lastRun('report');
    assert.equal(last!.outcome, 'succeeded');
    assert.equal(last!.pid, process.pid);
    assert.ok(last!.durationMs! >= 0);
    assert.ok(logged.some(l => /INFO \[egg-distributed-lock\] \[Job report\] fire .* acquired JOB_LOCKER_report/.test(l)), logged.join('\n'));
    assert.ok(logged.some(l => /released JOB_LOCKER_report after \d+ ms \(succeeded\)/.test(l)), logged.join('\n'));

    await app.runSchedule('sub/cleanup');
    await app.runSchedule('extra');
    assert.deepEqual(runs().slice(1).map(r => r.name), [ 'sub/cleanup', 'extra' ]);
  });

  it('skips a task another machine holds, saying who holds it', async () => {
    const release = await holdElsewhere(app.redlock, 'report', 30000, 'web-7/4242');
    await app.runSchedule('report');
    assert.equal(runs().length, 0);
    assert.ok(logged.some(l => /INFO .*\[Job report\] fire .* skipped: JOB_LOCKER_report held by web-7\/4242 until 20\d\d-/.test(l)), logged.join('\n'));
    await release();
    await app.runSchedule('report');
    assert.equal(runs().length, 1);
  });

  it('releases a fire that ends with less of its window left than a lease can be, instead of keeping the job lease', async () => {
    const settings = { interval: 10000 };
    const start = Date.now();
    const { holdUntil } = fireWindow(settings, start, app.config.redlock.schedule.clockTolerance);
    let now = start;
    mm(Date, 'now', () => now);
    const job = { name: 'edge', ttl: 30000, onUnavailable: 'skip' as const, maxHold: 60000, clockTolerance: app.config.redlock.schedule.clockTolerance };
    const run = lockedTask(async () => { now = holdUntil - 1; }, settings, job, app.redlock, app.getLogger('scheduleLogger') as any);
    await run({});
    mm.restore();
    for (const view of views) assert.equal(await view.exists('JOB_LOCKER_edge'), 0, 'released, not held for the 30 s job lease');
    assert.ok(logged.some(l => /\[Job edge\] fire .* released JOB_LOCKER_edge after/.test(l)), logged.join('\n'));
  });

  it('lets a task lock its own job\'s name (code it calls that guards itself with it): re-entered, not waited for', async () => {
    const job = { name: 'self-guarded', ttl: 30000, onUnavailable: 'skip' as const, maxHold: 60000, clockTolerance: 1000 };
    const task = async () => app.redlock.using('self-guarded', 1000, async (signal, lock) => {
      assert.deepEqual(app.redlock.locks, [ lock ], 'the job\'s own lock, re-entered');
      return signal;
    });
    const started = Date.now();
    const signal = await lockedTask(task, {}, job, app.redlock, app.getLogger('scheduleLogger') as any)({}) as AbortSignal;
    assert.ok(Date.now() - started < 2000, 'not after waiting out its wait budget');
    assert.equal(signal.aborted, false);
    assert.deepEqual(app.redlock.locks, [], 'released when the run ended');
  });

  it('holdElsewhere() refuses a name that is held already instead of overwriting the holder', async () => {
    const mine = await app.redlock.lock('report', 30000);
    try {
      const err = await holdElsewhere(app.redlock, 'report').catch(e => e);
      assert.ok(err instanceof LockBusyError, String(err));
      assert.match(err.message, new RegExp(`held by ${OWNER}`));
      for (const view of views) assert.equal(await view.get('JOB_LOCKER_report'), mine.value);
    } finally {
      assert.equal(await mine.unlock(), true, 'still held by the app');
    }
  });

  it('leaves type "all" and lock: false tasks alone', async () => {
    await holdElsewhere(app.redlock, 'everywhere');
    await holdElsewhere(app.redlock, 'unlocked');
    await app.runSchedule('everywhere');
    await app.runSchedule('unlocked');
    assert.deepEqual(runs(), [{ job: 'everywhere', locked: false }, { job: 'unlocked', locked: false }]);
  });

  it('skips (and logs an error) when Redis is unavailable, unless the task says onUnavailable: run', async () => {
    const restore = simulateRedisDown(app.redlock);
    try {
      await app.runSchedule('report');
      await app.runSchedule('custom');
      await assert.rejects(app.redlock.lastRun('report'), /simulated outage/, 'an outage is not "never ran"');
      await assert.rejects(app.redlock.jobs(), /simulated outage/);
    } finally {
      restore();
    }
    assert.deepEqual(runs(), [{ job: 'custom', key: 'JOB_LOCKER_custom-name', withLock: false }]);
    assert.ok(logged.some(l => /ERROR .*\[Job report\] .* skipped: Redis unavailable.*simulated outage/.test(l)), logged.join('\n'));
    assert.ok(logged.some(l => /WARN .*\[Job custom-name\] .* running WITHOUT a lock/.test(l)), logged.join('\n'));
  });

  /**
   * Sets this process's wall clock to 1 s after the latest tick of the fixtures' 30-second crons: the
   * tests call a task as egg-schedule does when the agent fires that tick.
   */
  function justAfterATick(): void {
    const realNow = Date.now;
    const offset = (realNow() % 30000) - 1000;
    mm(Date, 'now', () => realNow() - offset);
  }

  it('keeps a fire window: the same fire a second time (another machine, later clock) is skipped', async () => {
    justAfterATick();
    const item = (app as any).scheduleWorker.scheduleItems[require.resolve(path.join(baseDir, 'app/schedule/windowed'))];
    await item.task(app.mockContext()); // what egg-schedule does when the agent fires
    await item.task(app.mockContext());
    assert.equal(runs().length, 1);
    assert.equal(runs()[0].fireTime % 30000, 0, 'tied to the nearest */30 s tick');
    const holdUntil = runs()[0].fireTime + 15000; // half-way to the next tick
    for (const view of views) {
      const pttl = await view.pttl('JOB_LOCKER_windowed');
      assert.ok(Math.abs(Date.now() + pttl - holdUntil) < 200, `held until ${holdUntil}, pttl ${pttl}`);
    }
    assert.ok(logged.some(l => /kept JOB_LOCKER_windowed until .* \(end of the fire window\)/.test(l)), logged.join('\n'));
    assert.ok(logged.some(l => /\[Job windowed\] fire .* skipped: JOB_LOCKER_windowed held by .*\/\d+ until/.test(l)), logged.join('\n'));
  });

  it('keeps the fire window of a run cut short by the app closing: the same fire on another machine is skipped', async () => {
    const [ closing, other ] = [ mm.app({ baseDir, cache: false }), mm.app({ baseDir, cache: false }) ];
    try {
      await Promise.all([ closing.ready(), other.ready() ]);
      justAfterATick();
      const fire = (app: MockApplication) => (app as any).scheduleWorker.scheduleItems[require.resolve(path.join(baseDir, 'app/schedule/closing'))]
        .task(app.mockContext());
      const running = fire(closing);
      await eventually(async () => assert.equal((closing as any).jobRuns.length, 1, 'the run started'));
      assert.equal((await other.redlock.lastRun('closing'))!.outcome, 'running', 'recorded as it starts (what a killed worker leaves)');
      await closing.close(); // a deploy stops this worker mid-run
      const cut = (await other.redlock.lastRun('closing'))!;
      assert.deepEqual([ cut.outcome, cut.error, cut.pid ], [ 'lease-lost', 'the app closed during the run', process.pid ], 'recorded before the process could exit');
      await running;
      const [ started, stopped ] = (closing as any).jobRuns;
      assert.match(stopped.stopped, /lease on JOB_LOCKER_closing was lost: the app is closing/, 'the task is told to stop');
      await fire(other); // another machine, its clock behind, fires the same tick
      assert.deepEqual((other as any).jobRuns, [], 'the fire ran once');
      const holdUntil = started.fireTime + 15000;
      for (const view of views) {
        const pttl = await view.pttl('JOB_LOCKER_closing');
        assert.ok(Math.abs(Date.now() + pttl - holdUntil) < 500, `held until the end of the fire window ${holdUntil}, pttl ${pttl}`);
      }
    } finally {
      await closing.close();
      await other.close();
    }
  });

  it('skips a fire that reaches a worker whose app is closing: not run without the lock, not logged as Redis down', async () => {
    const closing = mm.app({ baseDir, cache: false });
    try {
      await closing.ready();
      const lines: string[] = [];
      const logger = closing.getLogger('scheduleLogger');
      for (const level of [ 'info', 'warn', 'error' ] as const) mm(logger, level, (message: string) => { lines.push(`${level.toUpperCase()} ${message}`); });
      await closing.redlock.close(); // a deploy: the app's close has begun, and the agent still sends fires
      const fire = (task: string) => (closing as any).scheduleWorker.scheduleItems[require.resolve(path.join(baseDir, `app/schedule/${task}`))]
        .task(closing.mockContext());
      await fire('custom'); // onUnavailable: 'run'
      await fire('report');
      assert.deepEqual((closing as any).jobRuns, []);
      assert.equal(lines.filter(l => /^WARN .* skipped: this app is closing$/.test(l)).length, 2, lines.join('\n'));
      assert.ok(!lines.some(l => /Redis unavailable|WITHOUT a lock/.test(l)), lines.join('\n'));
    } finally {
      await closing.close();
    }
  });

  it('wraps schedules registered later through scheduleWorker.registerSchedule', async () => {
    const key = path.join(baseDir, 'app/schedule/dynamic.js');
    let sawLock = false;
    (app as any).scheduleWorker.registerSchedule({
      key,
      schedule: { type: 'worker', interval: '1h' },
      task: async (ctx: any) => { sawLock = ctx.scheduleLock?.key === 'JOB_LOCKER_dynamic'; },
    });
    assert.ok(app.redlock.jobNames.has('dynamic'));
    await (app as any).scheduleWorker.scheduleItems[key].task(app.mockContext());
    assert.equal(sawLock, true);
  });

  it('aborts ctx.scheduleLock.signal when the lease is lost, and records the outcome', async () => {
    const running = app.runSchedule('long');
    await new Promise(resolve => setTimeout(resolve, 100));
    for (const view of views) await view.set('JOB_LOCKER_long', 'taken-over', 'PX', 10000);
    await running;
    assert.deepEqual(runs(), [{ job: 'long', lost: 'LockLostError' }]);
    assert.equal((await app.redlock.lastRun('long'))!.outcome, 'lease-lost');
    assert.ok(logged.some(l => /ERROR .*\[Job long\] .* lease lost/.test(l)), logged.join('\n'));
    for (const view of views) assert.equal(await view.get('JOB_LOCKER_long'), 'taken-over', 'the new holder keeps its lock');
  });

  it('records a failed run and still releases', async () => {
    await assert.rejects(app.runSchedule('failing'), /report generator exploded/);
    const last = await app.redlock.lastRun('failing');
    assert.equal(last!.outcome, 'failed');
    assert.equal(last!.error, 'report generator exploded');
    await eventually(async () => {
      for (const view of views) assert.equal(await view.exists('JOB_LOCKER_failing'), 0);
    });
    const jobs = await app.redlock.jobs();
    assert.deepEqual(Object.keys(jobs), [ 'closing', 'custom-name', 'dynamic', 'extra', 'failing', 'linked', 'linked-dir/nested', 'long', 'report', 'sub/cleanup', 'windowed' ]);
    assert.equal(jobs.failing!.outcome, 'failed');
    assert.equal(jobs.report, null, 'flushed before this test: no record');
  });
});
