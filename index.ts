export { Redlock } from './lib/redlock';
export type { LockOptions, UsingOptions } from './lib/redlock';
export { Lock } from './lib/lock';
export { LockError, LockBusyError, LockUnavailableError, LockLostError } from './lib/errors';
export type { NodeOutcome } from './lib/errors';
export type { RedlockConfig, ScheduleLockConfig } from './lib/config';
