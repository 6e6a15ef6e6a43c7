import { expiryBands, type ExpiryPolicy } from '../domain/expiry-policy.ts';
import { closeResolvedExpiryAlerts, lockTask, upsertExpiringAlerts } from '../storage/repos/alerts-repo.ts';
import type { AppDeps } from './deps.ts';

export const EXPIRY_ALERTS_ACTOR = 'system:expiry-alerts';
const LOCK_KEY = 7_240_402;

/**
 * System-wide, in one transaction of two set-based statements (their number does not grow
 * with the fleet): first closes the expiry alerts whose cause went away (certificate
 * revoked, expired, rotated; device has a valid certificate again), then opens one
 * CERT_EXPIRING alert per ACTIVE certificate within the warning window or raises its
 * severity as thresholds pass. Webhook events for all of it are queued in the same
 * statements. Times come from the injected clock, never from SQL now().
 */
export function createRaiseExpiryAlerts({ db, clock, policy }: Pick<AppDeps, 'db' | 'clock'> & { policy: ExpiryPolicy }) {
  return async () => {
    const now = clock.now();
    const bands = expiryBands(policy, now);
    return db.asOperator(async (tx) => {
      await lockTask(tx, LOCK_KEY);
      const closedByReason = await closeResolvedExpiryAlerts(tx, { now, warnUntil: bands.warnUntil, actor: EXPIRY_ALERTS_ACTOR });
      const raised = await upsertExpiringAlerts(tx, { now, ...bands, actor: EXPIRY_ALERTS_ACTOR });
      const closed = Object.values(closedByReason).reduce((a, b) => a + b, 0);
      return { ...raised, closed, closed_by_reason: closedByReason };
    });
  };
}
