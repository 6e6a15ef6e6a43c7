import type { AlertListQuery, AlertPage, ExpiringAlertsInput } from '../../app/storage-ports.ts';
import type { AlertRecord } from '../../domain/alert.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { createFilter, planKeysetPages } from '../sql-filter.ts';
import { toAlert } from './alert-row.ts';
import { enqueueAlertEvents } from './outbox-repo.ts';

/** ISO 8601 in UTC with milliseconds, as the API prints timestamps, for jsonb built in SQL. */
const isoSql = (expr: string) => `to_char(${expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

export async function listAlerts(tx: Queryable, q: AlertListQuery): Promise<AlertPage> {
  const f = createFilter();
  if (q.tenantId) f.add((p) => `tenant_id = ${p}`, q.tenantId);
  if (q.type) f.add((p) => `alert_type = ${p}`, q.type);
  if (q.status) f.add((p) => `status = ${p}`, q.status);
  if (q.unresolved) f.raw(`status <> 'CLOSED'`);
  if (q.deviceId) f.add((p) => `device_id = ${p}`, q.deviceId);
  if (q.severity !== undefined) f.add((p) => `severity = ${p}`, q.severity);
  if (q.minSeverity !== undefined) f.add((p) => `severity >= ${p}`, q.minSeverity);
  const total = Number(onlyRow((await tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM fleet_alert${f.sql()}`, f.params)).rows, 'count alerts').n);
  if (q.beforeId) f.add((p) => `id < ${p}`, q.beforeId);
  await planKeysetPages(tx);
  const { rows } = await tx.query(`SELECT * FROM fleet_alert${f.sql()} ORDER BY id DESC LIMIT ${f.param(q.limit + 1)}`, f.params);
  const alerts = rows.slice(0, q.limit).map(toAlert);
  const last = alerts[alerts.length - 1];
  return { alerts, total, next: rows.length > q.limit && last ? last.id : null };
}

export async function findAlert(tx: Queryable, id: number): Promise<AlertRecord | null> {
  const { rows } = await tx.query('SELECT * FROM fleet_alert WHERE id = $1', [id]);
  return rows[0] ? toAlert(rows[0]) : null;
}

/** OPEN → ACKNOWLEDGED; an acknowledged alert is returned unchanged; null when not found or CLOSED. */
export async function acknowledgeAlert(tx: Queryable, id: number, actor: string, at: Date): Promise<AlertRecord | null> {
  const { rows } = await tx.query(
    `UPDATE fleet_alert SET status = 'ACKNOWLEDGED', acknowledged_at = $2, acknowledged_by = $3, updated_at = $2
     WHERE id = $1 AND status = 'OPEN' RETURNING *`,
    [id, at, actor],
  );
  return rows[0] ? toAlert(rows[0]) : null;
}

/** Closes by hand (close_reason manual) and queues alert.closed for the tenant's webhooks; null when not open. */
export async function closeAlertManually(tx: Queryable, id: number, actor: string, at: Date): Promise<AlertRecord | null> {
  const { rows } = await tx.query(
    `WITH closed AS (
       UPDATE fleet_alert SET status = 'CLOSED', closed_at = $2, closed_by = $3, close_reason = 'manual', updated_at = $2
       WHERE id = $1 AND status <> 'CLOSED' RETURNING *
     ), notified AS (${enqueueAlertEvents('closed', `'alert.closed'`, '$2')})
     SELECT * FROM closed`,
    [id, at, actor],
  );
  return rows[0] ? toAlert(rows[0]) : null;
}

/** Serialises concurrent runs of one set-based task (a second run waits, then finds nothing to do). */
export const lockTask = (tx: Queryable, key: number) => tx.query('SELECT pg_advisory_xact_lock($1)', [key]);

/**
 * Reconciles the expiry alerts with the certificates in one set-based statement (its cost
 * follows the number of certificates inside the warning window, not the fleet size):
 * - candidates: ACTIVE certificates with not_after in (now, warnUntil], except those whose
 *   device has a newer ACTIVE certificate valid beyond the window (rotated);
 * - a candidate without an open alert gets one (alert.opened), unless its alert was closed
 *   by hand at this severity or higher; one whose severity band rose is updated and set OPEN
 *   again (alert.escalated); anything else is left untouched, so a second run changes nothing;
 * - an open CERT_EXPIRING alert whose certificate is no longer a candidate closes, with the
 *   reason (revoked, expired, rotated, resolved); an open CERT_EXPIRED alert closes when its
 *   device has a valid ACTIVE certificate again (replaced) (alert.closed).
 * Webhook events are queued by the same statement. The unique partial index on open alerts
 * keeps concurrent runs from ever opening a second alert for a certificate.
 */
