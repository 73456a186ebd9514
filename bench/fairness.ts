import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import type { Lock } from '../lib/lock';
import type { Redlock } from '../lib/redlock';

export interface FairnessResult {
  waiters: number;
  /** How many of the waiters got the lock. */
  acquired: number;
  /** The waiters' arrival numbers, in the order they got the lock. */
  order: number[];
  inOrder: boolean;
}

/**
 * This plugin with `fair: true`: `clients[1..]` queue behind `clients[0]`, each arriving only once
 * the one before it is in the Redis queue; then the lock is passed down the line. Fair means every
 * waiter gets it, in arrival order.
 */
export async function measureFairness(clients: Redlock[], port: number, name: string): Promise<FairnessResult> {
  const view = new Redis({ port, host: '127.0.0.1' });
  try {
    const queueKey = `${clients[0].key(name)}:queue`;
    const holder = await clients[0].lock(name, 30000, { fair: true });
    const order: number[] = [];
    const waiting: Array<Promise<void>> = [];
    for (let i = 1; i < clients.length; i++) {
      waiting.push(clients[i].lock(name, 30000, { fair: true, waitTimeout: 60000 }).then(async (lock: Lock) => {
        order.push(i);
        await lock.unlock();
      }));
      while (await view.zcard(queueKey) < i) await sleep(2); // arrived, and queued in Redis
    }
    await holder.unlock();
    await Promise.allSettled(waiting);
    const expected = clients.slice(1).map((_, i) => i + 1);
    return { waiters: clients.length - 1, acquired: order.length, order, inOrder: order.join() === expected.join() };
  } finally {
    view.disconnect();
  }
}
