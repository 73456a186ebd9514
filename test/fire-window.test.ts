import assert from 'node:assert/strict';
import { fireWindow } from '../lib/schedule/fire-window';
import { appScheduleDirs, jobName } from '../lib/schedule/job-names';

describe('fire windows', () => {
  const tolerance = 5 * 60 * 1000;
  const tick = Date.UTC(2026, 10, 21, 12, 0, 0);

  it('ties a cron run to the nearest tick from either side, held half-way to the next', () => {
    for (const now of [ tick + 40, tick - 300, tick + 999 ]) {
      assert.deepEqual(fireWindow({ cron: '*/2 * * * * *' }, now, tolerance), { fireTime: tick, holdUntil: tick + 1000 });
    }
  });

  it('gives no window to a run at boot more than 1 s before its tick: the tick itself must still run', () => {
    const everyTen = { cron: '*/10 * * * * *', immediate: true };
    assert.deepEqual(fireWindow(everyTen, tick - 3000, tolerance, true), { fireTime: tick - 3000, holdUntil: tick - 3000 });
    const hourly = { cron: '0 0 * * * *', immediate: true };
    assert.deepEqual(fireWindow(hourly, tick - 4 * 60 * 1000, tolerance, true), { fireTime: tick - 4 * 60 * 1000, holdUntil: tick - 4 * 60 * 1000 });
    assert.deepEqual(fireWindow(everyTen, tick - 800, tolerance, true), { fireTime: tick, holdUntil: tick + 5000 }, 'as a timer a little early');
    // Not at boot: a fire whose timer was set before the wall clock was stepped back 1.5 s is still the tick's.
    assert.deepEqual(fireWindow(everyTen, tick - 1500, tolerance), { fireTime: tick, holdUntil: tick + 5000 });
  });

  it('caps the window at clockTolerance for long periods', () => {
    assert.deepEqual(fireWindow({ cron: '0 0 * * * *' }, tick + 10, tolerance), { fireTime: tick, holdUntil: tick + tolerance });
  });

  it('gives no window to a run far from any tick (a manual or very late run)', () => {
    const now = tick + 20 * 60 * 1000;
    assert.deepEqual(fireWindow({ cron: '0 0 * * * *' }, now, tolerance), { fireTime: now, holdUntil: now });
  });

  it('gives the ticks at cronOptions.startDate and endDate a window too (they have no neighbour on one side)', () => {
    const minutely = '0 * * * * *';
    const last = { cron: minutely, cronOptions: { endDate: new Date(tick + 30000) } };
    assert.deepEqual(fireWindow(last, tick + 5, tolerance), { fireTime: tick, holdUntil: tick + 30000 }, 'the last tick');
    const first = { cron: minutely, cronOptions: { startDate: new Date(tick - 10) } };
    assert.deepEqual(fireWindow(first, tick - 5, tolerance), { fireTime: tick, holdUntil: tick + 30000 }, 'the first tick, by a clock ahead');
    const only = { cron: minutely, cronOptions: { startDate: new Date(tick - 10), endDate: new Date(tick + 10) } };
    assert.deepEqual(fireWindow(only, tick + 5, tolerance), { fireTime: tick, holdUntil: tick + tolerance }, 'a lone tick');
  });

  it('honours cronOptions such as tz', () => {
    // 09:00 in Shanghai is 01:00 UTC
    const nineShanghai = Date.UTC(2026, 10, 21, 1, 0, 0);
    const window = fireWindow({ cron: '0 0 9 * * *', cronOptions: { tz: 'Asia/Shanghai' } }, nineShanghai + 50, tolerance);
    assert.equal(window.fireTime, nineShanghai);
  });

  it('holds an interval run for the interval less a jitter margin', () => {
    assert.deepEqual(fireWindow({ interval: '2s' }, tick, tolerance), { fireTime: tick, holdUntil: tick + 1800 });
    assert.deepEqual(fireWindow({ interval: 60000 }, tick, tolerance), { fireTime: tick, holdUntil: tick + 59000 });
  });

  it('gives an immediate-only task no window', () => {
    assert.deepEqual(fireWindow({}, tick, tolerance), { fireTime: tick, holdUntil: tick });
  });
});

describe('job names', () => {
  const dirs = appScheduleDirs('/srv/app', [ '/srv/shared/jobs' ]);

  it('is the path under a schedule folder without extension, .ts and .js alike', () => {
    assert.equal(jobName('/srv/app/app/schedule/report.js', dirs), 'report');
    assert.equal(jobName('/srv/app/app/schedule/report.ts', dirs), 'report');
    assert.equal(jobName('/srv/app/app/schedule/sub/cleanup.js', dirs), 'sub/cleanup');
    assert.equal(jobName('/srv/shared/jobs/extra.js', dirs), 'extra');
  });

  it('is undefined for plugins\' schedules', () => {
    assert.equal(jobName('/srv/app/node_modules/egg-logrotator/app/schedule/rotate_by_file.js', dirs), undefined);
    assert.equal(jobName('/srv/app/app/scheduled.js', dirs), undefined);
  });
});
