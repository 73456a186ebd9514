import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, RedisServer } from './redis-server';

const ROOT = path.join(__dirname, '../..');
export const FLEET_APP = path.join(ROOT, 'demo/fleet-app');
const EGG_SCRIPTS = path.join(ROOT, 'node_modules/egg-scripts/bin/egg-scripts.js');
const FRAMEWORK = path.join(ROOT, 'node_modules/egg');

/** Where Debian's `faketime` package puts the library that shifts a process's clock. */
export const LIBFAKETIME = [ '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1' ]
  .find(existsSync);

/** One line of the fleet's run log (see demo/fleet-app/lib/run-log.js). */
export interface FleetEvent {
  event: 'run' | 'start' | 'end';
  job: string;
  node: string;
  pid: number;
  at: number;
  fireTime?: number;
  lost?: boolean;
}

/** One machine of the fleet: an Egg cluster (agent + workers) started with `egg-scripts start`. */
export class EggCluster {
  private child?: ChildProcess;

  constructor(readonly name: string, readonly port: number, private readonly env: NodeJS.ProcessEnv, readonly logDir: string) {}

  async start(workers: number, timeoutMs = 60000): Promise<void> {
    // detached: egg-scripts, the master, the agent and the workers share one process group we can kill.
    this.child = spawn(process.execPath, [
      EGG_SCRIPTS, 'start', `--workers=${workers}`, `--port=${this.port}`, `--title=egg-fleet-${this.name}-${this.port}`,
      `--framework=${FRAMEWORK}`, '--env=prod', FLEET_APP,
    ], { env: this.env, stdio: [ 'ignore', 'ignore', 'pipe' ], detached: true });
    let stderr = '';
    this.child.stderr!.on('data', chunk => { stderr += chunk; });
    const deadline = Date.now() + timeoutMs;
    while (!await listening(this.port)) {
      if (this.child.exitCode !== null) throw new Error(`cluster ${this.name} exited with ${this.child.exitCode}: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`cluster ${this.name} did not listen on ${this.port} in ${timeoutMs} ms: ${stderr}`);
      await sleep(200);
    }
  }

  /** Everything the cluster wrote to its schedule log (one line per lock decision). */
  scheduleLog(): string {
    const file = path.join(this.logDir, 'egg-schedule.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise(resolve => child.once('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      return;
    }
    await exited;
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

export interface FleetOptions {
  clusters: number;
  workers: number;
  redis: RedisServer[];
  runDir: string;
  /** FAKETIME offsets by cluster index, e.g. { 2: '+0.7s' }: that machine's clock runs ahead. */
  skew?: Record<number, string>;
  /** Turns on demo/fleet-app's long job. */
  longJob?: boolean;
  /** Turns the plugin's scheduling off, to show what happens without it. */
  unlocked?: boolean;
}

/** Several Egg clusters of demo/fleet-app sharing the same Redis masters and one run log. */
export class Fleet {
  readonly logFile: string;

  private constructor(readonly clusters: EggCluster[], readonly runDir: string) {
    this.logFile = path.join(runDir, 'runs.jsonl');
  }

  static async start(options: FleetOptions): Promise<Fleet> {
    rmSync(options.runDir, { recursive: true, force: true });
    mkdirSync(options.runDir, { recursive: true });
    const clusters: EggCluster[] = [];
    for (let i = 0; i < options.clusters; i++) {
      const name = String.fromCharCode(65 + i); // A, B, C
      const logDir = path.join(options.runDir, `cluster-${name}`);
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        FLEET_NODE: name,
        FLEET_LOG: path.join(options.runDir, 'runs.jsonl'),
        FLEET_LOG_DIR: logDir,
        FLEET_REDIS_PORTS: options.redis.map(r => r.port).join(','),
        FLEET_LONG_JOB: options.longJob ? '1' : '',
        FLEET_UNLOCKED: options.unlocked ? '1' : '',
        HOME: options.runDir,
        EGG_TYPESCRIPT: 'false',
      };
      const skew = options.skew?.[i];
      if (skew) {
        if (!LIBFAKETIME) throw new Error('clock skew needs Debian\'s faketime package: apt-get install faketime');
        Object.assign(env, { LD_PRELOAD: LIBFAKETIME, FAKETIME: skew, FAKETIME_DONT_RESET: '1' });
      }
      clusters.push(new EggCluster(name, await freePort(), env, logDir));
    }
    const fleet = new Fleet(clusters, options.runDir);
    try {
      await Promise.all(clusters.map(c => c.start(options.workers)));
    } catch (err) {
      await fleet.stop();
      throw err;
    }
    return fleet;
  }

  events(): FleetEvent[] {
    if (!existsSync(this.logFile)) return [];
    return readFileSync(this.logFile, 'utf8').split('\n').filter(Boolean)
      .map(line => JSON.parse(line));
  }

  async stop(): Promise<void> {
    await Promise.all(this.clusters.map(c => c.stop()));
  }
}

/** The cron fires of `job` in [from, to] (fire times), with how many runs each had. */
export function runsPerFire(events: FleetEvent[], job: string, periodMs: number, from: number, to: number): Map<number, FleetEvent[]> {
  const fires = new Map<number, FleetEvent[]>();
  for (let t = Math.ceil(from / periodMs) * periodMs; t <= to; t += periodMs) fires.set(t, []);
  for (const e of events) {
    if (e.job === job && (e.event === 'run' || e.event === 'start') && fires.has(e.fireTime!)) fires.get(e.fireTime!)!.push(e);
  }
  return fires;
}
