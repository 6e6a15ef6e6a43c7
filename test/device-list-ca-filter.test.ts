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
});
