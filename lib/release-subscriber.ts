import { releaseChannel } from './keys';
import { LockStore, RedisLike, whenReady } from './store';

/** Called when a release wakes the waiter. */
type Listener = () => void;

interface Channel {
  listeners: Set<Listener>;
  subscribed: Promise<unknown>;
}

/**
 * One subscriber connection per Redis node, shared by every waiter of a lock client. Where releases
 * hand over (`store.handsOver`) the client listens on its one wake channel from its first wait on,
 * and each wake names the key it is for; so a later wait needs no SUBSCRIBE, and its first attempt
 * can already join the queue. On a Cluster it subscribes `<key>:released` while someone waits for
 * the key. Either way an idle client receives nothing: a wake goes to the one waiter it is for.
 */
export class ReleaseSubscriber {
  private connection?: Promise<RedisLike>;
  private subscriber?: RedisLike;
  /** Subscribed channels: the wake channel (kept), or the release channels of keys waited for. */
  private readonly channels = new Map<string, Channel>();
  /** Waiters by key, woken through the wake channel. */
  private readonly waiters = new Map<string, Set<Listener>>();
  private listening = false;

  constructor(
    readonly store: LockStore,
    private readonly timeoutMs: number,
    readonly wakeChannel: string,
    /** A wake for a key nobody of this client waits for (see `wake`). */
    private readonly onStray: (key: string, store: LockStore) => void,
  ) {}

  /** Whether a wake published now would be heard: the wake channel is subscribed and connected. */
  get ready(): boolean {
    return this.listening && this.subscriber?.status === 'ready';
  }

  /**
   * Calls `onRelease` whenever one of `keys` is released for this waiter, from the moment this
   * resolves until the returned function is called. Rejects when the node cannot be reached (the
   * caller then relies on its timer).
   */
  async watch(keys: string[], onRelease: Listener): Promise<() => void> {
    if (!this.store.handsOver) {
      const watches = await Promise.allSettled(keys.map(key => this.subscribe(releaseChannel(key), onRelease)));
      const stops = watches.flatMap(w => (w.status === 'fulfilled' ? [ w.value ] : []));
      return () => stops.forEach(stop => stop());
    }
    for (const key of keys) {
      const listeners = this.waiters.get(key) ?? new Set();
      this.waiters.set(key, listeners.add(onRelease));
    }
    const stop = () => {
      for (const key of keys) {
        const listeners = this.waiters.get(key);
        if (listeners?.delete(onRelease) && listeners.size === 0) this.waiters.delete(key);
      }
    };
    try {
      await this.subscribe(this.wakeChannel);
      this.listening = true;
    } catch (err) {
      stop();
      throw err;
    }
    return stop;
  }

  /**
   * Subscribes `name` once; with a listener, until the last listener is gone (the wake channel,
   * without one, stays). Rejects when the node cannot be reached in time.
   */
  private async subscribe(name: string, onMessage?: Listener): Promise<() => void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscribed = this.store.bounded(this.connect().then(subscriber => subscriber.subscribe(name)));
      channel = { listeners: new Set(), subscribed };
      this.channels.set(name, channel);
      subscribed.catch(() => this.channels.get(name) === channel && this.channels.delete(name));
    }
    const { listeners } = channel;
    if (onMessage) listeners.add(onMessage);
    try {
      await channel.subscribed;
    } catch (err) {
      if (onMessage) listeners.delete(onMessage);
      throw err;
    }
    return () => {
      if (!onMessage) return;
      listeners.delete(onMessage);
      if (listeners.size > 0 || this.channels.get(name) !== channel) return;
      this.channels.delete(name);
      this.connection?.then(subscriber => subscriber.unsubscribe(name)).catch(() => undefined);
    };
  }

  /**
   * A wake, `<released value>\n<key>` (the value is only there for whoever reads MONITOR): for this
   * client's waiter of the key, else a stray.
   */
  private wake(message: string): void {
    const key = message.slice(message.indexOf('\n') + 1);
    const listeners = this.waiters.get(key);
    if (!listeners) return this.onStray(key, this.store);
    for (const listener of listeners) listener();
  }

  private connect(): Promise<RedisLike> {
    if (!this.connection) {
      const subscriber = this.store.client.duplicate() as RedisLike;
      subscriber.on('error', () => undefined); // the lock's own client reports outages
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === this.wakeChannel) this.wake(message);
        else for (const listener of this.channels.get(channel)?.listeners ?? []) listener();
      });
      this.connection = whenReady(subscriber, this.timeoutMs).then(() => {
        this.subscriber = subscriber;
        return subscriber;
      }, err => {
        this.connection = undefined;
        subscriber.disconnect();
        throw err;
      });
    }
    return this.connection;
  }

  close(): void {
    this.channels.clear();
    this.waiters.clear();
    this.listening = false;
    this.connection?.then(subscriber => subscriber.disconnect(), () => undefined);
    this.connection = undefined;
  }
}
