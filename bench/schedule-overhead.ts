import type { Redlock } from '../lib/redlock';
import type { Logger } from '../lib/boot';
import { lockedTask, Task } from '../lib/schedule/locked-task';
import { LOCK_TTL } from './contenders';
import { nowUs } from './stats';

export interface ScheduleOverheadResult {
  calls: number;
  /** Mean µs per call of the bare noop task, and of the same task wrapped by lockedTask. */
  unlockedUs: number;
  lockedUs: number;
}

export interface SchedulePlan {
  warmup: number;
  calls: number;
}

/**
 * What the plugin adds to each fire of a scheduled task. The schedule has no cron or interval, so
 * there is no fire window: the lock is released right after the task, as it is for a manual run.
 */
export async function measureScheduleOverhead(redlock: Redlock, logger: Logger, plan: SchedulePlan): Promise<ScheduleOverheadResult> {
  let runs = 0;
  const noop: Task = async () => { runs++; };
  const job = { name: 'bench-noop', ttl: LOCK_TTL, onUnavailable: 'skip' as const, maxHold: 3600000, clockTolerance: 300000 };
  const locked = lockedTask(noop, {}, job, redlock, logger);

  const unlockedUs = await meanUs(noop, plan);
  runs = 0;
  const lockedUs = await meanUs(locked, plan);
  // A locked fire that found its lock taken would skip the task and look cheap: make sure none did.
  if (runs !== plan.warmup + plan.calls) throw new Error(`the locked task ran ${runs} of ${plan.warmup + plan.calls} times`);
  return { calls: plan.calls, unlockedUs, lockedUs };
}

async function meanUs(task: Task, plan: SchedulePlan): Promise<number> {
  for (let i = 0; i < plan.warmup; i++) await task({});
  const start = nowUs();
  for (let i = 0; i < plan.calls; i++) await task({}); // a fresh ctx per fire, as egg-schedule gives
  return (nowUs() - start) / plan.calls;
}
