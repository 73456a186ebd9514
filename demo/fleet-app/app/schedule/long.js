'use strict';

const { record } = require('../../lib/run-log');

// A job longer than its 1.5 s lease (the lease is extended while it runs), fired every 2 s; only on
// when FLEET_LONG_JOB is set. Records its start and its end, so overlaps would show.
exports.schedule = { cron: '*/2 * * * * *', type: 'worker', disable: !process.env.FLEET_LONG_JOB, lock: { ttl: 1500 } };

exports.task = async ctx => {
  const { fireTime, signal } = ctx.scheduleLock;
  record('start', { job: 'long', fireTime });
  await new Promise(resolve => setTimeout(resolve, 5000));
  record('end', { job: 'long', fireTime, lost: signal.aborted });
};
