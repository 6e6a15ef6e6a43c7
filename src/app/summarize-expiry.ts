import type { AppDeps } from './deps.ts';

/** The console's expiry overview: these windows, in days. */
export const EXPIRY_WINDOWS_DAYS = [7, 30, 90] as const;

/** How many ACTIVE certificates expire within 7, 30 and 90 days (cumulative), for one tenant or, for operators, all or one. */
export function createSummarizeExpiry({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  const summary = (now: Date, counts: Record<number, number>) => ({
    generated_at: now.toISOString(),
    windows: EXPIRY_WINDOWS_DAYS.map((days) => ({ days, certificates: counts[days] ?? 0 })),
  });
  return {
    forTenant: (tenantId: string) => {
      const now = clock.now();
      return storage.asTenant(tenantId, async ({ certificates }) => summary(now, await certificates.countExpiringWithin(now, [...EXPIRY_WINDOWS_DAYS], tenantId)));
    },
    forOperator: (tenantId?: string) => {
      const now = clock.now();
      return storage.asOperator(async ({ certificates }) => summary(now, await certificates.countExpiringWithin(now, [...EXPIRY_WINDOWS_DAYS], tenantId)));
    },
  };
}
