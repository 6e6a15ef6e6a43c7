/** The one retry/backoff rule: first `initialMs`, doubling with every further failure, capped at `maxMs`. Pure. */
export function exponentialDelayMs(initialMs: number, maxMs: number, failures: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
}
