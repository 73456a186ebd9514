/**
 * npm run torture [seconds]: a ShedLock-style fuzz. Contender processes guard an unsynchronised
 * shared counter (read, pause, write + 1) with app.redlock.using() on 3 Redis masters, while faults
 * are injected: masters killed and restarted (at once, or one lease later as the Redlock paper
 * advises for nodes without persistence), the holder SIGSTOPped past its lease, connections cut
 * (CLIENT KILL), and one contender's clock 0.7 s ahead (libfaketime). Every counter access carries
 * the fencing token. A lost update is a violation; there must be none.
 */
import { ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import { LIBFAKETIME } from '../test/support/fleet';
import { killAll, RedisServer, startRedisServers } from '../test/support/redis-server';

export interface TortureOptions {
  seconds: number;
  processes?: number;
  loopsPerProcess?: number;
  /** Lease of the counter lock, ms: short, so a SIGSTOP outlives it. */
  ttl?: number;
}

interface ContenderStats {
  done: number;
  stale: number;
  lostLearned: number;
  failed: number;
  overlaps: number;
}

export interface TortureResult extends ContenderStats {
  counter: number;
  violations: number;
  faults: Record<string, number>;
  seconds: number;
}

const CONTENDER = path.join(__dirname, 'contender.js');

export async function torture(options: TortureOptions): Promise<TortureResult> {
  const { seconds, processes = 4, loopsPerProcess = 3, ttl = 400 } = options;
  const faults: Record<string, number> = {
    'master killed, restarted at once': 0, 'master killed, restarted one lease later': 0,
    'holder SIGSTOPped past its lease': 0, 'connections dropped (CLIENT KILL, commands and pub/sub)': 0,
  };
  let masters: RedisServer[] = [];
  let resourceServer: RedisServer[] = [];
  const children: ChildProcess[] = [];
  const views: Redis[] = [];
  try {
    masters = await startRedisServers(3);
    resourceServer = await startRedisServers(1);
    const resource = new Redis({ port: resourceServer[0].port, host: '127.0.0.1' });
    views.push(resource);
    const stats = new Map<ChildProcess, ContenderStats>();
    const stages = new Map<ChildProcess, string[]>();
    const finals: Array<Promise<void>> = [];
    for (let i = 0; i < processes; i++) {
      const env = { ...process.env };
      if (i === 0 && LIBFAKETIME) Object.assign(env, { LD_PRELOAD: LIBFAKETIME, FAKETIME: '+0.7s', FAKETIME_DONT_RESET: '1' });
      const child = fork(CONTENDER, [ JSON.stringify({ ports: masters.map(m => m.port), resourcePort: resourceServer[0].port, loops: loopsPerProcess, ttl }) ],
        { env, execArgv: [], stdio: [ 'ignore', 'inherit', 'inherit', 'ipc' ] });
      children.push(child);
      finals.push(new Promise((resolve, reject) => {
        child.on('message', (message: { stats: ContenderStats; stages?: string[]; final?: boolean }) => {
          stats.set(child, message.stats);
          if (message.stages) stages.set(child, message.stages);
          if (message.final) resolve();
        });
        child.once('exit', code => (code === 0 ? resolve() : reject(new Error(`contender exited with ${code}`))));
      }));
    }

    const end = Date.now() + seconds * 1000;
    const pending: Array<Promise<unknown>> = [];
    for (let round = 0; Date.now() < end; round++) {
      await sleep(700 + Math.random() * 600);
      const master = masters[round % masters.length];
      switch (round % 4) {
        case 0:
          if (!master.running) break;
          await master.kill();
          await master.restart();
          faults['master killed, restarted at once']++;
          break;
        case 1:
          if (!master.running) break;
          await master.kill();
          pending.push(sleep(ttl + 100).then(() => master.restart()));
          faults['master killed, restarted one lease later']++;
          break;
        case 2: {
          const holder = await holderPid(masters, children);
          if (!holder) break;
          holder.kill('SIGSTOP');
          pending.push(sleep(ttl * 2.5).then(() => holder.kill('SIGCONT')));
          faults['holder SIGSTOPped past its lease']++;
          break;
        }
        default:
          await Promise.all(masters.filter(m => m.running).map(async m => {
            const admin = new Redis({ port: m.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
            try {
              // Lock connections, and the subscriber connections that wake waiters.
              await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
              await admin.client('KILL', 'TYPE', 'pubsub');
            } finally {
              admin.disconnect();
            }
          }));
          faults['connections dropped (CLIENT KILL, commands and pub/sub)']++;
      }
    }
    await Promise.all(pending);
    for (const child of children) child.send('stop');
    // Every wait in a contender is bounded (waitTimeout 5 s, commands 300 ms): 20 s means a hang.
    await Promise.race([ Promise.all(finals), sleep(20000).then(() => {
      throw new Error(`contenders did not stop: ${children.map(c => `${c.pid}: ${(stages.get(c) ?? []).join(',')}`).join('; ')}`);
    }) ]);

    const total = [ ...stats.values() ].reduce<ContenderStats>((sum, s) => ({
      done: sum.done + s.done, stale: sum.stale + s.stale, lostLearned: sum.lostLearned + s.lostLearned,
      failed: sum.failed + s.failed, overlaps: sum.overlaps + s.overlaps,
    }), { done: 0, stale: 0, lostLearned: 0, failed: 0, overlaps: 0 });
    const counter = Number(await resource.hget('counter', 'value') ?? 0);
    return { ...total, counter, violations: Math.abs(total.done - counter), faults, seconds };
  } finally {
    for (const child of children) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    views.forEach(v => v.disconnect());
    await killAll([ ...masters, ...resourceServer ]);
  }
}

/** The contender process holding the counter lock now, read from the lock value (`hex@host/pid`). */
async function holderPid(masters: RedisServer[], children: ChildProcess[]): Promise<ChildProcess | undefined> {
  for (const master of masters.filter(m => m.running)) {
    const view = new Redis({ port: master.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    try {
      const value = await view.get('JOB_LOCKER_counter');
      const pid = Number(value?.split('/').pop());
      const child = children.find(c => c.pid === pid);
      if (child) return child;
    } catch {
      // try the next master
    } finally {
      view.disconnect();
    }
  }
  return undefined;
}

export function formatResult(r: TortureResult): string {
  return [
    `| torture (${r.seconds} s, 3 masters) | |`,
    '| --- | ---: |',
    `| counter increments done | ${r.done} |`,
    `| final counter value | ${r.counter} |`,
    ...Object.entries(r.faults).map(([ fault, n ]) => `| fault: ${fault} | ${n} |`),
    `| late accesses refused by the fencing token | ${r.stale} |`,
    `| holders that learned they lost the lease (signal) | ${r.lostLearned} |`,
    `| overlaps seen (a paused or cut-off holder still inside) | ${r.overlaps} |`,
    `| attempts that gave up (busy or unavailable) | ${r.failed} |`,
    `| **violations (lost updates)** | **${r.violations}** |`,
  ].join('\n');
}

if (require.main === module) {
  const seconds = Number(process.argv[2] ?? 60);
  torture({ seconds }).then(result => {
    console.log(`npm run torture ${seconds}  (${new Date().toISOString()})\n`);
    console.log(formatResult(result));
    process.exit(result.violations === 0 && result.done > 0 ? 0 : 1);
  }, err => {
    console.error(err);
    process.exit(1);
  });
}
