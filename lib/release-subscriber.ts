import { releaseChannel, shardedWakeChannel } from './keys';
import { LockStore, RedisLike, whenReady } from './store';

/**
 * How often (ms) a Cluster's shard subscriber re-reads the slot map, unless the Cluster client sets
 * `slotsRefreshInterval`. A client that only waits sends no command that could be answered MOVED,
 * so without it a waiter whose key's slot moved would stay subscribed on the old node, unwoken.
 */
const SLOTS_REFRESH_MS = 5000;

/** Called when a release wakes the waiter. */
type Listener = () => void;

interface Channel {
  listeners: Set<Listener>;
  subscribed: Promise<unknown>;
}

/**
 * One subscriber connection per Redis node, shared by every waiter of a lock client (`store.wakeBy`
 * says how releases wake). By PUBLISH the client listens on its one wake channel from its first
 * wait on, and each wake names the key it is for; so a later wait needs no SUBSCRIBE, and its first
 * attempt can already join the queue. On a Cluster, by SPUBLISH, it subscribes its wake channel for
 * a key's slot while someone waits for the key (wakes still name their key); by broadcast it
 * subscribes `<key>:released`. Either way an idle client receives nothing.
 */
export class ReleaseSubscriber {
  private connection?: Promise<RedisLike>;
  private subscriber?: RedisLike;
  /** Subscribed channels: the wake channel (kept), or the shard wake or release channels of keys waited for. */
  private readonly channels = new Map<string, Channel>();
  /** Waiters by key, woken through the wake channel or the shard wake channels (each wake names its key). */
  private readonly waiters = new Map<string, Set<Listener>>();
  private listening = false;

  constructor(
    readonly store: LockStore,
    private readonly timeoutMs: number,
    readonly wakeChannel: string,
    /** A wake for a key nobody of this client waits for (see `wake`). */
    private readonly onStray: (key: string, store: LockStore, value: string) => void,
  ) {}

  /** Whether a wake published now would be heard: the wake channel is subscribed and connected. */
  get ready(): boolean {
    return this.listening && this.subscriber?.status === 'ready';
  }

  /**
   * Calls `onRelease` whenever one of `keys` is released for this waiter, from the moment this
   * resolves until the returned function is called. Rejects when the client's wake channel cannot be
   * subscribed; per-key channels (on a Cluster) that cannot be are skipped. Either way the caller
   * then relies on its timer.
   */
  async watch(keys: string[], onRelease: Listener): Promise<() => void> {
    const { wakeBy } = this.store;
    if (wakeBy === 'broadcast') return this.subscribeEach(keys.map(releaseChannel), onRelease);
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
    if (wakeBy === 'spublish') {
      const unsubscribe = await this.subscribeEach(keys.map(key => shardedWakeChannel(key, this.wakeChannel)), onRelease);
      return () => {
        stop();
        unsubscribe();
      };
    }
    try {
      await this.subscribe(this.wakeChannel);
      this.listening = true;
    } catch (err) {
      stop();
      throw err;
    }
    return stop;
  }

  /** Subscribes each channel that can be, for as long as `listener` needs it. */
  private async subscribeEach(channels: string[], listener: Listener): Promise<() => void> {
    const watches = await Promise.allSettled(channels.map(channel => this.subscribe(channel, listener)));
    const stops = watches.flatMap(w => (w.status === 'fulfilled' ? [ w.value ] : []));
    return () => stops.forEach(stop => stop());
  }

  /**
   * Subscribes `name` once; with a listener, until the last listener is gone (the wake channel,
   * without one, stays). Rejects when the node cannot be reached in time.
   */
  private async subscribe(name: string, onMessage?: Listener): Promise<() => void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscribed = this.store.bounded(this.connect().then(subscriber => this.subscribeOn(subscriber, name)));
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
      this.connection?.then(subscriber => subscriber[this.sharded ? 'sunsubscribe' : 'unsubscribe'](name)).catch(() => undefined);
    };
  }

  /**
   * A wake, `<value>\n<key>` (the released value, or a fair waiter's forwarded to the head of the
   * fair queue): for this client's waiter of the key, else a stray.
   */
  private wake(message: string): void {
    const split = message.indexOf('\n');
    const key = message.slice(split + 1 + this.store.keyPrefix.length);
    const listeners = this.waiters.get(key);
    if (!listeners) return this.onStray(key, this.store, message.slice(0, split));
    for (const listener of listeners) listener();
  }

  /** Sends the SUBSCRIBE (or, for shard channels, SSUBSCRIBE) of one channel. */
  private subscribeOn(subscriber: RedisLike, name: string): Promise<unknown> {
    return subscriber[this.sharded ? 'ssubscribe' : 'subscribe'](name);
  }

  /** Whether the channels are shard channels (SSUBSCRIBE on the node that owns their slot). */
  private get sharded(): boolean {
    return this.store.wakeBy === 'spublish';
  }

  private connect(): Promise<RedisLike> {
    if (!this.connection) {
      const { client } = this.store;
      const subscriber = (this.sharded
        ? client.duplicate(undefined, { shardedSubscribers: true, slotsRefreshInterval: client.options.slotsRefreshInterval || SLOTS_REFRESH_MS })
        : client.duplicate()) as RedisLike;
      subscriber.on('error', () => undefined); // the lock's own client reports outages
      this.store.switches?.follow(subscriber);
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === this.wakeChannel) this.wake(message);
        else for (const listener of this.channels.get(channel)?.listeners ?? []) listener();
      });
      subscriber.on('smessage', (_channel: string, message: string) => this.wake(message));
      this.connection = whenReady(subscriber, this.timeoutMs).then(() => {
        this.subscriber = subscriber;
        subscriber.on('ready', () => this.resubscribed(subscriber)); // every later 'ready' is a reconnect
        // A Cluster rebuilds a node's shard subscriber (its node restarted, failed over, or the slot
        // moved) without a 'ready': it says so once the group is subscribed again.
        if (this.sharded) subscriber.on('subscribersReady', () => this.resubscribed(subscriber));
        return subscriber;
      }, err => {
        this.connection = undefined;
        subscriber.disconnect();
        throw err;
      });
    }
    return this.connection;
  }

  /**
   * After a reconnect (or a shard subscriber rebuilt): a release published while the connection was
   * down (or before ioredis's own re-SUBSCRIBE reached Redis) was heard by nobody and dropped this
   * client's waiters from its queue. So once a SUBSCRIBE sent now is answered — Redis has the
   * subscriptions again — every waiter checks again (and queues again if the key is still held).
   */
  private resubscribed(subscriber: RedisLike): void {
    const channels = [ ...this.channels.keys() ];
    if (channels.length === 0) return;
    this.store.bounded(Promise.all(channels.map(name => this.subscribeOn(subscriber, name)))).then(() => {
      for (const listeners of this.waiters.values()) for (const listener of listeners) listener();
      for (const { listeners } of this.channels.values()) for (const listener of listeners) listener();
    }, () => undefined); // down again: the next reconnect tries again
  }

  close(): void {
    this.channels.clear();
    this.waiters.clear();
    this.listening = false;
    this.connection?.then(subscriber => subscriber.disconnect(), () => undefined);
    this.connection = undefined;
  }
}
