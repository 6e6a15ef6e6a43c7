import { randomBytes } from 'node:crypto';
import type { Driver } from '../../src/storage/driver.ts';

/** Reason texts the bulk rows cycle through: RFC names, an alias, and free text (→ unspecified). */
export const BULK_REASONS = ['keyCompromise', 'superseded', 'unspecified', 'cessationOfOperation', 'rotated', 'lost in\nthe field'];

/**
 * Inserts `count` REVOKED (or ACTIVE) certificates of `issuer` (default 'bulk') (and the devices they belong to) with one
 * `INSERT ... SELECT generate_series`, as the connecting user (no RLS). Serials are 20 random-looking
 * bytes (40 hex digits, no leading zero), unique per call; revocation times spread over 30 days
 * before `now`; all valid for a year after `now`. `caId`: the rows name their CA record, as certificates
 * issued since CA records exist do (without it they are left to the start-up backfill, as after an upgrade).
 * Returns the time taken.
 */
export async function insertRevokedCertificates(
  driver: Driver,
  options: { count: number; now: Date; tenant?: string; devices?: number; issuer?: string; status?: 'REVOKED' | 'ACTIVE'; caId?: string },
): Promise<{ ms: number; salt: string }> {
  const tenant = options.tenant ?? 'bulk';
  const devices = Math.max(1, Math.min(options.devices ?? 1000, options.count));
  const salt = randomBytes(4).toString('hex');
  const revoked = (options.status ?? 'REVOKED') === 'REVOKED';
  const started = performance.now();
  await driver.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at)
       SELECT $1, 'bulk-' || d, $3, $3 FROM generate_series(0, $2::int - 1) d ON CONFLICT DO NOTHING`,
      [tenant, devices, options.now],
    );
    await tx.query(
      `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number,
         key_type, status, not_before, not_after, revoked_at, revoked_reason, created_at, updated_at, ca_id)
       SELECT $1, 'bulk-' || (i % $2::int), '-', lpad(to_hex(i), 16, '0') || md5($5 || i) || md5(i || $5)::char(16),
         $1 || '/bulk-' || (i % $2::int), $7, '4' || substr(md5($5 || ':' || i), 1, 31) || lpad(to_hex(i), 8, '0'),
         'ec-p256', CASE WHEN $8 THEN 'REVOKED' ELSE 'ACTIVE' END, $3::timestamptz - interval '30 days', $3::timestamptz + interval '365 days',
         CASE WHEN $8 THEN $3::timestamptz - make_interval(secs => (i::bigint * 7919) % 2592000) END,
         CASE WHEN $8 THEN ($6::text[])[1 + i % cardinality($6::text[])] END, $3, $3, $9::text
       FROM generate_series(1, $4::int) i`,
      [tenant, devices, options.now, options.count, salt, BULK_REASONS, options.issuer ?? 'bulk', revoked, options.caId ?? null],
    );
  });
  return { ms: performance.now() - started, salt };
}
