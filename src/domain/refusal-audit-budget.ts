import { createRateLimiter } from './rate-limit.ts';

/**
 * How many refusals of one requester (a device, a claim certificate) are audited: a burst, then a
 * steady rate. Every refusal is still refused; only its audit event is skipped past the budget, so
 * one device certificate (or one factory identity) cannot fill the audit log with requests it
 * knows will be refused. The next event audited for that requester carries `suppressed_refusals`:
 * how many were not audited since the previous one.
 */
export const REFUSAL_AUDIT_BURST = 20;
export const REFUSAL_AUDIT_PER_MINUTE = 10;
/** Requesters whose uncounted refusals are remembered at most (the oldest is forgotten first). */
const MAX_SUPPRESSED_KEYS = 10_000;

export interface RefusalAuditBudget {
  /** null: do not audit this refusal (counted); otherwise the details to add to its audit event. */
  admit(key: string): { suppressed_refusals?: number } | null;
}

export function createRefusalAuditBudget(now: () => number): RefusalAuditBudget {
  const limiter = createRateLimiter({ perMinute: REFUSAL_AUDIT_PER_MINUTE, burst: REFUSAL_AUDIT_BURST, now, what: 'refusal audit events' });
  const suppressed = new Map<string, number>();
  return {
    admit(key) {
      if (!limiter.tryTake(key)) {
        const n = (suppressed.get(key) ?? 0) + 1;
        suppressed.delete(key); // re-inserted last: the map's order is the order of last use
        suppressed.set(key, n);
        if (suppressed.size > MAX_SUPPRESSED_KEYS) suppressed.delete(suppressed.keys().next().value as string);
        return null;
      }
      const n = suppressed.get(key);
      suppressed.delete(key);
      return n === undefined ? {} : { suppressed_refusals: n };
    },
  };
}
