import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

type Injected = Awaited<ReturnType<TestService['service']['app']['inject']>>;

describe.each(oneDriver('pglite'))('browser sessions (%s)', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  const signIn = async (svc: TestService, tenant = 'acme') => {
    const token = await svc.token(tenant);
    const res = await svc.service.app.inject({ method: 'POST', url: '/auth/session', payload: { token } });
    expect(res.statusCode, res.body).toBe(200);
    const cookies = Object.fromEntries(res.cookies.map((c) => [c.name, c]));
    const id = cookies.certfleet_session!.value;
    return { token, res, cookies, id, csrf: res.json().csrf_token as string, cookie: `certfleet_session=${id}` };
  };
  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, headers: Record<string, string>, payload?: unknown): Promise<Injected> =>
    t.service.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });

  it('the cookie holds an opaque session id, stored server-side as a hash, never the bearer token', async () => {
    const s = await signIn(t);
    expect(s.id).not.toBe(s.token);
    expect(s.token).not.toContain(s.id);
    expect(s.id).not.toMatch(/^ey/); // not a JWT
    expect(s.cookies.certfleet_session!.httpOnly).toBe(true);
    expect(s.cookies.certfleet_session!.secure).toBeFalsy(); // PUBLIC_BASE_URL is http here
    for (const c of s.res.cookies) expect(c.value).not.toContain(s.token);
    const rows = (await database.db.asOperator((tx) => tx.query<Record<string, unknown>>('SELECT * FROM browser_sessions'))).rows;
    expect(rows.length).toBeGreaterThan(0);
    const stored = JSON.stringify(rows);
    expect(stored).not.toContain(s.id);
    expect(stored).not.toContain(s.csrf);
    expect(stored).not.toContain(s.token);
    expect((await call('GET', '/customer/devices', { cookie: s.cookie })).statusCode).toBe(200);
  });

  it('binds the CSRF token to its session', async () => {
    const a = await signIn(t);
    const b = await signIn(t);
    const url = '/customer/devices';
    expect((await call('POST', url, { cookie: a.cookie }, { device_id: 'SESS-1' })).json().code).toBe('CSRF_FAILED');
    // b's CSRF token (also sent as the csrf_token cookie, as a double-submit attacker could) does not work for a.
    const crossed = await call('POST', url, { cookie: `${a.cookie}; csrf_token=${b.csrf}`, 'x-csrf-token': b.csrf }, { device_id: 'SESS-1' });
    expect(crossed.statusCode).toBe(403);
    expect(crossed.json().code).toBe('CSRF_FAILED');
    const ok = await call('POST', url, { cookie: a.cookie, 'x-csrf-token': a.csrf }, { device_id: 'SESS-1' });
    expect(ok.statusCode, ok.body).toBe(201);
  });

  it('logout (DELETE /auth/session) invalidates the session id at once, even if the cookie is replayed', async () => {
    const s = await signIn(t);
    const withoutCsrf = await call('DELETE', '/auth/session', { cookie: s.cookie });
    expect(withoutCsrf.statusCode).toBe(403);
    expect((await call('GET', '/customer/devices', { cookie: s.cookie })).statusCode).toBe(200);
    const out = await call('DELETE', '/auth/session', { cookie: s.cookie, 'x-csrf-token': s.csrf });
    expect(out.statusCode).toBe(204);
    const cleared = Object.fromEntries(out.cookies.map((c) => [c.name, c.value]));
    expect(cleared.certfleet_session).toBe('');
    const replay = await call('GET', '/customer/devices', { cookie: s.cookie });
    expect(replay.statusCode).toBe(401);
    expect(replay.json().code).toBe('UNAUTHENTICATED');
    // Logging out again (or without a session) is harmless.
    expect((await call('DELETE', '/auth/session', { cookie: s.cookie })).statusCode).toBe(204);
  });

  it('a bearer token in the cookie is not a session', async () => {
    const token = await t.token('acme');
    const res = await call('GET', '/customer/devices', { cookie: `certfleet_session=${token}` });
    expect(res.statusCode).toBe(401);
  });

  it('sets Secure on both cookies when PUBLIC_BASE_URL is https', async () => {
    const secure = await startTestService(database, { env: { PUBLIC_BASE_URL: 'https://certs.example.com' } });
    try {
      const s = await signIn(secure);
      expect(s.cookies.certfleet_session!.secure).toBe(true);
      expect(s.cookies.csrf_token!.secure).toBe(true);
    } finally {
      await secure.close();
    }
  });
});
