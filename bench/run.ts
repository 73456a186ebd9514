/**
 * npm run bench: this plugin against node-redlock 4, node-redlock 5 and redis-semaphore, side by side,
 * on its own Redis servers (1 node, and 3 independent masters; never 6379), then this plugin alone on a
 * Redis Cluster of 3 masters. Prints markdown to stdout
 * (progress goes to stderr) and writes the same to bench/results.md.
 *
 *   node --require ts-node/register/transpile-only bench/run.ts [--quick]
 *
 * --quick runs far fewer operations, to check the harness itself; its numbers are not for quoting.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultConfig } from '../lib/config';
import { startRedisCluster, startRedisServers } from '../test/support/redis-server';
import { CommandCounter } from './command-count';
import {
  connectPlugin, Contender, LockClient, LOCK_TTL, nodeRedlock4, nodeRedlock5, ownerCheckedFloor, plugin, pluginOnCluster, rawFloor, redisSemaphore, versionOf, WAIT_BOUND,
} from './contenders';
import { measureFairness } from './fairness';
import { measureHandoff } from './handoff';
import { measureParallel } from './parallel';
import { QuietLogger } from './quiet-logger';
import { ClusterResults, LibraryResults, Outcome, renderReport, RunInfo, Targets, TopologyResults } from './report';
import { Resources } from './resources';
import { ServerCpu } from './server-cpu';
import { measureScheduleOverhead } from './schedule-overhead';
import { measureUncontended } from './uncontended';
import { measureWaitingCommands } from './waiting-commands';

const QUICK = process.argv.includes('--quick');

/**
 * Sized so the whole run stays well under 3 minutes on a 2-core machine while the polling peers are
 * slow. The warm-ups are long on purpose: with 300 ops, the plugin's first measured block still ran
 * half-optimised code (p99 ~1.8 ms instead of ~0.3 ms), which is start-up cost, not steady state.
 */
const PLAN = {
  uncontended: QUICK ? { warmup: 200, ops: 300, blocks: 3 } : { warmup: 2000, ops: 6000, blocks: 60 },
  parallel: { clients: 50, warmupMs: QUICK ? 200 : 300, durationMs: QUICK ? 500 : 2000, rounds: QUICK ? 2 : 4 },
  handoffOne: { waiters: 1, rounds: QUICK ? 3 : 24 },
  handoffMany: { waiters: 20, rounds: QUICK ? 1 : 2 },
  /** Handoffs passed down a chain before any is measured, as a long-lived server's code and connections are warm. */
  handoffWarmup: { waiters: 20, rounds: 1 },
  waiting: { waiters: 20, holdMs: QUICK ? 500 : 2000, releases: QUICK ? 2 : 5 },
  schedule: QUICK ? { warmup: 100, calls: 200 } : { warmup: 1000, calls: 2000 },
  fairness: { waiters: 20 },
};

/** What the project aims for; printed against this plugin's numbers. */
const TARGETS: Targets = { uncontendedVsFloor: 0.95, handoffP50Ms: 1, commandsPerWaiterPerRelease: 2 };

interface Topology {
  label: string;
  ports: number[];
}

