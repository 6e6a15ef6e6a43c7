import type { PendingRotation } from '../../app/storage-ports.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { iso } from '../rows.ts';

const toPending = (r: Record<string, unknown>): PendingRotation => ({
  id: Number(r.id),
  tenant_id: String(r.tenant_id),
  device_id: String(r.device_id),
  new_certificate_id: Number(r.new_certificate_id),
  old_certificate_id: Number(r.old_certificate_id),
  old_fingerprint: String(r.old_fingerprint),
  old_status: String(r.old_status),
  new_status: String(r.new_status),
  scheduled_revoke_at: iso(r.scheduled_revoke_at),
  created_at: iso(r.created_at),
  started_by: (r.started_by as string | null) ?? null,
  revoke_old: r.revoke_old !== false,
});

const PENDING = `
  SELECT r.id, r.tenant_id, r.device_id, r.new_certificate_id, r.old_certificate_id, r.scheduled_revoke_at, r.created_at, r.started_by, r.revoke_old,
         c.fingerprint_sha256 AS old_fingerprint, c.status AS old_status, n.status AS new_status
  FROM certificate_rotations r
  JOIN device_certificates c ON c.id = r.old_certificate_id
  JOIN device_certificates n ON n.id = r.new_certificate_id
  WHERE r.status = 'PENDING'`;

/**
 * Schedules the revocation of `oldCertificateId`, superseded by `newCertificateId`. The
 * caller has checked, under the device lock, that the device has no pending rotation.
 */
export async function scheduleRevocation(
  tx: Queryable,
  s: { tenantId: string; deviceId: string; newCertificateId: number; oldCertificateId: number; revokeAt: Date; now: Date; startedBy: string; revokeOld?: boolean },
): Promise<{ scheduled_revoke_at: string }> {
  const { rows } = await tx.query(
    `INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status, created_at, started_by, revoke_old)
     VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $8)
     RETURNING scheduled_revoke_at`,
    [s.tenantId, s.deviceId, s.newCertificateId, s.oldCertificateId, s.revokeAt, s.now, s.startedBy, s.revokeOld ?? true],
  );
  return { scheduled_revoke_at: iso(onlyRow(rows, 'insert rotation').scheduled_revoke_at) };
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
 * Claims due rows system-wide (operator role). The rotation row, the old and the new
 * certificate are locked, and rows another worker (or a cancel, a revocation) holds are
 * skipped: two workers never revoke the same certificate and never wait on anyone, and a
 * cancel that holds the new certificate wins over the worker.
 */
export async function claimDueRotations(tx: Queryable, now: Date, limit: number): Promise<PendingRotation[]> {
  // The device row is claimed too (a row whose device is held, as by a cancel or a confirm, is
  // skipped): the revocation rewrites the device's certificate summary (migration 024), so this
  // transaction never waits for a device while it holds certificates.
  const claim = PENDING.replace('WHERE r.status', 'JOIN device_registry d ON d.tenant_id = r.tenant_id AND d.device_id = r.device_id\n  WHERE r.status');
  const { rows } = await tx.query(
    `${claim} AND r.scheduled_revoke_at <= $1 ORDER BY r.scheduled_revoke_at, r.id LIMIT $2
     FOR UPDATE OF r, c, n SKIP LOCKED FOR NO KEY UPDATE OF d SKIP LOCKED`,
    [now, limit],
  );
  return rows.map(toPending);
}

/** PENDING → COMPLETED for one row (its old certificate was revoked, or is no longer ACTIVE). */
export async function completeRotation(tx: Queryable, id: number, at: Date): Promise<void> {
  await tx.query(`UPDATE certificate_rotations SET status = 'COMPLETED', completed_at = $2 WHERE id = $1 AND status = 'PENDING'`, [id, at]);
}

/** PENDING → COMPLETED for the row scheduling `oldCertificateId` (it was revoked). */
export async function completeRotationsOfOld(tx: Queryable, oldCertificateId: number, at: Date): Promise<void> {
  await tx.query(`UPDATE certificate_rotations SET status = 'COMPLETED', completed_at = $2 WHERE old_certificate_id = $1 AND status = 'PENDING'`, [oldCertificateId, at]);
}

/** The status of the device's most recent rotation (PENDING, COMPLETED, CANCELLED), or null when it never had one. */
export async function latestRotationStatus(tx: Queryable, tenantId: string, deviceId: string): Promise<string | null> {
  const { rows } = await tx.query<{ status: string }>(
    `SELECT status FROM certificate_rotations WHERE tenant_id = $1 AND device_id = $2
     ORDER BY new_certificate_id DESC, (status = 'COMPLETED') DESC LIMIT 1`,
    [tenantId, deviceId],
  );
  return rows[0]?.status ?? null;
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
