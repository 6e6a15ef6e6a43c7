import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/support/logger.ts';
import { tokenVerifierFor } from '../src/composition/token-verifier.ts';
import { cliHere as cliInThisProcess } from './support/cli-here.ts';
import { createTestDatabase, createThrowawayDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js'); // the CLI from the sources (bin/certfleet.js runs dist/)
const cli = (args: string[], env: Record<string, string>) => {
  const base = { ...process.env };
  delete base.DATABASE_URL;
  delete base.NODE_ENV;
  delete base.CERTFLEET_AUTH;
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...base, ...env }, timeout: 60_000 });
};
/** The same in this process (~1 s of CPU less per command): for the cases that are not about the process boundary; each command keeps one real process. */
const cliHere = (args: string[], env: Record<string, string>) => cliInThisProcess(args, { DATABASE_URL: undefined, NODE_ENV: undefined, CERTFLEET_AUTH: undefined, ...env });
const tmp = () => mkdtempSync(join(tmpdir(), 'certfleet-prod-auth-'));

describe('production authentication', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });

  it('refuses to start in production mode without OIDC settings unless CERTFLEET_AUTH=development', async () => {
    await expect(startTestService(database, { env: { NODE_ENV: 'production', CERTFLEET_AUTH: '' } })).rejects.toThrow(/OIDC_ISSUER.*CERTFLEET_AUTH=development/);
    // DATABASE_URL alone is production mode too.
    const withUrl = loadConfig({ CERTFLEET_DATA_DIR: tmp(), DATABASE_URL: 'postgres://certfleet@db.example/certfleet' });
    expect(withUrl.productionMode).toBe(true);
    await expect(tokenVerifierFor(withUrl)).rejects.toThrow(/production mode/);
    expect(() => loadConfig({ CERTFLEET_AUTH: 'dev' })).toThrow(/CERTFLEET_AUTH/);
  });

  // Red-team finding: the refusal came after the embedded database was created and migrated
  // (or the Postgres schema migrated) by a process that was never going to serve.
  it('production mode without OIDC refuses before it creates or migrates any database (serve, api; PGlite and Postgres)', async () => {
    const missing = join(tmp(), 'data'); // does not exist yet
    for (const command of ['serve', 'api']) {
      const env = { CERTFLEET_DATA_DIR: missing, NODE_ENV: 'production', PORT: '0' };
      const res = command === 'serve' ? cli([command], env) : await cliHere([command], env); // serve through a real process
      expect(res.status, res.stderr).toBe(1);
      expect(res.stderr).toMatch(/production mode .*needs OIDC settings \(OIDC_ISSUER, OIDC_AUDIENCE, OIDC_JWKS_URL\).*CERTFLEET_AUTH=development/);
      expect(existsSync(missing), `${command} created ${missing}`).toBe(false);
    }
    const pgDatabase = await createThrowawayDatabase('certfleet_prod_auth');
    try {
      const res = await cliHere(['serve'], { CERTFLEET_DATA_DIR: tmp(), DATABASE_URL: pgDatabase.url, PORT: '0' });
      expect(res.status, res.stderr).toBe(1);
      expect(res.stderr).toMatch(/needs OIDC settings/);
      const client = new pg.Client({ connectionString: pgDatabase.url });
      await client.connect();
      try {
        const { rows } = await client.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'`);
        expect(rows[0].n, 'tables created in the Postgres database').toBe(0);
      } finally {
        await client.end();
      }
    } finally {
      await pgDatabase.drop();
    }
  }, 120_000);

  it('with CERTFLEET_AUTH=development in production mode, starts and warns at every start', async () => {
    const dataDir = tmp();
    for (let start = 0; start < 2; start++) {
      const lines: string[] = [];
      const t = await startTestService(database, {
        dataDir,
        env: { NODE_ENV: 'production', CERTFLEET_AUTH: 'development' },
        overrides: { logger: createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } }) },
      });
      try {
        const warnings = lines.map((l) => JSON.parse(l)).filter((l) => l.level === 'warn' && /CERTFLEET_AUTH=development/.test(l.msg));
        expect(warnings).toHaveLength(1);
        expect(t.service.authWarning).toMatch(/OIDC_ISSUER/);
      } finally {
        await t.close();
      }
    }
    // Not production mode: no warning.
    const dev = await startTestService(database, { env: { CERTFLEET_AUTH: '' } });
    expect(dev.service.authWarning).toBeNull();
    await dev.close();
  });

  it('`certfleet token` refuses to mint in production mode, and beyond the development token maximum lifetime', async () => {
    const dataDir = tmp();
    const productionEnvs: Record<string, string>[] = [{ NODE_ENV: 'production' }, { DATABASE_URL: 'postgres://certfleet@127.0.0.1:1/none' }];
    for (const env of productionEnvs) {
      const res = await cliHere(['token', '--tenant', 'acme'], { CERTFLEET_DATA_DIR: dataDir, ...env });
      expect(res.status).toBe(1);
      expect(res.stderr).toMatch(/production mode/);
      expect(res.stdout).toBe('');
    }
    const tooLong = await cliHere(['token', '--tenant', 'acme', '--ttl', '25h'], { CERTFLEET_DATA_DIR: dataDir });
    expect(tooLong.status).toBe(2); // a flag value out of its allowed range: a usage error
    expect(tooLong.stderr).toMatch(/CERTFLEET_DEV_TOKEN_MAX_TTL/);
    const allowed = await cliHere(['token', '--tenant', 'acme', '--ttl', '48h'], { CERTFLEET_DATA_DIR: dataDir, CERTFLEET_DEV_TOKEN_MAX_TTL: '72h' });
    expect(allowed.status, allowed.stderr).toBe(0);
    // The explicit opt-in that lets the service start also lets the CLI mint, with a warning (through a real process).
    const explicit = cli(['token', '--tenant', 'acme'], { CERTFLEET_DATA_DIR: dataDir, NODE_ENV: 'production', CERTFLEET_AUTH: 'development' });
    expect(explicit.status, explicit.stderr).toBe(0);
    expect(explicit.stderr).toMatch(/warning: CERTFLEET_AUTH=development/);
  });

  describe('token claims (development key)', () => {
    let t: TestService;
    let long: TestService;
    let sign: (claims: Record<string, unknown>, times?: { iat?: number; exp?: number | null }) => Promise<string>;
    beforeAll(async () => {
      const dataDir = tmp();
      t = await startTestService(database, { dataDir });
      const jwk = JSON.parse(readFileSync(join(dataDir, 'dev-token-key.json'), 'utf8')) as JWK;
      const key = await importJWK(jwk, 'ES256');
      sign = async (claims, times = {}) => {
        const now = Math.floor(Date.now() / 1000);
        const jwt = new SignJWT(claims)
          .setProtectedHeader({ alg: 'ES256', kid: jwk.kid })
          .setIssuer('certfleet-dev')
          .setAudience('certfleet')
          .setSubject('claims-test')
          .setIssuedAt(times.iat ?? now);
        if (times.exp !== null) jwt.setExpirationTime(times.exp ?? now + 600);
        return jwt.sign(key);
      };
      long = await startTestService(database, { dataDir, env: { CERTFLEET_DEV_TOKEN_MAX_TTL: '72h' } });
    });
    afterAll(async () => {
      await t?.close();
      await long?.close();
    });
    const get = (svc: TestService, token: string) =>
      svc.service.app.inject({ method: 'GET', url: '/customer/devices', headers: { authorization: `Bearer ${token}` } });
    const customer = { tenant_id: 'acme', realm_access: { roles: ['customer'] } };

    it('accepts a well-formed token', async () => {
      expect((await get(t, await sign(customer))).statusCode).toBe(200);
    });

    it('refuses a token without exp', async () => {
      const res = await get(t, await sign(customer, { exp: null }));
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('UNAUTHENTICATED');
    });

    it('refuses development tokens living longer than the maximum (24 h by default, configurable)', async () => {
      const now = Math.floor(Date.now() / 1000);
      const twoDays = await sign(customer, { iat: now, exp: now + 48 * 3600 });
      expect((await get(t, twoDays)).statusCode).toBe(401);
      expect((await get(long, twoDays)).statusCode).toBe(200);
      // Issued long ago with a far exp: older than the maximum, refused even where 72 h are allowed.
      const old = await sign(customer, { iat: now - 80 * 3600, exp: now + 3600 });
      expect((await get(long, old)).statusCode).toBe(401);
    });

    it('takes roles from realm_access.roles only', async () => {
      const res = await get(t, await sign({ tenant_id: 'acme', roles: ['customer'] }));
      expect(res.statusCode).toBe(403);
      expect((await get(t, await sign({ tenant_id: 'acme', roles: ['operator'], realm_access: { roles: ['customer'] } }))).statusCode).toBe(200);
    });

    it('refuses a token naming several organizations, or a tenant_id that disagrees with its organization', async () => {
      const roles = { realm_access: { roles: ['customer'] } };
      for (const claims of [
        { organization: ['acme', 'globex'], ...roles },
        { organization: { acme: {}, globex: {} }, ...roles },
        { tenant_id: 'acme', organization: 'globex', ...roles },
      ]) {
        const res = await get(t, await sign(claims));
        expect(res.statusCode, JSON.stringify(claims)).toBe(401);
      }
      expect((await get(t, await sign({ organization: ['acme'], ...roles }))).statusCode).toBe(200);
      expect((await get(t, await sign({ tenant_id: 'acme', organization: { acme: {} }, ...roles }))).statusCode).toBe(200);
    });
  });

  // From test/oidc.test.ts (issue 23: the file's database instead of one of its own).
  /** A real JWKS endpoint on loopback standing in for Keycloak. */
  describe('OIDC bearer tokens (JWKS over HTTP)', () => {
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
      t = await startTestService(database, { env: { OIDC_ISSUER: issuer, OIDC_AUDIENCE: 'certfleet-api', OIDC_JWKS_URL: url } });
    });
    afterAll(async () => {
      await t?.close();
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
});
