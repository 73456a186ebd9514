/**
 * The lock libraries under test, behind one small interface. Each `connect()` is one "client": its
 * own Redis connections, as a separate process would have. Every library runs with its DEFAULT retry
 * settings; only a waiter's overall bound is raised (see `acquireWaiting`) so a long queue does not
 * give up half-way, each keeping its default retry pace.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Redlock4 from 'redlock';
import Redlock5, { Lock as Lock5 } from 'redlock5';
import { Mutex, RedlockMutex } from 'redis-semaphore';
import { connectRedlock } from '../lib/boot';
import { defaultConfig } from '../lib/config';
import { newLockValue } from '../lib/keys';
import type { Lock } from '../lib/lock';
import type { Redlock } from '../lib/redlock';
import type { WakeBy } from '../lib/store';
import { connectAll, quitAll } from './connections';
import type { QuietLogger } from './quiet-logger';

/** Lease of every lock the bench takes (ms): far longer than any hold, so nothing expires. */
export const LOCK_TTL = 10000;

/** How long a waiter may wait in all (ms): far longer than any queue in the bench, so none gives up. */
export const WAIT_BOUND = 30000;

/** Every library locks the same key shape as the plugin (`${prefix}_${name}`). */
const key = (name: string) => `${defaultConfig.prefix}_${name}`;

/** A lock held by a client. */
export interface Held {
  release(): Promise<void>;
}

export interface LockClient {
  /** Takes the lock with the library's default retries. */
  acquire(name: string): Promise<Held>;
  /** Takes the lock, waiting up to about WAIT_BOUND ms: the library's own bound raised, its retry pace kept. */
  acquireWaiting(name: string): Promise<Held>;
  close(): Promise<void>;
}

export interface Contender {
  /** Row label, with the version installed. */
  label: string;
  /** The raw floor, which the ratios are taken against. */
  isFloor?: boolean;
  /** A reference row that is no lock library (the floors): it is only measured uncontended. */
  isReference?: boolean;
  isPlugin?: boolean;
  connect(ports: number[]): Promise<LockClient>;
}

/** The installed version of a package (or of this project, given `..`), from its package.json. */
export function versionOf(packageDir: string): string {
  const file = path.join(__dirname, packageDir, 'package.json');
  return String(JSON.parse(readFileSync(file, 'utf8')).version).replace(/^v/, '');
}

const installed = (pkg: string) => versionOf(path.join('..', 'node_modules', pkg));


/** node-redlock bounds a wait by attempts: at its default delay of 200 ± 100 ms, this many cover WAIT_BOUND. */
const WAIT_RETRIES = Math.ceil(WAIT_BOUND / 100);

/** The two bare round trips a lock needs at least: SET NX PX, then DEL (in parallel on every master). */
export const rawFloor: Contender = {
  label: '**raw floor**: bare `SET NX PX` + `DEL`, no library',
  isFloor: true,
  isReference: true,
  async connect(ports) {
    const clients = await connectAll(ports);
    const acquire = async (name: string): Promise<Held> => {
      const k = key(name);
      await Promise.all(clients.map(c => c.set(k, 'v', 'PX', LOCK_TTL, 'NX')));
      return { release: async () => { await Promise.all(clients.map(c => c.del(k))); } };
    };
    return {
      acquire,
      acquireWaiting: () => Promise.reject(new Error('the raw floor does not wait')),
      close: () => quitAll(clients),
    };
  },
};

/** The owner check every safe release needs, and nothing else (what redis-semaphore and node-redlock run). */
const COMPARE_AND_DELETE = 'if redis.call(\'get\', KEYS[1]) == ARGV[1] then return redis.call(\'del\', KEYS[1]) end return 0';

/**
 * The cheapest lock that never deletes another holder's key: `SET NX PX` with a random value, then a
 * compare-and-delete script, no library around them. No fencing token, no waiting: a lower bound for
 * an owner-checked lock, to read the raw-floor ratio against.
 */
export const ownerCheckedFloor: Contender = {
  label: '*owner-checked floor*: bare `SET NX PX` + compare-and-delete script, no library',
  isReference: true,
  async connect(ports) {
    const clients = await connectAll(ports);
    const [ sha ] = await Promise.all(clients.map(c => c.script('LOAD', COMPARE_AND_DELETE) as Promise<string>));
    const acquire = async (name: string): Promise<Held> => {
      const k = key(name);
      const value = newLockValue();
      await Promise.all(clients.map(c => c.set(k, value, 'PX', LOCK_TTL, 'NX')));
      return { release: async () => { await Promise.all(clients.map(c => c.evalsha(sha, 1, k, value))); } };
    };
    return {
      acquire,
      acquireWaiting: () => Promise.reject(new Error('the owner-checked floor does not wait')),
      close: () => quitAll(clients),
    };
  },
};

