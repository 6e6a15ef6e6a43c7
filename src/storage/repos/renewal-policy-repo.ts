/** The tenant's renewal policy (tenant_settings columns, migration 023) and the advice the worker published. */
import { DEFAULT_RENEWAL_POLICY, type RenewalPolicy } from '../../domain/renewal-policy.ts';
import type { Queryable } from '../driver.ts';
import { iso } from '../rows.ts';
import type { AdviceCandidate, DueAdvice } from '../../app/storage-ports.ts';

export async function getRenewalPolicy(tx: Queryable, tenantId: string): Promise<RenewalPolicy> {
  const { rows } = await tx.query<{ renewal_validity_days: number | null; renewal_window: number | null; renewal_jitter: number | null; recovery_window_days: number | null; revoke_superseded: boolean | null }>(
    'SELECT renewal_validity_days, renewal_window, renewal_jitter, recovery_window_days, revoke_superseded FROM tenant_settings WHERE tenant_id = $1',
    [tenantId],
  );
  const r = rows[0];
  return {
    validity_days: r?.renewal_validity_days ?? DEFAULT_RENEWAL_POLICY.validity_days,
    renewal_window: r?.renewal_window == null ? DEFAULT_RENEWAL_POLICY.renewal_window : Number(r.renewal_window),
    jitter: r?.renewal_jitter == null ? DEFAULT_RENEWAL_POLICY.jitter : Number(r.renewal_jitter),
    recovery_window_days: r?.recovery_window_days ?? DEFAULT_RENEWAL_POLICY.recovery_window_days,
    revoke_superseded: r?.revoke_superseded ?? DEFAULT_RENEWAL_POLICY.revoke_superseded,
  };
}

export async function setRenewalPolicy(tx: Queryable, tenantId: string, policy: RenewalPolicy, at: Date): Promise<void> {
  await tx.query(
    `INSERT INTO tenant_settings (tenant_id, renewal_validity_days, renewal_window, renewal_jitter, recovery_window_days, revoke_superseded, updated_at)
     VALUES ($1, $2, $3, $4, $5, $7, $6)
     ON CONFLICT (tenant_id) DO UPDATE SET renewal_validity_days = $2, renewal_window = $3, renewal_jitter = $4, recovery_window_days = $5, revoke_superseded = $7, updated_at = $6`,
    [tenantId, policy.validity_days, policy.renewal_window, policy.jitter, policy.recovery_window_days, at, policy.revoke_superseded],
  );
}

/** Policies of every tenant that has one (operator role); the others have the default. */
export async function allRenewalPolicies(tx: Queryable): Promise<Map<string, RenewalPolicy>> {
  const { rows } = await tx.query<{ tenant_id: string }>('SELECT tenant_id FROM tenant_settings');
  const out = new Map<string, RenewalPolicy>();
  for (const r of rows) out.set(r.tenant_id, await getRenewalPolicy(tx, r.tenant_id));
  return out;
}

/**
 * ACTIVE, unexpired certificates without a schedule whose window (the last renewal_window of the
 * lifetime, the tenant's or `defaultWindow`) has begun at `now`, and whose device has no later
 * ACTIVE certificate (it renewed already). Oldest window first.
 */
export async function certificatesEnteringWindow(tx: Queryable, now: Date, defaultWindow: number, limit: number): Promise<AdviceCandidate[]> {
  const { rows } = await tx.query(
    `SELECT c.id, c.tenant_id, c.device_id, c.common_name, c.serial_number, c.fingerprint_sha256, c.not_before, c.not_after
     FROM device_certificates c
     LEFT JOIN tenant_settings s ON s.tenant_id = c.tenant_id
     WHERE c.status = 'ACTIVE' AND c.not_after > $1
       AND c.not_after - (c.not_after - c.not_before) * coalesce(s.renewal_window, $2) <= $1
       AND NOT EXISTS (SELECT 1 FROM renewal_advice a WHERE a.certificate_id = c.id)
       AND NOT EXISTS (SELECT 1 FROM device_certificates n
                       WHERE n.tenant_id = c.tenant_id AND n.device_id = c.device_id AND n.status = 'ACTIVE' AND n.not_after > c.not_after)
     ORDER BY c.not_after - (c.not_after - c.not_before) * coalesce(s.renewal_window, $2), c.id
     LIMIT $3`,
    [now, defaultWindow, limit],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    tenant_id: String(r.tenant_id),
    device_id: String(r.device_id),
    common_name: String(r.common_name),
    serial_number: String(r.serial_number),
    fingerprint_sha256: String(r.fingerprint_sha256),
    not_before: iso(r.not_before),
    not_after: iso(r.not_after),
  }));
}

