import type { Queryable } from '../driver.ts';
import { DAY_MS } from '../../domain/clock.ts';

export interface FleetStats {
  certificatesByStatus: Record<string, number>;
  /** ACTIVE certificates with not_after within each window (cumulative; overdue ones count in every window). */
  expiringWithinDays: Record<number, number>;
  /** Per tenant, the soonest not_after among its ACTIVE certificates, for tenants with one within the largest window. */
  soonestExpiryByTenant: Record<string, Date>;
  openAlertsBySeverity: Record<number, number>;
}

/**
 * The gauges' numbers in four statements. The status count reads every certificate (the
 * caller caches it); the expiry ones read only the ACTIVE certificates inside the largest
 * window through the partial index on not_after; the alert one only open alerts.
 */
export async function readFleetStats(tx: Queryable, now: Date, windowsDays: number[]): Promise<FleetStats> {
  const horizon = new Date(now.getTime() + Math.max(...windowsDays) * DAY_MS);
  const statuses = await tx.query<{ status: string; n: number }>('SELECT status, count(*)::int8 AS n FROM device_certificates GROUP BY status');
  const soonest = await tx.query<{ tenant_id: string; soonest: unknown }>(
    `SELECT tenant_id, min(not_after) AS soonest FROM device_certificates WHERE status = 'ACTIVE' AND not_after <= $1 GROUP BY tenant_id`,
    [horizon],
  );
  const alerts = await tx.query<{ severity: number; n: number }>(
    `SELECT severity, count(*)::int8 AS n FROM fleet_alert WHERE status <> 'CLOSED' GROUP BY severity`,
  );
  return {
    certificatesByStatus: Object.fromEntries(statuses.rows.map((r) => [r.status, Number(r.n)])),
    expiringWithinDays: await countExpiringWithin(tx, now, windowsDays),
    soonestExpiryByTenant: Object.fromEntries(soonest.rows.map((r) => [r.tenant_id, r.soonest instanceof Date ? r.soonest : new Date(String(r.soonest))])),
    openAlertsBySeverity: Object.fromEntries(alerts.rows.map((r) => [Number(r.severity), Number(r.n)])),
  };
}

/**
 * ACTIVE certificates with not_after within each window from now (cumulative; overdue ones
 * count in every window), through the partial index on not_after. Under a tenant
 * transaction RLS scopes it; `tenantId` narrows an operator's count to one tenant.
 */
export async function countExpiringWithin(tx: Queryable, now: Date, windowsDays: number[], tenantId?: string): Promise<Record<number, number>> {
  const until = windowsDays.map((d) => new Date(now.getTime() + d * DAY_MS));
  const tenant = tenantId === undefined ? '' : ' AND c.tenant_id = $2';
  const buckets = await tx.query<{ n: number[] }>(
    `SELECT array_agg((SELECT count(*) FROM device_certificates c WHERE c.status = 'ACTIVE' AND c.not_after <= u${tenant})::int8 ORDER BY i) AS n
     FROM unnest($1::timestamptz[]) WITH ORDINALITY AS w(u, i)`,
    tenantId === undefined ? [until] : [until, tenantId],
  );
  const counts = (buckets.rows[0]?.n ?? []).map(Number);
  return Object.fromEntries(windowsDays.map((d, i) => [d, counts[i] ?? 0]));
}
