import type { ClusterOptions, RedisOptions, SentinelAddress } from 'ioredis';
import { fitsOneClusterSlot } from './keys';
import { canLease, clockDrift, MAX_TIMER_MS } from './timing';

/** One Redis server given by address (a single node, or one of 3/5 independent Redlock masters). */
export type RedisClientOptions = RedisOptions;

export interface ScheduleLockConfig {
  /** Wrap the app's `type: 'worker'` schedules so each fire runs once across the fleet. */
  enable: boolean;
  /** Lease of a job lock (ms), extended half-way through each lease while the job runs. */
  ttl?: number;
  /** What to do when Redis cannot be reached: `skip` the run (default) or `run` it anyway. */
  onUnavailable: 'skip' | 'run';
  /**
   * How far (ms) machines' clocks may differ: a cron fire's lock is held until min(half the period,
   * this) after the fire time, so a machine that fires the same tick later still finds it taken.
   */
  clockTolerance: number;
}

/** `config.redlock`, as users write it. Exactly one of clients / cluster / sentinel / redis. */
export interface RedlockConfig {
  clients?: RedisClientOptions[];
  cluster?: { nodes: Array<{ host: string; port: number }>; redisOptions?: ClusterOptions['redisOptions'] } & ClusterOptions;
  sentinel?: { sentinels: Array<Partial<SentinelAddress>>; name: string } & RedisOptions;
  /** Reuse egg-redis clients by name (`'default'` is egg-redis's single `client`). */
  redis?: string | string[];
  /** Lock key = `${prefix}_${name}`. */
  prefix: string;
  /** Default lease, ms. Long enough for a job to be extended well before it ends. */
  ttl: number;
  /** Attempts after the first, the delay between them (ms) and random jitter added (ms): node-redlock's names and defaults. */
  retryCount: number;
  retryDelay: number;
  retryJitter: number;
  /** Redlock clock drift allowance: ttl * driftFactor + 2 ms is taken off every lease. */
  driftFactor: number;
  /** Upper bound (ms) on the whole wait inside `lock()`; 0 = only retryCount bounds it. */
  waitTimeout: number;
  /** Grant locks to waiters in arrival order (one name, one logical Redis node); per call: `{ fair }`. */
  fair: boolean;
  /** `using()` stops extending after this long (ms), so a runaway routine cannot hold a lock forever. */
  maxHold: number;
  /** One Redis command may take this long (ms) before its node counts as failed. */
  commandTimeout: number;
  /** How long boot waits (ms) for a quorum of nodes to connect before failing. */
  connectTimeout: number;
  app: boolean;
  agent: boolean;
  schedule: ScheduleLockConfig;
}

export const defaultConfig: RedlockConfig = {
  prefix: 'JOB_LOCKER',
  ttl: 10 * 60 * 1000,
  retryCount: 10,
  retryDelay: 200,
  retryJitter: 100,
  driftFactor: 0.01,
  waitTimeout: 0,
  fair: false,
  maxHold: 60 * 60 * 1000,
  commandTimeout: 2000,
  connectTimeout: 10000,
  app: true,
  agent: false,
  // A job lease is extended while the job runs, so it can be short: a crashed worker's job is free again within a minute.
  schedule: { enable: true, ttl: 60 * 1000, onUnavailable: 'skip', clockTolerance: 5 * 60 * 1000 },
};

/** Where the locks live, after validation: exactly one source. */
export type StoreSource =
  | { kind: 'clients'; clients: RedisClientOptions[] }
  | { kind: 'cluster'; cluster: NonNullable<RedlockConfig['cluster']> }
  | { kind: 'sentinel'; sentinel: NonNullable<RedlockConfig['sentinel']> }
  | { kind: 'redis'; names: string[] };

const PREFIX = '[egg-distributed-lock]';

/** Why a Cluster client may not have an ioredis keyPrefix. */
export const CLUSTER_KEY_PREFIX = 'ioredis would put it before the lock key and its companion keys alike, so they would no longer ' +
  'share a slot and every lock would fail with CROSSSLOT; use config.redlock.prefix';

function fail(field: string, expected: string, got: unknown): never {
  throw new TypeError(`${PREFIX} config.redlock.${field} must be ${expected}, got ${describe(got)}`);
}

/** A config value as an error shows it: never the credentials of a URL (`redis://user:pass@host`). */
function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.replace(/\/\/\S*@/, '//***@')); // to the last @, as ioredis splits
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null || typeof value !== 'object') return String(value);
  return 'an object';
}

function checkInteger(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(field, `an integer between ${min} and ${max}`, value);
  }
  return value;
}

/** A lease: also longer than its clock-drift allowance, or every lock taken with it fails (arguments.ts#checkLeaseTtl). */
function checkLease(field: string, ttl: unknown, driftFactor: number): void {
  const checked = checkInteger(field, ttl, 1, MAX_TIMER_MS);
  if (!canLease(checked, driftFactor)) {
    fail(field, `more than its clock-drift allowance (${clockDrift(checked, driftFactor)} ms for driftFactor ${driftFactor})`, ttl);
  }
}

