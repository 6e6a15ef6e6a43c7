import { X509Certificate } from 'node:crypto';
import type { CaProgress, NewCaRecord, RevokedEntryCallback } from '../../app/storage-ports.ts';
import { CA_STATUSES, type CaRecord, type CaStatus } from '../../domain/ca.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { dateOrNull, textOrNull, toDate } from '../rows.ts';

const COLUMNS = `id, tenant_id, status, kind, parent_id, subject, issuer_label, issuer_key_id, not_before, not_after, cert_pem, key_kind, key_ref, crl_url,
  created_at, activated_at, retiring_at, retired_at, revoked_at, revocation_reason`;

const statusOf = (s: unknown): CaStatus => {
  if (!(CA_STATUSES as readonly unknown[]).includes(s)) throw new Error(`unknown CA status ${String(s)}`);
  return s as CaStatus;
};

/** The certificate's serial as device_certificates stores serials: lower-case hex, no leading zeros ('' for a row whose PEM does not parse). */
function serialOf(pem: string): string {
  try {
    return new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
  } catch {
    return '';
  }
}

const toCa = (r: Record<string, unknown>): CaRecord => ({
  id: String(r.id),
  tenantId: textOrNull(r.tenant_id),
  status: statusOf(r.status),
  kind: r.kind === 'root' ? 'root' : 'issuing',
  parentId: textOrNull(r.parent_id),
  serialNumber: serialOf(String(r.cert_pem)),
  subject: String(r.subject),
  issuerLabel: String(r.issuer_label),
  issuerKeyId: String(r.issuer_key_id),
  notBefore: toDate(r.not_before),
  notAfter: toDate(r.not_after),
  certPem: String(r.cert_pem),
  keyRef: r.key_kind === 'pkcs11' ? { kind: 'pkcs11', uri: String(r.key_ref) } : { kind: 'file', path: String(r.key_ref) },
  crlDistributionPoint: String(r.crl_url),
  createdAt: toDate(r.created_at),
  activatedAt: dateOrNull(r.activated_at),
  retiringAt: dateOrNull(r.retiring_at),
  retiredAt: dateOrNull(r.retired_at),
  revokedAt: dateOrNull(r.revoked_at),
  revocationReason: textOrNull(r.revocation_reason),
});

export async function listCas(tx: Queryable): Promise<CaRecord[]> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM certificate_authorities ORDER BY tenant_id NULLS FIRST, not_before, id`);
  return rows.map(toCa);
}

export async function findCa(tx: Queryable, id: string, lock = false): Promise<CaRecord | null> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM certificate_authorities WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0] === undefined ? null : toCa(rows[0]);
}

export async function findCaByKeyId(tx: Queryable, issuerKeyId: string): Promise<CaRecord | null> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM certificate_authorities WHERE issuer_key_id = $1`, [issuerKeyId]);
  return rows[0] === undefined ? null : toCa(rows[0]);
}

/** A unique violation (one active per scope, issuer key id, issuer label, id) surfaces as AlreadyExistsError through the storage wrapper. */
export async function insertCa(tx: Queryable, ca: NewCaRecord): Promise<CaRecord> {
  const { rows } = await tx.query(
    `INSERT INTO certificate_authorities (id, tenant_id, status, subject, issuer_label, issuer_key_id, not_before, not_after, cert_pem,
       key_kind, key_ref, created_at, created_by, activated_at, crl_url, kind, parent_id)
     VALUES ($1, $2, $3::text, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $3::text = 'active' THEN $12::timestamptz END, $14, $15, $16)
     RETURNING ${COLUMNS}`,
    [
      ca.id, ca.tenantId, ca.status, ca.subject, ca.issuerLabel, ca.issuerKeyId, ca.notBefore, ca.notAfter, ca.certPem,
      ca.keyRef.kind, ca.keyRef.kind === 'file' ? ca.keyRef.path : ca.keyRef.uri, ca.createdAt, ca.createdBy, ca.crlDistributionPoint,
      ca.kind ?? 'issuing', ca.parentId ?? null,
    ],
  );
  return toCa(onlyRow(rows, 'certificate authority'));
}

/** Locks the scope's active issuing CA (of `tenantId`'s scope, null = global) and returns it (a root is never the scope's active CA). */
export async function lockActiveCa(tx: Queryable, tenantId: string | null): Promise<CaRecord | null> {
  const { rows } = await tx.query(
    `SELECT ${COLUMNS} FROM certificate_authorities WHERE status = 'active' AND kind = 'issuing' AND COALESCE(tenant_id, '') = COALESCE($1::text, '') FOR UPDATE`,
    [tenantId],
  );
  return rows[0] === undefined ? null : toCa(rows[0]);
}

