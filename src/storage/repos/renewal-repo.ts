import type { PendingDeviceRotation, RenewalStore } from '../../renewal/ports.ts';
import type { Database } from '../database.ts';
import { iso, isUniqueViolation } from '../rows.ts';
import { recordAudit } from './audit-repo.ts';
import { toCertificate } from './certificates-repo.ts';
import { getRenewalPolicy } from './renewal-policy-repo.ts';

export function createRenewalStore(db: Database): RenewalStore {
  return {
    certificateByFingerprint: (tenantId, fingerprint) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `SELECT c.*, NULL::timestamptz AS scheduled_revoke_at FROM device_certificates c WHERE c.fingerprint_sha256 = $1`,
          [fingerprint],
        );
        return rows[0] ? toCertificate(rows[0]) : null;
      }),

    latestActiveCertificate: (tenantId, deviceId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `SELECT c.*, NULL::timestamptz AS scheduled_revoke_at FROM device_certificates c
           WHERE c.tenant_id = $1 AND c.device_id = $2 AND c.status = 'ACTIVE' ORDER BY c.not_after DESC, c.id DESC LIMIT 1`,
          [tenantId, deviceId],
        );
        return rows[0] ? toCertificate(rows[0]) : null;
      }),

    pendingRotation: (tenantId, deviceId) =>
      db.asTenant(tenantId, async (tx): Promise<PendingDeviceRotation | null> => {
        const { rows } = await tx.query(
          `SELECT r.new_certificate_id, n.cert_pem, r.old_certificate_id, r.scheduled_revoke_at, r.started_by
           FROM certificate_rotations r JOIN device_certificates n ON n.id = r.new_certificate_id
           WHERE r.tenant_id = $1 AND r.device_id = $2 AND r.status = 'PENDING' AND n.status = 'ACTIVE'
           ORDER BY r.created_at DESC, r.id`,
          [tenantId, deviceId],
        );
        const [latest] = rows; // the newest rotation first; its rows share its new certificate
        if (latest === undefined) return null;
        const newest = Number(latest.new_certificate_id);
        const same = rows.filter((r) => Number(r.new_certificate_id) === newest);
        return {
          newCertificateId: newest,
          newCertPem: String(latest.cert_pem),
          oldCertificateIds: same.map((r) => Number(r.old_certificate_id)),
          scheduledRevokeAt: iso(latest.scheduled_revoke_at),
          startedBy: (latest.started_by as string | null) ?? null,
        };
      }),

    markConfirmedVia: (tenantId, newCertificateId, via) =>
      db.asTenant(tenantId, async (tx) => {
        await tx.query(`UPDATE certificate_rotations SET confirmed_via = $2 WHERE new_certificate_id = $1 AND status = 'COMPLETED'`, [
          newCertificateId,
          via,
        ]);
      }),

    createEnrollmentToken: (t) =>
      db.asTenant(t.tenantId, async (tx) => {
        const { rows } = await tx.query(
          `INSERT INTO enrollment_tokens (tenant_id, device_id, token_sha256, expires_at, created_by, created_at)
           SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM device_registry WHERE tenant_id = $1 AND device_id = $2)
           RETURNING id, device_id, expires_at, created_at`,
          [t.tenantId, t.deviceId, t.tokenSha256, t.expiresAt, t.createdBy, t.now],
        );
        if (!rows[0]) return null;
        const record = { id: Number(rows[0].id), device_id: String(rows[0].device_id), expires_at: iso(rows[0].expires_at), created_at: iso(rows[0].created_at) };
        // The token is a device credential: who minted it is recorded with it (never the token itself).
        await recordAudit(tx, {
          tenantId: t.tenantId,
          actor: t.createdBy,
          action: 'enrollment_token.created',
          targetType: 'device',
          targetId: t.deviceId,
          details: { enrollment_token_id: record.id, expires_at: record.expires_at },
          at: t.now,
        });
        return record;
      }),

    consumeEnrollmentToken: (tenantId, deviceId, tokenSha256, now) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `UPDATE enrollment_tokens SET used_at = $4
           WHERE tenant_id = $1 AND device_id = $2 AND token_sha256 = $3 AND used_at IS NULL AND expires_at > $4
           RETURNING id`,
          [tenantId, deviceId, tokenSha256, now],
        );
        return rows.length === 1;
      }),

    renewalPolicy: (tenantId) =>
      db.asTenant(tenantId, async (tx) => {
        const policy = await getRenewalPolicy(tx, tenantId);
        const { rows } = await tx.query('SELECT renewal_validity_days FROM tenant_settings WHERE tenant_id = $1', [tenantId]);
        return { policy, validityDaysSet: rows[0]?.renewal_validity_days != null };
      }),

    newerCertificates: (tenantId, deviceId, certificateId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          'SELECT id, status, cert_pem FROM device_certificates WHERE tenant_id = $1 AND device_id = $2 AND id > $3 ORDER BY id',
          [tenantId, deviceId, certificateId],
        );
        return rows.map((r) => ({ id: Number(r.id), status: String(r.status) as 'ACTIVE' | 'REVOKED' | 'EXPIRED', certPem: String(r.cert_pem) }));
      }),

    supersededBy: (tenantId, certificateId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `SELECT new_certificate_id FROM certificate_rotations WHERE tenant_id = $1 AND old_certificate_id = $2 AND status = 'COMPLETED' ORDER BY id DESC LIMIT 1`,
          [tenantId, certificateId],
        );
        const [row] = rows;
        return row === undefined ? null : Number(row.new_certificate_id);
      }),

    wasImported: (tenantId, certificateId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `SELECT 1 FROM audit_events WHERE tenant_id = $1 AND action = 'certificate.imported' AND target_type = 'certificate' AND target_id = $2 LIMIT 1`,
          [tenantId, String(certificateId)],
        );
        return rows.length > 0;
      }),

    recordSignedRequest: (r) =>
      db.asTenant(r.tenantId, async (tx) => {
        await tx.query('DELETE FROM renewal_requests WHERE tenant_id = $1 AND certificate_fingerprint = $2 AND received_at < $3', [r.tenantId, r.certificateFingerprint, r.forgetBefore]);
        try {
          const { rows } = await tx.query(
            `INSERT INTO renewal_requests (tenant_id, certificate_fingerprint, request_id, signed_at, received_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING RETURNING request_id`,
            [r.tenantId, r.certificateFingerprint, r.requestId, r.signedAt, r.now],
          );
          return rows.length === 1;
        } catch (e) {
          if (isUniqueViolation(e)) return false;
          throw e;
        }
      }),

    recordAudit: (e) => db.asTenant(e.tenantId, (tx) => recordAudit(tx, e)),
  };
}