const startedAt = Date.now();
function progress(message: string): void {
  process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)} s] ${message}\n`);
}

async function attempt<T>(what: string, measure: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await measure() };
  } catch (err) {
    progress(`  ${what} failed: ${(err as Error).stack ?? err}`);
    return { ok: false, error: (err as Error).message ?? String(err) };
  }
}

/** `n` clients of one contender, each tracked as soon as it is connected (also when another fails). */
async function connectClients(resources: Resources, contender: Contender, ports: number[], n: number): Promise<LockClient[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, () => contender.connect(ports).then(c => resources.track(c))));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  const clients = settled.flatMap(s => (s.status === 'fulfilled' ? [ s.value ] : []));
  if (failed) {
    await resources.close(...clients);
    throw failed.reason;
  }
  return clients;
}

async function benchTopology(topology: Topology, libraries: Contender[], resources: Resources, logger: QuietLogger, problems: string[]): Promise<TopologyResults> {
  const { ports } = topology;
  const step = (message: string) => progress(`${topology.label}: ${message}`);
  const contenders = [ rawFloor, ownerCheckedFloor, ...libraries ];
  const results: LibraryResults[] = contenders.map(c => ({ label: c.label, isFloor: c.isFloor, isReference: c.isReference, isPlugin: c.isPlugin }));
  const resultOf = (library: Contender) => results.find(r => r.label === library.label)!;

  step('uncontended acquire + release, all contenders in turn');
  const single = await Promise.all(contenders.map(c => c.connect(ports).then(client => resources.track(client))));
  const inspectors = resources.track(await ServerCpu.connect(ports));
  const uncontended = await measureUncontended(single, PLAN.uncontended, 'bench-seq', () => inspectors.usedUs());
  await resources.close(inspectors);
  uncontended.forEach((u, i) => { results[i].uncontended = u; });
  await resources.close(...single);

  step(`connecting ${PLAN.parallel.clients} clients of each library`);
  const pools: LockClient[][] = [];
  for (const library of libraries) pools.push(await connectClients(resources, library, ports, PLAN.parallel.clients));

  step(`${PLAN.parallel.clients} clients in parallel, all libraries in turn`);
  const parallel = await attempt('parallel', () => measureParallel(pools, PLAN.parallel, 'bench-par'));
  libraries.forEach((library, i) => {
    resultOf(library).parallel = parallel.ok ? { ok: true, value: parallel.value[i] } : parallel;
  });

  for (const [ i, library ] of libraries.entries()) {
    const waits = await measureWaits(pools[i], ports, `bench-${i}`, resources, message => step(`${library.label}: ${message}`));
    Object.assign(resultOf(library), waits);
    checkOverlaps(waits, `${library.label} on ${topology.label}`, problems);
  }
  await resources.close(...pools.flat());

  step('per-fire overhead of a locked schedule');
  const schedule = await attempt('schedule overhead', async () => {
    const redlock = resources.track(await connectPlugin(ports, logger));
    try {
      return await measureScheduleOverhead(redlock, logger, PLAN.schedule);
    } finally {
      await resources.close(redlock);
    }
  });
  let fairness: TopologyResults['fairness'];
  if (ports.length === 1) {
    step(`fair: true, ${PLAN.fairness.waiters} waiters in a queue`);
    fairness = await attempt('fairness', async () => {
      const clients = await Promise.all(Array.from({ length: PLAN.fairness.waiters + 1 }, () => connectPlugin(ports, logger).then(c => resources.track(c))));
      try {
        return await measureFairness(clients, ports[0], 'bench-fair');
      } finally {
        await resources.close(...clients);
      }
    });
  }
  return { label: topology.label, nodes: ports.length, libraries: results, schedule, fairness };
}

type Waits = Required<Pick<LibraryResults, 'handoffOne' | 'handoffMany' | 'waiting'>>;

/** The handoffs (one waiter, a chain) and what waiting costs the servers, with one pool of clients of a library. */
async function measureWaits(pool: LockClient[], ports: number[], name: string, resources: Resources, step: (message: string) => void): Promise<Waits> {
  step(`handoff warm-up, chain of ${PLAN.handoffWarmup.waiters} waiters`);
  await attempt('handoff (warm-up)', () => measureHandoff(pool, PLAN.handoffWarmup, `${name}-warmup`)); // a failure is logged; the measured rounds tell
  step('handoff, 1 waiter');
  const handoffOne = await attempt('handoff (1 waiter)', () => measureHandoff(pool, PLAN.handoffOne, name));
  step(`handoff, chain of ${PLAN.handoffMany.waiters} waiters`);
  const handoffMany = await attempt('handoff (chain)', () => measureHandoff(pool, PLAN.handoffMany, name));
  step(`commands while ${PLAN.waiting.waiters} clients wait`);
  const waiting = await attempt('commands while waiting', async () => {
    const counter = resources.track(await CommandCounter.start(ports));
    try {
      return await measureWaitingCommands(pool, counter, PLAN.waiting, name);
    } finally {
      await resources.close(counter);
    }
  });
  return { handoffOne, handoffMany, waiting };
}

function checkOverlaps({ handoffOne, handoffMany }: Waits, where: string, problems: string[]): void {
  const overlaps = [ handoffOne, handoffMany ].reduce((n, h) => n + (h.ok ? h.value.overlaps : 0), 0);
  if (overlaps) problems.push(`${where}: during the handoffs, a client got the lock while another held it (${overlaps} times)`);
}

/**
 * This plugin alone on a Redis Cluster (the peers are compared on 1 node and 3 masters), both ways a
 * release can wake waiters there: SPUBLISH to the first queued waiter, which the plugin detects on
 * Redis 7, and the broadcast to every waiter that a Redis 6 Cluster falls back to (forced here).
 */
async function benchCluster(ports: number[], resources: Resources, logger: QuietLogger, problems: string[]): Promise<ClusterResults[]> {
  const results: ClusterResults[] = [];
  for (const wakeBy of [ 'spublish', 'broadcast' ] as const) {
    const step = (message: string) => progress(`Cluster, woken by ${wakeBy}: ${message}`);
    step(`connecting ${PLAN.handoffMany.waiters + 1} clients`);
    const pool = await connectClients(resources, pluginOnCluster(logger, wakeBy), ports, PLAN.handoffMany.waiters + 1);
    const waits = await measureWaits(pool, ports, `bench-cluster-${wakeBy}`, resources, step);
    await resources.close(...pool);
    checkOverlaps(waits, `this plugin on the Cluster (${wakeBy})`, problems);
    results.push({ wakeBy, ...waits });
  }
  return results;
}

function redisVersion(): string {
  const out = execFileSync('redis-server', [ '--version' ], { encoding: 'utf8' });
  return /v=(\S+)/.exec(out)?.[1] ?? out.trim();
}

/** The commit measured, and whether the plugin's code differed from it (it is often mid-change). */
function codeVersion(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: path.join(__dirname, '..'), encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--', 'lib', 'app.ts', 'agent.ts', 'index.ts', 'config') !== '';
    return `commit ${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in the plugin' : ''}`;
  } catch {
    return 'unknown commit (no git)';
  }
}