function checkAddress(field: string, node: unknown): void {
  if (!node || typeof node !== 'object') fail(field, 'an object like { host, port }', node);
  const { host, port, path } = node as { host?: unknown; port?: unknown; path?: unknown };
  if (path !== undefined) {
    if (typeof path !== 'string' || !path) fail(`${field}.path`, 'a non-empty socket path', path);
    return;
  }
  if (host !== undefined && (typeof host !== 'string' || !host)) fail(`${field}.host`, 'a non-empty string', host);
  if (port !== undefined) checkInteger(`${field}.port`, port, 1, 65535);
}

/** Validates `config.redlock` and tells where locks live. Throws a TypeError naming the field. */
export function validateConfig(config: RedlockConfig): StoreSource {
  if (!config || typeof config !== 'object') fail('', 'an object', config);
  // null counts as unset: an environment's config can clear the default file's store to set another.
  const given = ([ 'clients', 'cluster', 'sentinel', 'redis' ] as const).filter(k => config[k] !== undefined && config[k] !== null);
  if (given.length !== 1) {
    throw new TypeError(`${PREFIX} config.redlock must set exactly one of 'clients', 'cluster', 'sentinel' or 'redis'` +
      (given.length ? `, got ${given.map(k => `'${k}'`).join(' and ')}` : ', got none'));
  }
  if (typeof config.prefix !== 'string') fail('prefix', 'a string', config.prefix);
  if (typeof config.driftFactor !== 'number' || !(config.driftFactor >= 0 && config.driftFactor < 0.5)) {
    fail('driftFactor', 'a number in [0, 0.5)', config.driftFactor);
  }
  checkLease('ttl', config.ttl, config.driftFactor);
  checkInteger('retryCount', config.retryCount, -1);
  checkInteger('retryDelay', config.retryDelay, 0);
  checkInteger('retryJitter', config.retryJitter, 0);
  checkInteger('waitTimeout', config.waitTimeout, 0);
  checkInteger('maxHold', config.maxHold, 1);
  for (const field of [ 'fair', 'app', 'agent' ] as const) {
    if (typeof config[field] !== 'boolean') fail(field, 'a boolean', config[field]);
  }
  checkInteger('commandTimeout', config.commandTimeout, 1, MAX_TIMER_MS);
  checkInteger('connectTimeout', config.connectTimeout, 1, MAX_TIMER_MS);
  const schedule = config.schedule;
  if (!schedule || typeof schedule !== 'object') fail('schedule', 'an object', schedule);
  if (typeof schedule.enable !== 'boolean') fail('schedule.enable', 'a boolean', schedule.enable);
  if (schedule.ttl !== undefined) checkLease('schedule.ttl', schedule.ttl, config.driftFactor);
  checkInteger('schedule.clockTolerance', schedule.clockTolerance, 0, MAX_TIMER_MS);
  if (schedule.onUnavailable !== 'skip' && schedule.onUnavailable !== 'run') {
    fail('schedule.onUnavailable', "'skip' or 'run'", schedule.onUnavailable);
  }

  const kind = given[0];
  if (kind === 'clients') {
    const clients = config.clients;
    if (!Array.isArray(clients) || clients.length === 0) fail('clients', 'a non-empty array of { host, port }', clients);
    clients.forEach((c, i) => checkAddress(`clients[${i}]`, c));
    return { kind, clients };
  }
  if (kind === 'cluster') {
    const cluster = config.cluster!;
    if (!Array.isArray(cluster.nodes) || cluster.nodes.length === 0) fail('cluster.nodes', 'a non-empty array of { host, port }', cluster.nodes);
    cluster.nodes.forEach((n, i) => checkAddress(`cluster.nodes[${i}]`, n));
    for (const [ field, prefix ] of [[ 'keyPrefix', cluster.keyPrefix ], [ 'redisOptions.keyPrefix', cluster.redisOptions?.keyPrefix ]]) {
      if (prefix) fail(`cluster.${field}`, `unset on a Redis Cluster (${CLUSTER_KEY_PREFIX})`, prefix);
    }
    if (!fitsOneClusterSlot(`${config.prefix}_`)) {
      fail('prefix', 'free of a \'}\' that closes no hash tag on a Redis Cluster (the keys beside each lock must share its slot)', config.prefix);
    }
    return { kind, cluster };
  }
  if (kind === 'sentinel') {
    const sentinel = config.sentinel!;
    if (!Array.isArray(sentinel.sentinels) || sentinel.sentinels.length === 0) {
      fail('sentinel.sentinels', 'a non-empty array of { host, port }', sentinel.sentinels);
    }
    sentinel.sentinels.forEach((n, i) => checkAddress(`sentinel.sentinels[${i}]`, n));
    if (typeof sentinel.name !== 'string' || !sentinel.name) fail('sentinel.name', 'the master group name', sentinel.name);
    return { kind, sentinel };
  }
  const names = typeof config.redis === 'string' ? [ config.redis ] : config.redis;
  if (!Array.isArray(names) || names.length === 0 || names.some(n => typeof n !== 'string' || !n || n.includes('://'))) {
    // A URL here is a connection string in the wrong field, and would carry its password into errors.
    fail('redis', "an egg-redis client name or a non-empty array of names (e.g. 'default'), not a URL", config.redis);
  }
  return { kind, names };
}
