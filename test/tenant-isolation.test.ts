import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorker } from '../src/composition/worker.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { silentLogger } from '../src/support/logger.ts';
import { run } from './support/openssl.ts';

describe.each(DRIVERS)('tenant isolation on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let certA: number;
  let alertA: number;
  let webhookA: number;

  /** Every tenant table holds rows of both tenants: a device, certificates, a rotation, an enrollment token, an expiry alert, a webhook and its outbox entry, broker grants, settings. */
  const populate = async (tenant: string, device: string) => {
    const call = async (method: string, url: string, body?: unknown) => {
      const adminOnly = url.endsWith('/enrollment-tokens') || url.endsWith('/broker-grants') || url.endsWith('/claim-cas') || url.endsWith('/provisioning-policy');
      const res = await t.call(tenant, method, url, body, adminOnly ? 'tenant-admin' : 'customer');
      expect(res.status, `${method} ${url}: ${res.body}`).toBeLessThan(300);
      return res.json;
    };
    await call('POST', '/customer/devices', { device_id: device });
    await call('POST', '/customer/devices', { device_id: `${device}-ROT` });
    await call('POST', `/customer/devices/${device}-ROT/certificates/generate`, { key_type: 'ec-p256' });
    await call('POST', `/customer/devices/${device}-ROT/certificates/rotate`, { key_type: 'ec-p256', revoke_old_after_hours: 24 });
    const webhook = await call('POST', '/customer/notification-webhooks', { url: 'http://127.0.0.1:9/hook' });
    await call('POST', `/customer/devices/${device}/enrollment-tokens`, {});
    const expiring = await call('POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: 5 });
    await call('PUT', '/customer/broker-grants', { grants: [{ filter: 'broadcast/#', access: 'read' }] });
    // No route changes a tenant's settings yet: the row as the application role writes it, in the tenant's context.
    await database.db.asTenant(tenant, (tx) => tx.query('INSERT INTO tenant_settings (tenant_id, allow_shared_device_keys) VALUES ($1, false)', [tenant]));
    // Factory onboarding: a claim CA and a provisioning policy through the API; a claim binding and a signed request's record as the application role writes them.
    const claimCa = run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-days', '30',
      '-subj', `/CN=Claim CA ${tenant}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
    ]).out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0];
    const ca = await call('POST', '/customer/claim-cas', { ca_cert_pem: claimCa });
    await call('PUT', '/customer/provisioning-policy', { admit: { cn_patterns: ['SN-*'] } });
    await database.db.asTenant(tenant, async (tx) => {
      await tx.query(
        `INSERT INTO claim_enrollments (tenant_id, claim_fingerprint, claim_ca_id, claim_serial, claim_subject, device_id, transport, created_at)
         VALUES ($1, $2, $3, '1f', 'CN=SN-1', $4, 'est', now())`,
        [tenant, `fp-${tenant}`, ca.claim_ca.id, device],
      );
      await tx.query(`INSERT INTO claim_requests (tenant_id, claim_fingerprint, request_id, signed_at, received_at) VALUES ($1, $2, 'r-1', 1, now())`, [tenant, `fp-${tenant}`]);
      // A signed MQTT renewal request's replay record.
      await tx.query(`INSERT INTO renewal_requests (tenant_id, certificate_fingerprint, request_id, signed_at, received_at) VALUES ($1, $2, 'r-1', 1, now())`, [tenant, `fp-${tenant}`]);
    });
    // A renewal schedule (the worker writes them system-wide), as the application role in the tenant's context.
    await database.db.asTenant(tenant, (tx) =>
      tx.query(`INSERT INTO renewal_advice (certificate_id, tenant_id, device_id, due_at, overdue_at) VALUES ($1, $2, $3, now(), now())`, [expiring.certificate.id, tenant, device]),
    );
    // A tenant's own issuing CA (operator only: certificate_authorities is not granted to the application role).
    const own = await t.call(null, 'POST', '/api/v1/operator/cas', { tenant_id: tenant, key_type: 'ec-p256' }, 'operator');
    expect(own.status, JSON.stringify(own.json)).toBe(201);
    return { certificate: expiring.certificate.id as number, webhook: Number(webhook.webhook.id) };
  };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database, { env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' } });
    const a = await populate('tenant-a', 'A-1');
    certA = a.certificate;
    webhookA = a.webhook;
    await populate('tenant-b', 'B-1');
    // A browser session of each tenant (the session table carries tenant_id too).
    for (const tenant of ['tenant-a', 'tenant-b']) {
      const session = await t.service.app.inject({ method: 'POST', url: '/auth/session', payload: { token: await t.token(tenant) } });
      expect(session.statusCode, session.body).toBe(200);
    }
    // One worker pass opens the expiry alerts (and queues their webhook notifications).
    const worker = await createWorker(t.config, { clock: t.clock, storage: database.storage, crl: t.service.crl.publisher, logger: silentLogger, holder: 'isolation-test' });
    try {
      await worker.runOnce();
    } finally {
      await worker.close();
    }
    const alerts = await database.db.asOperator((tx) => tx.query<{ id: number; tenant_id: string }>(`SELECT id, tenant_id FROM fleet_alert WHERE alert_type = 'CERT_EXPIRING'`));
    expect(alerts.rows.map((r) => r.tenant_id).sort()).toEqual(['tenant-a', 'tenant-b']);
    alertA = Number(alerts.rows.find((r) => r.tenant_id === 'tenant-a')!.id);
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it("tenant B cannot list, read, revoke or issue for tenant A's devices over HTTP (404, never 403)", async () => {
    const list = await t.call('tenant-b', 'GET', '/customer/certificates');
    expect(list.json.total).toBe(3); // its own: the rotated pair and the expiring one
    expect(list.json.certificates.map((c: { device_id: string }) => c.device_id).sort()).toEqual(['B-1', 'B-1-ROT', 'B-1-ROT']);
    const filtered = await t.call('tenant-b', 'GET', '/customer/certificates?device_id=A-1');
    expect(filtered.json.total).toBe(0);
    const devices = await t.call('tenant-b', 'GET', '/customer/devices');
    expect(devices.json.devices.map((d: { device_id: string }) => d.device_id).sort()).toEqual(['B-1', 'B-1-ROT']);
    expect((await t.call('tenant-b', 'GET', '/customer/devices/A-1')).status).toBe(404);
    const read = await t.call('tenant-b', 'GET', `/customer/certificates/${certA}`);
    expect(read.status).toBe(404);
    expect(read.json.code).toBe('CERTIFICATE_NOT_FOUND');
    const revoke = await t.call('tenant-b', 'POST', `/customer/certificates/${certA}/revoke`, { reason: 'keyCompromise' });
    expect(revoke.status).toBe(404);
    const issue = await t.call('tenant-b', 'POST', '/customer/devices/A-1/certificates/generate', { key_type: 'ec-p256' });
    expect(issue.status).toBe(404);
    expect(issue.json.code).toBe('DEVICE_NOT_FOUND');
    const cross = await t.call('tenant-b', 'GET', '/customer/certificates?tenant_id=tenant-a');
    expect(cross.status).toBe(422);
    // and A's certificate is untouched
    const mine = await t.call('tenant-a', 'GET', `/customer/certificates/${certA}`);
    expect(mine.json.certificate.status).toBe('ACTIVE');
    expect((await t.call('tenant-b', 'GET', '/customer/certificates')).json.total).toBe(3);
  });

  it("tenant B sees and touches none of A's alerts, rotations or webhooks over HTTP", async () => {
    const alertsB = await t.call('tenant-b', 'GET', '/customer/alerts');
    expect(alertsB.status).toBe(200);
    const listed = JSON.stringify(alertsB.json);
    expect(listed).toContain('B-1');
    expect(listed).not.toContain('A-1');
    expect((await t.call('tenant-a', 'GET', `/customer/alerts/${alertA}`)).status).toBe(200);
    expect((await t.call('tenant-b', 'GET', `/customer/alerts/${alertA}`)).status).toBe(404);
    expect((await t.call('tenant-b', 'POST', `/customer/alerts/${alertA}/acknowledge`)).status).toBe(404);
    expect((await t.call('tenant-b', 'POST', `/customer/alerts/${alertA}/close`)).status).toBe(404);

    expect((await t.call('tenant-a', 'GET', '/customer/devices/A-1-ROT/certificates/rotation')).status).toBe(200);
    expect((await t.call('tenant-b', 'GET', '/customer/devices/B-1-ROT/certificates/rotation')).status).toBe(200);
    expect((await t.call('tenant-b', 'GET', '/customer/devices/A-1-ROT/certificates/rotation')).status).toBe(404);
    expect((await t.call('tenant-b', 'POST', '/customer/devices/A-1-ROT/certificates/rotate/cancel')).status).toBe(404);
    expect((await t.call('tenant-a', 'GET', '/customer/devices/A-1-ROT/certificates/rotation')).json).toMatchObject({ device_id: 'A-1-ROT' });

    const hooksB = await t.call('tenant-b', 'GET', '/customer/notification-webhooks');
    expect(hooksB.json.webhooks).toHaveLength(1);
    expect(hooksB.json.webhooks.map((w: { id: number }) => Number(w.id))).not.toContain(webhookA);
    expect((await t.call('tenant-b', 'PATCH', `/customer/notification-webhooks/${webhookA}`, { enabled: false })).status).toBe(404);
    expect((await t.call('tenant-b', 'DELETE', `/customer/notification-webhooks/${webhookA}`)).status).toBe(404);
    const hooksA = await t.call('tenant-a', 'GET', '/customer/notification-webhooks');
    expect(hooksA.json.webhooks).toMatchObject([{ id: webhookA, enabled: true }]);
  });

  it("a query as certfleet_app with tenant B's context sees none of A's rows, even without a WHERE clause", async () => {
    // Every table with a tenant_id column, found in the schema: a new table is covered without editing this test.
    const tables = (
      await database.driver.transaction((tx) =>
        tx.query<{ table_name: string }>(
          `SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE' ORDER BY 1`,
        ),
      )
    ).rows.map((r) => r.table_name);
    expect(tables).toEqual(expect.arrayContaining(['audit_events', 'certificate_rotations', 'device_certificates', 'device_registry', 'fleet_alert', 'notification_outbox', 'notification_webhooks']));
    for (const table of tables) {
      // As the superuser the tests connect as (RLS does not apply to it): both tenants have rows, so B seeing only its own proves something (a NULL tenant is global scope: CAs).
      const owners = await database.driver.transaction((tx) => tx.query<{ tenant_id: string }>(`SELECT DISTINCT tenant_id FROM ${table} WHERE tenant_id IS NOT NULL ORDER BY 1`));
      expect(owners.rows.map((r) => r.tenant_id), table).toEqual(['tenant-a', 'tenant-b']);
      const readable = await database.driver.transaction((tx) =>
        tx.query<{ ok: boolean }>(`SELECT has_column_privilege('certfleet_app', $1, 'tenant_id', 'SELECT') AS ok`, [table]),
      );
      if (!readable.rows[0].ok) {
        // Not granted to the application role at all (browser sessions: operator role only): refused outright.
        await expect(database.db.asTenant('tenant-b', (tx) => tx.query(`SELECT tenant_id FROM ${table}`)), table).rejects.toThrow(/permission denied/);
        continue;
      }
      const asB = await database.db.asTenant('tenant-b', (tx) => tx.query<{ tenant_id: string }>(`SELECT tenant_id FROM ${table}`));
      expect(asB.rows.length, table).toBeGreaterThan(0);
      expect(asB.rows.every((r) => r.tenant_id === 'tenant-b'), table).toBe(true);
    }
    const certsB = await database.db.asTenant('tenant-b', (tx) => tx.query<{ id: number }>('SELECT id FROM device_certificates'));
    expect(certsB.rows.map((r) => Number(r.id))).not.toContain(certA);
    const certsA = await database.db.asTenant('tenant-a', (tx) => tx.query<{ id: number }>('SELECT id FROM device_certificates'));
    expect(certsA.rows.map((r) => Number(r.id))).toContain(certA);
    // the role really is certfleet_app, and RLS is forced even for the table owner
    const role = await database.db.asTenant('tenant-b', (tx) => tx.query<{ r: string }>('SELECT current_user AS r'));
    expect(role.rows[0].r).toBe('certfleet_app');
    // without a tenant context nothing is visible at all
    const none = await database.driver.transaction(async (tx) => {
      await tx.query('SET LOCAL ROLE certfleet_app');
      return tx.query('SELECT * FROM device_registry');
    });
    expect(none.rows).toHaveLength(0);
  });

  it("certfleet_app in B's context cannot write or move rows into A's tenant", async () => {
    await expect(
      database.db.asTenant('tenant-b', (tx) => tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ('tenant-a', 'INJECTED')`)),
    ).rejects.toThrow(/row-level security/);
    const updated = await database.db.asTenant('tenant-b', (tx) => tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now() WHERE tenant_id = 'tenant-a'`));
    expect(updated.rowCount).toBe(0);
    const aStill = await database.db.asTenant('tenant-a', (tx) => tx.query<{ status: string }>('SELECT status FROM device_certificates WHERE id = $1', [certA]));
    expect(aStill.rows).toEqual([{ status: 'ACTIVE' }]);
    await expect(
      database.db.asTenant('tenant-b', (tx) => tx.query(`UPDATE device_registry SET tenant_id = 'tenant-a' WHERE device_id = 'B-1'`)),
    ).rejects.toThrow(/row-level security/);
    const operator = await database.db.asOperator((tx) => tx.query('SELECT count(*)::int AS n FROM device_registry'));
    expect(operator.rows[0].n).toBe(4);
  });
});
