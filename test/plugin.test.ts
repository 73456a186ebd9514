import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import request from 'supertest';
import mm, { MockApplication } from 'egg-mock';
import type Redis from 'ioredis';
import { LockUnavailableError } from '../lib/errors';
import { eventually, inspect, lockKeysOn } from './support/clients';
import { freePort, killAll, RedisServer, startRedisServers } from './support/redis-server';

/** Boots the fixture app with `config.redlock` as given (merged over the plugin's defaults). */
async function bootApp(redlock: object, fixture = 'apps/redlock-app'): Promise<MockApplication> {
  process.env.REDLOCK_TEST_CONFIG = JSON.stringify(redlock);
  const app = mm.app({ baseDir: fixture, cache: false });
  try {
    await app.ready();
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}

// egg-mock 5.15's http(app) answers 404 for every route on this stack (egg 3.34), while the
// same app served by a plain http.Server routes fine; so requests go through supertest directly.
function http(app: MockApplication) {
  return request(createServer(app.callback()));
}

function clientsOn(servers: RedisServer[]) {
  return servers.map(s => ({ host: '127.0.0.1', port: s.port }));
}

describe('Egg plugin', () => {
  let servers: RedisServer[];
  let views: Redis[];

  before(async () => {
    servers = await startRedisServers(3);
    views = servers.map(inspect);
  });
  beforeEach(async () => {
    await Promise.all(servers.map(s => s.restart()));
    await Promise.all(views.map(v => v.flushall()));
  });
  afterEach(() => mm.restore());
  after(async () => {
    views.forEach(v => v.disconnect());
    await killAll(servers);
  });

  it('mounts a connected app.redlock once app.ready() resolves, not agent.redlock by default', async () => {
    const app = await bootApp({ clients: clientsOn(servers.slice(0, 1)) });
    try {
      assert.ok(app.redlock, 'app.redlock is mounted');
      assert.equal(app.redlock.stores.length, 1);
      assert.equal(app.redlock.stores[0].ready, true, 'connected before ready');
      assert.equal((app as any).agent.redlock, undefined);
      assert.equal(app.config.redlock.prefix, 'JOB_LOCKER');
      assert.equal(app.config.redlock.ttl, 600000);
      const lock = await app.redlock.lock('boot', 1000);
      assert.equal(await views[0].get('JOB_LOCKER_boot'), lock.value);
      await lock.unlock();
    } finally {
      await app.close();
    }
  });

  it('serves a controller that locks per order and answers 409 while the order is busy', async () => {
    const app = await bootApp({ clients: clientsOn(servers) });
    try {
      app.mockCsrf();
      const slow = http(app).post('/orders/42/pay?work=300').expect(200)
        .then(res => res); // .then() sends it now
      await new Promise(resolve => setTimeout(resolve, 100));
      const busy = await http(app).post('/orders/42/pay').expect(409);
      assert.equal(busy.body.error, 'LockBusyError');
      // The holder is this very process, so the second request is turned away without asking Redis.
      assert.match(busy.body.message, /JOB_LOCKER_order:42 is busy: held by .+\/\d+ \(this process\) for ~\d+ more ms/);
      assert.deepEqual((await slow).body, { paid: '42', key: 'JOB_LOCKER_order:42' });
      await http(app).post('/orders/42/pay').expect(200);
      await eventually(async () => {
        for (const view of views) assert.deepEqual(await lockKeysOn(view), [], 'every order lock was released');
      });
    } finally {
      await app.close();
    }
  });

  it('mounts agent.redlock when config.redlock.agent is true', async () => {
    const app = await bootApp({ clients: clientsOn(servers), agent: true, app: false });
    try {
      assert.equal(app.redlock, undefined);
      const lock = await (app as any).agent.redlock.lock('from-agent', 1000);
      await eventually(async () => {
        for (const view of views) assert.equal(await view.get('JOB_LOCKER_from-agent'), lock.value);
      });
      await lock.unlock();
    } finally {
      await app.close();
    }
  });

  it('releases held locks and quits its own clients at close', async () => {
    const app = await bootApp({ clients: clientsOn(servers) });
    await app.redlock.lock('held-at-close', 60000);
    const clients = app.redlock.stores.map(s => s.client);
    await app.close();
    for (const view of views) assert.equal(await view.exists('JOB_LOCKER_held-at-close'), 0);
    for (const client of clients) assert.equal(client.status, 'end');
  });

  it('boots with one of three masters down, and locks on the other two', async () => {
    await servers[2].kill();
    const app = await bootApp({ clients: clientsOn(servers) });
    try {
      assert.deepEqual(app.redlock.stores.map(s => s.ready), [ true, true, false ]);
      const lock = await app.redlock.lock('two-of-three', 1000);
      assert.equal(await lock.unlock(), true);
    } finally {
      await app.close();
    }
  });

  it('fails boot when no quorum of Redis nodes is reachable, naming them and never the password', async () => {
    const deadPort = await freePort();
    const err = await bootApp({ clients: [{ host: '127.0.0.1', port: deadPort, password: 's3cret-pw' }] }).catch(e => e);
    assert.ok(err instanceof LockUnavailableError, String(err));
    assert.match(err.message, new RegExp(`^\\[egg-distributed-lock\\] Redis is unavailable: cannot boot: 0 of 1 Redis nodes of config.redlock.clients connected, 1 needed: 127.0.0.1:${deadPort} \\(.*ECONNREFUSED`));
    assert.doesNotMatch(err.message, /s3cret-pw/);
  });

  it('keeps Redis passwords out of the config Egg dumps to run/ (arrays are dumped as they are)', async () => {
    const guarded = await startRedisServers(1, [ '--requirepass', 's3cret-pw' ]);
    const run = path.join(__dirname, 'fixtures/apps/redlock-app/run');
    const dumps = [ 'application_config.json', 'agent_config.json' ].map(file => path.join(run, file));
    for (const file of dumps) rmSync(file, { force: true });
    try {
      const app = await bootApp({
        agent: true,
        clients: guarded.map(server => ({ host: '127.0.0.1', port: server.port, password: 's3cret-pw' })),
      });
      try {
        assert.ok(app.redlock.stores.every(store => store.ready), 'it connected with the password');
        await eventually(async () => dumps.forEach(file => assert.ok(existsSync(file), `Egg wrote ${file}`)));
        for (const file of dumps) {
          const dumped = readFileSync(file, 'utf8');
          assert.equal(JSON.parse(dumped).config.redlock.prefix, 'JOB_LOCKER', `${file} holds the plugin's config`);
          assert.doesNotMatch(dumped, /s3cret/, file);
        }
        // The other places a secret can sit, through the same dump (Egg's own function, this app's merged config).
        Object.assign(app.config.redlock, {
          cluster: { nodes: [{ host: 'h', port: 1, password: 's3cret-node' }], redisOptions: { tls: { key: 's3cret-key', passphrase: 's3cret-pp' } } },
          sentinel: { sentinels: [{ host: 'h', port: 1 }], name: 'm', sentinelPassword: 's3cret-sp', tls: { key: 's3cret-key' }, sentinelTLS: { key: 's3cret-key' } },
        });
        const dump = JSON.stringify((app as any).dumpConfigToObject().config);
        assert.match(dump, /"name":"m"/, 'the sentinel settings are in it');
        assert.doesNotMatch(dump, /s3cret/);
      } finally {
        await app.close();
      }
    } finally {
      await killAll(guarded);
    }
  });

  it('takes a store set to null as unset (so config.prod can swap the default file\'s store for another)', async () => {
    const app = await bootApp({ cluster: null, clients: clientsOn(servers.slice(0, 1)) });
    try {
      assert.equal(app.redlock.stores.length, 1);
    } finally {
      await app.close();
    }
  });

  describe('invalid config fails boot with an error naming the field', () => {
    const cases: Array<[string, object, RegExp]> = [
      [ 'no store', {}, /config.redlock must set exactly one of 'clients', 'cluster', 'sentinel' or 'redis', got none/ ],
      [ 'two stores', { clients: [{ port: 1 }], redis: 'default' }, /exactly one of .* got 'clients' and 'redis'/ ],
      [ 'empty clients', { clients: [] }, /config.redlock.clients must be a non-empty array/ ],
      [ 'a URL instead of { host, port }, its password hidden', { clients: [ 'redis://admin:S3cret@pw/x@10.0.0.1:6379/0' ] },
        /config.redlock.clients\[0\] must be an object like \{ host, port \}, got "redis:\/\/\*\*\*@10.0.0.1:6379\/0"$/ ],
      [ 'a URL instead of egg-redis client names', { redis: 'redis://admin:S3cret@10.0.0.1:6379' },
        /config.redlock.redis must be an egg-redis client name or a non-empty array of names \(e.g. 'default'\), not a URL, got "redis:\/\/\*\*\*@10.0.0.1:6379"$/ ],
      [ 'bad port', { clients: [{ host: '127.0.0.1', port: 'x' }] }, /config.redlock.clients\[0\].port must be an integer between 1 and 65535, got "x"/ ],
      [ 'negative ttl', { clients: [{ port: 1 }], ttl: -1 }, /config.redlock.ttl must be an integer between 1 and \d+, got -1/ ],
      [ 'ttl within its clock-drift allowance', { clients: [{ port: 1 }], ttl: 2 }, /config.redlock.ttl must be more than its clock-drift allowance \(2 ms for driftFactor 0.01\), got 2/ ],
      [ 'schedule.ttl within its clock-drift allowance', { clients: [{ port: 1 }], schedule: { ttl: 2 } }, /config.redlock.schedule.ttl must be more than its clock-drift allowance/ ],
      [ 'fractional ttl', { clients: [{ port: 1 }], ttl: 1.5 }, /config.redlock.ttl must be an integer/ ],
      [ 'commandTimeout beyond a timer', { clients: [{ port: 1 }], commandTimeout: 2 ** 31 }, /config.redlock.commandTimeout must be an integer between 1 and 2147483647, got 2147483648/ ],
      [ 'keyPrefix on a Cluster', { cluster: { nodes: [{ port: 1 }], keyPrefix: 'app:' } }, /config.redlock.cluster.keyPrefix must be unset on a Redis Cluster \(ioredis would put it before the lock key and its companion keys alike.*CROSSSLOT; use config.redlock.prefix\), got "app:"/ ],
      [ 'a prefix with a stray \'}\' on a Cluster', { cluster: { nodes: [{ port: 1 }] }, prefix: 'jobs}' }, /config.redlock.prefix must be free of a '}' that closes no hash tag on a Redis Cluster .*, got "jobs}"/ ],
      [ 'keyPrefix on a Cluster node', { cluster: { nodes: [{ port: 1 }], redisOptions: { keyPrefix: 'app:' } } }, /config.redlock.cluster.redisOptions.keyPrefix must be unset on a Redis Cluster/ ],
      [ 'agent as a string', { clients: [{ port: 1 }], agent: 'false' }, /config.redlock.agent must be a boolean, got "false"/ ],
      [ 'schedule.enable as a string', { clients: [{ port: 1 }], schedule: { enable: 'no' } }, /config.redlock.schedule.enable must be a boolean, got "no"/ ],
      [ 'driftFactor', { clients: [{ port: 1 }], driftFactor: 2 }, /config.redlock.driftFactor must be a number in \[0, 0.5\)/ ],
      [ 'onUnavailable', { clients: [{ port: 1 }], schedule: { onUnavailable: 'maybe' } }, /config.redlock.schedule.onUnavailable must be 'skip' or 'run'/ ],
      [ 'sentinel name', { sentinel: { sentinels: [{ port: 1 }] } }, /config.redlock.sentinel.name must be the master group name/ ],
      [ 'fair over independent masters', { clients: [{ port: 1 }, { port: 2 }, { port: 3 }], fair: true }, /config.redlock.fair needs one logical Redis node/ ],
      [ 'unknown egg-redis client', { redis: 'default' }, /config.redlock.redis names egg-redis client 'default', but egg-redis is not enabled on the app/ ],
    ];
    for (const [ title, config, expected ] of cases) {
      it(title, async () => {
        await assert.rejects(bootApp(config), expected);
      });
    }
  });

  it('reuses an egg-redis client by name and never quits it', async () => {
    process.env.REDLOCK_TEST_PORT = String(servers[0].port);
    const app = mm.app({ baseDir: 'apps/egg-redis-app', cache: false });
    await app.ready();
    try {
      const redis = (app as any).redis;
      assert.equal(app.redlock.stores[0].client, redis, 'the very same client');
      assert.equal(app.redlock.stores[0].node, 'egg-redis:default');
      const lock = await app.redlock.lock('borrowed', 1000);
      assert.equal(await views[0].get('JOB_LOCKER_borrowed'), lock.value);
      await app.redlock.close();
      assert.equal(await views[0].exists('JOB_LOCKER_borrowed'), 0, 'released at close');
      assert.equal(await redis.ping(), 'PONG', 'the borrowed client still works');
    } finally {
      await app.close();
    }
  });
});
