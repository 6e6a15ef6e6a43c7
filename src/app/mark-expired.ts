import { SEVERITY } from '../domain/expiry-policy.ts';
import type { AppDeps } from './deps.ts';

export const MARK_EXPIRED_ACTOR = 'system:mark-expired';
/** pg_advisory_xact_lock key: concurrent runs (two `worker --once`) queue instead of racing. */
const LOCK_KEY = 7_240_401;

/**
 * System-wide: ACTIVE certificates past not_after become EXPIRED, and a device whose last
 * valid certificate that was gets a CERT_EXPIRED alert (severity 5), in one set-based
 * statement whatever the fleet size. Idempotent: a second run finds nothing to do; a
 * missed run is caught up by the next one (it takes everything past not_after).
 */
export function createMarkExpired({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return async () => {
    const now = clock.now();
    return storage.asOperator(async ({ tasks, alerts }) => {
      await tasks.lockTask(LOCK_KEY);
      return alerts.expireCertificates({ now, actor: MARK_EXPIRED_ACTOR, severity: SEVERITY.CRITICAL });
    });
  };
}
