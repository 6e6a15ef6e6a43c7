import type { AppDeps } from './deps.ts';
import { WEEK_MS } from '../domain/clock.ts';
import { isPublishedCaStatus } from '../domain/ca.ts';

/** The operator's fleet overview covers this many weeks ahead (a quarter). */
export const OVERVIEW_WEEKS = 13;
const RECENT_REVOCATIONS = 10;

/** One CA's latest CRL (its own number series): what the overview shows for every CA whose CRL is published. */
export interface CaCrlSummary {
  ca_id: string;
  subject: string;
  status: string;
  kind: string;
  tenant_id: string | null;
  /** null: none stored yet (a CA staged a moment ago). */
  crl_number: string | null;
  this_update: string | null;
  next_update: string | null;
  age_seconds: number | null;
  entries: number | null;
}

/** Counts by tenant and status, ACTIVE certificates expiring per week for the next quarter, the latest revocations, each published CA's CRL. */
export function createFleetOverview({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return {
    forOperator: async () => {
      const now = clock.now();
      const [rows, crls] = await Promise.all([
        storage.asOperator(({ certificates }) => certificates.fleetOverview(now, OVERVIEW_WEEKS, RECENT_REVOCATIONS)),
        storage.asOperator(async ({ cas, crl }) => {
          const published = (await cas.listCas()).filter((c) => isPublishedCaStatus(c.status));
          const out: CaCrlSummary[] = [];
          for (const c of published) {
            const info = await crl.readCrlInfo(c.issuerKeyId);
            out.push({
              ca_id: c.id,
              subject: c.subject,
              status: c.status,
              kind: c.kind,
              tenant_id: c.tenantId,
              crl_number: info ? info.crlNumber.toString() : null,
              this_update: info?.thisUpdate?.toISOString() ?? null,
              next_update: info?.nextUpdate?.toISOString() ?? null,
              age_seconds: info?.thisUpdate ? Math.max(0, Math.round((now.getTime() - info.thisUpdate.getTime()) / 1000)) : null,
              entries: info?.entries ?? null,
            });
          }
          return out;
        }),
      ]);
      return {
        generated_at: now.toISOString(),
        tenants: rows.tenants,
        expiring_per_week: rows.expiringPerWeek.map((certificates, i) => ({ week_start: new Date(now.getTime() + i * WEEK_MS).toISOString(), certificates })),
        overdue: rows.overdue,
        recent_revocations: rows.recentRevocations,
        crls,
      };
    },
  };
}
