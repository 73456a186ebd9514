/**
 * npm run demo: a fleet of 3 Egg clusters (2 workers each) sharing 3 Redis masters runs a 2-second
 * cron job and a 2-second interval job for ~20 s; one Redis master is killed half-way. Prints who
 * ran each fire and whether every fire ran exactly once.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Fleet, runsPerFire } from '../test/support/fleet';
import { killAll, RedisServer, startRedisServers } from '../test/support/redis-server';

const RUN_SECONDS = Number(process.env.DEMO_SECONDS ?? 20);
const PERIOD = 2000;

function hasRedis(): boolean {
  try {
    execFileSync('redis-server', [ '--version' ], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const time = (t: number) => new Date(t).toISOString().slice(11, 23);

async function main(): Promise<number> {
  if (!hasRedis()) {
    console.error('redis-server is not on PATH. Install it first, e.g.  sudo apt-get install redis-server  (or  brew install redis).');
    return 1;
  }
  let redis: RedisServer[] = [];
  let fleet: Fleet | undefined;
  const cleanup = async () => {
    await fleet?.stop();
    await killAll(redis);
  };
  for (const signal of [ 'SIGINT', 'SIGTERM' ] as const) {
    process.once(signal, () => {
      console.log(`\n${signal}: stopping everything the demo started…`);
      cleanup().finally(() => process.exit(130));
    });
  }

  try {
    redis = await startRedisServers(3);
    console.log(`Redis masters on ports ${redis.map(r => r.port).join(', ')}`);
    console.log('Starting 3 Egg clusters (egg-scripts, 2 workers each)…');
    const unlocked = process.env.DEMO_UNLOCKED === '1';
    if (unlocked) console.log('DEMO_UNLOCKED=1: the plugin\'s scheduling is off, as without egg-distributed-lock.');
    fleet = await Fleet.start({ clusters: 3, workers: 2, redis, runDir: path.join(__dirname, '../.demo'), unlocked });
    console.log(`Clusters ${fleet.clusters.map(c => `${c.name} on :${c.port}`).join(', ')} are up; running ${RUN_SECONDS} s.`);
    const from = Date.now() + PERIOD;
    await sleep(RUN_SECONDS * 500);
    await redis[2].kill();
    console.log(`${time(Date.now())}  killed Redis master :${redis[2].port} (2 of 3 left: the quorum holds)`);
    await sleep(RUN_SECONDS * 500);
    const to = Date.now() - PERIOD;
    const events = fleet.events();
    await cleanup();

    const fires = runsPerFire(events, 'report', PERIOD, from, to);
    console.log('\nreport (cron */2 s): fire time → who ran it');
    console.log('| fire time    | ran on (cluster/pid)       | runs |');
    console.log('| ------------ | -------------------------- | ---- |');
    for (const [ fire, runs ] of fires) {
      console.log(`| ${time(fire)} | ${runs.map(r => `${r.node}/${r.pid}`).join(', ').padEnd(26)} | ${String(runs.length).padStart(4)} |`);
    }
    const pulses = events.filter(e => e.job === 'pulse' && e.at >= from && e.at <= to).map(e => e.at);
    const gaps = pulses.slice(1).map((t, i) => t - pulses[i]);
    // Over the fires of the table above (runs just outside its window would not add up to it).
    const byCluster = Object.entries([ ...fires.values() ].flat()
      .reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.node]: (acc[r.node] ?? 0) + 1 }), {}))
      .map(([ node, n ]) => `${node}: ${n}`).join(', ');
    console.log(`\nreport runs by cluster (the fires above): ${byCluster}`);
    console.log(`pulse (interval 2 s): ${pulses.length} runs in ${((to - from) / 1000).toFixed(0)} s; shortest gap ${Math.min(...gaps)} ms`);

    const counts = [ ...fires.values() ].map(r => r.length);
    const duplicated = counts.filter(n => n > 1).length;
    const missed = counts.filter(n => n === 0).length;
    const ok = duplicated === 0 && missed === 0 && fires.size > 0 && Math.min(...gaps) >= PERIOD * 0.9 - 50;
    console.log(`\n${ok ? 'PASS' : 'FAIL'}: ${fires.size} fires, ${counts.filter(n => n === 1).length} ran exactly once, ` +
      `${duplicated} ran more than once, ${missed} did not run; pulse never ran twice within one interval: ${Math.min(...gaps) >= PERIOD * 0.9 - 50}`);
    return ok ? 0 : 1;
  } finally {
    await cleanup();
  }
}

main().then(code => process.exit(code), err => {
  console.error(err);
  process.exit(1);
});
