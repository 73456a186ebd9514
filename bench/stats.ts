import { performance } from 'node:perf_hooks';

/** Microseconds since an arbitrary origin, with sub-µs resolution. */
export function nowUs(): number {
  return performance.now() * 1000;
}

/** Milliseconds since an arbitrary origin, with sub-ms resolution. */
export function nowMs(): number {
  return performance.now();
}

/** Nearest-rank percentile (`p` in 0..100) of unsorted samples; NaN when there are none. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [ ...samples ].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function mean(samples: number[]): number {
  return samples.length === 0 ? NaN : samples.reduce((sum, x) => sum + x, 0) / samples.length;
}

/** A random whole number of ms in [min, max]: spreads start/release times over a retry period. */
export function randomBetween(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}
