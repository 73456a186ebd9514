import Redis, { Cluster, RedisOptions } from 'ioredis';
import type { Agent, Application } from 'egg';
import { CLUSTER_KEY_PREFIX, RedlockConfig, StoreSource, validateConfig } from './config';
import { LockUnavailableError } from './errors';
import { Redlock } from './redlock';
import { SentinelSwitches } from './sentinel-switches';
import { LockStore, RedisLike, whenReady } from './store';
import { quorum } from './timing';

type EggApp = Application | Agent;

/**
 * Options forced on the clients the plugin creates: a command to a node that is down fails at once
 * (no offline queue), and a command cut off by a disconnect is not silently re-sent later, when
 * its lease may have become someone else's.
 */
const LOCK_CLIENT_OPTIONS: RedisOptions = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 };

function address(options: { host?: string; port?: number; path?: string }): string {
  return options.path ?? `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
}

function reconnectDelay(times: number): number {
  return Math.min(times * 100, 2000);
}

function createStores(source: StoreSource, config: RedlockConfig, borrow: (name: string) => RedisLike): LockStore[] {
  const { commandTimeout, connectTimeout } = config;
  const own = { retryStrategy: reconnectDelay, connectTimeout };
  switch (source.kind) {
    case 'clients':
      return source.clients.map(options => new LockStore(
        new Redis({ ...own, ...options, ...LOCK_CLIENT_OPTIONS }) as unknown as RedisLike, address(options), true, commandTimeout));
    case 'cluster': {
      const { nodes, redisOptions, ...options } = source.cluster;
      const client = new Cluster(nodes, {
        clusterRetryStrategy: reconnectDelay, ...options, ...LOCK_CLIENT_OPTIONS,
        redisOptions: { connectTimeout, ...redisOptions, ...LOCK_CLIENT_OPTIONS },
      });
      return [ new LockStore(client as unknown as RedisLike, `cluster(${nodes.map(address).join(',')})`, true, commandTimeout) ];
    }
    case 'sentinel': {
      const { sentinels, name } = source.sentinel;
      const client = new Redis({ ...own, ...source.sentinel, ...LOCK_CLIENT_OPTIONS }) as unknown as RedisLike;
      const store = new LockStore(client, `sentinel(${name}@${sentinels.map(address).join(',')})`, true, commandTimeout);
      store.switches = new SentinelSwitches(source.sentinel);
      store.switches.follow(client);
      return [ store ];
    }
    default: // 'redis': clients borrowed from egg-redis
      return source.names.map(name => {
        const client = borrow(name);
        return new LockStore(client, `egg-redis:${name}`, false, commandTimeout);
      });
  }
}

/** An egg-redis client by name: `'default'` is its single `client`, other names come from `clients`. */
function borrowRedis(app: EggApp, name: string): RedisLike {
  const redis = (app as any).redis;
  const side = app.type === 'agent' ? 'agent' : 'app';
  if (!redis) {
    throw new TypeError(`[egg-distributed-lock] config.redlock.redis names egg-redis client '${name}', but egg-redis is not enabled on the ${side}` +
      (side === 'agent' ? ' (set config.redis.agent = true)' : ''));
  }
  const client = redis.clients instanceof Map ? redis.clients.get(name) : name === 'default' ? redis : undefined;
  if (!client) {
    const known = redis.clients instanceof Map ? [ ...redis.clients.keys() ] : [ 'default' ];
    throw new TypeError(`[egg-distributed-lock] config.redlock.redis: no egg-redis client '${name}' (known: ${known.join(', ')})`);
  }
  if (client.isCluster && client.options?.keyPrefix) {
    throw new TypeError(`[egg-distributed-lock] config.redlock.redis: egg-redis client '${name}' is a Cluster with keyPrefix '${client.options.keyPrefix}': ${CLUSTER_KEY_PREFIX}`);
  }
  return client;
}

export interface Logger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** The lock client of an Egg app or agent, from its `config.redlock`. */
export function createRedlock(app: EggApp): Promise<Redlock> {
  return connectRedlock(app.config.redlock, app.coreLogger, name => borrowRedis(app, name), app.type);
}

/**
 * Builds a lock client and waits until a quorum of its nodes is connected. Fails (naming the nodes
 * and reasons) when no quorum connects: a fleet whose locks cannot work would otherwise run every
 * job everywhere or nowhere without saying so.
 */
export async function connectRedlock(config: RedlockConfig, logger: Logger,
  borrow: (name: string) => RedisLike = () => { throw new TypeError('[egg-distributed-lock] config.redlock.redis needs an Egg app'); },
  side = 'client'): Promise<Redlock> {
  const source = validateConfig(config);
  const stores = createStores(source, config, borrow);
  if (config.fair && stores.length > 1) {
    await Promise.all(stores.map(store => store.close()));
    throw new TypeError('[egg-distributed-lock] config.redlock.fair needs one logical Redis node (single, Cluster or Sentinel), ' +
      `got ${stores.length} independent masters: each could put a different waiter first`);
  }
  if (stores.length > 1 && stores.length % 2 === 0) {
    logger.warn('[egg-distributed-lock] %d Redlock masters: an even number tolerates no more failures than %d; use 3 or 5',
      stores.length, stores.length - 1);
  }
  for (const store of stores) watchConnection(logger, store);

  const results = await Promise.allSettled(stores.map(store => whenReady(store.client, config.connectTimeout, true)));
  const connected = results.filter(r => r.status === 'fulfilled').length;
  const outcomes = results.map((r, i) => (r.status === 'fulfilled'
    ? { node: stores[i].node, status: 'granted' as const }
    : { node: stores[i].node, status: 'error' as const, error: (r.reason as Error).message }));
  if (connected < quorum(stores.length)) {
    await Promise.all(stores.map(store => store.close()));
    throw new LockUnavailableError([], outcomes,
      `cannot boot: ${connected} of ${stores.length} Redis nodes of config.redlock.${source.kind} connected, ${quorum(stores.length)} needed: ` +
      outcomes.filter(o => o.status === 'error').map(o => `${o.node} (${o.error})`).join('; '));
  }
  await Promise.all(stores.map(store => store.detectShardedWakes()));
  logger.info('[egg-distributed-lock] %s ready: %d of %d node(s) connected (%s), quorum %d', side, connected, stores.length,
    stores.map(s => s.node).join(', '), quorum(stores.length));
  return new Redlock(stores, config, logger);
}

/** One log line when a node goes away and one when it is back, not one per reconnect attempt. */
function watchConnection(logger: Logger, store: LockStore): void {
  let down = false;
  store.client.on('error', (err: Error) => {
    if (down) return;
    down = true;
    logger.error('[egg-distributed-lock] Redis %s unreachable: %s', store.node, err.message);
  });
  store.client.on('ready', () => {
    if (!down) return;
    down = false;
    logger.info('[egg-distributed-lock] Redis %s reconnected', store.node);
  });
}
