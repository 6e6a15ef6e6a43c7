/**
 * The device list's issuing-CA filter (issue 25 item 2, "issuing CA once CAs are records"):
 * `GET /devices?ca_id=` lists the devices that still hold an ACTIVE certificate signed by that CA,
 * for a tenant (RLS) and for operators, combined with the other filters and both sort orders.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

describe('device list: issuing CA filter on pg', () => {
  let database: TestDatabase;
  let t: TestService;
  const op = (method: string, url: string, body?: unknown) => t.call(null, method, `/api/v1/operator${url}`, body, 'operator');
  const issue = async (tenant: string, device: string) => {
    const res = await t.call(tenant, 'POST', `/api/v1/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256' });
    expect(res.status, res.body).toBe(201);
    return res.json as { certificate: { id: number } };
  };
  const ids = (json: { devices: { device_id: string }[] }) => json.devices.map((d) => d.device_id);

  beforeAll(async () => {
    database = await createTestDatabase('pg');
    t = await startTestService(database);
    for (const [tenant, device] of [['acme', 'A1'], ['acme', 'A2'], ['acme', 'A3'], ['acme', 'A4'], ['globex', 'G1']]) {
      expect((await t.call(tenant, 'POST', '/api/v1/customer/devices', { device_id: device })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('lists the devices with an ACTIVE certificate of that CA, nothing else', async () => {
    const old = (await op('GET', '/cas')).json.cas.find((c: { status: string }) => c.status === 'active') as { id: string };
    await issue('acme', 'A1');
    await issue('acme', 'A2');
    const a3 = await issue('acme', 'A3');
    await issue('globex', 'G1');
    const next = (await op('POST', '/cas', { key_type: 'ec-p256' })).json as { id: string };
    expect((await op('POST', `/cas/${next.id}/activate`)).status).toBe(200);
    await issue('acme', 'A2'); // A2 holds one certificate of each CA (mid-rotation)
    await issue('acme', 'A4');
    expect((await t.call('acme', 'POST', `/api/v1/customer/certificates/${a3.certificate.id}/revoke`, {})).status).toBe(200);

    const tenantList = (query: string) => t.call('acme', 'GET', `/api/v1/customer/devices?${query}`);
    const onOld = await tenantList(`ca_id=${old.id}`);
    expect(onOld.status, onOld.body).toBe(200);
    expect(ids(onOld.json)).toEqual(['A1', 'A2']); // A3's certificate is revoked, A4 only has the new CA's
    expect(onOld.json).toMatchObject({ total: 2, total_capped: false });
    expect(ids((await tenantList(`ca_id=${next.id}`)).json)).toEqual(['A2', 'A4']);
    expect(ids((await tenantList(`ca_id=${old.id}&sort=expiry&limit=1`)).json)).toHaveLength(1);
    expect(ids((await tenantList(`ca_id=${old.id}&id_prefix=A2`)).json)).toEqual(['A2']);
    // No device with an ACTIVE certificate of this CA has another status.
    expect((await tenantList(`ca_id=${old.id}&certificate_status=REVOKED`)).json).toMatchObject({ total: 0, devices: [] });
    expect(ids((await tenantList(`ca_id=ca_0123456789abcdef`)).json)).toEqual([]);
    // Keyset pages walk the same set.
    const first = await tenantList(`ca_id=${old.id}&limit=1`);
    expect(ids(first.json)).toEqual(['A1']);
    expect(ids((await tenantList(`ca_id=${old.id}&limit=1&cursor=${encodeURIComponent(first.json.next_cursor)}`)).json)).toEqual(['A2']);

    // Operators: every tenant, or one.
    const all = await op('GET', `/devices?ca_id=${old.id}`);
    expect(all.json.devices.map((d: { tenant_id: string; device_id: string }) => `${d.tenant_id}/${d.device_id}`)).toEqual(['acme/A1', 'acme/A2', 'globex/G1']);
    expect(ids((await op('GET', `/devices?ca_id=${old.id}&tenant_id=globex`)).json)).toEqual(['G1']);

    // Not a CA id: 422 problem+json.
    const bad = await tenantList('ca_id=old-ca');
    expect(bad.status).toBe(422);
    expect(bad.headers['content-type']).toMatch(/application\/problem\+json/);
  });

  it('a CA with more ACTIVE certificates than the join limit (the old CA of a rollover, 10,100): pages walk the devices, the total is capped; a small CA beside it is joined', async () => {
    // 10,100 devices of tenant "bulk", each with an ACTIVE certificate of one CA, every 30th also
    // with an ACTIVE certificate of another (mid-rotation); stored as certfleet stores them.
    const [bulkOld, bulkNew] = ['ca_00000000000000e1', 'ca_00000000000000e2'];
    await database.db.asOperator(async (tx) => {
      await tx.query(`INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at) SELECT 'bulk', 'B' || lpad(i::text, 5, '0'), now(), now() FROM generate_series(1, 10100) i`);
      for (const [ca, serial, where] of [[bulkOld, '7', 'true'], [bulkNew, '8', 'i % 30 = 0']] as const) {
        await tx.query(
          `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, status, not_before, not_after, created_at, updated_at, ca_id)
           SELECT 'bulk', 'B' || lpad(i::text, 5, '0'), 'pem', md5('${serial}' || i) || md5('fp${serial}' || i), 'bulk/B' || lpad(i::text, 5, '0'), 'CN=bulk ${serial}',
             '${serial}' || lpad(to_hex(i), 31, '0'), 'ec-p256', 'ACTIVE', now() - interval '1 day', now() + interval '1 day' * (10 + i % 300), now(), now(), $1
           FROM generate_series(1, 10100) i WHERE ${where}`,
          [ca],
        );
      }
    });
    const bulk = (query: string) => t.call('bulk', 'GET', `/api/v1/customer/devices?${query}`);
    const first = await bulk(`ca_id=${bulkOld}&limit=3`);
    expect(first.status, first.body).toBe(200);
    expect(first.json).toMatchObject({ total: 1000, total_capped: true });
    expect(ids(first.json)).toEqual(['B00001', 'B00002', 'B00003']);
    const second = await bulk(`ca_id=${bulkOld}&limit=3&cursor=${encodeURIComponent(first.json.next_cursor)}`);
    expect(ids(second.json)).toEqual(['B00004', 'B00005', 'B00006']);
    // The CA of every 30th device (336: under the cap) and both combined with other filters.
    const next = await bulk(`ca_id=${bulkNew}&limit=2`);
    expect(next.json).toMatchObject({ total: 336, total_capped: false });
    expect(ids(next.json)).toEqual(['B00030', 'B00060']);
    expect(ids((await bulk(`ca_id=${bulkOld}&id_prefix=B1010&limit=20`)).json)).toEqual(['B10100']);
    const soonest = await bulk(`ca_id=${bulkOld}&sort=expiry&limit=2`);
    expect(soonest.json.devices.map((d: { next_expiry: string }) => d.next_expiry)).toEqual([...soonest.json.devices.map((d: { next_expiry: string }) => d.next_expiry)].sort());
    // (the service's clock is a little behind the database's now(): 10 days and a bit fall within 11)
    const soon = ids((await bulk(`ca_id=${bulkOld}&expiring_within_days=11&limit=20`)).json);
    expect(soon).toHaveLength(20);
    expect(soon[0]).toBe('B00300');
    expect(soon.every((id: string) => Number(id.slice(1)) % 300 === 0)).toBe(true);
  });
});
