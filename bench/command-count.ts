import { setImmediate as nextTurn } from 'node:timers/promises';
import type Redis from 'ioredis';
import { connectRedis, quitAll } from './connections';

/**
 * Counts the commands Redis servers execute, two ways:
 * - `all`: the sum of `calls=` in `INFO commandstats`. Redis counts the commands a Lua script runs
 *   (`redis.call`) as well, so one EVALSHA of a 3-step script counts 4.
 * - `sent`: the commands clients sent (round trips), read from MONITOR, which tags script-internal
 *   commands with the source `lua`.
 * MONITOR costs the servers a little, so it is only on while commands are counted.
 */
export interface CommandCount {
  all: number;
  sent: number;
}

interface ServerCounter {
  inspector: Redis;
  monitor: Redis;
  /** Client-sent commands seen so far (not counting the counter's own `INFO commandstats`). */
  sent: number;
  /** `sent` at each of the counter's own `INFO commandstats`, in the server's execution order. */
  marks: number[];
}

/** How long to wait for MONITOR to show an INFO that has already answered (ms). */
const MARK_TIMEOUT = 2000;

export class CommandCounter {
  /** The counter's own INFO shows up in the next reading: measured once, on idle servers. */
  private ownCallsPerSnapshot = 0;

  private constructor(private readonly servers: ServerCounter[]) {}

  static async start(ports: number[]): Promise<CommandCounter> {
    const servers = await Promise.all(ports.map(async (port): Promise<ServerCounter> => {
      const inspector = await connectRedis(port);
      const monitor = await inspector.monitor(); // a second connection, in monitor mode
      const server: ServerCounter = { inspector, monitor, sent: 0, marks: [] };
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (args[0]?.toLowerCase() === 'info' && args[1]?.toLowerCase() === 'commandstats') server.marks.push(server.sent);
        else if (source !== 'lua') server.sent++;
      });
      return server;
    }));
    const counter = new CommandCounter(servers);
    const a = await counter.snapshot();
    const b = await counter.snapshot();
    counter.ownCallsPerSnapshot = b.all - a.all;
    return counter;
  }

  /** Cumulative counts on all servers now. Take two and subtract with `since`. */
  async snapshot(): Promise<CommandCount> {
    const counts = await Promise.all(this.servers.map(async server => {
      const mark = server.marks.length;
      const info = await server.inspector.info('commandstats');
      const deadline = Date.now() + MARK_TIMEOUT;
      while (server.marks.length <= mark) {
        if (Date.now() > deadline) throw new Error('MONITOR did not show INFO commandstats');
        await nextTurn();
      }
      return { all: sumCalls(info), sent: server.marks[mark] };
    }));
    return counts.reduce((total, c) => ({ all: total.all + c.all, sent: total.sent + c.sent }), { all: 0, sent: 0 });
  }

  /** Commands executed between two snapshots, without the counter's own. */
  since(before: CommandCount, after: CommandCount): CommandCount {
    return { all: after.all - before.all - this.ownCallsPerSnapshot, sent: after.sent - before.sent };
  }

  async close(): Promise<void> {
    for (const server of this.servers) server.monitor.disconnect();
    await quitAll(this.servers.map(s => s.inspector));
  }
}

function sumCalls(info: string): number {
  let total = 0;
  // `cmdstat_<name>:calls=N,...,rejected_calls=N,failed_calls=N`: only the first one.
  for (const match of info.matchAll(/:calls=(\d+)/g)) total += Number(match[1]);
  return total;
}
