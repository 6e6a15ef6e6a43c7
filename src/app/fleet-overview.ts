import type { AppDeps } from './deps.ts';
import { WEEK_MS } from '../domain/clock.ts';

/** The operator's fleet overview covers this many weeks ahead (a quarter). */
export const OVERVIEW_WEEKS = 13;
const RECENT_REVOCATIONS = 10;

/** Counts by tenant and status, ACTIVE certificates expiring per week for the next quarter, the latest revocations. */
export function createFleetOverview({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return {
    forOperator: async () => {
      const now = clock.now();
      const rows = await storage.asOperator(({ certificates }) => certificates.fleetOverview(now, OVERVIEW_WEEKS, RECENT_REVOCATIONS));
      return {
        generated_at: now.toISOString(),
        tenants: rows.tenants,
        expiring_per_week: rows.expiringPerWeek.map((certificates, i) => ({ week_start: new Date(now.getTime() + i * WEEK_MS).toISOString(), certificates })),
        overdue: rows.overdue,
        recent_revocations: rows.recentRevocations,
      };
    },
  };
}
