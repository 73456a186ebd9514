import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { connectRedlock } from '../lib/boot';
import { defaultConfig, RedlockConfig } from '../lib/config';
import { LockUnavailableError } from '../lib/errors';
import type { Redlock } from '../lib/redlock';
import { saveLastRun } from '../lib/schedule/last-run';
import { FENCED_ACCESS, SCRIPTS } from '../lib/scripts';
import { MemoryLogger } from './support/clients';
import { freePort, RedisServer } from './support/redis-server';

function configFor(client: RedlockConfig['clients'] extends Array<infer C> | undefined ? C : never): RedlockConfig {
  return { ...defaultConfig, connectTimeout: 2000, commandTimeout: 1000, retryDelay: 10, clients: [ client ] };
}

/** Exercises every path that talks to Redis: lock, extend, release (publish), waiting (subscribe), fair queue, records. */
async function exercise(redlock: Redlock): Promise<void> {
  const lock = await redlock.lock([ 'sec:a', 'sec:b' ], 2000);
  await lock.extend(3000);
  const waiting = redlock.lock('sec:a', 1000, { waitTimeout: 5000 }); // queued behind `lock` in this process
  await lock.unlock();
  await (await waiting).unlock();
  const fair = await redlock.lock('sec:fair', 1000, { fair: true });
  await fair.unlock();
  await redlock.using('sec:using', 500, async () => undefined);
  await saveLastRun(redlock.stores, redlock.settings.prefix, {
    name: 'sec:job', host: 'h', pid: 1, fireTime: 0, startedAt: 0, durationMs: 0, outcome: 'succeeded',
  });
  assert.equal((await redlock.lastRun('sec:job'))!.outcome, 'succeeded');
}

describe('security', () => {
  it('passes a password through, and never prints it', async () => {
    const server = await RedisServer.start([ '--requirepass', 's3cret-pw' ]);
    const logger = new MemoryLogger();
    try {
      const redlock = await connectRedlock(configFor({ host: '127.0.0.1', port: server.port, password: 's3cret-pw' }), logger);
      await exercise(redlock);
      await redlock.close();

      const err = await connectRedlock(configFor({ host: '127.0.0.1', port: server.port, password: 'wrong-s3cret' }), logger).catch(e => e);
      assert.ok(err instanceof LockUnavailableError, String(err));
      assert.match(err.message, new RegExp(`127.0.0.1:${server.port} \\(WRONGPASS`));
      for (const text of [ err.message, JSON.stringify(err.outcomes), ...logger.lines ]) {
        assert.doesNotMatch(text, /s3cret/);
      }
      assert.ok(logger.lines.length > 0, 'something was logged (and checked)');
    } finally {
      await server.kill();
    }
  });

  it('works as an ACL user allowed only the plugin\'s key prefix, and leaves other keys alone', async () => {
    const server = await RedisServer.start();
    const admin = new Redis({ port: server.port, host: '127.0.0.1' });
    try {
      await admin.acl('SETUSER', 'locker', 'on', '>locker-pw', '~JOB_LOCKER*', '&JOB_LOCKER*', '+@all');
      const others: Record<string, string> = {};
      for (let i = 0; i < 200; i++) others[`user:${i}`] = `value-${i}`;
      others.JOB_LOCKE = 'almost the prefix';
      await admin.mset(others);
      await admin.hset('orders', 'a', '1');

      const redlock = await connectRedlock(configFor({ host: '127.0.0.1', port: server.port, username: 'locker', password: 'locker-pw' }), new MemoryLogger());
      await exercise(redlock);
      await redlock.close();

      for (const [ key, value ] of Object.entries(others)) assert.equal(await admin.get(key), value);
      assert.deepEqual(await admin.hgetall('orders'), { a: '1' });
      const created = (await admin.keys('*')).filter(k => !(k in others) && k !== 'orders');
      assert.ok(created.length > 0, 'the plugin left fencing counters, so the check below saw its keys');
      for (const key of created) assert.ok(key.startsWith('JOB_LOCKER_'), `touched ${key}`);
    } finally {
      admin.disconnect();
      await server.kill();
    }
  });

  it('passes TLS options through to ioredis', async function() {
    const dir = mkdtempSync(path.join(tmpdir(), 'redlock-tls-'));
    try {
      execFileSync('openssl', [ 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem') ], { stdio: 'ignore' });
    } catch {
      throw new Error('this test needs the openssl command (apt-get install openssl)');
    }
    const tlsPort = await freePort();
    const cert = path.join(dir, 'cert.pem');
    const server = await RedisServer.start([ '--tls-port', String(tlsPort), '--tls-cert-file', cert,
      '--tls-key-file', path.join(dir, 'key.pem'), '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no' ]);
    try {
      const redlock = await connectRedlock(configFor({ host: '127.0.0.1', port: tlsPort, tls: { ca: readFileSync(cert) } }), new MemoryLogger());
      await exercise(redlock);
      await redlock.close();
      const refused = await connectRedlock(configFor({ host: '127.0.0.1', port: tlsPort }), new MemoryLogger()).catch(e => e);
      assert.ok(refused instanceof LockUnavailableError, 'plain TCP to the TLS port does not connect');
    } finally {
      await server.kill();
    }
  });

  it('sends every key a script touches through KEYS[]', () => {
    // Each redis.call on a key names KEYS[i], or a loop variable / parameter bound to KEYS.
    const keyArgs = new Set([ 'key', 'fence_key', 'queue', 'queue_key' ]);
    for (const [ name, lua ] of Object.entries({ ...SCRIPTS, FENCED_ACCESS })) {
      for (const [ , command, first ] of lua.matchAll(/redis\.call\('(\w+)',\s*([^,)]+)/g)) {
        if (command === 'publish') continue; // a channel, not a key
        assert.ok(/^KEYS\[[^\]]+\]$/.test(first) || keyArgs.has(first), `${name}: redis.call('${command}', ${first})`);
      }
      for (const [ , variable ] of lua.matchAll(/for _, (\w+) in ipairs\((\w+)\)/g)) assert.ok(keyArgs.has(variable));
      assert.doesNotMatch(lua, /ipairs\(ARGV\)/);
    }
  });
});
