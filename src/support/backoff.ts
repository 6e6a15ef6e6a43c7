import { exponentialDelayMs } from '../domain/backoff.ts';

/** The same rule as state: next() is the delay before the next try (and doubles the one after), reset() after a success. */
export interface Backoff {
  /** The delay next() will return. */
  readonly current: number;
  next(): number;
  reset(): void;
}

export function createBackoff(initialMs: number, maxMs: number): Backoff {
  let failures = 1;
  return {
    get current() {
      return exponentialDelayMs(initialMs, maxMs, failures);
    },
    next() {
      const delay = exponentialDelayMs(initialMs, maxMs, failures);
      if (delay < maxMs) failures++;
      return delay;
    },
    reset() {
      failures = 1;
    },
  };
}
