import type { FleetOverviewRows } from '../../app/storage-ports.ts';
import { CERTIFICATE_STATUSES, type CertificateStatus } from '../../domain/certificate.ts';
import type { Queryable } from '../driver.ts';
import { dateOrNull, iso, toDate } from '../rows.ts';
import { DAY_MS, WEEK_MS } from '../../domain/clock.ts';

export interface FleetStats {
  certificatesByStatus: Record<string, number>;
  /** ACTIVE certificates with not_after within each window (cumulative; overdue ones count in every window). */
  expiringWithinDays: Record<number, number>;
  /** Per tenant, the soonest not_after among its ACTIVE certificates, for tenants with one within the largest window. */
  soonestExpiryByTenant: Record<string, Date>;
  openAlertsBySeverity: Record<number, number>;
  /** thisUpdate of the newest stored CRL (any issuer); null before the first publication. */
  crlThisUpdate: Date | null;
  /** Per worker task (lease row): when its last run finished, and its failures in a row. */
  workerTasks: Record<string, { lastFinishedAt: Date | null; consecutiveFailures: number }>;
  /** Webhook deliveries waiting to be sent or retried. */
  webhookDeliveriesPending: number;
}

/**
 * The gauges' numbers in seven statements. The status count reads every certificate (the
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
  const crl = await tx.query<{ t: unknown }>('SELECT max(this_update) AS t FROM crl_state');
  const tasks = await tx.query<{ name: string; finished: unknown; failures: number }>(
    'SELECT name, last_finished_at AS finished, consecutive_failures AS failures FROM worker_leases',
  );
  const pending = await tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM notification_outbox WHERE status = 'PENDING'`);
  return {
    crlThisUpdate: dateOrNull(crl.rows[0]?.t),
    workerTasks: Object.fromEntries(tasks.rows.map((r) => [r.name, { lastFinishedAt: dateOrNull(r.finished), consecutiveFailures: Number(r.failures) }])),
    webhookDeliveriesPending: Number(pending.rows[0]?.n ?? 0),
    certificatesByStatus: Object.fromEntries(statuses.rows.map((r) => [r.status, Number(r.n)])),
    expiringWithinDays: await countExpiringWithin(tx, now, windowsDays),
    soonestExpiryByTenant: Object.fromEntries(soonest.rows.map((r) => [r.tenant_id, toDate(r.soonest)])),
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

/**
 * A tenant's unexpired ACTIVE certificates per CA record, each counted through the partial index
 * (ca_id, tenant_id, not_after) WHERE ACTIVE (an index range per CA, never the tenant's whole table);
 * under a tenant transaction RLS applies as well.
 */
export async function activeCertificatesByCa(tx: Queryable, tenantId: string, caIds: string[], now: Date): Promise<Record<string, number>> {
  if (caIds.length === 0) return {};
  const { rows } = await tx.query<{ ca_id: string; n: string }>(
    `SELECT w.ca_id, (SELECT count(*) FROM device_certificates c
                      WHERE c.ca_id = w.ca_id AND c.tenant_id = $1 AND c.status = 'ACTIVE' AND c.not_after > $2)::int8::text AS n
     FROM unnest($3::text[]) AS w(ca_id)`,
    [tenantId, now, caIds],
  );
  return Object.fromEntries(rows.map((r) => [r.ca_id, Number(r.n)]));
}

/**
 * The operator's overview: per-tenant counts from the counters (migration 012, no row is read),
 * ACTIVE certificates expiring per week through the partial expiry index (only the quarter's
 * range), and the latest revocations.
 */
export async function readFleetOverview(tx: Queryable, now: Date, weeks: number, revocations: number): Promise<FleetOverviewRows> {
  const counts = await tx.query<{ tenant_id: string; kind: string; n: number }>(
    `SELECT tenant_id, kind, sum(n)::int8 AS n FROM tenant_row_counts GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2`,
  );
  const tenants = new Map<string, FleetOverviewRows['tenants'][number]>();
  for (const r of counts.rows) {
    const t = tenants.get(r.tenant_id) ?? { tenant_id: r.tenant_id, devices: 0, certificates: Object.fromEntries(CERTIFICATE_STATUSES.map((s) => [s, 0])) as Record<CertificateStatus, number> };
    if (r.kind === 'device') t.devices = Number(r.n);
    else t.certificates[r.kind.replace('certificate:', '') as CertificateStatus] = Number(r.n);
    tenants.set(r.tenant_id, t);
  }
  const until = new Date(now.getTime() + weeks * WEEK_MS);
  const perWeek = await tx.query<{ week: number; n: number }>(
    `SELECT CASE WHEN not_after < $1 THEN -1 ELSE floor(extract(epoch FROM (not_after - $1::timestamptz)) / 604800)::int END AS week, count(*)::int8 AS n
     FROM device_certificates WHERE status = 'ACTIVE' AND not_after < $2 GROUP BY 1`,
    [now, until],
  );
  const expiringPerWeek = Array.from({ length: weeks }, () => 0);
  let overdue = 0;
  for (const r of perWeek.rows) {
    if (Number(r.week) < 0) overdue = Number(r.n);
    else if (Number(r.week) < weeks) expiringPerWeek[Number(r.week)] = Number(r.n);
  }
  const revoked = await tx.query(
    `SELECT id, tenant_id, device_id, revoked_at, revoked_reason FROM device_certificates
     WHERE status = 'REVOKED' AND revoked_at IS NOT NULL ORDER BY revoked_at DESC, id DESC LIMIT $1`,
    [revocations],
  );
  return {
    tenants: [...tenants.values()],
    expiringPerWeek,
    overdue,
    recentRevocations: revoked.rows.map((r) => ({
      id: Number(r.id),
      tenant_id: String(r.tenant_id),
      device_id: String(r.device_id),
      revoked_at: iso(r.revoked_at),
      revoked_reason: (r.revoked_reason as string | null) ?? null,
    })),
  };
}
