import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { webConsoleRoutes } from '../src/http/routes/web-console.ts';
import { installErrorHandler } from '../src/support/problem.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { ensureWebBuilt } from './support/web-build.ts';
import type { AuditEventRecord } from '../src/domain/audit.ts';

type AuditRow = AuditEventRecord;


/** One PGlite database for the file's services (opening one costs 2.5 to 3.5 s of CPU), emptied where a test needs it so. */
let pglite: TestDatabase | undefined;
const sharedPglite = async (): Promise<TestDatabase> => (pglite ??= await createTestDatabase('pglite'));
afterAll(async () => pglite?.close());

describe.each(oneDriver('pglite'))('console API (audit events, expiry summary, CRL status, sign-in) on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let certA: number;

  beforeAll(async () => {
    database = kind === 'pglite' ? await sharedPglite() : await createTestDatabase(kind);
    t = await startTestService(database);
    await t.call('tenant-a', 'POST', '/api/v1/customer/devices', { device_id: 'A-1' });
    await t.call('tenant-a', 'POST', '/api/v1/customer/devices', { device_id: 'A-2' });
    const issued = await t.call('tenant-a', 'POST', '/api/v1/customer/devices/A-1/certificates/generate', { key_type: 'ec-p256', validity_days: 5 });
    certA = issued.json.certificate.id;
    await t.call('tenant-a', 'POST', '/api/v1/customer/devices/A-2/certificates/generate', { key_type: 'ec-p256', validity_days: 60 });
    await t.call('tenant-a', 'POST', `/api/v1/customer/certificates/${certA}/revoke`, { reason: 'keyCompromise' });
    await t.call('tenant-b', 'POST', '/api/v1/customer/devices', { device_id: 'B-1' });
    await t.call('tenant-b', 'POST', '/api/v1/customer/devices/B-1/certificates/generate', { key_type: 'ec-p256', validity_days: 20 });
  });
  afterAll(async () => {
    await t?.close();
    if (database !== pglite) await database?.close();
  });

  it("lists the tenant's audit events newest first, in keyset pages that cover every event once", async () => {
    const all = await t.call('tenant-a', 'GET', '/api/v1/customer/audit-events');
    expect(all.status).toBe(200);
    const events: AuditRow[] = all.json.audit_events;
    expect(events.map((e) => e.action)).toEqual(['certificate.revoked', 'certificate.issued', 'certificate.issued', 'device.registered', 'device.registered']);
    expect(new Set(events.map((e) => e.tenant_id))).toEqual(new Set(['tenant-a']));
    expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((a, b) => b - a));
    expect(all.json.next_cursor).toBeNull();

    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page = await t.call('tenant-a', 'GET', `/customer/audit-events?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.json.audit_events.length).toBeLessThanOrEqual(2);
      seen.push(...page.json.audit_events.map((e: AuditRow) => e.id));
      cursor = page.json.next_cursor;
    } while (cursor);
    expect(seen).toEqual(events.map((e) => e.id));
  });

  it('filters by action, target and actor', async () => {
    const revoked = await t.call('tenant-a', 'GET', '/api/v1/customer/audit-events?action=certificate.revoked');
    expect(revoked.json.audit_events).toHaveLength(1);
    expect(revoked.json.audit_events[0]).toMatchObject({ action: 'certificate.revoked', target_type: 'certificate', target_id: String(certA), actor: 'test:tenant-a:customer' });
    const target = await t.call('tenant-a', 'GET', `/api/v1/customer/audit-events?target_type=certificate&target_id=${certA}`);
    expect(target.json.audit_events.map((e: AuditRow) => e.action)).toEqual(['certificate.revoked', 'certificate.issued']);
    const device = await t.call('tenant-a', 'GET', '/api/v1/customer/audit-events?target_type=device&target_id=A-2');
    expect(device.json.audit_events.map((e: AuditRow) => e.action)).toEqual(['device.registered']);
    expect((await t.call('tenant-a', 'GET', '/api/v1/customer/audit-events?actor=test:tenant-a:customer')).json.audit_events).toHaveLength(5);
    expect((await t.call('tenant-a', 'GET', '/api/v1/customer/audit-events?actor=someone-else')).json.audit_events).toEqual([]);
  });

  it("never shows another tenant's events; operators see every tenant, or one", async () => {
    const b = await t.call('tenant-b', 'GET', `/api/v1/customer/audit-events?target_type=certificate&target_id=${certA}`);
    expect(b.json.audit_events).toEqual([]);
    expect(new Set((await t.call('tenant-b', 'GET', '/api/v1/customer/audit-events')).json.audit_events.map((e: AuditRow) => e.tenant_id))).toEqual(new Set(['tenant-b']));
    const every = await t.call(null, 'GET', '/api/v1/operator/audit-events');
    expect(every.status).toBe(200);
    expect(new Set(every.json.audit_events.map((e: AuditRow) => e.tenant_id))).toEqual(new Set(['tenant-a', 'tenant-b']));
    const one = await t.call(null, 'GET', '/operator/audit-events?tenant_id=tenant-b&action=device.registered');
    expect(one.json.audit_events.map((e: AuditRow) => [e.tenant_id, e.target_id])).toEqual([['tenant-b', 'B-1']]);
    const customerOnOperator = await t.call('tenant-a', 'GET', '/api/v1/operator/audit-events');
    expect(customerOnOperator.status).toBe(403);
    expect(customerOnOperator.json.code).toBe('FORBIDDEN');
  });

  it('rejects bad filters and cursors with problem+json', async () => {
    for (const query of ['cursor=abc', 'limit=0', 'limit=5000', 'unknown=1', `action=${'x'.repeat(65)}`]) {
      const res = await t.call('tenant-a', 'GET', `/api/v1/customer/audit-events?${query}`);
      expect(res.status, query).toBe(422);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json.code).toBe('VALIDATION_FAILED');
    }
    expect((await t.service.app.inject({ method: 'GET', url: '/api/v1/customer/audit-events' })).statusCode).toBe(401);
  });

  it('summarises expiry in 7, 30 and 90 days per tenant (revoked certificates do not count), and across tenants for operators', async () => {
    const a = await t.call('tenant-a', 'GET', '/api/v1/customer/expiry-summary');
    expect(a.status).toBe(200);
    expect(a.json.windows).toEqual([
      { days: 7, certificates: 0 },
      { days: 30, certificates: 0 },
      { days: 90, certificates: 1 },
    ]);
    const b = await t.call('tenant-b', 'GET', '/customer/expiry-summary');
    expect(b.json.windows.map((w: { certificates: number }) => w.certificates)).toEqual([0, 1, 1]);
    const all = await t.call(null, 'GET', '/api/v1/operator/expiry-summary');
    expect(all.json.windows.map((w: { certificates: number }) => w.certificates)).toEqual([0, 1, 2]);
    const one = await t.call(null, 'GET', '/api/v1/operator/expiry-summary?tenant_id=tenant-a');
    expect(one.json.windows.map((w: { certificates: number }) => w.certificates)).toEqual([0, 0, 1]);
  });

  it('reports the CRL status with its download URLs', async () => {
    await t.service.crl.publisher!.publishNow();
    const res = await t.call('tenant-a', 'GET', '/api/v1/customer/crl/status');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ entries: 1, pem_url: '/pki/crl.pem', der_url: '/pki/crl' });
    expect(BigInt(res.json.crl_number)).toBeGreaterThan(0n);
    expect(Date.parse(res.json.next_update)).toBeGreaterThan(Date.parse(res.json.this_update));
    expect((await t.call(null, 'GET', '/api/v1/operator/crl/status')).json.crl_number).toBe(res.json.crl_number);
  });

  it('tells the console how to sign in and who the session is', async () => {
    const config = await t.service.app.inject({ method: 'GET', url: '/auth/config' });
    expect(config.json()).toEqual({ oidc: null });
    expect((await t.service.app.inject({ method: 'GET', url: '/auth/me' })).json()).toEqual({ principal: null });
    const me = await t.call('tenant-a', 'GET', '/auth/me');
    expect(me.json).toEqual({ principal: { subject: 'test:tenant-a:customer', tenant_id: 'tenant-a', roles: ['customer'] } });
    const bad = await t.service.app.inject({ method: 'GET', url: '/auth/me', headers: { cookie: 'certfleet_session=garbage' } });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().code).toBe('UNAUTHENTICATED');
  });
});

describe('console sign-in settings and pages', () => {
  it('exposes the OIDC public client when OIDC_CLIENT_ID is set', async () => {
    const database = await sharedPglite(); // the data of the tests above does not matter here
    const t = await startTestService(database, {
      env: { OIDC_ISSUER: 'https://id.example.test/realms/fleet', OIDC_JWKS_URL: 'https://id.example.test/realms/fleet/certs', OIDC_CLIENT_ID: 'certfleet-console' },
    });
    try {
      const config = await t.service.app.inject({ method: 'GET', url: '/auth/config' });
      expect(config.json()).toEqual({ oidc: { issuer: 'https://id.example.test/realms/fleet', client_id: 'certfleet-console', scope: 'openid' } });
      ensureWebBuilt();
      const page = await t.service.app.inject({ method: 'GET', url: '/app/' });
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-security-policy']).toContain("connect-src 'self' https://id.example.test");
      expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    } finally {
      await t.close();
    }
  });

  it('redirects / to /app/ and serves the built page and its hashed assets', async () => {
    ensureWebBuilt();
    const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } });
    app.register(webConsoleRoutes());
    const root = await app.inject({ method: 'GET', url: '/' });
    expect(root.statusCode).toBe(302);
    expect(root.headers.location).toBe('/app/');
    for (const url of ['/app', '/app/']) {
      const page = await app.inject({ method: 'GET', url });
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-type']).toContain('text/html');
      const asset = /src="(\/app\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
      expect(asset).toBeDefined();
      const js = await app.inject({ method: 'GET', url: asset! });
      expect(js.statusCode).toBe(200);
      expect(js.headers['cache-control']).toContain('immutable');
      expect(page.body).not.toMatch(/https?:\/\//);
    }
    await app.close();
  });

  it('answers 503 CONSOLE_NOT_BUILT as problem+json when the assets are missing', async () => {
    const app = Fastify();
    installErrorHandler(app);
    app.register(webConsoleRoutes({ dir: mkdtempSync(join(tmpdir(), 'certfleet-no-web-')) }));
    const res = await app.inject({ method: 'GET', url: '/app/' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json().code).toBe('CONSOLE_NOT_BUILT');
    await app.close();
  });
});
