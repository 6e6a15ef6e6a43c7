import { AppError } from './errors.ts';

/**
 * Per-key token buckets: `burst` requests at once, refilled at `perMinute`. Time comes from
 * `now()` in milliseconds (a monotonic clock in production: a limit is about real load,
 * not business time). perMinute 0 disables the limit.
 */
export interface RateLimiter {
  /** Takes one token for `key` or throws RATE_LIMITED with retry_after_seconds. */
  take(key: string): void;
  /** Takes one token for `key` when there is one: false when the limit is reached. */
  tryTake(key: string): boolean;
}

export function createRateLimiter(options: { perMinute: number; burst: number; now: () => number; what: string }): RateLimiter {
  const { perMinute, burst, now, what } = options;
  if (perMinute <= 0) return { take: () => undefined, tryTake: () => true };
  const perMs = perMinute / 60_000;
  const buckets = new Map<string, { tokens: number; at: number }>();
  /** The bucket of `key` refilled up to now; a token taken when there is one. */
  function takeFrom(key: string): { taken: boolean; tokens: number } {
    const t = now();
    const bucket = buckets.get(key) ?? { tokens: burst, at: t };
    bucket.tokens = Math.min(burst, bucket.tokens + (t - bucket.at) * perMs);
    bucket.at = t;
    buckets.set(key, bucket);
    if (bucket.tokens < 1) return { taken: false, tokens: bucket.tokens };
    bucket.tokens -= 1;
    if (bucket.tokens >= burst - 1 && buckets.size > 10_000) buckets.delete(key); // full again: forget idle keys
    return { taken: true, tokens: bucket.tokens };
  }
  return {
    tryTake: (key) => takeFrom(key).taken,
    take(key) {
      const { taken, tokens } = takeFrom(key);
      if (taken) return;
      const retryAfterSeconds = Math.max(1, Math.ceil((1 - tokens) / perMs / 1000));
      throw new AppError('RATE_LIMITED', `${what} is limited to ${perMinute} per minute per tenant (bursts of ${burst}); retry in ${retryAfterSeconds} s`, {
        retry_after_seconds: retryAfterSeconds,
      });
    },
  };
}
