import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Driver, Queryable } from '../src/storage/driver.ts';
import { migrate } from '../src/storage/migrate.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { createPgliteDriver, openPglite } from '../src/storage/pglite-driver.ts';
import { createThrowawayDatabase, createTestDatabase, DRIVERS, type DriverKind, type TestDatabase } from './support/databases.ts';
import { startTestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const errorCode = async (work: Promise<unknown>): Promise<string | undefined> => {
  try {
    await work;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

/** Two tenants with a device, a certificate, a webhook each; returns their ids. Run as the schema owner (no RLS). */
async function seedTwoTenants(tx: Queryable) {
  const ids: Record<string, { cert: number; other: number; webhook: number }> = {};
  for (const tenant of ['acme', 'globex']) {
    await tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ($1, 'D1'), ($1, 'D2')`, [tenant]);
    const certs = [];
    for (const device of ['D1', 'D1', 'D2']) {
      const { rows } = await tx.query<{ id: number }>(
        `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, not_before, not_after)
         VALUES ($1, $2, 'pem', md5(random()::text), $1 || '/' || $2, 'CN=ca', md5(random()::text), 'ec-p256', now(), now() + interval '1 day') RETURNING id`,
        [tenant, device],
      );
      certs.push(Number(rows[0].id));
    }
    const { rows } = await tx.query<{ id: number }>(
      `INSERT INTO notification_webhooks (tenant_id, url, secret, created_by, created_at, updated_at) VALUES ($1, 'https://example.test/', 's', 't', now(), now()) RETURNING id`,
      [tenant],
    );
    await tx.query(
      `INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at) VALUES ($1, 'D1', $2, $3, now())`,
      [tenant, certs[1], certs[0]],
    );
    await tx.query(
      `INSERT INTO notification_outbox (tenant_id, webhook_id, event, payload, next_attempt_at, created_at) VALUES ($1, $2, 'alert.opened', '{}', now(), now())`,
      [tenant, Number(rows[0].id)],
    );
    await tx.query(`INSERT INTO fleet_alert (tenant_id, device_id, alert_type, fingerprint, severity, summary) VALUES ($1, 'D1', 'CERT_EXPIRING', 'f', 2, 's')`, [tenant]);
    await tx.query(`INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id) VALUES ($1, 'a', 'device.registered', 'device', 'D1')`, [tenant]);
    ids[tenant] = { cert: certs[0], other: certs[2], webhook: Number(rows[0].id) };
  }
  return ids;
}

const rowCounts = (driver: Driver) =>
  driver.transaction(async (tx) => {
    const { rows } = await tx.query<Record<string, number>>(
      `SELECT (SELECT count(*) FROM device_certificates)::int AS certs, (SELECT count(*) FROM certificate_rotations)::int AS rotations,
              (SELECT count(*) FROM notification_outbox)::int AS outbox, (SELECT count(*) FROM fleet_alert)::int AS alerts,
              (SELECT count(*) FROM audit_events)::int AS audit`,
    );
    return rows[0];
  });

async function freshDriver(kind: DriverKind) {
  if (kind === 'pglite') {
    const driver = createPgliteDriver(await openPglite());
    return { driver, close: () => driver.close() };
  }
  const created = await createThrowawayDatabase('certfleet_schema');
  const driver = createPgDriver(created.url);
  return {
    driver,
    close: async () => {
      await driver.close();
      await created.drop();
    },
  };
}

describe.each(DRIVERS)('defence in depth in the schema on %s', (kind) => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
  });

  it("a row of one tenant cannot point at another tenant's row, even through SQL as the schema owner", async () => {
    const ids = await database.driver.transaction(seedTwoTenants);
    const asOwner = (sql: string, params: unknown[]) => errorCode(database.driver.transaction((tx) => tx.query(sql, params)));
    const fk = '23503';
    // A rotation of acme whose new or old certificate is globex's.
    expect(await asOwner(`INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status) VALUES ('acme', 'D1', $1, $2, now(), 'COMPLETED')`, [ids.globex.cert, ids.acme.cert])).toBe(fk);
    expect(await asOwner(`INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status) VALUES ('acme', 'D1', $1, $2, now(), 'COMPLETED')`, [ids.acme.cert, ids.globex.cert])).toBe(fk);
    // ... or a certificate of another device of the same tenant.
    expect(await asOwner(`INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status) VALUES ('acme', 'D1', $1, $2, now(), 'COMPLETED')`, [ids.acme.other, ids.acme.cert])).toBe(fk);
    // Moving an existing rotation to the other tenant.
    expect(await asOwner(`UPDATE certificate_rotations SET tenant_id = 'globex' WHERE tenant_id = 'acme'`, [])).toBe(fk);
    // An outbox row of acme for globex's webhook.
    expect(await asOwner(`INSERT INTO notification_outbox (tenant_id, webhook_id, event, payload, next_attempt_at, created_at) VALUES ('acme', $1, 'alert.opened', '{}', now(), now())`, [ids.globex.webhook])).toBe(fk);
    // An alert of acme about a device only globex has.
    expect(await asOwner(`INSERT INTO fleet_alert (tenant_id, device_id, alert_type, fingerprint, severity, summary) VALUES ('acme', 'G-ONLY', 'CERT_EXPIRING', 'g', 2, 's')`, [])).toBe(fk);
    // The same statements within one tenant work.
    expect(await asOwner(`INSERT INTO notification_outbox (tenant_id, webhook_id, event, payload, next_attempt_at, created_at) VALUES ('acme', $1, 'alert.opened', '{}', now(), now())`, [ids.acme.webhook])).toBe('no error');
    expect(await asOwner(`INSERT INTO fleet_alert (tenant_id, device_id, alert_type, fingerprint, severity, summary) VALUES ('acme', NULL, 'CRL_STALE', 'crl', 2, 's')`, [])).toBe('no error');
    // Deleting a webhook still takes its outbox rows with it.
    await database.driver.transaction((tx) => tx.query('DELETE FROM notification_webhooks WHERE id = $1', [ids.acme.webhook]));
    expect(await rowCounts(database.driver)).toMatchObject({ outbox: 1 });
  });

  it("the one-pending-rotation index is per tenant: another tenant's certificate id is never answered with \"duplicate\"", async () => {
    const ids = await database.driver.transaction(seedTwoTenants); // acme's ids.acme.cert has a PENDING rotation
    const pendingOf = (tenant: string, newId: number, oldId: number) =>
      errorCode(
        database.db.asTenant(tenant, (tx) =>
          tx.query(
            `INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at) VALUES ($1, 'D1', $2, $3, now())`,
            [tenant, newId, oldId],
          ),
        ),
      );
    // globex naming acme's certificate: refused as a dangling reference (23503), never as a
    // duplicate (23505), which would tell globex that acme's certificate has a pending rotation.
    expect(await pendingOf('globex', ids.globex.cert, ids.acme.cert)).toBe('23503');
    // Within a tenant the index still allows one pending rotation per old certificate.
    expect(await pendingOf('acme', ids.acme.cert, ids.acme.cert)).toBe('23505');
    const { rows } = await database.driver.transaction((tx) =>
      tx.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE indexname = 'certificate_rotations_one_pending'`),
    );
    expect(rows[0]?.indexdef).toMatch(/\(tenant_id, old_certificate_id\) WHERE/);
  });

  it('the application roles cannot change or delete audit events; they can still append them', async () => {
    await database.driver.transaction(seedTwoTenants);
    const denied = '42501';
    expect(await errorCode(database.db.asTenant('acme', (tx) => tx.query(`UPDATE audit_events SET action = 'forged'`)))).toBe(denied);
    expect(await errorCode(database.db.asTenant('acme', (tx) => tx.query('DELETE FROM audit_events')))).toBe(denied);
    expect(await errorCode(database.db.asOperator((tx) => tx.query(`UPDATE audit_events SET actor = 'someone else'`)))).toBe(denied);
    expect(await errorCode(database.db.asOperator((tx) => tx.query('DELETE FROM audit_events')))).toBe(denied);
    expect(await errorCode(database.db.asOperator((tx) => tx.query('TRUNCATE audit_events')))).toBe(denied);
    const role = await database.db.asTenant('acme', (tx) => tx.query<{ r: string }>('SELECT current_user AS r'));
    expect(role.rows[0].r).toBe('certfleet_app');
    expect(
      await errorCode(database.db.asTenant('acme', (tx) => tx.query(`INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id) VALUES ('acme', 'a', 'x', 'y', 'z')`))),
    ).toBe('no error');
    expect(await rowCounts(database.driver)).toMatchObject({ audit: 3 });
  });

  it('migration 007 keeps existing data, and names cross-tenant rows instead of dropping them', async () => {
    const fresh = await freshDriver(kind);
    try {
      await migrate(fresh.driver, { until: '006' });
      const ids = await fresh.driver.transaction(seedTwoTenants);
      const before = await rowCounts(fresh.driver);
      expect(before).toEqual({ certs: 6, rotations: 2, outbox: 2, alerts: 2, audit: 2 });
      // A corrupt row (possible before 007): the migration stops with a clear message, nothing applied.
      const { rows } = await fresh.driver.transaction((tx) =>
        tx.query<{ id: number }>(
          `INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status) VALUES ('acme', 'D1', $1, $2, now(), 'COMPLETED') RETURNING id`,
          [ids.globex.cert, ids.acme.cert],
        ),
      );
      await expect(migrate(fresh.driver)).rejects.toThrow(/migration 007: certificate_rotations rows that point at a certificate of another tenant or device: 1;/);
      const applied = await fresh.driver.transaction((tx) => tx.query<{ name: string }>(`SELECT name FROM schema_migrations WHERE name LIKE '007%'`));
      expect(applied.rows).toEqual([]);
      await fresh.driver.transaction((tx) => tx.query('DELETE FROM certificate_rotations WHERE id = $1', [rows[0].id]));

      expect(await migrate(fresh.driver, { until: '007' })).toEqual(['007-tenant-keys.sql']);
      expect(await rowCounts(fresh.driver)).toEqual(before);
      await migrate(fresh.driver); // and every later migration over the same data
      expect(await rowCounts(fresh.driver)).toEqual(before);
      expect(
        await errorCode(
          fresh.driver.transaction((tx) =>
            tx.query(`INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at, status) VALUES ('acme', 'D1', $1, $2, now(), 'COMPLETED')`, [ids.globex.cert, ids.acme.cert]),
          ),
        ),
      ).toBe('23503');
    } finally {
      await fresh.close();
    }
  }, scaled(120_000));
});