function runInfo(): RunInfo {
  const cpus = os.cpus();
  const { retryCount, retryDelay, retryJitter } = defaultConfig;
  return {
    command: [ 'node', ...process.execArgv, path.relative(process.cwd(), process.argv[1]), ...process.argv.slice(2) ].join(' '),
    date: new Date().toISOString(),
    node: process.version,
    redis: redisVersion(),
    machine: `${os.platform()} ${os.arch()}, ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}`,
    settings: [
      `egg-distributed-lock ${versionOf('..')}, ${codeVersion()} (lib/ as compiled by \`npm run build\`).`,
      `Each library with its default retry settings (this plugin: defaultConfig, retryCount ${retryCount}, retryDelay ${retryDelay} ms, ` +
        `retryJitter ${retryJitter} ms; node-redlock 4/5: 10 retries, 200 ± 100 ms; redis-semaphore: retryInterval 10 ms). ` +
        'Only a waiter\'s overall bound is raised, ' +
        `to ~${WAIT_BOUND / 1000} s, so a long queue does not give up (this plugin: retryCount -1 + waitTimeout; ` +
        'node-redlock: retryCount; redis-semaphore: acquireTimeout).',
      `Lease ${LOCK_TTL / 1000} s. Every client has its own Redis connections, as a separate process would. ` +
        '1 node = one redis-server; 3 masters = three independent redis-servers (Redlock quorum 2); the Cluster = three ' +
        'more in cluster mode (section 6); all on loopback, sharing the machine with the bench.',
      ...(QUICK ? [ '**--quick run: too few operations for these numbers to mean much.**' ] : []),
    ],
    plan: {
      uncontendedOps: PLAN.uncontended.ops,
      uncontendedWarmup: PLAN.uncontended.warmup,
      uncontendedBlocks: PLAN.uncontended.blocks,
      parallelClients: PLAN.parallel.clients,
      parallelSeconds: PLAN.parallel.durationMs / 1000,
      parallelRounds: PLAN.parallel.rounds,
      handoffOneRounds: PLAN.handoffOne.rounds,
      handoffWaiters: PLAN.handoffMany.waiters,
      handoffManyRounds: PLAN.handoffMany.rounds,
      handoffWarmup: PLAN.handoffWarmup.waiters * PLAN.handoffWarmup.rounds,
      waitingWaiters: PLAN.waiting.waiters,
      waitingHoldSeconds: PLAN.waiting.holdMs / 1000,
      waitingReleases: PLAN.waiting.releases,
      scheduleCalls: PLAN.schedule.calls,
    },
  };
}

async function main(resources: Resources): Promise<void> {
  const info = runInfo();
  progress('starting 4 redis-servers (1 node + 3 masters)');
  const servers = await startRedisServers(4);
  for (const server of servers) resources.trackLast({ close: () => server.kill() });
  const topologies: Topology[] = [
    { label: '1 node', ports: [ servers[0].port ] },
    { label: '3 masters', ports: servers.slice(1).map(s => s.port) },
  ];

  const logger = new QuietLogger();
  const problems: string[] = [];
  const libraries = [ plugin(logger), nodeRedlock4, nodeRedlock5, redisSemaphore ];
  const results: TopologyResults[] = [];
  for (const topology of topologies) results.push(await benchTopology(topology, libraries, resources, logger, problems));

  progress('starting a Redis Cluster of 3 masters');
  const cluster = await attempt('Redis Cluster', async () => {
    const nodes = await startRedisCluster(3);
    for (const node of nodes) resources.trackLast({ close: () => node.kill() });
    return benchCluster(nodes.map(node => node.port), resources, logger, problems);
  });

  const markdown = renderReport(info, results, cluster, TARGETS, [ ...problems, ...logger.problems ]);
  const file = path.join(__dirname, 'results.md');
  writeFileSync(file, `${markdown}\n`);
  console.log(markdown);
  progress(`done; written to ${path.relative(process.cwd(), file)}`);
}

const resources = new Resources();
for (const signal of [ 'SIGINT', 'SIGTERM' ] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping every client and server the bench started`);
    resources.closeAll().finally(() => process.exit(130));
  });
}

main(resources)
  .catch(err => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await resources.closeAll();
    // Everything is closed, so the process exits now by itself. If a library left a handle open,
    // say which, and exit anyway rather than hang `npm run bench`.
    setTimeout(() => {
      progress(`still running after cleanup: ${process.getActiveResourcesInfo().join(', ')}; exiting`);
      process.exit(process.exitCode ?? 0);
    }, 5000).unref();
  });