export async function reconcileExpiryAlerts(tx: Queryable, input: ExpiringAlertsInput): Promise<{ opened: number; escalated: number; closed: number; closed_by_reason: Record<string, number> }> {
  const { rows } = await tx.query<{ opened: number; escalated: number; closed_by_reason: Record<string, number> | string | null }>(
    `WITH candidate AS MATERIALIZED (
       SELECT c.id, c.tenant_id, c.device_id, c.fingerprint_sha256, c.common_name, c.not_after,
              (SELECT max(b.severity) FROM unnest($3::timestamptz[], $4::int[]) AS b(cutoff, severity) WHERE c.not_after <= b.cutoff) AS severity,
              floor(extract(epoch FROM c.not_after - $1::timestamptz) / 86400)::int AS days_remaining
       FROM device_certificates c
       WHERE c.status = 'ACTIVE' AND c.not_after > $1 AND c.not_after <= $2
         AND NOT EXISTS (SELECT 1 FROM device_certificates n
                         WHERE n.tenant_id = c.tenant_id AND n.device_id = c.device_id AND n.status = 'ACTIVE' AND n.not_after > $2)
       UNION ALL
       -- Renewal overdue (issue 21): half of the certificate's renewal window is gone and the device
       -- has not renewed (no later ACTIVE certificate): the alert is raised before the warning window,
       -- at the first severity, for every tenant (its renewal policy, or the default one, scheduled
       -- renewal_advice.overdue_at).
       SELECT c.id, c.tenant_id, c.device_id, c.fingerprint_sha256, c.common_name, c.not_after,
              ($4::int[])[1] AS severity,
              floor(extract(epoch FROM c.not_after - $1::timestamptz) / 86400)::int AS days_remaining
       FROM renewal_advice a
       JOIN device_certificates c ON c.id = a.certificate_id
       WHERE a.overdue_at <= $1 AND c.status = 'ACTIVE' AND c.not_after > $2
         AND NOT EXISTS (SELECT 1 FROM device_certificates n
                         WHERE n.tenant_id = c.tenant_id AND n.device_id = c.device_id AND n.status = 'ACTIVE' AND n.not_after > c.not_after)
     ), open_alert AS MATERIALIZED (
       SELECT f.id, f.tenant_id, f.fingerprint, f.severity FROM fleet_alert f WHERE f.alert_type = 'CERT_EXPIRING' AND f.status <> 'CLOSED'
     ), stale AS (
       SELECT o.id,
              CASE WHEN c.id IS NULL THEN 'resolved'
                   WHEN c.status = 'REVOKED' THEN 'revoked'
                   WHEN c.status = 'EXPIRED' OR c.not_after <= $1 THEN 'expired'
                   WHEN c.not_after > $2 THEN 'resolved'
                   ELSE 'rotated' END AS reason
       FROM open_alert o
       LEFT JOIN device_certificates c ON c.fingerprint_sha256 = o.fingerprint AND c.tenant_id = o.tenant_id
       WHERE NOT EXISTS (SELECT 1 FROM candidate k WHERE k.tenant_id = o.tenant_id AND k.fingerprint_sha256 = o.fingerprint)
       UNION ALL
       SELECT f.id, 'replaced'
       FROM fleet_alert f
       WHERE f.alert_type = 'CERT_EXPIRED' AND f.status <> 'CLOSED'
         AND EXISTS (SELECT 1 FROM device_certificates n
                     WHERE n.tenant_id = f.tenant_id AND n.device_id = f.device_id AND n.status = 'ACTIVE' AND n.not_after > $1)
     ), closed AS (
       UPDATE fleet_alert f SET status = 'CLOSED', closed_at = $1, closed_by = $5, close_reason = s.reason, updated_at = $1
       FROM stale s WHERE f.id = s.id AND f.status <> 'CLOSED'
       RETURNING f.*
     ), due AS (
       SELECT k.* FROM candidate k
       WHERE NOT EXISTS (SELECT 1 FROM open_alert o WHERE o.tenant_id = k.tenant_id AND o.fingerprint = k.fingerprint_sha256 AND o.severity >= k.severity)
         AND NOT EXISTS (SELECT 1 FROM fleet_alert m
                         WHERE m.tenant_id = k.tenant_id AND m.alert_type = 'CERT_EXPIRING' AND m.fingerprint = k.fingerprint_sha256
                           AND m.status = 'CLOSED' AND m.close_reason = 'manual' AND m.severity >= k.severity)
     ), raised AS (
       INSERT INTO fleet_alert AS f (tenant_id, device_id, alert_type, fingerprint, status, severity, summary, details, created_at, updated_at)
       SELECT k.tenant_id, k.device_id, 'CERT_EXPIRING', k.fingerprint_sha256, 'OPEN', k.severity,
              format('Certificate of device %s expires in %s', k.device_id,
                     CASE WHEN k.not_after - $1::timestamptz < interval '48 hours'
                          THEN greatest(1, round(extract(epoch FROM (k.not_after - $1::timestamptz)) / 3600))::int
                               || CASE WHEN k.not_after - $1::timestamptz < interval '90 minutes' THEN ' hour' ELSE ' hours' END
                          ELSE k.days_remaining || ' days' END),
              jsonb_build_object('fingerprint', k.fingerprint_sha256, 'certificate_id', k.id, 'common_name', k.common_name,
                                 'expires_at', ${isoSql('k.not_after')}, 'days_remaining', k.days_remaining),
              $1, $1
       FROM due k
       ON CONFLICT (tenant_id, alert_type, fingerprint) WHERE status <> 'CLOSED'
       DO UPDATE SET severity = EXCLUDED.severity, summary = EXCLUDED.summary, details = EXCLUDED.details, status = 'OPEN',
                     acknowledged_at = NULL, acknowledged_by = NULL, updated_at = EXCLUDED.updated_at
       WHERE f.severity < EXCLUDED.severity
       RETURNING f.*, (f.xmax = 0) AS inserted
     ), notified_raised AS (${enqueueAlertEvents('raised', `CASE WHEN a.inserted THEN 'alert.opened' ELSE 'alert.escalated' END`, '$1')}
     ), notified_closed AS (${enqueueAlertEvents('closed', `'alert.closed'`, '$1')})
     SELECT (SELECT count(*) FROM raised WHERE inserted)::int AS opened,
            (SELECT count(*) FROM raised WHERE NOT inserted)::int AS escalated,
            (SELECT jsonb_object_agg(reason, n) FROM (SELECT close_reason AS reason, count(*)::int AS n FROM closed GROUP BY close_reason) r) AS closed_by_reason`,
    [input.now, input.warnUntil, input.cutoffs, input.severities, input.actor],
  );
  const row = onlyRow(rows, 'reconcile expiry alerts');
  const raw = row.closed_by_reason;
  const byReason = (typeof raw === 'string' ? JSON.parse(raw) : (raw ?? {})) as Record<string, number>;
  const closed = Object.values(byReason).reduce((sum, n) => sum + Number(n), 0);
  return { opened: Number(row.opened), escalated: Number(row.escalated), closed, closed_by_reason: byReason };
}

