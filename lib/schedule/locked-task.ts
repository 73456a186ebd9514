import { AsyncLocalStorage } from 'node:async_hooks';
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../boot';
import { LockBusyError, LockLostError, LockUnavailableError } from '../errors';
import { keepAlive } from '../lease';
import type { Lock } from '../lock';
import type { Redlock } from '../redlock';
import { canLease, retryDelay } from '../timing';
import { fireWindow, FireSettings, FireWindow } from './fire-window';
import { JobRun, saveLastRun } from './last-run';

/** What a running task sees on `ctx.scheduleLock`. */
export interface ScheduleLockState {
  /** The job's fleet-wide name (`report`, `sub/cleanup`) and its Redis key. */
  name: string;
  key: string;
  fireTime: number;
  /** Aborted (with a LockLostError) the moment the lease is lost; never aborted when run without a lock. */
  signal: AbortSignal;
  /** null when Redis was unavailable and `onUnavailable: 'run'` ran the task anyway. */
  lock: Lock | null;
}

export interface JobSettings {
  name: string;
  ttl: number;
  onUnavailable: 'skip' | 'run';
  maxHold: number;
  clockTolerance: number;
  /** When the fleet's schedules started here ('egg-ready'), if they have: an `immediate` task runs then. */
  schedulesStartedAt?: () => number | undefined;
}

export type Task = (ctx: any, ...args: unknown[]) => Promise<unknown>;

/** Runs started by `app.runSchedule()`: they take the lock but reserve no fire window. */
export const manualRuns = new AsyncLocalStorage<true>();

const SPLIT_VOTE_RETRIES = 3;

/**
 * An `immediate` task's run this soon after egg-schedule started (on 'egg-ready', when its agent
 * sends the run at boot, which arrives within ms) is that run (fire-window.ts).
 */
const BOOT_RUN_MS = 5000;

function at(time: number): string {
  return new Date(time).toISOString();
}

/**
 * Takes a fire's lock with one attempt, retried only after a split vote (several machines each
 * got some masters and none a quorum, so nobody holds it): then one of them must still win.
 * A lock that one holder has on a quorum means the fire is taken: skip at once.
 */
async function acquireFire(redlock: Redlock, name: string, ttl: number): Promise<Lock> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await redlock.lock(name, ttl, { retryCount: 0 });
    } catch (err) {
      const split = err instanceof LockBusyError &&
        err.outcomes.filter(o => o.holder === err.holder).length < redlock.quorum;
      if (!split || attempt >= SPLIT_VOTE_RETRIES) throw err;
      await sleep(retryDelay(10, 40));
    }
  }
}

