import { setTimeout as sleep } from 'node:timers/promises';
import type { LockClient } from './contenders';
import { nowMs } from './stats';

export interface ParallelResult {
  opsPerSec: number;
  ops: number;
  errors: number;
  firstError?: string;
}

export interface ParallelPlan {
  warmupMs: number;
  /** Measured time per contender, split into `rounds` turns. */
  durationMs: number;
  rounds: number;
}

interface Tally {
  ops: number;
  errors: number;
  firstError?: string;
}

/**
 * Every client of a pool loops acquire+release on its own name, all at once: throughput when many
 * callers lock different things (no contention on a name, only on the servers and the CPU). The
 * pools (one per contender) take turns round by round, so a slow spell of the machine falls on all.
 */
export async function measureParallel(pools: LockClient[][], plan: ParallelPlan, name: string): Promise<ParallelResult[]> {
  for (const pool of pools) await runPool(pool, plan.warmupMs, name);
  const totals = pools.map(() => ({ ops: 0, errors: 0, elapsedMs: 0, firstError: undefined as string | undefined }));
  for (let round = 0; round < plan.rounds; round++) {
    for (const [ i, pool ] of pools.entries()) {
      const start = nowMs();
      const tally = await runPool(pool, plan.durationMs / plan.rounds, name);
      totals[i].elapsedMs += nowMs() - start; // includes each loop's last op past the deadline
      totals[i].ops += tally.ops;
      totals[i].errors += tally.errors;
      totals[i].firstError ??= tally.firstError;
    }
  }
  return totals.map(t => ({ ops: t.ops, opsPerSec: t.ops / (t.elapsedMs / 1000), errors: t.errors, firstError: t.firstError }));
}

async function runPool(pool: LockClient[], durationMs: number, name: string): Promise<Tally> {
  const until = nowMs() + durationMs;
  const tallies = await Promise.all(pool.map((client, i) => loop(client, `${name}-${i}`, until)));
  return {
    ops: tallies.reduce((sum, t) => sum + t.ops, 0),
    errors: tallies.reduce((sum, t) => sum + t.errors, 0),
    firstError: tallies.find(t => t.firstError)?.firstError,
  };
}

async function loop(client: LockClient, name: string, until: number): Promise<Tally> {
  const tally: Tally = { ops: 0, errors: 0 };
  while (nowMs() < until) {
    try {
      const held = await client.acquire(name);
      await held.release();
      tally.ops++;
    } catch (err) {
      tally.errors++;
      tally.firstError ??= (err as Error).message;
      await sleep(1); // a failing library must not spin the CPU the others are measured on
    }
  }
  return tally;
}