/**
 * ACTIVE certificates past not_after become EXPIRED (rows another transaction holds are
 * skipped, and taken by the next run), with an audit event each; a device whose last
 * valid certificate this was gets one CERT_EXPIRED alert (severity 5): it can no longer
 * connect. All in one statement, so the alert can neither be lost nor raised twice.
 */
export async function expireCertificates(tx: Queryable, input: { now: Date; actor: string; severity: number }): Promise<{ expired: number; devicesWithoutCertificate: number }> {
  const { rows } = await tx.query<{ expired: number; alerted: number }>(
    `WITH devices AS (
       -- lock order: the device rows first (the certificate summary, migration 024), skipping held ones
       SELECT d.tenant_id, d.device_id FROM device_registry d
       WHERE (d.tenant_id, d.device_id) IN (SELECT tenant_id, device_id FROM device_certificates WHERE status = 'ACTIVE' AND not_after <= $1)
       FOR NO KEY UPDATE OF d SKIP LOCKED
     ), expired AS (
       UPDATE device_certificates c SET status = 'EXPIRED', updated_at = $1
       WHERE c.id IN (SELECT x.id FROM device_certificates x JOIN devices USING (tenant_id, device_id)
                      WHERE x.status = 'ACTIVE' AND x.not_after <= $1 FOR UPDATE OF x SKIP LOCKED)
       RETURNING c.id, c.tenant_id, c.device_id, c.fingerprint_sha256, c.serial_number, c.common_name, c.not_after
     ), audited AS (
       INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id, details, created_at)
       SELECT e.tenant_id, $2, 'certificate.expired', 'certificate', e.id::text,
              jsonb_build_object('device_id', e.device_id, 'serial_number', e.serial_number, 'not_after', ${isoSql('e.not_after')}), $1
       FROM expired e
     ), last_of_device AS (
       SELECT DISTINCT ON (e.tenant_id, e.device_id) e.*
       FROM expired e
       WHERE NOT EXISTS (SELECT 1 FROM device_certificates n
                         WHERE n.tenant_id = e.tenant_id AND n.device_id = e.device_id AND n.status = 'ACTIVE' AND n.not_after > $1)
       ORDER BY e.tenant_id, e.device_id, e.not_after DESC, e.id DESC
     ), raised AS (
       INSERT INTO fleet_alert AS f (tenant_id, device_id, alert_type, fingerprint, status, severity, summary, details, created_at, updated_at)
       SELECT l.tenant_id, l.device_id, 'CERT_EXPIRED', 'device:' || l.device_id, 'OPEN', $3,
              format('Device %s has no valid certificate: its last one expired; it can no longer connect', l.device_id),
              jsonb_build_object('fingerprint', l.fingerprint_sha256, 'certificate_id', l.id, 'common_name', l.common_name,
                                 'expires_at', ${isoSql('l.not_after')}, 'days_remaining', 0),
              $1, $1
       FROM last_of_device l
       ON CONFLICT (tenant_id, alert_type, fingerprint) WHERE status <> 'CLOSED' DO NOTHING
       RETURNING f.*
     ), notified AS (${enqueueAlertEvents('raised', `'alert.opened'`, '$1')})
     SELECT (SELECT count(*) FROM expired)::int AS expired, (SELECT count(*) FROM raised)::int AS alerted`,
    [input.now, input.actor, input.severity],
  );
  const row = onlyRow(rows, 'mark expired');
  return { expired: Number(row.expired), devicesWithoutCertificate: Number(row.alerted) };
}