/** Wraps a scheduled task so that only the worker that wins the fire's lock runs it. */
export function lockedTask(task: Task, settings: FireSettings, job: JobSettings, redlock: Redlock, logger: Logger): Task {
  const key = redlock.key(job.name);
  const tag = `[egg-distributed-lock] [Job ${job.name}]`;

  return async function runLocked(ctx: any, ...args: unknown[]) {
    const now = Date.now();
    const started = job.schedulesStartedAt?.();
    const atBoot = settings.immediate === true && started !== undefined && now - started < BOOT_RUN_MS;
    const window: FireWindow = manualRuns.getStore() ? { fireTime: now, holdUntil: now } : fireWindow(settings, now, job.clockTolerance, atBoot);
    const fire = `${tag} fire ${at(window.fireTime)}`;
    let lock: Lock;
    try {
      lock = await acquireFire(redlock, job.name, job.ttl);
    } catch (err) {
      if (err instanceof LockBusyError) {
        logger.info(`${fire} skipped: ${key} held by ${err.holder} until ${at(Date.now() + err.remainingMs)}`);
        return;
      }
      if (redlock.isClosed) {
        // A deploy: the agent still sends fires to a worker whose app is closing. Not Redis down, and
        // never a run without the lock: the other machines take this fire.
        logger.warn(`${fire} skipped: this app is closing`);
        return;
      }
      if (!(err instanceof LockUnavailableError)) throw err;
      if (job.onUnavailable === 'skip') {
        logger.error(`${fire} skipped: Redis unavailable, not running anywhere rather than everywhere: ${err.message}`);
        return;
      }
      logger.warn(`${fire} running WITHOUT a lock (onUnavailable: 'run'): ${err.message}`);
      ctx.scheduleLock = { name: job.name, key, fireTime: window.fireTime, signal: new AbortController().signal, lock: null };
      return task(ctx, ...args);
    }

    logger.info(`${fire} acquired ${key} (lease ${job.ttl} ms)`);
    const runStartedAt = Date.now();
    const record = (outcome: JobRun['outcome'], error?: string) => saveLastRun(redlock.stores, redlock.settings.prefix, {
      name: job.name, host: hostname(), pid: process.pid, worker: cluster.worker?.id, fireTime: window.fireTime,
      startedAt: runStartedAt, durationMs: outcome === 'running' ? undefined : Date.now() - runStartedAt, outcome, error,
    }).catch((err: Error) => logger.warn(`${fire} last run not recorded: ${err.message}`));
    let finalRecord: Promise<unknown> | undefined; // written once: when the lease is lost, by the app closing, or at the task's end
    const controller = new AbortController();
    const stop = keepAlive(lock, job.ttl, job.maxHold, err => {
      logger.error(`${fire} lease lost: ${err.message}`);
      controller.abort(err);
      // Now, with its reason: the task may outlive its app, and a later write could overwrite the
      // record of a newer run that took the lock meanwhile.
      finalRecord ??= record('lease-lost', err.message);
    });
    let ending: Promise<string> | undefined;
    const end = () => (ending ??= finish(lock, window, redlock));
    let taskEnded = false;
    // The app closing mid-run (a deploy): released now, the same fire could start again on a machine
    // whose clock is behind. The run ends as at its end instead (the window kept), and is told to stop;
    // it is recorded now, while Redis can be reached (the process may exit before the task returns).
    // A task that had already ended records its own outcome, which close waits for.
    redlock.endAtClose(lock, async () => {
      if (!taskEnded) {
        stop();
        controller.abort(new LockLostError(lock.keys, 'the app is closing, so the lease is no longer extended'));
        finalRecord ??= end().then(() => record('lease-lost', 'the app closed during the run'));
      }
      await end();
      await finalRecord;
    });
    ctx.scheduleLock = { name: job.name, key, fireTime: window.fireTime, signal: controller.signal, lock } as ScheduleLockState;
    record('running'); // what is left of a worker killed mid-run (the same connection orders the final record after it)
    let outcome: JobRun['outcome'] = 'succeeded';
    let error: string | undefined;
    try {
      // The task holds its job's lock: code it calls that locks the job's name re-enters, not waits on itself.
      return await redlock.runUnderLease(lock, controller.signal, () => task(ctx, ...args));
    } catch (err) {
      outcome = 'failed';
      error = (err as Error)?.message ?? String(err);
      throw err;
    } finally {
      taskEnded = true;
      stop();
      // !isHeld: the task's last step blocked the event loop past the lease, before any timer could tell.
      if (controller.signal.aborted || !lock.isHeld) outcome = 'lease-lost';
      finalRecord ??= end().then(() => record(outcome, error));
      logger.info(`${fire} ${await end()} after ${Date.now() - runStartedAt} ms (${outcome})`);
      await finalRecord;
    }
  };
}

/**
 * Ends a run: a lock still inside its fire window keeps the winner's value until the window closes
 * (so a machine firing the same fire later skips), otherwise it is released — also when what is left
 * of the window is too short to be a lease (extend() would refuse it, and the lock keep its job lease).
 */
async function finish(lock: Lock, window: FireWindow, redlock: Redlock): Promise<string> {
  const rest = window.holdUntil - Date.now();
  try {
    if (canLease(rest, redlock.driftFactor)) {
      await lock.extend(rest);
      redlock.forget(lock); // closing the app must not release a fire window early
      return `kept ${lock.key} until ${at(window.holdUntil)} (end of the fire window)`;
    }
    return await lock.unlock() ? `released ${lock.key}` : `found ${lock.key} already expired or taken at release`;
  } catch (err) {
    return `could not release ${lock.key} (it expires by itself): ${(err as Error).message}`;
  }
}
