import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Fleet, FleetEvent, LIBFAKETIME, runsPerFire } from './support/fleet';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

/**
 * End-to-end: real multi-process Egg clusters (egg-scripts, 2 workers each) of demo/fleet-app
 * sharing 3 Redis masters. `report` fires every 2 s (cron), `pulse` every 2 s (interval).
 */
const PERIOD = 2000;

function assertEachFireRanOnce(events: FleetEvent[], from: number, to: number, what: string): void {
  const fires = runsPerFire(events, 'report', PERIOD, from, to);
  assert.ok(fires.size >= 3, `${what}: at least 3 fires in the window, got ${fires.size}`);
  const wrong = [ ...fires ].filter(([ , runs ]) => runs.length !== 1)
    .map(([ fire, runs ]) => `${new Date(fire).toISOString()}: ${runs.length} runs (${runs.map(r => `${r.node}/${r.pid}`).join(', ')})`);
  assert.deepEqual(wrong, [], `${what}: every fire must run exactly once`);
}

function assertPulseAtMostOncePerInterval(events: FleetEvent[], from: number, to: number): void {
  const runs = events.filter(e => e.job === 'pulse' && e.at >= from && e.at <= to).map(e => e.at).sort((a, b) => a - b);
  const windowMs = to - from;
  assert.ok(runs.length >= Math.floor(windowMs / PERIOD) - 2, `pulse ran ${runs.length} times in ${windowMs} ms`);
  assert.ok(runs.length <= Math.floor(windowMs / (PERIOD * 0.9)) + 1, `pulse ran ${runs.length} times in ${windowMs} ms`);
  const gaps = runs.slice(1).map((t, i) => t - runs[i]);
  assert.ok(Math.min(...gaps) >= PERIOD * 0.9 - 50, `pulse runs ${Math.min(...gaps)} ms apart`);
}

describe('a fleet of Egg clusters (egg-scripts) sharing 3 Redis masters', function() {
  this.timeout(240000);
  let redis: RedisServer[] = [];
  let fleet: Fleet | undefined;

  before(function() {
    try {
      execFileSync('redis-server', [ '--version' ]);
    } catch {
      throw new Error('redis-server is required (apt-get install redis-server)');
    }
  });
  afterEach(async () => {
    await fleet?.stop();
    await killAll(redis);
  });

  it('runs every fire exactly once: no faults, one master killed, then all masters down and back', async () => {
    redis = await startRedisServers(3);
    fleet = await Fleet.start({ clusters: 3, workers: 2, redis, runDir: path.join(__dirname, '../.fleet/faults') });
    const start = Date.now() + PERIOD;

    await sleep(20000); // no faults: 10 fires
    const killedAt = Date.now();
    assertEachFireRanOnce(fleet.events(), start, killedAt - PERIOD, 'no faults');
    assertPulseAtMostOncePerInterval(fleet.events(), start, killedAt);

    await redis[2].kill();
    await sleep(12000);
    const downAt = Date.now();
    assertEachFireRanOnce(fleet.events(), killedAt, downAt - PERIOD, 'one master killed');

    await redis[0].kill();
    await redis[1].kill();
    await sleep(8000);
    const upAt = Date.now();
    const duringOutage = fleet.events().filter(e => e.job === 'report' && e.at > downAt + 500 && e.at < upAt);
    assert.deepEqual(duringOutage, [], 'no run anywhere while every master is down');
    const errorsLogged = fleet.clusters.filter(c => /ERROR .*\[Job report\] fire .* skipped: Redis unavailable/.test(c.scheduleLog()));
    assert.deepEqual(errorsLogged.map(c => c.name), [ 'A', 'B', 'C' ], 'each cluster logged why it skipped');

    await Promise.all(redis.map(r => r.restart()));
    await sleep(14000);
    const resumed = upAt + 4000; // clients reconnect within their 2 s retry step
    assertEachFireRanOnce(fleet.events(), resumed, Date.now() - PERIOD, 'after Redis came back');
  });

  it('runs every fire exactly once with one cluster\'s clock 0.7 s ahead, and never runs a long job twice at once', async function() {
    if (!LIBFAKETIME) throw new Error('this test needs Debian\'s faketime package (apt-get install faketime)');
    const ahead = Number(execFileSync(process.execPath, [ '-e', 'process.stdout.write(String(Date.now()))' ], {
      env: { ...process.env, LD_PRELOAD: LIBFAKETIME, FAKETIME: '+0.7s' },
    })) - Date.now();
    assert.ok(ahead > 500 && ahead < 900, `faketime shifts a node process's clock (${ahead} ms)`);

    redis = await startRedisServers(3);
    fleet = await Fleet.start({ clusters: 3, workers: 2, redis, runDir: path.join(__dirname, '../.fleet/skew'), skew: { 2: '+0.7s' }, longJob: true });
    const start = Date.now() + PERIOD;
    await sleep(20000);
    assertEachFireRanOnce(fleet.events(), start, Date.now() - PERIOD, 'clock skew');
    assertPulseAtMostOncePerInterval(fleet.events(), start, Date.now());

    // SIGKILL the worker in the middle of the long job: its lease is no longer extended.
    let running: FleetEvent | undefined;
    while (!running) {
      const events = fleet.events();
      running = events.find(s => s.job === 'long' && s.event === 'start' &&
        !events.some(e => e.event === 'end' && e.job === 'long' && e.pid === s.pid && e.fireTime === s.fireTime) &&
        Date.now() - s.at > 500);
      if (!running) await sleep(100);
    }
    process.kill(running.pid, 'SIGKILL');
    const killedAt = Date.now();
    await sleep(10000);

    const events = fleet.events().filter(e => e.job === 'long');
    const runs = events.filter(e => e.event === 'start').map(s => ({
      ...s,
      end: s.pid === running!.pid && s.fireTime === running!.fireTime
        ? killedAt
        : events.find(e => e.event === 'end' && e.pid === s.pid && e.fireTime === s.fireTime)?.at ?? Infinity,
    })).sort((a, b) => a.at - b.at);
    for (let i = 1; i < runs.length; i++) {
      assert.ok(runs[i].at >= runs[i - 1].end,
        `long job ran twice at once: ${runs[i - 1].node}/${runs[i - 1].pid} until ${runs[i - 1].end}, ${runs[i].node}/${runs[i].pid} from ${runs[i].at}`);
    }
    assert.ok(events.filter(e => e.event === 'end').every(e => e.lost === false), 'no surviving run lost its lease');
    const after = runs.filter(r => r.at > killedAt);
    assert.ok(after.length >= 1, 'the job runs again on a later fire once the dead worker\'s lease expired');
    assert.ok(after[0].at - killedAt < 1500 + PERIOD + 1500, `first run after the kill came ${after[0].at - killedAt} ms later`);
  });
});
