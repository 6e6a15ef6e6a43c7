import type { AuditEvent, CertificateListQuery, CertificatePage, NewCertificate } from '../../app/storage-ports.ts';
import { CERTIFICATE_STATUSES, type CertificateRecord, type CertificateStatus, type CertificateWithPem } from '../../domain/certificate.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { iso, isoOrNull } from '../rows.ts';
import { createFilter, planKeysetPages } from '../sql-filter.ts';
import { certificateKinds, countedRows } from './row-counts-repo.ts';
import { anotherDeviceHolds } from './device-keys-repo.ts';

const COLUMNS = `c.id, c.tenant_id, c.device_id, c.fingerprint_sha256, c.common_name, c.issuer, c.ca_id, c.serial_number,
         c.key_type, c.status, c.not_before, c.not_after, c.revoked_at, c.revoked_reason,
         c.created_at, c.updated_at`;

const SELECT = `
  SELECT ${COLUMNS}, r.scheduled_revoke_at
  FROM device_certificates c
  LEFT JOIN certificate_rotations r ON r.old_certificate_id = c.id AND r.status = 'PENDING'`;

export const toCertificate = (r: Record<string, unknown>): CertificateRecord => ({
  id: Number(r.id),
  tenant_id: String(r.tenant_id),
  device_id: String(r.device_id),
  fingerprint_sha256: String(r.fingerprint_sha256),
  common_name: String(r.common_name),
  issuer: String(r.issuer),
  ca_id: (r.ca_id as string | null | undefined) ?? null,
  serial_number: String(r.serial_number),
  key_type: String(r.key_type),
  status: r.status as CertificateStatus,
  not_before: iso(r.not_before),
  not_after: iso(r.not_after),
  revoked_at: isoOrNull(r.revoked_at),
  revoked_reason: (r.revoked_reason as string | null) ?? null,
  scheduled_revoke_at: isoOrNull(r.scheduled_revoke_at),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

const newCertificateRecord = (id: number, c: NewCertificate): CertificateRecord => ({
  id,
  tenant_id: c.tenantId,
  device_id: c.deviceId,
  fingerprint_sha256: c.fingerprint,
  common_name: c.commonName,
  issuer: c.issuer,
  ca_id: c.caId ?? null,
  serial_number: c.serialNumber,
  key_type: c.keyType,
  status: 'ACTIVE',
  not_before: c.notBefore.toISOString(),
  not_after: c.notAfter.toISOString(),
  revoked_at: null,
  revoked_reason: null,
  scheduled_revoke_at: null,
  created_at: c.now.toISOString(),
  updated_at: c.now.toISOString(),
});

/**
 * Inserts the certificate and its audit event in one statement (one round trip on the
 * issuance hot path); the audit event's target_id is the new certificate's id.
 */
export async function insertCertificate(tx: Queryable, c: NewCertificate, audit: Omit<AuditEvent, 'targetId' | 'tenantId' | 'at'>): Promise<CertificateRecord> {
  const { rows } = await tx.query<{ id: number }>(
    `WITH cert AS (
       INSERT INTO device_certificates
         (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
          status, not_before, not_after, created_at, updated_at, spki_sha256, ca_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ACTIVE', $9, $10, $11, $11, $16, $17)
       RETURNING id)
     INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id, details, created_at)
     SELECT $1, $12, $13, $14, cert.id::text, $15, $11 FROM cert
     RETURNING target_id::int8 AS id`,
    [
      c.tenantId, c.deviceId, c.certPem, c.fingerprint, c.commonName, c.issuer, c.serialNumber, c.keyType, c.notBefore, c.notAfter, c.now,
      audit.actor, audit.action, audit.targetType, JSON.stringify(audit.details ?? {}), c.spkiSha256, c.caId ?? null,
    ],
  );
  return newCertificateRecord(onlyRow(rows, 'insert certificate').id, c);
}

/** The group commit's statement (below): one constant text, prepared once per connection. */
const INSERT_ISSUED_SQL = `WITH m AS (
     SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                          $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::text[], $16::jsonb[], $17::text[])
       WITH ORDINALITY AS m(device_id, cert_pem, fingerprint, common_name, issuer, serial_number, key_type, spki_sha256,
                            not_before, not_after, now, actor, action, target_type, details, ca_id, ord)
     WHERE NOT EXISTS (SELECT 1 FROM compromised_keys k WHERE k.spki_sha256 = m.spki_sha256)
       AND NOT ${anotherDeviceHolds('$1', 'm.spki_sha256', 'm.device_id')}),
   cert AS (
     INSERT INTO device_certificates
       (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
        status, not_before, not_after, created_at, updated_at, spki_sha256, ca_id)
     SELECT $1, device_id, cert_pem, fingerprint, common_name, issuer, serial_number, key_type, 'ACTIVE', not_before, not_after, now, now, spki_sha256, ca_id
     FROM m ORDER BY ord
     RETURNING id, fingerprint_sha256),
   audit AS (
     INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id, details, created_at)
     SELECT $1, m.actor, m.action, m.target_type, cert.id::text, m.details, m.now
     FROM cert JOIN m ON m.fingerprint = cert.fingerprint_sha256
     ORDER BY cert.id
     RETURNING target_id)
   SELECT cert.id, m.ord::int4 AS ord FROM cert JOIN m ON m.fingerprint = cert.fingerprint_sha256
   WHERE cert.id::text IN (SELECT target_id FROM audit)`;

/**
 * Group commit (issuance): the members' certificates and their audit events in one statement, one
 * round trip for the whole group, the device-summary trigger (migration 024) run once for it. A
 * member whose key is compromised or certified for another device of the tenant is not inserted
 * (null at its index): the caller stores it alone, where the precise error is raised. Any error
 * (unknown device, duplicate) aborts the statement and so every member of it.
 */
export async function insertIssuedCertificates(
  tx: Queryable,
  members: { certificate: NewCertificate; audit: Omit<AuditEvent, 'targetId' | 'tenantId' | 'at'> }[],
): Promise<(CertificateRecord | null)[]> {
  const [first] = members;
  if (first === undefined) return [];
  const tenantId = first.certificate.tenantId;
  if (members.some((m) => m.certificate.tenantId !== tenantId)) throw new Error('a group commit is for one tenant');
  const col = <T>(f: (m: (typeof members)[number]) => T) => members.map(f);
  const { rows } = await tx.query<{ id: number; ord: number }>(
    INSERT_ISSUED_SQL,
    [
      tenantId,
      col((m) => m.certificate.deviceId),
      col((m) => m.certificate.certPem),
      col((m) => m.certificate.fingerprint),
      col((m) => m.certificate.commonName),
      col((m) => m.certificate.issuer),
      col((m) => m.certificate.serialNumber),
      col((m) => m.certificate.keyType),
      col((m) => m.certificate.spkiSha256),
      col((m) => m.certificate.notBefore.toISOString()),
      col((m) => m.certificate.notAfter.toISOString()),
      col((m) => m.certificate.now.toISOString()),
      col((m) => m.audit.actor),
      col((m) => m.audit.action),
      col((m) => m.audit.targetType),
      col((m) => JSON.stringify(m.audit.details ?? {})),
      col((m) => m.certificate.caId ?? null),
    ],
    // Parsed and planned once per connection (a generic plan: the arrays' lengths do not change it).
    { prepared: 'certfleet_insert_issued_certificates' },
  );
  const idOf = new Map(rows.map((r) => [Number(r.ord), Number(r.id)]));
  return members.map((m, i) => {
    const id = idOf.get(i + 1);
    return id === undefined ? null : newCertificateRecord(id, m.certificate);
  });
}

export async function findCertificate(tx: Queryable, id: number): Promise<CertificateWithPem | null> {
  const { rows } = await tx.query(`${SELECT.replace('SELECT c.id', 'SELECT c.cert_pem, c.id')} WHERE c.id = $1`, [id]);
  return rows[0] ? { ...toCertificate(rows[0]), cert_pem: String(rows[0].cert_pem) } : null;
}

/** `lock`: FOR UPDATE on the certificates, so a concurrent revocation waits (or is seen) before a rotation schedules them. */
export async function activeCertificatesOfDevice(tx: Queryable, tenantId: string, deviceId: string, options: { lock?: boolean } = {}): Promise<CertificateRecord[]> {
  const { rows } = await tx.query(
    `${SELECT} WHERE c.tenant_id = $1 AND c.device_id = $2 AND c.status = 'ACTIVE' ORDER BY c.id DESC${options.lock ? ' FOR UPDATE OF c' : ''}`,
    [tenantId, deviceId],
  );
  return rows.map(toCertificate);
}

/** Locks one certificate row (FOR UPDATE) and returns its status; null when it does not exist (or is another tenant's). */
export async function lockCertificate(tx: Queryable, id: number): Promise<CertificateStatus | null> {
  const { rows } = await tx.query<{ status: CertificateStatus }>('SELECT status FROM device_certificates WHERE id = $1 FOR UPDATE', [id]);
  return rows[0]?.status ?? null;
}

/**
 * One keyset page, newest first, in two steps. The ids: an index-only range scan of
 * (tenant_id, id), (tenant_id, status, id) or (tenant_id, device_id, id) (migration 012) from
 * the cursor, stopping after limit + 1 entries, so a page costs the same at any depth and
 * however many newer rows other tenants have (the primary key, walked backwards, would have
 * to skip them one by one). Then only those rows are read, with their pending rotation.
 * `total` is exact: the per-tenant counters for the tenant and status filters, an index
 * count for a device (a few rows), an expiry window (the ACTIVE certificates in it) or the
 * rotation filter.
 */
export async function listCertificates(tx: Queryable, q: CertificateListQuery): Promise<CertificatePage> {
  const f = createFilter();
  if (q.tenantId) f.add((p) => `c.tenant_id = ${p}`, q.tenantId);
  if (q.deviceId) f.add((p) => `c.device_id = ${p}`, q.deviceId);
  if (q.status) f.add((p) => `c.status = ${p}`, q.status);
  if (q.expiringBefore) {
    f.raw(`c.status = 'ACTIVE'`);
    f.add((p) => `c.not_after <= ${p}`, q.expiringBefore);
  }
  if (q.caId) f.add((p) => `c.ca_id = ${p}`, q.caId);
  if (q.rotation) {
    f.raw(`${q.rotation === 'none' ? 'NOT ' : ''}EXISTS (SELECT 1 FROM certificate_rotations p
      WHERE p.status = 'PENDING' AND (p.old_certificate_id = c.id OR p.new_certificate_id = c.id))`);
  }
  const total = q.deviceId || q.expiringBefore || q.rotation || q.caId
    ? Number(onlyRow((await tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM device_certificates c${f.sql()}`, f.params)).rows, 'count certificates').n)
    : await countedRows(tx, certificateKinds(q.status ? [q.status] : CERTIFICATE_STATUSES), q.tenantId);
  if (q.beforeId) f.add((p) => `c.id < ${p}`, q.beforeId);
  await planKeysetPages(tx);
  // LATERAL ... LIMIT 1 is never flattened into a join: each id is one lookup by primary key.
  const { rows } = await tx.query(
    `SELECT c.*,
            (SELECT r.scheduled_revoke_at FROM certificate_rotations r WHERE r.old_certificate_id = c.id AND r.status = 'PENDING') AS scheduled_revoke_at
     FROM (SELECT c.id FROM device_certificates c${f.sql()} ORDER BY c.id DESC LIMIT ${f.param(q.limit + 1)}) page
     CROSS JOIN LATERAL (SELECT ${COLUMNS} FROM device_certificates c WHERE c.id = page.id LIMIT 1) c
     ORDER BY page.id DESC`,
    f.params,
  );
  const certificates = rows.slice(0, q.limit).map(toCertificate);
  const last = certificates[certificates.length - 1];
  return { certificates, total, next: rows.length > q.limit && last ? last.id : null };
}

/**
 * ACTIVE → REVOKED; null when the certificate is not (or no longer) ACTIVE. In the same statement,
 * the CA's pending-revocation mark: until a CRL build takes it, a start publishes (crash safety).
 */
export async function markRevoked(tx: Queryable, id: number, reason: string, at: Date): Promise<CertificateRecord | null> {
  // Lock order: the device row first (its certificate summary, migration 024, is rewritten by
  // the revocation), then the certificate, as rotations and the expiry tick do.
  await tx.query(
    `SELECT 1 FROM device_registry d JOIN device_certificates c ON c.tenant_id = d.tenant_id AND c.device_id = d.device_id
     WHERE c.id = $1 FOR NO KEY UPDATE OF d`,
    [id],
  );
  const { rows } = await tx.query<{ id: number }>(
    `WITH revoked AS (
       UPDATE device_certificates SET status = 'REVOKED', revoked_at = $2, revoked_reason = $3, updated_at = $2
       WHERE id = $1 AND status = 'ACTIVE' RETURNING id, issuer, serial_number),
     mark AS (INSERT INTO crl_pending_revocations (issuer, serial_number) SELECT issuer, serial_number FROM revoked)
     SELECT id FROM revoked`,
    [id, at, reason],
  );
  if (rows.length === 0) return null;
  return toCertificate(onlyRow((await tx.query(`${SELECT} WHERE c.id = $1`, [id])).rows, 'read the certificate just revoked'));
}
