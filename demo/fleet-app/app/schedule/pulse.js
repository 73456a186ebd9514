'use strict';

const { record } = require('../../lib/run-log');

// An interval job: each cluster's timer starts when it boots, so the timers are not aligned.
exports.schedule = { interval: '2s', type: 'worker' };

exports.task = async () => {
  record('run', { job: 'pulse' });
};
