/** Checks of API arguments; each error names the argument. */
import { COMPANIONS, fitsOneClusterSlot } from './keys';
import { canLease, clockDrift, MAX_TIMER_MS } from './timing';

const RESERVED_ENDINGS = Object.values(COMPANIONS);

/** A lease is watched by Node timers, so it can be no longer than the longest one. */
export const MAX_TTL = MAX_TIMER_MS;

/** Longest lock name accepted; a Redis key can be longer, but a name this long is a bug. */
export const MAX_NAME_LENGTH = 1024;

/** Most names one lock takes: a lock over more is a bug (and their keys would not fit one call's arguments). */
export const MAX_NAMES = 10000;

/** Validates a lock name argument; throws TypeError/RangeError naming the argument. */
export function checkName(name: unknown, argument = 'name'): string {
  if (typeof name !== 'string') throw new TypeError(`[egg-distributed-lock] ${argument} must be a string, got ${typeof name}`);
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
    throw new RangeError(`[egg-distributed-lock] ${argument} must have 1 to ${MAX_NAME_LENGTH} characters, got ${name.length}`);
  }
  if (/\p{Cs}/u.test(name)) {
    // Sent as UTF-8 it would become U+FFFD: names differing only there would be one lock.
    throw new RangeError(`[egg-distributed-lock] ${argument} must be well-formed Unicode, got ${JSON.stringify(name)} (a lone surrogate)`);
  }
  if (RESERVED_ENDINGS.some(ending => name.endsWith(ending))) {
    throw new RangeError(`[egg-distributed-lock] ${argument} must not end in ${RESERVED_ENDINGS.join(', ')} ` +
      `(the plugin keeps its own keys beside each lock's key under those), got '${name}'`);
  }
  return name;
}

/** Normalises `name | names[]` into distinct names, sorted so that every process takes keys in one order. */
export function checkNames(names: unknown): string[] {
  if (Array.isArray(names)) {
    if (names.length === 0 || names.length > MAX_NAMES) {
      throw new RangeError(`[egg-distributed-lock] names must have 1 to ${MAX_NAMES} names, got ${names.length}`);
    }
    const checked = names.map((n, i) => checkName(n, `names[${i}]`));
    return [ ...new Set(checked) ].sort();
  }
  return [ checkName(names) ];
}

/**
 * On a Redis Cluster a `}` may only close a hash tag (`{order}:1`): a lock key's companions could not
 * share its slot otherwise (keys.ts#fitsOneClusterSlot).
 */
export function checkClusterKeys(names: string[], keys: string[]): void {
  const misfit = keys.findIndex(key => !fitsOneClusterSlot(key));
  if (misfit >= 0) {
    throw new RangeError('[egg-distributed-lock] on a Redis Cluster a lock name may contain \'}\' only to close a hash tag ' +
      `('{order}:1'), or the plugin's keys beside the lock would land in another slot; got '${names[misfit]}'`);
  }
}

export function checkTtl(ttl: unknown, argument = 'ttl'): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl)) {
    throw new TypeError(`[egg-distributed-lock] ${argument} must be an integer number of ms, got ${typeof ttl === 'number' ? ttl : typeof ttl}`);
  }
  if (ttl < 1 || ttl > MAX_TTL) throw new RangeError(`[egg-distributed-lock] ${argument} must be between 1 and ${MAX_TTL} ms, got ${ttl}`);
  return ttl;
}

/** A lease's ttl: also longer than the clock-drift allowance, or the lease would be over before it is granted. */
export function checkLeaseTtl(ttl: unknown, driftFactor: number, argument = 'ttl'): number {
  const checked = checkTtl(ttl, argument);
  if (!canLease(checked, driftFactor)) {
    throw new RangeError(`[egg-distributed-lock] ${argument} must be more than the clock-drift allowance (${clockDrift(checked, driftFactor)} ms ` +
      `for driftFactor ${driftFactor}: such a lease is over before it is granted), got ${checked}`);
  }
  return checked;
}

export function checkFunction(fn: unknown, argument: string): void {
  if (typeof fn !== 'function') throw new TypeError(`[egg-distributed-lock] ${argument} must be a function, got ${typeof fn}`);
}

export function checkOptions<T extends object>(options: unknown, argument = 'options'): Partial<T> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`[egg-distributed-lock] ${argument} must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  return options as Partial<T>;
}

export function checkCount(value: unknown, argument: string, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new RangeError(`[egg-distributed-lock] ${argument} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}
