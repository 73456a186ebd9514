import 'egg';
import type { Redlock } from '../lib/redlock';
import type { RedlockConfig } from '../lib/config';
import type { ScheduleLockState } from '../lib/schedule/locked-task';

declare module 'egg' {
  interface Application {
    /** The distributed lock client (egg-distributed-lock); present when `config.redlock.app` is true. */
    redlock: Redlock;
  }
  interface Agent {
    /** Present when `config.redlock.agent` is true (false by default). */
    redlock?: Redlock;
  }
  interface Context {
    /** Set while a fleet-locked scheduled task runs: its lock, fire time and lost-lease signal. */
    scheduleLock?: ScheduleLockState;
  }
  interface EggAppConfig {
    redlock: RedlockConfig;
  }
}
export * from '../index';
