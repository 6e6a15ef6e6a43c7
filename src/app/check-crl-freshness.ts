import { SYSTEM_TENANT } from '../domain/alert.ts';
import { crlStaleSeverity, SEVERITY } from '../domain/expiry-policy.ts';
import type { AppDeps } from './deps.ts';
import type { OperatorRepositories } from './storage-ports.ts';

export const CRL_FRESHNESS_ACTOR = 'system:crl-freshness';

export interface CrlHealth {
  /** nextUpdate of the published CRL; null when none has been published. */
  nextUpdate(repos: OperatorRepositories): Promise<Date | null>;
  /** Publications that failed in a row (the CRL task's lease row, the in-process publisher). */
  consecutiveFailures(repos: OperatorRepositories): Promise<number>;
}

/**
 * The system alert CRL_STALE (tenant __system__, operators see it): HIGH when the published
 * CRL is within `marginMs` of its nextUpdate or publication failed `failureThreshold` times
 * in a row, CRITICAL once nextUpdate has passed (Mosquitto then rejects every device).
 * Closes itself when the CRL is fresh again. Idempotent: a second run changes nothing.
 */
export function createCheckCrlFreshness({ storage, clock, health, marginMs, failureThreshold }: Pick<AppDeps, 'storage' | 'clock'> & { health: CrlHealth; marginMs: number; failureThreshold: number }) {
  return async () => {
    const now = clock.now();
    return storage.asOperator(async (repos) => {
      const nextUpdate = await health.nextUpdate(repos);
      const failures = await health.consecutiveFailures(repos);
      const severity = crlStaleSeverity({ nextUpdate, now, consecutiveFailures: failures }, { marginMs, failureThreshold });
      const key = { tenantId: SYSTEM_TENANT, type: 'CRL_STALE', fingerprint: 'device-crl' };
      if (severity === null) {
        const closed = await repos.alerts.resolveSystemAlert({ ...key, actor: CRL_FRESHNESS_ACTOR, now });
        return { stale: false, closed: closed ? 1 : 0 };
      }
      const summary =
        severity >= SEVERITY.CRITICAL
          ? 'The published CRL is past its nextUpdate: the broker rejects every device until a new CRL is published'
          : nextUpdate && nextUpdate.getTime() - now.getTime() <= marginMs
            ? 'The published CRL reaches its nextUpdate within a day and has not been refreshed'
            : `CRL publication failed ${failures} times in a row`;
      const outcome = await repos.alerts.raiseSystemAlert({
        ...key,
        severity,
        summary,
        details: { next_update: nextUpdate?.toISOString() ?? null, consecutive_failures: failures },
        now,
      });
      return { stale: true, severity, alert: outcome };
    });
  };
}
