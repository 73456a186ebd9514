import path from 'node:path';
import type { Application } from 'egg';
import { checkClusterKeys, checkLeaseTtl, checkName } from '../arguments';
import type { Redlock } from '../redlock';
import { appScheduleDirs, jobName, linkedJobNames } from './job-names';
import { lockedTask, manualRuns, Task } from './locked-task';
import type { Logger } from '../boot';
import type { FireSettings } from './fire-window';

/** Per-task options: `schedule: { cron, type: 'worker', lock: false | { name, ttl, onUnavailable } }`. */
export interface JobLockOptions {
  name?: string;
  ttl?: number;
  onUnavailable?: 'skip' | 'run';
}

interface ScheduleItem {
  key: string;
  schedule: FireSettings & { type?: string; lock?: false | JobLockOptions };
  task: Task;
}

/** What egg-schedule puts on `app.scheduleWorker` (not in egg's typings). */
interface ScheduleWorker {
  scheduleItems: Record<string, ScheduleItem>;
  registerSchedule(item: ScheduleItem): void;
}

const LOCKED = Symbol('egg-distributed-lock#locked');

/** The lock options of one task, checked; undefined when the task is not locked. */
function jobOptions(item: ScheduleItem, nameFromPath: (file: string) => string | undefined, redlock: Redlock): (JobLockOptions & { name: string; fromPath: boolean }) | undefined {
  const { type, lock } = item.schedule;
  if (type !== 'worker' || lock === false) return undefined;
  const field = `schedule.lock of ${item.key}`;
  if (lock !== undefined && (lock === null || typeof lock !== 'object')) {
    throw new TypeError(`[egg-distributed-lock] ${field} must be false or an object like { name, ttl }, got ${String(lock)}`);
  }
  const fromPath = lock?.name === undefined;
  const name = fromPath ? nameFromPath(item.key) : lock!.name;
  if (name === undefined) return undefined; // a plugin's per-machine schedule
  checkName(name, fromPath ? `the job name of ${item.key}` : `${field}.name`);
  if (redlock.stores[0].clustered) checkClusterKeys([ name ], [ redlock.key(name) ]);
  if (lock?.ttl !== undefined) checkLeaseTtl(lock.ttl, redlock.driftFactor, `${field}.ttl`);
  if (lock?.onUnavailable !== undefined && lock.onUnavailable !== 'skip' && lock.onUnavailable !== 'run') {
    throw new TypeError(`[egg-distributed-lock] ${field}.onUnavailable must be 'skip' or 'run', got ${String(lock.onUnavailable)}`);
  }
  return { ...lock, name, fromPath };
}

/**
 * Two different tasks whose paths give the same name (`app/schedule/cleanup.js` and
 * `<schedule.directory>/cleanup.js`) would share one lock, and one would skip the other's fires on
 * every machine: boot fails instead. The same file built as `.ts` and `.js` is one job.
 */
function claimName(fileOf: Map<string, string>, name: string, file: string, key: string): void {
  const stem = (f: string) => f.slice(0, f.length - path.extname(f).length);
  const other = fileOf.get(name);
  if (other !== undefined && stem(other) !== stem(file)) {
    throw new TypeError(`[egg-distributed-lock] schedules ${other} and ${file} would share the fleet-wide name '${name}' ` +
      `(${key}), and one would skip the other's fires: give one of them schedule.lock.name`);
  }
  fileOf.set(name, file);
}

/**
 * Wraps every `type: 'worker'` task of the app's own schedule folders (now and when registered
 * later) so each fire runs once across the fleet, and sends `app.runSchedule()` through the same lock.
 */
export function lockAppSchedules(app: Application): void {
  const { redlock } = app;
  const config = app.config.redlock.schedule;
  const logger = app.getLogger('scheduleLogger') as unknown as Logger;
  const dirs = appScheduleDirs(app.baseDir, app.config.schedule?.directory);
  const linked = linkedJobNames(dirs);
  const nameFromPath = (file: string) => jobName(file, dirs) ?? linked.get(file);
  const worker = (app as unknown as { scheduleWorker: ScheduleWorker }).scheduleWorker;
  const fileOf = new Map<string, string>(); // derived job name → the task file it came from
  let schedulesStartedAt: number | undefined; // egg-schedule starts its timers (and runs `immediate` tasks) on 'egg-ready'
  app.messenger.once('egg-ready', () => { schedulesStartedAt = Date.now(); });

  const wrap = (item: ScheduleItem) => {
    const options = jobOptions(item, nameFromPath, redlock);
    if (!options || (item.task as any)[LOCKED]) return;
    if (options.fromPath) claimName(fileOf, options.name, item.key, redlock.key(options.name));
    const job = {
      name: options.name,
      ttl: options.ttl ?? config.ttl ?? app.config.redlock.ttl, // schedule.ttl can be unset by a user's config
      onUnavailable: options.onUnavailable ?? config.onUnavailable,
      maxHold: app.config.redlock.maxHold,
      clockTolerance: config.clockTolerance,
      schedulesStartedAt: () => schedulesStartedAt,
    };
    item.task = Object.assign(lockedTask(item.task, item.schedule, job, redlock, logger), { [LOCKED]: true });
    redlock.jobNames.add(job.name);
    logger.info(`[egg-distributed-lock] ${item.key} locked fleet-wide as ${redlock.key(job.name)}`);
  };

  for (const item of Object.values(worker.scheduleItems)) wrap(item);
  const register = worker.registerSchedule.bind(worker);
  worker.registerSchedule = (item: ScheduleItem) => {
    wrap(item);
    register(item);
  };
  const runSchedule = app.runSchedule.bind(app);
  app.runSchedule = (schedulePath: string, ...args: unknown[]) => manualRuns.run(true, () => runSchedule(schedulePath, ...args));
}
