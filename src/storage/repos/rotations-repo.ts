import type { Queryable } from '../driver.ts';
import { iso } from '../rows.ts';

/** One pending scheduled revocation: `old_certificate_id` is revoked at `scheduled_revoke_at`, superseded by `new_certificate_id`. */
export interface PendingRotation {
  id: number;
  tenant_id: string;
  device_id: string;
  new_certificate_id: number;
  old_certificate_id: number;
  old_fingerprint: string;
  old_status: string;
  scheduled_revoke_at: string;
  created_at: string;
}

const toPending = (r: Record<string, unknown>): PendingRotation => ({
  id: Number(r.id),
  tenant_id: String(r.tenant_id),
  device_id: String(r.device_id),
  new_certificate_id: Number(r.new_certificate_id),
  old_certificate_id: Number(r.old_certificate_id),
  old_fingerprint: String(r.old_fingerprint),
  old_status: String(r.old_status),
  scheduled_revoke_at: iso(r.scheduled_revoke_at),
  created_at: iso(r.created_at),
});

const PENDING = `
  SELECT r.id, r.tenant_id, r.device_id, r.new_certificate_id, r.old_certificate_id, r.scheduled_revoke_at, r.created_at,
         c.fingerprint_sha256 AS old_fingerprint, c.status AS old_status
  FROM certificate_rotations r
  JOIN device_certificates c ON c.id = r.old_certificate_id
  WHERE r.status = 'PENDING'`;

/**
 * Schedules the revocation of `oldCertificateId`. An old certificate has at most one
 * pending row (unique partial index): when an earlier rotation already scheduled it, that
 * row is kept and keeps the sooner of the two times, so a later rotation never extends the
 * life of a superseded certificate. The row stays with the certificate that first
 * superseded it (cancelling the later rotation leaves it alone), unless that certificate
 * is no longer ACTIVE, in which case the new rotation takes it over.
 */
export async function scheduleRevocation(
  tx: Queryable,
  s: { tenantId: string; deviceId: string; newCertificateId: number; oldCertificateId: number; revokeAt: Date; now: Date; startedBy: string },
): Promise<{ scheduled_revoke_at: string; new_certificate_id: number }> {
  const { rows } = await tx.query(
    `INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status, created_at, started_by)
     VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7)
     ON CONFLICT (old_certificate_id) WHERE status = 'PENDING' DO UPDATE SET
       scheduled_revoke_at = LEAST(certificate_rotations.scheduled_revoke_at, EXCLUDED.scheduled_revoke_at),
       new_certificate_id = CASE
         WHEN EXISTS (SELECT 1 FROM device_certificates n WHERE n.id = certificate_rotations.new_certificate_id AND n.status = 'ACTIVE')
         THEN certificate_rotations.new_certificate_id ELSE EXCLUDED.new_certificate_id END
     RETURNING scheduled_revoke_at, new_certificate_id`,
    [s.tenantId, s.deviceId, s.newCertificateId, s.oldCertificateId, s.revokeAt, s.now, s.startedBy],
  );
  return { scheduled_revoke_at: iso(rows[0].scheduled_revoke_at), new_certificate_id: Number(rows[0].new_certificate_id) };
}

/** The device's pending rows, soonest first. */
export async function pendingRotationsOfDevice(tx: Queryable, tenantId: string, deviceId: string): Promise<PendingRotation[]> {
  const { rows } = await tx.query(
    `${PENDING} AND r.tenant_id = $1 AND r.device_id = $2 ORDER BY r.scheduled_revoke_at, r.id`,
    [tenantId, deviceId],
  );
  return rows.map(toPending);
}

/**
 * Claims due rows system-wide (operator role). Both the rotation row and the old
 * certificate are locked and rows another worker (or a rotation, a revocation) holds are
 * skipped, so two workers never revoke the same certificate and never wait on each other.
 */
export async function claimDueRotations(tx: Queryable, now: Date, limit: number): Promise<PendingRotation[]> {
  const { rows } = await tx.query(
    `${PENDING} AND r.scheduled_revoke_at <= $1 ORDER BY r.scheduled_revoke_at, r.id LIMIT $2 FOR UPDATE OF r, c SKIP LOCKED`,
    [now, limit],
  );
  return rows.map(toPending);
}

/** PENDING → COMPLETED for one row (its old certificate was revoked, or is no longer ACTIVE). */
export async function completeRotation(tx: Queryable, id: number, at: Date): Promise<void> {
  await tx.query(`UPDATE certificate_rotations SET status = 'COMPLETED', completed_at = $2 WHERE id = $1 AND status = 'PENDING'`, [id, at]);
}

/** PENDING → CANCELLED for the rows a given new certificate created; returns the old certificate ids. */
export async function cancelRotationsOf(tx: Queryable, tenantId: string, deviceId: string, newCertificateId: number, at: Date): Promise<number[]> {
  const { rows } = await tx.query<{ old_certificate_id: number }>(
    `UPDATE certificate_rotations SET status = 'CANCELLED', completed_at = $4
     WHERE tenant_id = $1 AND device_id = $2 AND new_certificate_id = $3 AND status = 'PENDING'
     RETURNING old_certificate_id`,
    [tenantId, deviceId, newCertificateId, at],
  );
  return rows.map((r) => Number(r.old_certificate_id)).sort((a, b) => a - b);
}
