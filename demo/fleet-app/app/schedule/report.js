'use strict';

const { record } = require('../../lib/run-log');

// A short cron job, every 2 s: every fire must run exactly once across the fleet.
exports.schedule = { cron: '*/2 * * * * *', type: 'worker' };

exports.task = async ctx => {
  // Without the plugin (FLEET_UNLOCKED) there is no ctx.scheduleLock: round to the 2 s tick instead.
  const fireTime = ctx.scheduleLock ? ctx.scheduleLock.fireTime : Math.round(Date.now() / 2000) * 2000;
  record('run', { job: 'report', fireTime });
};
