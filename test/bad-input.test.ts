import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

describe.each(oneDriver('pg'))('bad input on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' });
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  const written = async () =>
    database.db.asOperator(async (tx) => {
      const c = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM device_certificates');
      const d = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM device_registry');
      const a = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events');
      return { certificates: c.rows[0].n, devices: d.rows[0].n, audit: a.rows[0].n };
    });

  const cases: Array<[string, string, string, unknown, number, string]> = [
    ['malformed JSON', 'POST', '/customer/devices/DEVICE-001/certificates/generate', '{"validity_days": 3', 400, 'MALFORMED_JSON'],
    ['validity 0', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { validity_days: 0 }, 422, 'VALIDATION_FAILED'],
    ['validity 3651', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { validity_days: 3651 }, 422, 'VALIDATION_FAILED'],
    ['validity as string', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { validity_days: '30' }, 422, 'VALIDATION_FAILED'],
    ['validity fractional', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { validity_days: 1.5 }, 422, 'VALIDATION_FAILED'],
    ['unknown key type', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'dsa-1024' }, 422, 'VALIDATION_FAILED'],
    ['unknown field', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { validity_day: 30 }, 422, 'VALIDATION_FAILED'],
    ['body is an array', 'POST', '/customer/devices/DEVICE-001/certificates/generate', [1, 2], 422, 'VALIDATION_FAILED'],
    ['unknown device', 'POST', '/customer/devices/NOPE/certificates/generate', { key_type: 'ec-p256' }, 404, 'DEVICE_NOT_FOUND'],
    ['device id with odd characters', 'POST', '/customer/devices/dev%20ice%3Cscript%3E/certificates/generate', {}, 422, 'VALIDATION_FAILED'],
    ['device id too long', 'POST', `/customer/devices/${'x'.repeat(129)}/certificates/generate`, {}, 422, 'VALIDATION_FAILED'],
    ['register: empty device id', 'POST', '/customer/devices', { device_id: '' }, 422, 'INVALID_DEVICE_ID'],
    ['register: slash in device id', 'POST', '/customer/devices', { device_id: 'a/b' }, 422, 'INVALID_DEVICE_ID'],
    ['register: unicode device id', 'POST', '/customer/devices', { device_id: 'gerät' }, 422, 'INVALID_DEVICE_ID'],
    ['register: duplicate', 'POST', '/customer/devices', { device_id: 'DEVICE-001' }, 409, 'DEVICE_EXISTS'],
    ['garbage CSR', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: 'hello' }, 422, 'INVALID_CSR'],
    ['truncated CSR', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: '-----BEGIN CERTIFICATE REQUEST-----\nMIIBIjAN\n-----END CERTIFICATE REQUEST-----' }, 422, 'INVALID_CSR'],
    ['missing CSR', 'POST', '/customer/devices/DEVICE-001/certificates/csr', {}, 422, 'VALIDATION_FAILED'],
    ['garbage certificate import', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }, 422, 'INVALID_CERTIFICATE'],
    ['certificate id not a number', 'GET', '/customer/certificates/abc', undefined, 422, 'VALIDATION_FAILED'],
    ['certificate id too large', 'POST', '/customer/certificates/99999999999999999999/revoke', {}, 422, 'VALIDATION_FAILED'],
    ['unknown certificate', 'POST', '/customer/certificates/424242/revoke', {}, 404, 'CERTIFICATE_NOT_FOUND'],
    ['revoke reason not a string', 'POST', '/customer/certificates/1/revoke', { reason: 5 }, 422, 'VALIDATION_FAILED'],
    ['bad status filter', 'GET', '/customer/certificates?status=GONE', undefined, 422, 'VALIDATION_FAILED'],
    ['bad limit', 'GET', '/customer/certificates?limit=0', undefined, 422, 'VALIDATION_FAILED'],
    ['bad cursor', 'GET', '/customer/certificates?cursor=zzz', undefined, 422, 'VALIDATION_FAILED'],
    ['unknown route', 'GET', '/customer/nothing-here', undefined, 404, 'NOT_FOUND'],
  ];

  it.each(cases)('%s → %s problem+json, nothing written', async (_name, method, url, body, status, code) => {
    const before = await written();
    const res = await t.call('acme', method, url, body);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json).toMatchObject({ status, code });
    expect(typeof res.json.detail).toBe('string');
    expect(res.json.detail.length).toBeGreaterThan(3);
    expect(await written()).toEqual(before);
  });

  it('answers 401 without a token, with a forged token, and 403 for a token without a tenant role', async () => {
    const none = await t.service.app.inject({ method: 'GET', url: '/customer/certificates' });
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe('UNAUTHENTICATED');
    const token = await t.token('acme');
    const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const bad = await t.service.app.inject({ method: 'GET', url: '/customer/certificates', headers: { authorization: `Bearer ${forged}` } });
    expect(bad.statusCode).toBe(401);
    const operator = await t.call(null, 'GET', '/customer/certificates', undefined, 'operator');
    expect(operator.status).toBe(403);
  });

  it('asks browser sessions for the CSRF token, and accepts bearer requests with or without one', async () => {
    const session = await t.service.app.inject({ method: 'POST', url: '/auth/session', payload: { token: await t.token('acme') } });
    expect(session.statusCode).toBe(200);
    const cookies = Object.fromEntries(session.cookies.map((c) => [c.name, c.value]));
    const csrf = cookies.csrf_token;
    const cookie = `certfleet_session=${cookies.certfleet_session}; csrf_token=${csrf}`;
    const url = '/customer/devices';
    const read = await t.service.app.inject({ method: 'GET', url, headers: { cookie } });
    expect(read.statusCode).toBe(200);
    const noCsrf = await t.service.app.inject({ method: 'POST', url, headers: { cookie }, payload: { device_id: 'CSRF-1' } });
    expect(noCsrf.statusCode).toBe(403);
    expect(noCsrf.json().code).toBe('CSRF_FAILED');
    const wrong = await t.service.app.inject({ method: 'POST', url, headers: { cookie, 'x-csrf-token': 'nope' }, payload: { device_id: 'CSRF-1' } });
    expect(wrong.statusCode).toBe(403);
    const ok = await t.service.app.inject({ method: 'POST', url, headers: { cookie, 'x-csrf-token': csrf }, payload: { device_id: 'CSRF-1' } });
    expect(ok.statusCode).toBe(201);
    const bearerWithCsrf = await t.service.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${await t.token('acme')}`, 'x-csrf-token': 'anything' },
      payload: { device_id: 'CSRF-2' },
    });
    expect(bearerWithCsrf.statusCode).toBe(201);
  });
});
