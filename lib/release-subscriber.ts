import { LockStore, RedisLike, whenReady, withTimeout } from './store';

/** Called with the released lock's value ('' when a waiter left a queue while the key was free). */
type Listener = (release: string) => void;

interface Channel {
  listeners: Set<Listener>;
  subscribed: Promise<unknown>;
}

/**
 * One subscriber connection per Redis node, shared by every waiter of this process: the release
 * script publishes on a waiter's own wake channel or on `<key>:released` (keys.ts), and this wakes
 * the waiters listening there. Channels are subscribed while someone waits and dropped after, so
 * idle processes receive nothing.
 */
export class ReleaseSubscriber {
  private connection?: Promise<RedisLike>;
  private readonly channels = new Map<string, Channel>();

  constructor(readonly store: LockStore, private readonly timeoutMs: number) {}

  /**
   * Calls `onRelease` for every message on channel `name`, from the moment this resolves until the
   * returned function is called. Rejects when the node cannot be reached (the caller then relies on its timer).
   */
  async watch(name: string, onRelease: Listener): Promise<() => void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscribed = withTimeout(this.connect().then(subscriber => subscriber.subscribe(name)), this.timeoutMs);
      channel = { listeners: new Set(), subscribed };
      this.channels.set(name, channel);
      subscribed.catch(() => this.channels.get(name) === channel && this.channels.delete(name));
    }
    const { listeners } = channel;
    listeners.add(onRelease);
    try {
      await channel.subscribed;
    } catch (err) {
      listeners.delete(onRelease);
      throw err;
    }
    return () => {
      listeners.delete(onRelease);
      if (listeners.size > 0 || this.channels.get(name) !== channel) return;
      this.channels.delete(name);
      this.connection?.then(subscriber => subscriber.unsubscribe(name)).catch(() => undefined);
    };
  }

  private connect(): Promise<RedisLike> {
    if (!this.connection) {
      const subscriber = this.store.client.duplicate() as RedisLike;
      subscriber.on('error', () => undefined); // the lock's own client reports outages
      subscriber.on('message', (channel: string, release: string) => {
        for (const listener of this.channels.get(channel)?.listeners ?? []) listener(release);
      });
      this.connection = whenReady(subscriber, this.timeoutMs).then(() => subscriber, err => {
        this.connection = undefined;
        subscriber.disconnect();
        throw err;
      });
    }
    return this.connection;
  }

  close(): void {
    this.channels.clear();
    this.connection?.then(subscriber => subscriber.disconnect(), () => undefined);
    this.connection = undefined;
  }
}