describe('the per-tenant webhook cap under parallel creates (Postgres)', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pg');
  });
  afterAll(async () => {
    await database?.close();
  });

  it('40 parallel creates leave exactly 20 webhooks, from empty and from one below the cap', async () => {
    const t = await startTestService(database);
    const createInParallel = (tenant: string) =>
      Promise.all(Array.from({ length: 40 }, (_, i) => t.call(tenant, 'POST', '/customer/notification-webhooks', { url: `https://hooks.example.test/${i}` })));
    try {
      for (let i = 0; i < 19; i++) expect((await t.call('initech', 'POST', '/customer/notification-webhooks', { url: `https://hooks.example.test/i${i}` })).status).toBe(201);
      const nearCap = await createInParallel('initech');
      expect(nearCap.filter((r) => r.status === 201).length).toBe(1);
      const results = await createInParallel('acme');
      const created = results.filter((r) => r.status === 201).length;
      expect(created).toBe(20);
      for (const r of results.filter((x) => x.status !== 201)) {
        expect(r.status).toBe(422);
        expect(r.json.detail).toContain('at most 20');
      }
      const { rows } = await database.db.asOperator((tx) => tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM notification_webhooks WHERE tenant_id = 'acme'`));
      expect(Number(rows[0].n)).toBe(20);
      // Another tenant is not held up by acme's cap.
      expect((await t.call('globex', 'POST', '/customer/notification-webhooks', { url: 'https://hooks.example.test/g' })).status).toBe(201);
    } finally {
      await t.close();
    }
  }, scaled(120_000));
});
