import type { Queryable } from '../driver.ts';

/** Whether a key (SHA-256 of its SPKI DER, hex) was revoked for keyCompromise, in any tenant. */
export async function isCompromised(tx: Queryable, spkiSha256: string): Promise<boolean> {
  const { rows } = await tx.query('SELECT 1 FROM compromised_keys WHERE spki_sha256 = $1', [spkiSha256]);
  return rows.length > 0;
}

/** The key of a revoked certificate becomes compromised (no-op for a certificate stored without its key hash). */
export async function markKeyCompromised(tx: Queryable, certificateId: number, at: Date): Promise<void> {
  await tx.query(
    `INSERT INTO compromised_keys (spki_sha256, compromised_at)
     SELECT spki_sha256, $2 FROM device_certificates WHERE id = $1 AND spki_sha256 IS NOT NULL
     ON CONFLICT (spki_sha256) DO NOTHING`,
    [certificateId, at],
  );
}

/**
 * SQL: whether a certificate (any status) of another device of the tenant has the key. Two probes
 * of the (tenant_id, spki_sha256, device_id) index (migration 033), the first entry below the
 * device and the first above it, instead of `device_id <>`, which visits every certificate of the
 * key: constant work however many certificates the device already has for it.
 */
export const anotherDeviceHolds = (tenant: string, spki: string, device: string, alias = 'o'): string =>
  `(EXISTS (SELECT 1 FROM device_certificates ${alias} WHERE ${alias}.tenant_id = ${tenant} AND ${alias}.spki_sha256 = ${spki} AND ${alias}.device_id < ${device})` +
  ` OR EXISTS (SELECT 1 FROM device_certificates ${alias} WHERE ${alias}.tenant_id = ${tenant} AND ${alias}.spki_sha256 = ${spki} AND ${alias}.device_id > ${device}))`;

/** The tenant's other devices holding a certificate (any status) for the key. */
export async function otherDevicesWithKey(tx: Queryable, tenantId: string, deviceId: string, spkiSha256: string): Promise<string[]> {
  const { rows } = await tx.query<{ device_id: string }>(
    'SELECT DISTINCT device_id FROM device_certificates WHERE tenant_id = $1 AND spki_sha256 = $2 AND device_id <> $3 ORDER BY device_id LIMIT 5',
    [tenantId, spkiSha256, deviceId],
  );
  return rows.map((r) => r.device_id);
}

export async function allowsSharedDeviceKeys(tx: Queryable, tenantId: string): Promise<boolean> {
  const { rows } = await tx.query<{ allow_shared_device_keys: boolean }>('SELECT allow_shared_device_keys FROM tenant_settings WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.allow_shared_device_keys ?? false;
}

/** isCompromised, otherDevicesWithKey and allowsSharedDeviceKeys in one statement (one round trip). */
export async function keyStatus(tx: Queryable, tenantId: string, deviceId: string, spkiSha256: string): Promise<{ compromised: boolean; otherDevices: string[]; allowsShared: boolean }> {
  const { rows } = await tx.query<{ compromised: boolean; others: string[] | null; allow_shared: boolean | null }>(
    `SELECT EXISTS (SELECT 1 FROM compromised_keys WHERE spki_sha256 = $3) AS compromised,
            CASE WHEN ${anotherDeviceHolds('$1', '$3', '$2')} THEN (SELECT array_agg(device_id ORDER BY device_id) FROM (
               SELECT DISTINCT device_id FROM device_certificates WHERE tenant_id = $1 AND spki_sha256 = $3 AND device_id <> $2 ORDER BY device_id LIMIT 5) o) END AS others,
            (SELECT allow_shared_device_keys FROM tenant_settings WHERE tenant_id = $1) AS allow_shared`,
    [tenantId, deviceId, spkiSha256],
  );
  const r = rows[0];
  return { compromised: r?.compromised === true, otherDevices: r?.others ?? [], allowsShared: r?.allow_shared ?? false };
}

/** keyStatus for several (device, key) pairs of one tenant in one statement, in their order. */
export async function keyStatuses(
  tx: Queryable,
  tenantId: string,
  items: Array<{ deviceId: string; spkiSha256: string }>,
): Promise<Array<{ compromised: boolean; otherDevices: string[]; allowsShared: boolean }>> {
  const { rows } = await tx.query<{ ord: string; compromised: boolean; others: string[] | null; allow_shared: boolean | null }>(
    `SELECT i.ord,
            EXISTS (SELECT 1 FROM compromised_keys WHERE spki_sha256 = i.spki) AS compromised,
            CASE WHEN ${anotherDeviceHolds('$1', 'i.spki', 'i.device_id')} THEN (SELECT array_agg(device_id ORDER BY device_id) FROM (
               SELECT DISTINCT device_id FROM device_certificates WHERE tenant_id = $1 AND spki_sha256 = i.spki AND device_id <> i.device_id ORDER BY device_id LIMIT 5) o) END AS others,
            (SELECT allow_shared_device_keys FROM tenant_settings WHERE tenant_id = $1) AS allow_shared
       FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS i(device_id, spki, ord)
      ORDER BY i.ord`,
    [tenantId, items.map((i) => i.deviceId), items.map((i) => i.spkiSha256)],
    // The CSR issuance group's check before signing: parsed and planned once per connection.
    { prepared: 'certfleet_key_statuses' },
  );
  return rows.map((r) => ({ compromised: r.compromised === true, otherDevices: r.others ?? [], allowsShared: r.allow_shared ?? false }));
}

export async function setAllowSharedDeviceKeys(tx: Queryable, tenantId: string, allow: boolean, at: Date): Promise<void> {
  await tx.query(
    `INSERT INTO tenant_settings (tenant_id, allow_shared_device_keys, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (tenant_id) DO UPDATE SET allow_shared_device_keys = $2, updated_at = $3`,
    [tenantId, allow, at],
  );
}
