import 'egg';
import type { Redlock } from '../lib/redlock';
import type { RedlockConfig } from '../lib/config';

declare module 'egg' {
  interface Application {
    /** The distributed lock client (egg-distributed-lock); present when `config.redlock.app` is true. */
    redlock: Redlock;
  }
  interface Agent {
    /** Present when `config.redlock.agent` is true. */
    redlock: Redlock;
  }
  interface EggAppConfig {
    redlock: RedlockConfig;
  }
}
export * from '../index';
