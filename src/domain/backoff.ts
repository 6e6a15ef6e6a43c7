/** The one retry/backoff rule: first `initialMs`, doubling with every further failure, capped at `maxMs`. Pure. */
export function exponentialDelayMs(initialMs: number, maxMs: number, failures: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
}

/** A source of randomness in [0, 1) (Math.random in production; a constant in tests). */
export type Random = () => number;

/** How much of a delay jitter may take away: delays are spread over [50 %, 100 %] of the rule's value. */
export const DEFAULT_JITTER_SPREAD = 0.5;

/**
 * A delay spread at random over [(1 - spread) · delay, delay], so that the replicas, agents or
 * connections that failed together do not all retry at the same instant ("thundering herd").
 * Never longer than the rule's delay (the cap holds); `random` returning 0 gives the delay itself.
 */
export function jitteredDelayMs(delayMs: number, random: Random, spread = DEFAULT_JITTER_SPREAD): number {
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(delayMs * (1 - spread * r));
}
