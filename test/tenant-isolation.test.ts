import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

describe.each(DRIVERS)('tenant isolation on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let certA: number;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    await t.call('tenant-a', 'POST', '/customer/devices', { device_id: 'A-1' });
    const issued = await t.call('tenant-a', 'POST', '/customer/devices/A-1/certificates/generate', { key_type: 'ec-p256' });
    certA = issued.json.certificate.id;
    await t.call('tenant-b', 'POST', '/customer/devices', { device_id: 'B-1' });
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it("tenant B cannot list, read, revoke or issue for tenant A's devices over HTTP (404, never 403)", async () => {
    const list = await t.call('tenant-b', 'GET', '/customer/certificates');
    expect(list.json.total).toBe(0);
    expect(list.json.certificates).toEqual([]);
    const filtered = await t.call('tenant-b', 'GET', '/customer/certificates?device_id=A-1');
    expect(filtered.json.total).toBe(0);
    const devices = await t.call('tenant-b', 'GET', '/customer/devices');
    expect(devices.json.devices.map((d: { device_id: string }) => d.device_id)).toEqual(['B-1']);
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
    expect((await t.call('tenant-b', 'GET', '/customer/certificates')).json.total).toBe(0);
  });

  it("a query as certfleet_app with tenant B's context sees none of A's rows, even without a WHERE clause", async () => {
    for (const table of ['device_registry', 'device_certificates', 'audit_events', 'fleet_alert', 'certificate_rotations']) {
      const asB = await database.db.asTenant('tenant-b', (tx) => tx.query<{ tenant_id: string }>(`SELECT tenant_id FROM ${table}`));
      expect(asB.rows.every((r) => r.tenant_id === 'tenant-b'), table).toBe(true);
    }
    const certsB = await database.db.asTenant('tenant-b', (tx) => tx.query('SELECT * FROM device_certificates'));
    expect(certsB.rows).toHaveLength(0);
    const certsA = await database.db.asTenant('tenant-a', (tx) => tx.query('SELECT * FROM device_certificates'));
    expect(certsA.rows).toHaveLength(1);
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
    const updated = await database.db.asTenant('tenant-b', (tx) => tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now()`));
    expect(updated.rowCount).toBe(0);
    await expect(
      database.db.asTenant('tenant-b', (tx) => tx.query(`UPDATE device_registry SET tenant_id = 'tenant-a' WHERE device_id = 'B-1'`)),
    ).rejects.toThrow(/row-level security/);
    const operator = await database.db.asOperator((tx) => tx.query('SELECT count(*)::int AS n FROM device_registry'));
    expect(operator.rows[0].n).toBe(2);
  });
});
