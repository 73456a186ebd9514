import assert from 'node:assert/strict';
import type Redis from 'ioredis';
import { defaultConfig, validateConfig } from '../lib/config';
import { LockError } from '../lib/errors';
import type { Redlock } from '../lib/redlock';
import { inspect, lockKeysOn, MemoryLogger, redlockOn } from './support/clients';
import { killAll, RedisServer, startRedisServers } from './support/redis-server';

const ODD_VALUES = [ undefined, null, 0, -1, 1.5, NaN, Infinity, '', 'x', '10', true, {}, [], [ 1 ], () => 1, 2 ** 40 ];

/** A small seeded generator (xorshift32), so a failure can be replayed from the seed in its message. */
/* eslint-disable no-bitwise */
function random(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >> 17;
    state ^= state << 5; state >>>= 0;
    return state / 2 ** 32;
  };
  const pick = <T>(items: T[]): T => items[Math.floor(next() * items.length)];
  /** Mostly one of `good`, sometimes one of `bad`. */
  const mostly = <T, U>(good: T[], bad: U[]): T | U => (next() < 0.75 ? pick(good) : pick(bad));
  return { next, pick, mostly };
}
/* eslint-enable no-bitwise */

type Random = ReturnType<typeof random>;
const NAMES = [ 'a', 'b', 'c', 'x'.repeat(1024) ];
const BAD_NAMES = [ 'x'.repeat(1025), '', ...ODD_VALUES ];

/** One random call of the API; resolves to what came of it: 'lock', 'null' or the error's name. */
async function randomCall(redlock: Redlock, r: Random, seed: number): Promise<string> {
  const name = r.next() < 0.3 ? [ r.mostly(NAMES, BAD_NAMES), r.mostly(NAMES, BAD_NAMES) ] : r.mostly(NAMES, BAD_NAMES);
  const ttl = r.mostly([ 100, 2000, undefined ], ODD_VALUES);
  const options = r.mostly([ undefined, { waitTimeout: 20 }, { retryCount: 0 }, { fair: true }],
    [{ retryCount: r.pick(ODD_VALUES) }, { fair: 'yes' }, { waitTimeout: -1 }, ...ODD_VALUES ]);
  const call = r.pick([ 'lock', 'tryLock', 'using' ]);
  try {
    const lock = call === 'lock' ? await redlock.lock(name as any, ttl as any, options as any)
      : call === 'tryLock' ? await redlock.tryLock(name as any, ttl as any)
        : await redlock.using(name as any, ttl as any, async (_s, l) => l, options as any);
    if (lock && r.next() < 0.5) await lock.extend(r.pick([ 1000, ...ODD_VALUES ]) as any).catch(expectClearError(seed));
    if (lock) await lock.unlock();
    return lock ? 'lock' : 'null';
  } catch (err) {
    expectClearError(seed)(err);
    return (err as Error).name;
  }
}

function expectClearError(seed: number) {
  return (err: unknown) => {
    assert.ok(err instanceof TypeError || err instanceof RangeError || err instanceof LockError, `seed ${seed}: ${String(err)}`);
    assert.match(err.message, /\[egg-distributed-lock\]/, `seed ${seed}`);
  };
}


describe('fuzz: random configs and arguments', () => {
  it('validates 3000 random configs: a valid result, or a TypeError naming a config.redlock field', () => {
    const fields = Object.keys(defaultConfig) as Array<keyof typeof defaultConfig>;
    for (let seed = 1; seed <= 3000; seed++) {
      const r = random(seed);
      const config: any = { ...defaultConfig, schedule: { ...defaultConfig.schedule } };
      const store = r.pick([ 'clients', 'cluster', 'sentinel', 'redis', 'none', 'two' ]);
      if (store === 'clients') config.clients = r.pick([[{ port: 6379 }], [], [{ port: r.pick(ODD_VALUES) }], r.pick(ODD_VALUES) ]);
      if (store === 'cluster') config.cluster = r.pick([{ nodes: [{ host: 'a', port: 1 }] }, { nodes: r.pick(ODD_VALUES) }]);
      if (store === 'sentinel') config.sentinel = { sentinels: [{ port: 1 }], name: r.pick([ 'm', ...ODD_VALUES ]) };
      if (store === 'redis') config.redis = r.pick([ 'default', [ 'a' ], ...ODD_VALUES ]);
      if (store === 'two') Object.assign(config, { clients: [{ port: 1 }], redis: 'default' });
      for (let i = Math.floor(r.next() * 3); i > 0; i--) config[r.pick(fields)] = r.pick(ODD_VALUES);
      if (r.next() < 0.2 && config.schedule && typeof config.schedule === 'object') config.schedule[r.pick([ 'ttl', 'onUnavailable', 'clockTolerance' ])] = r.pick(ODD_VALUES);
      try {
        validateConfig(config);
      } catch (err) {
        assert.ok(err instanceof TypeError, `seed ${seed}: ${String(err)}`);
        assert.match((err as Error).message, /^\[egg-distributed-lock\] config\.redlock/, `seed ${seed}`);
      }
    }
  });

  it('boots with an even number of masters, but warns', async () => {
    const two = await startRedisServers(2);
    const logger = new MemoryLogger();
    try {
      const redlock = await redlockOn(two, {}, logger);
      assert.equal(redlock.quorum, 2);
      await redlock.close();
      assert.ok(logger.lines.some(l => /WARN \[egg-distributed-lock\] 2 Redlock masters: an even number tolerates no more failures than 1; use 3 or 5/.test(l)),
        logger.lines.join('\n'));
    } finally {
      await killAll(two);
    }
  });

  describe('against a live Redis', () => {
    let servers: RedisServer[];
    let view: Redis;
    let redlock: Redlock;

    before(async () => {
      servers = await startRedisServers(1);
      view = inspect(servers[0]);
      redlock = await redlockOn(servers, { waitTimeout: 50, ttl: 2000 });
    });
    after(async () => {
      await redlock.close();
      view.disconnect();
      await killAll(servers);
    });

    it('answers 600 random calls with a lock, null, or a clear error — no crash, no hang, no lock left behind', async () => {
      const kinds = new Map<string, number>();
      for (let seed = 1; seed <= 600; seed++) {
        const outcome = await Promise.race([
          randomCall(redlock, random(seed), seed),
          new Promise<string>((_, reject) => setTimeout(reject, 5000, new Error(`seed ${seed}: the call hung`))),
        ]);
        kinds.set(outcome, (kinds.get(outcome) ?? 0) + 1);
      }
      assert.ok(kinds.get('lock')! > 50 && kinds.get('TypeError')! > 30 && kinds.get('RangeError')! > 10, JSON.stringify([ ...kinds ]));
      assert.deepEqual(await lockKeysOn(view), [], 'no lock left behind');
      assert.equal(redlock.locks.length, 0);
    });
  });
});
