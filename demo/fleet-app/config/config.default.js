'use strict';

// One Egg cluster of a demo "fleet": every cluster is started with its own FLEET_NODE name and
// shares the Redis masters in FLEET_REDIS_PORTS and the run log FLEET_LOG.
module.exports = () => ({
  keys: 'fleet-app-demo',
  logger: { dir: process.env.FLEET_LOG_DIR, consoleLevel: 'NONE' },
  customLogger: { scheduleLogger: { consoleLevel: 'NONE' } },
  rundir: process.env.FLEET_LOG_DIR,
  redlock: {
    clients: process.env.FLEET_REDIS_PORTS.split(',').map(port => ({ host: '127.0.0.1', port: Number(port) })),
    connectTimeout: 3000,
    commandTimeout: 500,
    // FLEET_UNLOCKED=1 shows the problem the plugin solves: every cluster runs every fire.
    schedule: { enable: !process.env.FLEET_UNLOCKED },
  },
});