export function plugin(logger: QuietLogger): Contender {
  return {
    label: `egg-distributed-lock ${versionOf('..')} (this plugin)`,
    isPlugin: true,
    connect: async ports => pluginClient(await connectPlugin(ports, logger)),
  };
}

/** A lock client of this plugin behind the bench's interface. */
export function pluginClient(redlock: Redlock): LockClient {
  const hold = (lock: Lock): Held => ({
    release: async () => {
      if (!await lock.unlock()) throw new Error(`${lock.key} had expired or been taken before release`);
    },
  });
  return {
    acquire: async name => hold(await redlock.lock(name, LOCK_TTL)),
    // retryCount -1: no attempt limit, so only waitTimeout bounds the wait; delay/jitter stay default.
    acquireWaiting: async name => hold(await redlock.lock(name, LOCK_TTL, { retryCount: -1, waitTimeout: WAIT_BOUND })),
    close: () => redlock.close(),
  };
}

/**
 * The plugin on a Redis Cluster (any node's port finds the rest), its waiters woken as `wakeBy` says:
 * 'spublish' is what it detects on Redis 7; 'broadcast' is forced, as a Redis 6 Cluster would leave it.
 */
export function pluginOnCluster(logger: QuietLogger, wakeBy: WakeBy): Contender {
  return {
    label: `egg-distributed-lock ${versionOf('..')} (this plugin) on a Redis Cluster, waking by ${wakeBy}`,
    isPlugin: true,
    async connect([ port ]) {
      const redlock = await connectRedlock({ ...defaultConfig, cluster: { nodes: [{ host: '127.0.0.1', port }] } }, logger);
      const [ store ] = redlock.stores;
      if (wakeBy === 'spublish' && store.wakeBy !== 'spublish') {
        await redlock.close();
        throw new Error(`this Redis Cluster has no sharded pub/sub (the plugin chose ${store.wakeBy})`);
      }
      store.wakeBy = wakeBy;
      return pluginClient(redlock);
    },
  };
}

/** The plugin's lock client with its default config, over the given servers. */
export function connectPlugin(ports: number[], logger: QuietLogger): Promise<Redlock> {
  return connectRedlock({ ...defaultConfig, clients: ports.map(port => ({ host: '127.0.0.1', port })) }, logger);
}

export const nodeRedlock4: Contender = {
  label: `redlock ${installed('redlock')} (node-redlock)`,
  async connect(ports) {
    const clients = await connectAll(ports);
    const redlock = new Redlock4(clients as any);
    // node-redlock 4 takes the attempt count per instance (its per-call lockWithOptions is untyped),
    // so waiters use a second instance on the same connections; delay and jitter stay default.
    const patient = new Redlock4(clients as any, { retryCount: WAIT_RETRIES });
    const hold = (lock: Redlock4.Lock): Held => ({ release: async () => { await lock.unlock(); } });
    return {
      acquire: async name => hold(await redlock.lock(key(name), LOCK_TTL)),
      acquireWaiting: async name => hold(await patient.lock(key(name), LOCK_TTL)),
      close: () => quitAll(clients),
    };
  },
};

export const nodeRedlock5: Contender = {
  label: `redlock ${installed('redlock5')} (node-redlock 5)`,
  async connect(ports) {
    const clients = await connectAll(ports);
    const redlock = new Redlock5(clients as any);
    const hold = (lock: Lock5): Held => ({ release: async () => { await lock.release(); } });
    return {
      acquire: async name => hold(await redlock.acquire([ key(name) ], LOCK_TTL)),
      acquireWaiting: async name => hold(await redlock.acquire([ key(name) ], LOCK_TTL, { retryCount: WAIT_RETRIES })),
      close: () => quitAll(clients),
    };
  },
};

export const redisSemaphore: Contender = {
  label: `redis-semaphore ${installed('redis-semaphore')} (Mutex / RedlockMutex)`,
  async connect(ports) {
    const clients = await connectAll(ports);
    // One lock object per acquisition, as the library is meant to be used (it binds key and identifier).
    // A waiter raises acquireTimeout (default 10 s); retryInterval stays at its default 10 ms.
    const mutex = (name: string, acquireTimeout?: number) => {
      const options = { lockTimeout: LOCK_TTL, ...(acquireTimeout ? { acquireTimeout } : {}) };
      return clients.length === 1 ? new Mutex(clients[0], key(name), options) : new RedlockMutex(clients, key(name), options);
    };
    const take = async (lock: Mutex | RedlockMutex): Promise<Held> => {
      await lock.acquire();
      return { release: () => lock.release() };
    };
    return {
      acquire: name => take(mutex(name)),
      acquireWaiting: name => take(mutex(name, WAIT_BOUND)),
      close: () => quitAll(clients),
    };
  },
};
