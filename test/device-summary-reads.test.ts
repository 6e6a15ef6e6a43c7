import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';

/**
 * The device-summary trigger of an insert of ACTIVE certificates (migration 032's incremental
 * path) touches the devices of the inserted rows, not the tenant's other devices: with a
 * tenant of many devices, a group of a few certificates reads a few device rows. Counted from
 * Postgres's own statistics of the transaction (pg_stat_xact_user_tables), not from time. Before
 * migration 037 its plan, made while device_registry had no statistics and kept for the
 * connection's life, scanned every device of the tenant once per inserted device.
 */
describe.each(oneDriver('pg'))('device summary of an issuance group on %s', (kind) => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    await database.reset();
  });
  afterAll(async () => {
    await database?.close();
  });

  it('a group of certificates for 4 devices of a 400-device tenant reads about 4 device rows, not the tenant', async () => {
    const DEVICES = 400;
    const GROUP = 4;
    await database.db.asOperator((tx) =>
      tx.query(`INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at)
                SELECT 'acme', 'dev-' || lpad(i::text, 4, '0'), now(), now() FROM generate_series(1, $1) i`, [DEVICES]),
    );
    // The same tenant transaction as the group commit (role, tenant, RLS), a few groups: the trigger's plans are cached per connection.
    for (let round = 0; round < 4; round++) {
      const reads = await database.db.asTenant('acme', async (tx) => {
        const before = (await tx.query<{ n: string }>(`SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n FROM pg_stat_xact_user_tables WHERE relname = 'device_registry'`)).rows[0]?.n ?? '0';
        await tx.query(
          `INSERT INTO device_certificates
             (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, status, not_before, not_after, created_at, updated_at, spki_sha256)
           SELECT 'acme', 'dev-' || lpad((i * 97 % $1 + 1)::text, 4, '0'), 'pem', md5($2 || ':' || i), 'acme/dev', 'test-ca', md5($2 || ':' || i), 'ec-p256', 'ACTIVE',
                  now(), now() + interval '30 days', now(), now(), md5('k' || $2 || ':' || i)
           FROM generate_series(1, $3) i`,
          [DEVICES, String(round), GROUP],
        );
        const after = (await tx.query<{ n: string }>(`SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n FROM pg_stat_xact_user_tables WHERE relname = 'device_registry'`)).rows[0]?.n ?? '0';
        return Number(after) - Number(before);
      }, { genericPlans: round >= 2 }); // the group commit's transaction plans generically (issued-certificate-store.ts)
      // Per inserted certificate: its foreign key check, the lock and the update of its device (a few row versions each).
      expect(reads, `round ${round}: device rows read for ${GROUP} certificates`).toBeLessThanOrEqual(GROUP * 8);
    }
  });
});
