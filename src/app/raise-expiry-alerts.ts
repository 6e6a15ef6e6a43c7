import { expiryBands, type ExpiryPolicy } from '../domain/expiry-policy.ts';
import type { AppDeps } from './deps.ts';

export const EXPIRY_ALERTS_ACTOR = 'system:expiry-alerts';
const LOCK_KEY = 7_240_402;

/**
 * System-wide, in one set-based statement (the number of statements does not grow with the
 * fleet): opens one CERT_EXPIRING alert per ACTIVE certificate within the warning window,
 * raises its severity as thresholds pass, and closes the expiry alerts whose cause went away
 * (certificate revoked, expired, rotated; device has a valid certificate again), queueing
 * the webhook events of all of it. Times come from the injected clock, never from SQL now().
 */
export function createRaiseExpiryAlerts({ storage, clock, policy }: Pick<AppDeps, 'storage' | 'clock'> & { policy: ExpiryPolicy }) {
  return async () => {
    const now = clock.now();
    const bands = expiryBands(policy, now);
    return storage.asOperator(async ({ tasks, alerts }) => {
      await tasks.lockTask(LOCK_KEY);
      return alerts.reconcileExpiryAlerts({ now, ...bands, actor: EXPIRY_ALERTS_ACTOR });
    });
  };
}
