import type { LockClient } from './contenders';
import { nowUs, percentile } from './stats';

export interface UncontendedResult {
  ops: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** CPU this process (the lock client) spent per acquire+release, µs: steadier than time on a noisy VM. */
  clientCpuUs: number;
  /** CPU the Redis servers spent per acquire+release (INFO cpu, all servers), µs. */
  serverCpuUs: number;
}

export interface UncontendedPlan {
  warmup: number;
  ops: number;
  /** The measured ops are split into this many blocks, taken in turn by each contender. */
  blocks: number;
}

/**
 * Sequential acquire+release of one name by one client. The contenders take turns block by block
 * (raw floor, then each library, then again), so a slow spell of the machine — 2 cores shared with
 * the Redis servers — falls on all of them alike instead of on whichever ran at that moment.
 */
export async function measureUncontended(clients: LockClient[], plan: UncontendedPlan, name: string,
  serverCpuUs: () => Promise<number>): Promise<UncontendedResult[]> {
  // Each contender its own name: a lock library must never find another's key (or a late DEL of it).
  const names = clients.map((_, i) => `${name}-${i}`);
  for (const [ i, client ] of clients.entries()) await run(client, names[i], plan.warmup, []);
  const latencies: number[][] = clients.map(() => []);
  const busyUs = clients.map(() => 0);
  const clientCpu = clients.map(() => 0);
  const serverCpu = clients.map(() => 0);
  const perBlock = Math.ceil(plan.ops / plan.blocks);
  for (let block = 0; block < plan.blocks; block++) {
    for (const [ i, client ] of clients.entries()) {
      const server = await serverCpuUs();
      const cpu = process.cpuUsage();
      busyUs[i] += await run(client, names[i], perBlock, latencies[i]);
      const used = process.cpuUsage(cpu);
      clientCpu[i] += used.user + used.system;
      serverCpu[i] += await serverCpuUs() - server;
    }
  }
  return latencies.map((samples, i) => ({
    ops: samples.length,
    opsPerSec: samples.length / (busyUs[i] / 1e6),
    p50Us: percentile(samples, 50),
    p99Us: percentile(samples, 99),
    clientCpuUs: clientCpu[i] / samples.length,
    serverCpuUs: serverCpu[i] / samples.length,
  }));
}

/** `ops` acquire+release cycles; pushes each cycle's latency (µs) and returns the total time (µs). */
async function run(client: LockClient, name: string, ops: number, latencies: number[]): Promise<number> {
  const start = nowUs();
  for (let i = 0; i < ops; i++) {
    const t0 = nowUs();
    const held = await client.acquire(name);
    await held.release();
    latencies.push(nowUs() - t0);
  }
  return nowUs() - start;
}