/** Sets the status and its timestamp (only from the given statuses); null when the CA was not in one of them. */
export async function setCaStatus(tx: Queryable, id: string, to: CaStatus, from: readonly CaStatus[], at: Date, reason: string | null = null): Promise<CaRecord | null> {
  const { rows } = await tx.query(
    `UPDATE certificate_authorities SET status = $2::text,
       activated_at = CASE WHEN $2::text = 'active' THEN $4::timestamptz ELSE activated_at END,
       retiring_at = CASE WHEN $2::text = 'retiring' THEN $4::timestamptz ELSE retiring_at END,
       retired_at = CASE WHEN $2::text = 'retired' THEN $4::timestamptz ELSE retired_at END,
       revoked_at = CASE WHEN $2::text = 'revoked' THEN $4::timestamptz ELSE revoked_at END,
       revocation_reason = CASE WHEN $2::text IN ('revoked', 'retired') THEN $5::text ELSE revocation_reason END
     WHERE id = $1 AND status = ANY($3::text[]) RETURNING ${COLUMNS}`,
    [id, to, [...from], at, reason],
  );
  return rows[0] === undefined ? null : toCa(rows[0]);
}

export async function setCaCrlUrl(tx: Queryable, id: string, url: string): Promise<void> {
  await tx.query(`UPDATE certificate_authorities SET crl_url = $2 WHERE id = $1`, [id, url]);
}

/** Active (unrevoked), unexpired certificates signed by the CA, per tenant. */
export async function caProgress(tx: Queryable, caId: string, now: Date): Promise<CaProgress[]> {
  const { rows } = await tx.query<{ tenant_id: string; n: string }>(
    `SELECT tenant_id, count(*)::int8::text AS n FROM device_certificates WHERE ca_id = $1 AND status = 'ACTIVE' AND not_after > $2
     GROUP BY tenant_id ORDER BY tenant_id`,
    [caId, now],
  );
  return rows.map((r) => ({ tenantId: r.tenant_id, activeCertificates: Number(r.n) }));
}

/** Records `caId` on up to `limit` certificates whose issuer is the CA's label and that name no CA yet; returns how many. */
export async function backfillCaId(tx: Queryable, caId: string, issuerLabel: string, limit: number): Promise<number> {
  const { rowCount } = await tx.query(
    `UPDATE device_certificates SET ca_id = $1
     WHERE id IN (SELECT id FROM device_certificates WHERE issuer = $2 AND ca_id IS NULL ORDER BY issuer, id LIMIT $3)`,
    [caId, issuerLabel, limit],
  );
  return rowCount ?? 0;
}

/** The intermediates a root signed, any status. */
export async function childCas(tx: Queryable, parentId: string): Promise<CaRecord[]> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM certificate_authorities WHERE parent_id = $1 ORDER BY not_before, id`, [parentId]);
  return rows.map(toCa);
}

/**
 * The entries of a root's CRL: the intermediates it signed that were revoked (cACompromise) or
 * retired (cessationOfOperation: withdrawn, or ended while certificates remained), with the time
 * they left service and their notAfter. `issuer`: the root's issuer label (its CRL's scope, as a
 * device CA's CRL lists device_certificates WHERE issuer = label).
 */
export async function forEachEndedIntermediate(tx: Queryable, issuer: string, onEntry: RevokedEntryCallback): Promise<number> {
  const { rows } = await tx.query(
    `SELECT c.cert_pem, c.status, c.revocation_reason, floor(date_part('epoch', COALESCE(c.revoked_at, c.retired_at)))::int8::text AS at, c.not_after
     FROM certificate_authorities c JOIN certificate_authorities p ON p.id = c.parent_id
     WHERE p.kind = 'root' AND p.issuer_label = $1 AND c.status IN ('revoked', 'retired')`,
    [issuer],
  );
  for (const r of rows) {
    const serial = serialOf(String(r.cert_pem));
    if (!serial) continue;
    const reason = r.status === 'revoked' ? 'cACompromise' : 'cessationOfOperation';
    onEntry(serial, Number(r.at) * 1000, reason, toDate(r.not_after).getTime());
  }
  return rows.length;
}
