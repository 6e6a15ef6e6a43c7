/** The one retry/backoff rule: first `initialMs`, doubling with every further failure, capped at `maxMs`. Pure. */
export function exponentialDelayMs(initialMs: number, maxMs: number, failures: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
}

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
