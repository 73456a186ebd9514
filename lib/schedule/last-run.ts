import { lastRunKey } from '../keys';
import type { LockStore } from '../store';

/** One run of a scheduled job, as recorded in Redis beside its lock. */
export interface JobRun {
  name: string;
  host: string;
  pid: number;
  /** Egg worker (cluster worker id) that ran it, when known. */
  worker?: number;
  /** The fire the run belonged to (cron tick, or when an interval run took the lock). */
  fireTime: number;
  startedAt: number;
  /** Absent while it runs. */
  durationMs?: number;
  /**
   * 'running' is written as the run starts: a record that stays so belongs to a worker that died
   * mid-run (a run cut short by the app closing is recorded as 'lease-lost').
   */
  outcome: 'running' | 'succeeded' | 'failed' | 'lease-lost';
  error?: string;
}

/** Every node's answer, once all have answered; rejects with the first error when none did. */
async function fromAnyNode<T>(calls: Array<Promise<T>>): Promise<Array<PromiseSettledResult<T>>> {
  const results = await Promise.allSettled(calls);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed && results.every(r => r.status === 'rejected')) throw failed.reason;
  return results;
}

/** Records outlive their run this long, so a weekly job's last run can still be read. */
const RECORD_TTL = 30 * 24 * 3600 * 1000;

/** Writes the record on every node that answers (not over a later run's); a record is information, not a lock, so no quorum. */
export async function saveLastRun(stores: LockStore[], prefix: string, run: JobRun): Promise<void> {
  await fromAnyNode(stores.map(store => store.saveRecord(lastRunKey(prefix, run.name), JSON.stringify(run), run.startedAt, RECORD_TTL)));
}

/**
 * The newest record any node has for the job, or null when it never ran (or Redis forgot). Rejects
 * when no node answers: "never ran" must not stand in for "cannot tell".
 */
export async function readLastRun(stores: LockStore[], prefix: string, name: string): Promise<JobRun | null> {
  const values = await fromAnyNode(stores.map(store => store.getValue(lastRunKey(prefix, name))));
  let newest: JobRun | null = null;
  for (const v of values) {
    if (v.status !== 'fulfilled' || !v.value) continue;
    const run = JSON.parse(v.value) as JobRun;
    // The same run may still read 'running' on a node its last write did not reach.
    const newer = !newest || run.startedAt > newest.startedAt || (run.startedAt === newest.startedAt && newest.outcome === 'running');
    if (newer) newest = run;
  }
  return newest;
}