/** Opens the one system alert of a type (CRL_STALE), or raises its severity (and sets it OPEN again); a second run changes nothing. */
export async function raiseSystemAlert(
  tx: Queryable,
  a: { tenantId: string; type: string; fingerprint: string; severity: number; summary: string; details: Record<string, unknown>; now: Date },
): Promise<'opened' | 'updated' | 'unchanged'> {
  const { rows } = await tx.query<{ inserted: boolean }>(
    `WITH raised AS (
       INSERT INTO fleet_alert AS f (tenant_id, device_id, alert_type, fingerprint, status, severity, summary, details, created_at, updated_at)
       VALUES ($1, NULL, $2, $3, 'OPEN', $4, $5, $6, $7, $7)
       ON CONFLICT (tenant_id, alert_type, fingerprint) WHERE status <> 'CLOSED'
       DO UPDATE SET severity = EXCLUDED.severity, summary = EXCLUDED.summary, details = EXCLUDED.details, status = 'OPEN',
                     acknowledged_at = NULL, acknowledged_by = NULL, updated_at = EXCLUDED.updated_at
       WHERE f.severity < EXCLUDED.severity
       RETURNING f.*, (f.xmax = 0) AS inserted
     ), notified AS (${enqueueAlertEvents('raised', `CASE WHEN a.inserted THEN 'alert.opened' ELSE 'alert.escalated' END`, '$7')})
     SELECT inserted FROM raised`,
    [a.tenantId, a.type, a.fingerprint, a.severity, a.summary, JSON.stringify(a.details), a.now],
  );
  const [row] = rows;
  if (row === undefined) return 'unchanged';
  return row.inserted ? 'opened' : 'updated';
}

/** Closes the open system alert of a type (its cause went away); true when one was closed. */
export async function resolveSystemAlert(tx: Queryable, a: { tenantId: string; type: string; fingerprint: string; actor: string; now: Date }): Promise<boolean> {
  const { rows } = await tx.query(
    `WITH closed AS (
       UPDATE fleet_alert SET status = 'CLOSED', closed_at = $4, closed_by = $5, close_reason = 'resolved', updated_at = $4
       WHERE tenant_id = $1 AND alert_type = $2 AND fingerprint = $3 AND status <> 'CLOSED' RETURNING *
     ), notified AS (${enqueueAlertEvents('closed', `'alert.closed'`, '$4')})
     SELECT id FROM closed`,
    [a.tenantId, a.type, a.fingerprint, a.now, a.actor],
  );
  return rows.length > 0;
}