export async function scheduleAdvice(tx: Queryable, rows: Array<{ certificateId: number; tenantId: string; deviceId: string; dueAt: Date; overdueAt: Date }>): Promise<void> {
  for (const r of rows) {
    await tx.query(
      `INSERT INTO renewal_advice (certificate_id, tenant_id, device_id, due_at, overdue_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (certificate_id) DO NOTHING`,
      [r.certificateId, r.tenantId, r.deviceId, r.dueAt, r.overdueAt],
    );
  }
}

/** Schedules due at `now` and not yet published, for certificates still ACTIVE. */
export async function dueAdvice(tx: Queryable, now: Date, limit: number): Promise<DueAdvice[]> {
  const { rows } = await tx.query(
    `SELECT a.certificate_id, a.tenant_id, c.common_name, c.serial_number, c.not_after, a.due_at, a.overdue_at
     FROM renewal_advice a JOIN device_certificates c ON c.id = a.certificate_id
     WHERE a.published_at IS NULL AND a.due_at <= $1 AND c.status = 'ACTIVE' AND c.not_after > $1
     ORDER BY a.due_at, a.certificate_id LIMIT $2`,
    [now, limit],
  );
  return rows.map((r) => ({
    certificate_id: Number(r.certificate_id),
    tenant_id: String(r.tenant_id),
    common_name: String(r.common_name),
    serial_number: String(r.serial_number),
    not_after: iso(r.not_after),
    due_at: iso(r.due_at),
    overdue_at: iso(r.overdue_at),
  }));
}

export async function markAdvicePublished(tx: Queryable, certificateIds: number[], at: Date): Promise<void> {
  if (certificateIds.length === 0) return;
  await tx.query('UPDATE renewal_advice SET published_at = $2 WHERE certificate_id = ANY($1::bigint[])', [certificateIds, at]);
}

/**
 * Schedules whose certificate is no longer ACTIVE (revoked, expired) or whose device has a later
 * ACTIVE certificate (renewed): deleted; returns the devices whose retained advice should be
 * cleared (a published one, and no other schedule of the device left published).
 */
export async function removeStaleAdvice(tx: Queryable, limit: number): Promise<Array<{ tenant_id: string; common_name: string }>> {
  const { rows } = await tx.query(
    `WITH stale AS (
       SELECT a.certificate_id, a.tenant_id, a.device_id, c.common_name, a.published_at
       FROM renewal_advice a JOIN device_certificates c ON c.id = a.certificate_id
       WHERE c.status <> 'ACTIVE'
          OR EXISTS (SELECT 1 FROM device_certificates n
                     WHERE n.tenant_id = c.tenant_id AND n.device_id = c.device_id AND n.status = 'ACTIVE' AND n.not_after > c.not_after)
       ORDER BY a.certificate_id LIMIT $1
     ), gone AS (
       DELETE FROM renewal_advice a USING stale s WHERE a.certificate_id = s.certificate_id RETURNING a.certificate_id
     )
     SELECT DISTINCT s.tenant_id, s.common_name FROM stale s
     WHERE s.published_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM renewal_advice o WHERE o.tenant_id = s.tenant_id AND o.device_id = s.device_id
                         AND o.published_at IS NOT NULL AND o.certificate_id NOT IN (SELECT certificate_id FROM stale))`,
    [limit],
  );
  return rows.map((r) => ({ tenant_id: String(r.tenant_id), common_name: String(r.common_name) }));
}
