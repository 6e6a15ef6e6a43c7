import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

/** A real JWKS endpoint on loopback standing in for Keycloak. */
describe('OIDC bearer tokens (JWKS over HTTP)', () => {
  let database: TestDatabase;
  let t: TestService;
  let jwks: Server;
  let sign: (claims: Record<string, unknown>, options?: { audience?: string; issuer?: string; expiresIn?: string }) => Promise<string>;
  const issuer = 'http://keycloak.test/realms/iot';

  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    jwks = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/certs`;
    sign = (claims, o = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(o.issuer ?? issuer)
        .setAudience(o.audience ?? 'certfleet-api')
        .setSubject('user-1')
        .setIssuedAt()
        .setExpirationTime(o.expiresIn ?? '5m')
        .sign(privateKey);
    database = await createTestDatabase('pglite');
    t = await startTestService(database, { env: { OIDC_ISSUER: issuer, OIDC_AUDIENCE: 'certfleet-api', OIDC_JWKS_URL: url } });
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
    jwks?.close();
  });

  const get = async (token: string) =>
    t.service.app.inject({ method: 'GET', url: '/customer/devices', headers: { authorization: `Bearer ${token}` } });

  it('accepts a Keycloak-style token: tenant from the organization claim, roles from realm_access', async () => {
    const token = await sign({ organization: { acme: { id: 'x' } }, realm_access: { roles: ['customer', 'offline_access'] } });
    const res = await get(token);
    expect(res.statusCode).toBe(200);
    const created = await t.service.app.inject({
      method: 'POST',
      url: '/customer/devices',
      headers: { authorization: `Bearer ${token}` },
      payload: { device_id: 'OIDC-1' },
    });
    expect(created.json().device.tenant_id).toBe('acme');
  });

  it('accepts a tenant_id claim, and rejects wrong audience, wrong issuer, expiry and a missing role', async () => {
    expect((await get(await sign({ tenant_id: 'acme', realm_access: { roles: ['tenant-admin'] } }))).statusCode).toBe(200);
    expect((await get(await sign({ tenant_id: 'acme', realm_access: { roles: ['customer'] } }, { audience: 'other' }))).statusCode).toBe(401);
    expect((await get(await sign({ tenant_id: 'acme', realm_access: { roles: ['customer'] } }, { issuer: 'http://evil' }))).statusCode).toBe(401);
    expect((await get(await sign({ tenant_id: 'acme', realm_access: { roles: ['customer'] } }, { expiresIn: '-1m' }))).statusCode).toBe(401);
    expect((await get(await sign({ tenant_id: 'acme', realm_access: { roles: [] } }))).statusCode).toBe(403);
    expect((await get(await sign({ tenant_id: 'a b', realm_access: { roles: ['customer'] } }))).statusCode).toBe(401);
  });

  it('does not accept tokens signed with the local development key once OIDC is configured', async () => {
    expect((await get(await t.token('acme'))).statusCode).toBe(401);
  });
});
