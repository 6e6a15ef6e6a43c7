import type { ClaimAudit, ClaimCaRecord, ClaimEnrollmentRecord, ClaimReservation, ClaimStore, StoredClaimCa, StoredProvisioningPolicy } from '../../renewal/ports.ts';
import type { Database } from '../database.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { iso, isoOrNull, isUniqueViolation, text } from '../rows.ts';
import { recordAudit } from './audit-repo.ts';
import { toCertificate } from './certificates-repo.ts';
import { isCompromised } from './device-keys-repo.ts';
import { enqueueAlertEvents } from './outbox-repo.ts';

const CA_COLUMNS = `id, name, subject, fingerprint_sha256, not_before, not_after, crl_this_update, crl_next_update, crl_entries, created_by, created_at, updated_at`;

const toClaimCa = (r: Record<string, unknown>): ClaimCaRecord => ({
  id: Number(r.id),
  name: (r.name as string | null) ?? null,
  subject: String(r.subject),
  fingerprint_sha256: String(r.fingerprint_sha256),
  not_before: iso(r.not_before),
  not_after: iso(r.not_after),
  crl: r.crl_this_update ? { this_update: iso(r.crl_this_update), next_update: isoOrNull(r.crl_next_update), entries: Number(r.crl_entries) } : null,
  created_by: String(r.created_by),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

const toEnrollment = (r: Record<string, unknown>): ClaimEnrollmentRecord => ({
  id: Number(r.id),
  claim_fingerprint: String(r.claim_fingerprint),
  claim_ca_id: Number(r.claim_ca_id),
  claim_serial: String(r.claim_serial),
  claim_subject: String(r.claim_subject),
  device_id: String(r.device_id),
  certificate_id: r.certificate_id === null || r.certificate_id === undefined ? null : Number(r.certificate_id),
  transport: r.transport as 'est' | 'mqtt',
  created_at: iso(r.created_at),
  enrolled_at: isoOrNull(r.enrolled_at),
});

const toPolicy = (r: Record<string, unknown>): StoredProvisioningPolicy => ({
  policy: typeof r.policy === 'string' ? JSON.parse(r.policy) : r.policy,
  approvalSecret: (r.approval_secret as string | null) ?? null,
  updated_by: String(r.updated_by),
  updated_at: iso(r.updated_at),
});

const audited = (tx: Queryable, tenantId: string, at: Date, a: ClaimAudit) =>
  recordAudit(tx, { tenantId, actor: a.actor, action: a.action, targetType: a.targetType, targetId: a.targetId, details: a.details, at });

export function createClaimStore(db: Database): ClaimStore {
  return {
    listClaimCas: (tenantId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `SELECT ${CA_COLUMNS}, ca_cert_pem, encode(crl_der, 'base64') AS crl_base64 FROM claim_cas WHERE tenant_id = $1 ORDER BY id`,
          [tenantId],
        );
        return rows.map(
          (r): StoredClaimCa => ({ ...toClaimCa(r), ca_cert_pem: String(r.ca_cert_pem), crlDer: r.crl_base64 ? Buffer.from(text(r.crl_base64), 'base64') : null }),
        );
      }),

    allClaimCaPems: () =>
      db.asOperator(async (tx) => {
        const { rows } = await tx.query<{ ca_cert_pem: string }>(`SELECT DISTINCT ON (fingerprint_sha256) ca_cert_pem FROM claim_cas ORDER BY fingerprint_sha256`);
        return rows.map((r) => r.ca_cert_pem);
      }),

    insertClaimCa: (c, audit) =>
      db.asTenant(c.tenantId, async (tx) => {
        const { rows } = await tx.query(
          `INSERT INTO claim_cas (tenant_id, name, ca_cert_pem, subject, fingerprint_sha256, not_before, not_after, created_by, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
           ON CONFLICT (tenant_id, fingerprint_sha256) DO NOTHING RETURNING ${CA_COLUMNS}`,
          [c.tenantId, c.name, c.caCertPem, c.subject, c.fingerprint, c.notBefore, c.notAfter, audit.actor, c.now],
        );
        if (!rows[0]) return null;
        const record = toClaimCa(rows[0]);
        await audited(tx, c.tenantId, c.now, { ...audit, targetId: record.id });
        return record;
      }),

    setClaimCaCrl: (tenantId, id, crl, audit) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(
          `UPDATE claim_cas SET crl_der = $3, crl_this_update = $4, crl_next_update = $5, crl_entries = $6, updated_at = $7
           WHERE tenant_id = $1 AND id = $2 RETURNING ${CA_COLUMNS}`,
          [tenantId, id, crl.der, crl.thisUpdate, crl.nextUpdate, crl.entries, crl.now],
        );
        if (!rows[0]) return null;
        await audited(tx, tenantId, crl.now, audit);
        return toClaimCa(rows[0]);
      }),

    deleteClaimCa: (tenantId, id, now, audit) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(`DELETE FROM claim_cas WHERE tenant_id = $1 AND id = $2 RETURNING id`, [tenantId, id]);
        if (!rows[0]) return false;
        await audited(tx, tenantId, now, audit);
        return true;
      }),

    getProvisioningPolicy: (tenantId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(`SELECT policy, approval_secret, updated_by, updated_at FROM provisioning_policies WHERE tenant_id = $1`, [tenantId]);
        return rows[0] ? toPolicy(rows[0]) : null;
      }),

    putProvisioningPolicy: (tenantId, p, audit) =>
      db.asTenant(tenantId, async (tx) => {
        const keep = p.approvalSecret === 'keep';
        const { rows } = await tx.query(
          `INSERT INTO provisioning_policies (tenant_id, policy, approval_secret, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id) DO UPDATE SET policy = $2, updated_by = $4, updated_at = $5,
             approval_secret = CASE WHEN $6 THEN provisioning_policies.approval_secret ELSE $3 END
           RETURNING policy, approval_secret, updated_by, updated_at`,
          [tenantId, JSON.stringify(p.policy), keep ? null : p.approvalSecret, p.actor, p.now, keep],
        );
        await audited(tx, tenantId, p.now, audit);
        return toPolicy(onlyRow(rows, 'upsert provisioning policy'));
      }),

    findClaimEnrollment: (tenantId, fingerprint) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(`SELECT * FROM claim_enrollments WHERE tenant_id = $1 AND claim_fingerprint = $2`, [tenantId, fingerprint]);
        const [row] = rows;
        return row ? toEnrollment(row) : null;
      }),

    claimEnrollmentOfDevice: (tenantId, deviceId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(`SELECT * FROM claim_enrollments WHERE tenant_id = $1 AND device_id = $2 ORDER BY id LIMIT 1`, [tenantId, deviceId]);
        const [row] = rows;
        return row ? toEnrollment(row) : null;
      }),

    reserveClaimEnrollment: (e) =>
      db.asTenant(e.tenantId, async (tx): Promise<ClaimReservation> => {
        // Serialised per device id across replicas (READ COMMITTED: each statement below sees what
        // the request before it committed): two claims cannot both bind one device id. Two device
        // ids for one claim meet at the unique (tenant_id, claim_fingerprint).
        await tx.query(`SELECT pg_advisory_xact_lock(hashtext('certfleet:claim_enrollment'), hashtext($1 || '/' || $2))`, [e.tenantId, e.deviceId]);
        const own = async () =>
          (
            await tx.query(
              `SELECT *, (issuing_until IS NOT NULL AND issuing_until > clock_timestamp()) AS issuing FROM claim_enrollments WHERE tenant_id = $1 AND claim_fingerprint = $2`,
              [e.tenantId, e.claimFingerprint],
            )
          ).rows[0];
        let row = await own();
        if (!row) {
          const { rows: others } = await tx.query(`SELECT * FROM claim_enrollments WHERE tenant_id = $1 AND device_id = $2 AND claim_fingerprint <> $3 ORDER BY id LIMIT 1`, [
            e.tenantId,
            e.deviceId,
            e.claimFingerprint,
          ]);
          if (others[0]) return { outcome: 'device_taken', binding: toEnrollment(others[0]) };
          await tx.query(
            `INSERT INTO claim_enrollments (tenant_id, claim_fingerprint, claim_ca_id, claim_serial, claim_subject, device_id, transport, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, claim_fingerprint) DO NOTHING`,
            [e.tenantId, e.claimFingerprint, e.claimCaId, e.claimSerial, e.claimSubject, e.deviceId, e.transport, e.now],
          );
          row = await own();
        }
        if (!row) throw new Error('reserve claim enrollment: no binding after the insert');
        const binding = toEnrollment(row);
        // Another request (this device or another id) is issuing for this claim: the caller waits for it.
        if (binding.certificate_id === null && row.issuing === true) return { outcome: 'busy', binding };
        if (binding.device_id !== e.deviceId || binding.certificate_id !== null) return { outcome: 'bound', binding };
        const { rows: leased } = await tx.query(
          `UPDATE claim_enrollments SET issuing_until = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
           WHERE tenant_id = $1 AND id = $2 AND certificate_id IS NULL AND (issuing_until IS NULL OR issuing_until < clock_timestamp())
           RETURNING id`,
          [e.tenantId, binding.id, e.leaseMs],
        );
        return { outcome: leased.length === 1 ? 'acquired' : 'busy', binding };
      }),

    releaseClaimEnrollment: (tenantId, id) =>
      db.asTenant(tenantId, async (tx) => {
        await tx.query(`UPDATE claim_enrollments SET issuing_until = NULL WHERE tenant_id = $1 AND id = $2 AND certificate_id IS NULL`, [tenantId, id]);
      }),

    completeClaimEnrollment: (tenantId, id, certificateId, now, audit) =>
      db.asTenant(tenantId, async (tx) => {
        await tx.query(`UPDATE claim_enrollments SET certificate_id = $3, enrolled_at = $4, issuing_until = NULL WHERE tenant_id = $1 AND id = $2`, [tenantId, id, certificateId, now]);
        await audited(tx, tenantId, now, audit);
      }),

    certificateWithPem: (tenantId, id) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query(`SELECT c.*, NULL::timestamptz AS scheduled_revoke_at FROM device_certificates c WHERE c.tenant_id = $1 AND c.id = $2`, [tenantId, id]);
        const [row] = rows;
        return row ? { ...toCertificate(row), cert_pem: String(row.cert_pem) } : null;
      }),

    deviceState: (tenantId, deviceId) =>
      db.asTenant(tenantId, async (tx) => {
        const { rows } = await tx.query<{ exists: boolean; n: number }>(
          `SELECT EXISTS (SELECT 1 FROM device_registry WHERE tenant_id = $1 AND device_id = $2) AS exists,
                  (SELECT count(*) FROM device_certificates WHERE tenant_id = $1 AND device_id = $2)::int AS n`,
          [tenantId, deviceId],
        );
        const row = onlyRow(rows, 'device state');
        return { exists: Boolean(row.exists), certificates: Number(row.n) };
      }),

    recordClaimRequest: (tenantId, fingerprint, requestId, signedAt, now, forgetBefore) =>
      db.asTenant(tenantId, async (tx) => {
        await tx.query('DELETE FROM claim_requests WHERE tenant_id = $1 AND claim_fingerprint = $2 AND received_at < $3', [tenantId, fingerprint, forgetBefore]);
        try {
          const { rows } = await tx.query(
            `INSERT INTO claim_requests (tenant_id, claim_fingerprint, request_id, signed_at, received_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING RETURNING request_id`,
            [tenantId, fingerprint, requestId, signedAt, now],
          );
          return rows.length === 1;
        } catch (e) {
          if (isUniqueViolation(e)) return false;
          throw e;
        }
      }),

    isKeyCompromised: (spki) => db.asOperator((tx) => isCompromised(tx, spki)),

    recordRefusal: (tenantId, now, audit) => db.asTenant(tenantId, (tx) => audited(tx, tenantId, now, audit)),

    raiseSharedClaimAlert: (a) =>
      db.asTenant(a.tenantId, async (tx) => {
        await tx.query(
          `WITH raised AS (
             INSERT INTO fleet_alert AS f (tenant_id, device_id, alert_type, fingerprint, status, severity, summary, details, created_at, updated_at)
             VALUES ($1, (SELECT device_id FROM device_registry WHERE tenant_id = $1 AND device_id = $2), 'CLAIM_CERT_SHARED', $3, 'OPEN', $4, $5, $6, $7, $7)
             ON CONFLICT (tenant_id, alert_type, fingerprint) WHERE status <> 'CLOSED'
             DO UPDATE SET details = EXCLUDED.details, updated_at = EXCLUDED.updated_at, device_id = COALESCE(f.device_id, EXCLUDED.device_id)
             RETURNING f.*, (f.xmax = 0) AS inserted
           ), notified AS (${enqueueAlertEvents('(SELECT * FROM raised WHERE inserted)', `'alert.opened'`, '$7')})
           SELECT 1 FROM raised`,
          [a.tenantId, a.deviceId, `claim:${a.claimFingerprint}`, a.severity, a.summary, JSON.stringify(a.details), a.now],
        );
      }),
  };
}
