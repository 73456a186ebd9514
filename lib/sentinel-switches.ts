import Redis, { RedisOptions } from 'ioredis';
import type { RedisLike } from './store';

/** What a Sentinel-backed client was configured with, as far as following its master goes. */
type SentinelGroup = Pick<RedisOptions, 'sentinels' | 'name' | 'sentinelUsername' | 'sentinelPassword' | 'sentinelTLS'>;

/**
 * Moves a Sentinel group's connections to the new master as soon as Sentinel switches it. After a
 * planned failover (SENTINEL FAILOVER) the old master keeps taking writes until Sentinel demotes it,
 * ~10 s later: a connection still there would grant a lock that clients connecting anew grant on the
 * new master. So every sentinel is asked for `+switch-master`, and on a switch of this group's master
 * each connection not already there reconnects (through the sentinels, to the new master).
 * Not ioredis's failoverDetector: it also reconnects on other masters' switches, and quit() leaves
 * its connections open.
 */
export class SentinelSwitches {
  private readonly connections = new Set<RedisLike>();
  private watchers?: Redis[];
  /** The last new master acted on: every sentinel announces the same switch. */
  private lastSwitch = '';

  constructor(private readonly group: SentinelGroup) {}

  private closed = false;

  /** Follows the master's switches with `connection` until it ends, or until close(). */
  follow(connection: RedisLike): void {
    if (this.closed) return;
    this.connections.add(connection);
    connection.once('end', () => {
      this.connections.delete(connection);
      if (this.connections.size === 0) this.stop();
    });
    this.watchers ??= this.watch();
  }

  private watch(): Redis[] {
    const { sentinels = [], sentinelUsername, sentinelPassword, sentinelTLS } = this.group;
    return sentinels.map(({ host = 'localhost', port = 26379 }) => {
      const watcher = new Redis({
        host, port, username: sentinelUsername, password: sentinelPassword, tls: sentinelTLS,
        retryStrategy: times => Math.min(times * 100, 2000), maxRetriesPerRequest: null,
      });
      watcher.on('error', () => undefined); // a sentinel that is down: the others still tell
      watcher.on('message', (_channel: string, message: string) => this.switched(message));
      watcher.subscribe('+switch-master').catch(() => undefined);
      return watcher;
    });
  }

  /** `<master name> <old ip> <old port> <new ip> <new port>`, from Sentinel. */
  private switched(message: string): void {
    const [ name, , , host, port ] = message.split(' ');
    const to = `${host}:${port}`;
    if (name !== this.group.name || to === this.lastSwitch) return;
    this.lastSwitch = to;
    for (const connection of this.connections) {
      const stream = connection.stream;
      if (stream?.remoteAddress !== host || stream?.remotePort !== Number(port)) connection.disconnect(true);
    }
  }

  /** Stops listening; called when the store closes (a connection closed while reconnecting never ends). */
  close(): void {
    this.closed = true;
    this.connections.clear();
    this.stop();
  }

  private stop(): void {
    this.watchers?.forEach(watcher => watcher.disconnect());
    this.watchers = undefined;
  }
}
