'use strict';

// One torture contender process: several loops that each lock `counter`, read the shared counter,
// wait a little (the unsynchronised read-modify-write the lock must protect), and write it + 1.
// Every access to the counter carries the lock's fencing token. Reports to the parent over IPC.
const { connectRedlock } = require('../lib/boot');
const { defaultConfig } = require('../lib/config');
const { FencedValue, StaleTokenError } = require('../lib/fencing');
const { LockLostError } = require('../lib/errors');
const Redis = require('ioredis');

const { ports, resourcePort, loops, ttl } = JSON.parse(process.argv[2]);
const quiet = { info() {}, warn() {}, error() {} };
const stats = { done: 0, stale: 0, lostLearned: 0, failed: 0, overlaps: 0 };
// What each loop is doing now, reported with the stats so a hang can be told apart from slowness.
const stages = [];
let stopping = false;

async function loop(id, redlock, resource, resourceClient) {
  while (!stopping) {
    stages[id] = 'locking';
    try {
      await redlock.using('counter', ttl, async (signal, lock) => {
        stages[id] = 'inside';
        if (await resourceClient.incr('inside') > 1) stats.overlaps++;
        try {
          const value = Number(await resource.read(lock.fencingToken) || 0);
          await new Promise(resolve => setTimeout(resolve, Math.random() * 10));
          // Written even when the lease may be lost: the fence, not the holder's good manners, must stop it.
          await resource.write(lock.fencingToken, String(value + 1));
          stats.done++;
        } finally {
          if (signal.aborted) stats.lostLearned++;
          await resourceClient.decr('inside');
          stages[id] = 'releasing';
        }
      }, { waitTimeout: 5000 });
    } catch (err) {
      if (err instanceof StaleTokenError) stats.stale++;
      else if (!(err instanceof LockLostError)) stats.failed++;
    }
  }
}

async function main() {
  const redlock = await connectRedlock({
    ...defaultConfig, clients: ports.map(port => ({ host: '127.0.0.1', port })), connectTimeout: 3000, commandTimeout: 300,
  }, quiet);
  const resourceClient = new Redis({ port: resourcePort, host: '127.0.0.1' });
  const resource = new FencedValue(resourceClient, 'counter');
  const report = setInterval(() => process.send({ stats, stages }), 200);
  process.on('message', message => { if (message === 'stop') stopping = true; });
  await Promise.all(Array.from({ length: loops }, (_, id) => loop(id, redlock, resource, resourceClient)));
  stages.fill('closing');
  clearInterval(report);
  process.send({ stats, final: true });
  await redlock.close();
  resourceClient.disconnect();
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
