import { exponentialDelayMs, jitteredDelayMs, type Random } from '../domain/backoff.ts';

/**
 * The same rule as state, with jitter: next() is the delay before the next try (and doubles the
 * one after), reset() after a success. Each delay is drawn over [50 %, 100 %] of the rule's value
 * (domain/backoff.ts); `random` is injectable (a constant keeps a test's timings exact).
 */
export interface Backoff {
  /** The delay next() will return. */
  readonly current: number;
  next(): number;
  reset(): void;
}

export function createBackoff(initialMs: number, maxMs: number, random: Random = Math.random): Backoff {
  let failures = 1;
  const draw = () => jitteredDelayMs(exponentialDelayMs(initialMs, maxMs, failures), random);
  let upcoming = draw();
  return {
    get current() {
      return upcoming;
    },
    next() {
      const delay = upcoming;
      if (exponentialDelayMs(initialMs, maxMs, failures) < maxMs) failures++;
      upcoming = draw();
      return delay;
    },
    reset() {
      failures = 1;
      upcoming = draw();
    },
  };
}
