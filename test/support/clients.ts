import { format } from 'node:util';
import Redis from 'ioredis';
import { connectRedlock } from '../../lib/boot';
import { defaultConfig, RedlockConfig } from '../../lib/config';
import type { Redlock } from '../../lib/redlock';
import type { RedisServer } from './redis-server';

/** Log lines the plugin wrote, kept so tests can assert on them (and check no password leaks). */
export class MemoryLogger {
  readonly lines: string[] = [];
  info(...args: unknown[]) { this.lines.push(`INFO ${format(...args)}`); }
  warn(...args: unknown[]) { this.lines.push(`WARN ${format(...args)}`); }
  error(...args: unknown[]) { this.lines.push(`ERROR ${format(...args)}`); }
}

/** A lock client over the given servers, with short retries so tests stay quick. */
export function redlockOn(servers: RedisServer[], overrides: Partial<RedlockConfig> = {}, logger = new MemoryLogger()): Promise<Redlock> {
  return connectRedlock({
    ...defaultConfig,
    retryDelay: 20,
    retryJitter: 20,
    connectTimeout: 2000,
    commandTimeout: 500,
    clients: servers.map(s => ({ host: '127.0.0.1', port: s.port })),
    ...overrides,
  }, logger);
}

/** A plain connection for looking at (or tampering with) a server from outside the plugin. */
export function inspect(server: RedisServer): Redis {
  const view = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: false, maxRetriesPerRequest: 1 });
  view.on('error', () => undefined); // a test that kills the server: its commands fail, the noise is not wanted
  return view;
}

/** Lock keys on a server, leaving out the fencing counters that outlive their locks on purpose. */
export async function lockKeysOn(view: Redis): Promise<string[]> {
  return (await view.keys('*')).filter(key => !key.endsWith(':fence')).sort();
}

/**
 * Retries `check` until it passes or `ms` have gone by. A lock resolves once a quorum of masters
 * granted; the last master's answer lands a moment later, so "every master has it" is eventual.
 */
export async function eventually(check: () => Promise<void>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise(resolve => setTimeout(resolve, 10));
    }
  }
}

/** How many lock scripts (EVAL/EVALSHA) a server has run so far (not counting NOSCRIPT misses). */
export async function scriptCalls(view: Redis): Promise<number> {
  const stats = await view.info('commandstats');
  return [ ...stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+),.*failed_calls=(\d+)/g) ].reduce((sum, m) => sum + Number(m[1]) - Number(m[2]), 0);
}
