/**
 * Authorization of every registered route, generated from the app's real route table
 * (collected by an onRoute hook: src/http/route-table.ts).
 *
 * HOW TO ADD A ROUTE. Every route the app registers needs exactly one row in ROUTES below,
 * keyed by `<access> <METHOD> <path>`:
 *   - access: the scope the route is mounted in: `customer` (/api/v1/customer, /customer),
 *     `operator` (/api/v1/operator, /operator), `session` (/auth) or `public` (the rest);
 *   - path: the route's path *inside* its scope, exactly as registered (`/devices/:device_id`),
 *     so one row covers every prefix the scope is mounted under.
 * A row gives `own`, the status the owner gets (tenant A's customer on a customer route, an
 * operator on an operator route, anyone on a public route), and a `request` building a real
 * request from the fixtures of tenant A (`fx.device()`, `fx.certificate()`, `fx.alert()`, ...)
 * when the route has parameters or a body; `role` when the route needs a role beyond its scope's
 * (the owner then carries it, and the owner without it must get 403). That is all for most routes: the test derives
 * every other case from the scope (no token, expired token, wrong audience, wrong issuer,
 * tampered signature, `alg: none` → 401; another tenant → 404 when the path names a
 * resource (set `other` otherwise); customer on an operator route and operator on a customer
 * route → 403; a session cookie without X-CSRF-Token → 403 on unsafe methods).
 * A registered route without a row fails the test, and so does a row without a route.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import type { Role } from '../src/auth/roles.ts';
import { createSessionStore } from '../src/composition/browser-sessions.ts';
import { tokenVerifierFor } from '../src/composition/token-verifier.ts';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { createWorker, type Worker } from '../src/composition/worker.ts';
import { buildHttpApp } from '../src/http/app.ts';
import { silentLogger } from '../src/support/logger.ts';
import { routeTable, type RegisteredRoute, type RouteAccess } from '../src/http/route-table.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { opensslCsr, run } from './support/openssl.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const TENANT_A = 'acme';
const TENANT_B = 'globex';

const CASES = [
  'no token',
  'expired token',
  'wrong audience',
  'wrong issuer',
  'tampered signature',
  'alg none',
  'other tenant',
  'customer on operator route',
  'operator on customer route',
  'cookie without CSRF token',
  'owner without the route role',
  'own tenant',
] as const;
type CaseName = (typeof CASES)[number];

/** What a case presents: a bearer token, or a browser session cookie (without its CSRF token). */
interface Credential {
  token?: string;
  cookie?: string;
}
interface Req {
  /** Inside the scope, with parameters filled in. */
  path: string;
  body?: unknown;
}
interface Fixtures {
  /** A fresh id for things a request creates. */
  newId(prefix?: string): string;
  /** Tenant A's device (registered once per route under test; every fixture is made once per route, for all its cases). */
  device(): Promise<string>;
  /** An ACTIVE certificate of device(). */
  certificate(): Promise<{ id: number; certPem: string }>;
  /** A pending rotation of device(). */
  rotation(): Promise<void>;
  /** An open expiry alert of tenant A. */
  alert(): Promise<number>;
  /** A notification webhook of tenant A. */
  webhook(): Promise<number>;
  /** An operators' webhook (tenant __system__). */
  operatorWebhook(): Promise<number>;
  /** A claim CA of tenant A (registered by its tenant-admin). */
  claimCa(): Promise<number>;
  /** The global active Device CA's record id. */
  activeCa(): Promise<string>;
  /** A staged Device CA, created by an operator (tenant A's own scope when `tenant`). */
  stagedCa(tenant?: boolean): Promise<string>;
  /** A CSR with a key of its own (openssl; one key serves one device). */
  csr(): string;
  /** A self-signed CA certificate and its key, for an import. */
  importCa(): { cert_pem: string; key_pem: string };
}
interface Row {
  /** Status for the owner: tenant A's customer, an operator on operator routes, anyone on public routes. */
  own: number;
  /** The route needs this role beyond its scope's (the owner's token carries it; without it: 403). */
  role?: Role;
  /** Status for tenant B's customer on a customer route; default: 404 when the path has a parameter, else `own`. */
  other?: number;
  /** Default: the route path as registered, no body. */
  request?: (fx: Fixtures, credential: Credential) => Req | Promise<Req>;
  /** The request carries the credential itself (POST /auth/session takes the token in its body). */
  sendsCredential?: boolean;
  /** Statuses that differ from the scope's rule. */
  expect?: Partial<Record<CaseName, number>>;
}

const path = (p: string) => () => ({ path: p });

/** A new manufacturer CA certificate (openssl; its key is thrown away: certfleet never needs it). */
function newClaimCaPem(): string {
  const r = run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-days', '30',
    '-subj', `/CN=Claim CA ${Math.random().toString(36).slice(2)}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
  ]);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.out);
  if (!pem) throw new Error(`openssl: ${r.out}`);
  return `${pem[0]}\n`;
}
/** A self-signed CA certificate and its key (a "bring your own CA" import). */
function newImportCa(): { cert_pem: string; key_pem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'authz-ca-'));
  run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'), '-days', '365',
    '-subj', `/CN=Imported CA ${Math.random().toString(36).slice(2)}`, '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const pair = { cert_pem: readFileSync(join(dir, 'ca.crt'), 'utf8'), key_pem: readFileSync(join(dir, 'ca.key'), 'utf8') };
  rmSync(dir, { recursive: true, force: true });
  return pair;
}
/** The same status whatever the credentials (routes that read no credentials). */
const everyCase = (status: number): Partial<Record<CaseName, number>> => Object.fromEntries(CASES.map((c) => [c, status]));

const ROUTES: Record<string, Row> = {
  // customer: devices and certificates
  'customer POST /devices': { own: 201, other: 201, request: (fx) => ({ path: '/devices', body: { device_id: fx.newId('DEV') } }) },
  'customer GET /devices': { own: 200 },
  'customer GET /devices/:device_id': { own: 200, request: async (fx) => ({ path: `/devices/${await fx.device()}` }) },
  'customer POST /devices/:device_id/certificates/generate': {
    own: 201,
    request: async (fx) => ({ path: `/devices/${await fx.device()}/certificates/generate`, body: { key_type: 'ec-p256' } }),
  },
  'customer POST /devices/:device_id/certificates/csr': {
    own: 201,
    request: async (fx) => ({ path: `/devices/${await fx.device()}/certificates/csr`, body: { csr_pem: fx.csr() } }), // a fresh key per route: one key serves one device
  },
  'customer POST /devices/:device_id/certificates/import': {
    own: 409, // the owner reaches the use case: this certificate is registered already (CERTIFICATE_EXISTS)
    other: 422, // the certificate names tenant A in its CN: refused before any lookup, so nothing of A's is revealed
    request: async (fx) => ({ path: `/devices/${await fx.device()}/certificates/import`, body: { cert_pem: (await fx.certificate()).certPem } }),
  },
  'customer GET /certificates': { own: 200 },
  'customer GET /certificates/:id': { own: 200, request: async (fx) => ({ path: `/certificates/${(await fx.certificate()).id}` }) },
  'customer POST /certificates/:id/revoke': {
    own: 200,
    request: async (fx) => ({ path: `/certificates/${(await fx.certificate()).id}/revoke`, body: { reason: 'keyCompromise' } }),
  },
  'customer GET /ca-bundle': { own: 200 },
  'customer GET /crl': { own: 200 },
  // customer: rotation
  'customer POST /devices/:device_id/certificates/rotate': {
    own: 201,
    request: async (fx) => (await fx.certificate(), { path: `/devices/${await fx.device()}/certificates/rotate`, body: { key_type: 'ec-p256' } }),
  },
  'customer POST /devices/:device_id/certificates/rotate/confirm': {
    own: 200,
    request: async (fx) => (await fx.rotation(), { path: `/devices/${await fx.device()}/certificates/rotate/confirm` }),
  },
  'customer POST /devices/:device_id/certificates/rotate/cancel': {
    own: 200,
    request: async (fx) => (await fx.rotation(), { path: `/devices/${await fx.device()}/certificates/rotate/cancel`, body: {} }),
  },
  'customer GET /devices/:device_id/certificates/rotation': {
    own: 200,
    request: async (fx) => (await fx.rotation(), { path: `/devices/${await fx.device()}/certificates/rotation` }),
  },
  // customer: alerts
  'customer GET /alerts': { own: 200 },
  'customer GET /alerts/:id': { own: 200, request: async (fx) => ({ path: `/alerts/${await fx.alert()}` }) },
  'customer POST /alerts/:id/acknowledge': { own: 200, request: async (fx) => ({ path: `/alerts/${await fx.alert()}/acknowledge` }) },
  'customer POST /alerts/:id/close': { own: 200, request: async (fx) => ({ path: `/alerts/${await fx.alert()}/close` }) },
  // customer: EST enrollment
  'customer POST /devices/:device_id/enrollment-tokens': {
    own: 201,
    role: 'tenant-admin', // a device credential: the plain customer role gets 403
    request: async (fx) => ({ path: `/devices/${await fx.device()}/enrollment-tokens`, body: { expires_in_hours: 1 } }),
  },
  // customer: factory (claim) onboarding; changes need tenant-admin (test/claim-onboarding.test.ts)
  'customer GET /claim-cas': { own: 200 },
  'customer POST /claim-cas': { own: 201, other: 201, role: 'tenant-admin', request: () => ({ path: '/claim-cas', body: { ca_cert_pem: newClaimCaPem() } }) },
  'customer GET /claim-cas/:id': { own: 200, request: async (fx) => ({ path: `/claim-cas/${await fx.claimCa()}` }) },
  'customer PUT /claim-cas/:id/crl': {
    own: 422, // the owner reaches the use case: this is no CRL of that CA (INVALID_CRL)
    role: 'tenant-admin',
    request: async (fx) => ({ path: `/claim-cas/${await fx.claimCa()}/crl`, body: { crl_pem: '-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n' } }),
  },
  'customer DELETE /claim-cas/:id': { own: 204, role: 'tenant-admin', request: async (fx) => ({ path: `/claim-cas/${await fx.claimCa()}` }) },
  'customer GET /provisioning-policy': { own: 200 },
  'customer PUT /provisioning-policy': { own: 200, role: 'tenant-admin', request: () => ({ path: '/provisioning-policy', body: { admit: { cn_patterns: ['SN-*'] } } }) },
  // customer: broker grants (PUT needs tenant-admin: the customer role gets 403; see test/broker-grants.test.ts)
  'customer GET /broker-grants': { own: 200 },
  'customer PUT /broker-grants': { own: 403, request: async () => ({ path: '/broker-grants', body: { grants: [{ filter: 'broadcast/#', access: 'read' }] } }) },
  // customer: renewal policy (PUT needs tenant-admin; see test/recovery-est.test.ts)
  'customer GET /renewal-policy': { own: 200 },
  'customer PUT /renewal-policy': { own: 403, request: async () => ({ path: '/renewal-policy', body: { recovery_window_days: 30 } }) },
  // customer: tenant settings (PUT needs tenant-admin: the customer role gets 403; see test/device-keys.test.ts)
  'customer GET /settings': { own: 200 },
  'customer PUT /settings': { own: 403, request: async () => ({ path: '/settings', body: { allow_shared_device_keys: true } }) },
  // customer: audit log and overview (console)
  'customer GET /audit-events': { own: 200 },
  'customer GET /expiry-summary': { own: 200 },
  'customer GET /crl/status': { own: 200 },
  'customer GET /cas': { own: 200 },
  // customer: webhooks
  'customer POST /notification-webhooks': {
    own: 201,
    other: 201,
    request: (fx) => ({ path: '/notification-webhooks', body: { url: `https://hooks.example.com/${fx.newId('hook')}` } }),
  },
  'customer GET /notification-webhooks': { own: 200 },
  'customer GET /notification-webhooks/:id': { own: 200, request: async (fx) => ({ path: `/notification-webhooks/${await fx.webhook()}` }) },
  'customer PATCH /notification-webhooks/:id': {
    own: 200,
    request: async (fx) => ({ path: `/notification-webhooks/${await fx.webhook()}`, body: { description: 'changed' } }),
  },
  'customer DELETE /notification-webhooks/:id': { own: 204, request: async (fx) => ({ path: `/notification-webhooks/${await fx.webhook()}` }) },
  'customer POST /notification-webhooks/:id/rotate-secret': {
    own: 200,
    request: async (fx) => ({ path: `/notification-webhooks/${await fx.webhook()}/rotate-secret` }),
  },
  'customer GET /notification-webhooks/:id/deliveries': {
    own: 200,
    request: async (fx) => ({ path: `/notification-webhooks/${await fx.webhook()}/deliveries` }),
  },
  // operator
  'operator GET /devices': { own: 200 },
  'operator GET /certificates': { own: 200 },
  'operator GET /alerts': { own: 200 },
  'operator GET /alerts/:id': { own: 200, request: async (fx) => ({ path: `/alerts/${await fx.alert()}` }) },
  'operator POST /alerts/:id/acknowledge': { own: 200, request: async (fx) => ({ path: `/alerts/${await fx.alert()}/acknowledge` }) },
  'operator POST /alerts/:id/close': { own: 200, request: async (fx) => ({ path: `/alerts/${await fx.alert()}/close` }) },
  'operator GET /audit-events': { own: 200 },
  'operator GET /expiry-summary': { own: 200 },
  'operator GET /fleet-overview': { own: 200 },
  'operator GET /crl/status': { own: 200 },
  // operator: the operators' own webhooks (system alerts)
  'operator POST /notification-webhooks': {
    own: 201,
    request: (fx) => ({ path: '/notification-webhooks', body: { url: `https://hooks.example.com/${fx.newId('ophook')}` } }),
  },
  'operator GET /notification-webhooks': { own: 200 },
  'operator GET /notification-webhooks/:id': { own: 200, request: async (fx) => ({ path: `/notification-webhooks/${await fx.operatorWebhook()}` }) },
  'operator PATCH /notification-webhooks/:id': {
    own: 200,
    request: async (fx) => ({ path: `/notification-webhooks/${await fx.operatorWebhook()}`, body: { description: 'changed' } }),
  },
  'operator DELETE /notification-webhooks/:id': { own: 204, request: async (fx) => ({ path: `/notification-webhooks/${await fx.operatorWebhook()}` }) },
  'operator POST /notification-webhooks/:id/rotate-secret': {
    own: 200,
    request: async (fx) => ({ path: `/notification-webhooks/${await fx.operatorWebhook()}/rotate-secret` }),
  },
  'operator GET /notification-webhooks/:id/deliveries': {
    own: 200,
    request: async (fx) => ({ path: `/notification-webhooks/${await fx.operatorWebhook()}/deliveries` }),
  },
  'operator GET /broker-nodes': { own: 200 },
  // Device CAs (issue 19): operators only
  'operator GET /cas': { own: 200 },
  'operator POST /cas': { own: 201, request: (fx) => ({ path: '/cas', body: { key_type: 'ec-p256', common_name: `Authz CA ${fx.newId('ca')}` } }) },
  'operator POST /cas/import': { own: 201, request: (fx) => ({ path: '/cas/import', body: fx.importCa() }) },
  'operator GET /cas/:id': { own: 200, request: async (fx) => ({ path: `/cas/${await fx.activeCa()}` }) },
  'operator POST /cas/:id/activate': { own: 200, request: async (fx) => ({ path: `/cas/${await fx.stagedCa(true)}/activate` }) },
  'operator POST /cas/:id/retire': { own: 200, request: async (fx) => ({ path: `/cas/${await fx.stagedCa()}/retire` }) },
  'operator POST /cas/:id/revoke': { own: 200, request: async (fx) => ({ path: `/cas/${await fx.stagedCa()}/revoke`, body: { reason: 'cACompromise' } }) },
  // broker agents (role broker-agent with a broker_node claim; bearer tokens only)
  'broker-agent GET /crl-bundle.pem': { own: 200 },
  'broker-agent GET /ca-scopes.pem': { own: 200 },
  'broker-agent POST /report': { own: 200, request: () => ({ path: '/report', body: { kind: 'mosquitto', crl_number: '1' } }) },
  'broker-agent POST /revoked-common-names': { own: 200, request: () => ({ path: '/revoked-common-names', body: { serials: ['1f'] } }) },
  'broker-agent POST /canaries': { own: 201, request: () => ({ path: '/canaries', body: {} }) },
  // how the console signs in, and who is signed in
  'session GET /config': { own: 200, expect: everyCase(200) },
  'session GET /me': {
    own: 200,
    expect: { 'no token': 200, 'other tenant': 200, 'customer on operator route': 200, 'operator on customer route': 200, 'cookie without CSRF token': 200 },
  },
  // browser sessions: the token travels in the body
  'session POST /session': {
    own: 200,
    sendsCredential: true,
    request: (_fx, credential) => ({ path: '/session', body: { token: credential.token ?? '' } }),
    expect: { 'no token': 422, 'cookie without CSRF token': 422, 'other tenant': 200, 'customer on operator route': 200, 'operator on customer route': 200 },
  },
  'session DELETE /session': {
    own: 204, // with the session's CSRF token
    expect: {
      'no token': 204,
      'expired token': 204,
      'wrong audience': 204,
      'wrong issuer': 204,
      'tampered signature': 204,
      'alg none': 204,
      'other tenant': 204,
      'customer on operator route': 204,
      'operator on customer route': 204,
      'cookie without CSRF token': 403,
    },
  },
  // public
  'public GET /': { own: 302 },
  'public GET /app': { own: 200 },
  'public GET /app/*': { own: 200, request: path('/app/index.html') },
  'public GET /healthz': { own: 200 },
  'public GET /readyz': { own: 200 },
  'public GET /metrics': { own: 200 },
  'public GET /pki/ca.pem': { own: 200 },
  'public GET /pki/cas.pem': { own: 200 },
  'public GET /pki/ca/:id': { own: 200, request: async (fx) => ({ path: `/pki/ca/${await fx.activeCa()}.pem` }) },
  'public GET /pki/ca/:id/crl': { own: 200, request: async (fx) => ({ path: `/pki/ca/${await fx.activeCa()}/crl` }) },
  'public GET /pki/ca/:id/crl.pem': { own: 200, request: async (fx) => ({ path: `/pki/ca/${await fx.activeCa()}/crl.pem` }) },
  'public GET /pki/crl': { own: 200 },
  'public GET /pki/crl.pem': { own: 200 },
  'public GET /docs': { own: 200 },
  'public GET /docs/json': { own: 200 },
  'public GET /docs/yaml': { own: 200 },
  'public GET /docs/static/index.html': { own: 302 }, // @fastify/swagger-ui redirects to /docs/
  'public GET /docs/static/swagger-initializer.js': { own: 200 },
  'public GET /docs/static/*': { own: 200, request: path('/docs/static/swagger-ui.css') },
};

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
const keyOf = (r: RegisteredRoute) => `${r.access} ${r.method} ${r.path}`;

/** The status a case must get on a route of this scope, unless the row says otherwise; null: the case does not apply. */
function expected(access: RouteAccess, method: string, row: Row, hasParams: boolean, c: CaseName): number | null {
  const override = row.expect?.[c];
  if (override !== undefined) return override;
  if (c === 'owner without the route role') return row.role ? 403 : null;
  if (access === 'public') return row.own;
  if (access === 'session') return c === 'own tenant' ? row.own : 401;
  if (access === 'broker-agent') {
    if (c === 'own tenant') return row.own;
    // a customer's or an operator's token is not a broker agent's; a browser session never is
    return c === 'other tenant' || c === 'customer on operator route' || c === 'operator on customer route' ? 403 : 401;
  }
  switch (c) {
    case 'own tenant':
      return row.own;
    case 'cookie without CSRF token':
      return SAFE.has(method) ? row.own : 403;
    case 'other tenant':
      return access === 'operator' ? 403 : (row.other ?? (hasParams ? 404 : row.own));
    case 'customer on operator route':
      return access === 'operator' ? 403 : null; // on a customer route this would be the owner again
    case 'operator on customer route':
      return access === 'customer' ? 403 : null;
    default:
      return 401;
  }
}

describe('authorization of every registered route', () => {
  let database: TestDatabase;
  let t: TestService;
  let worker: Worker;
  let credentials: Record<CaseName, (access: RouteAccess, role?: Role) => Promise<Credential>>;
  let csrfOf: Map<string, string>;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    worker = await createWorker(t.config, {
      clock: t.clock,
      storage: database.storage,
      crl: t.service.crl.publisher,
      revocations: t.service.crl.listener,
      logger: silentLogger,
      holder: 'route-authorization',
    });
    const jwk = JSON.parse(readFileSync(join(t.dataDir, 'dev-token-key.json'), 'utf8')) as JWK;
    const key = await importJWK(jwk, 'ES256');
    const now = Math.floor(Date.now() / 1000);
    const claims = { tenant_id: TENANT_A, realm_access: { roles: ['customer'] } };
    const signed = (o: { iss?: string; aud?: string; iat?: number; exp?: number } = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: jwk.kid })
        .setIssuer(o.iss ?? 'certfleet-dev')
        .setAudience(o.aud ?? 'certfleet')
        .setSubject('route-table')
        .setIssuedAt(o.iat ?? now)
        .setExpirationTime(o.exp ?? now + 3600)
        .sign(key);
    const good = await signed();
    const [head, body, signature] = good.split('.') as [string, string, string];
    const flipped = signature.slice(0, 10) + (signature[10] === 'A' ? 'B' : 'A') + signature.slice(11);
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const algNone = `${b64({ alg: 'none', typ: 'JWT' })}.${body}.`;
    expect(head).toBeTruthy();

    csrfOf = new Map();
    const sessionCookie = async (token: string) => {
      const res = await t.service.app.inject({ method: 'POST', url: '/auth/session', payload: { token } });
      expect(res.statusCode, res.body).toBe(200);
      const id = res.cookies.find((c) => c.name === 'certfleet_session')!.value;
      csrfOf.set(id, res.json().csrf_token);
      return `certfleet_session=${id}`;
    };
    const devKey = await loadOrCreateDevSigningKey(join(t.dataDir, 'dev-token-key.json'));
    const agentToken = await devKey.sign({ roles: ['broker-agent'], brokerNode: 'route-table', subject: 'broker-node:route-table', ttlSeconds: 3600, now: new Date() });
    const owner = async (access: RouteAccess, role?: Role) =>
      access === 'operator' ? t.token(null, role ?? 'operator') : access === 'broker-agent' ? agentToken : t.token(TENANT_A, role ?? 'customer');
    credentials = {
      'no token': async () => ({}),
      'expired token': async () => ({ token: await signed({ iat: now - 7200, exp: now - 3600 }) }),
      'wrong audience': async () => ({ token: await signed({ aud: 'another-api' }) }),
      'wrong issuer': async () => ({ token: await signed({ iss: 'https://evil.example' }) }),
      'tampered signature': async () => ({ token: `${head}.${body}.${flipped}` }),
      'alg none': async () => ({ token: algNone }),
      'other tenant': async (_access, role) => ({ token: await t.token(TENANT_B, role ?? 'customer') }),
      'customer on operator route': async () => ({ token: await t.token(TENANT_A) }),
      'operator on customer route': async () => ({ token: await t.token(null, 'operator') }),
      // a fresh session per use: DELETE /auth/session ends the one it is given
      'cookie without CSRF token': async (access, role) => ({ cookie: await sessionCookie(await owner(access === 'broker-agent' ? 'operator' : access, role)) }),
      'owner without the route role': async (access) => ({ token: await owner(access) }),
      'own tenant': async (access, role) => ({ token: await owner(access, role) }),
    };
  }, scaled(120_000));

  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await database?.close();
  });

  const fixtures = (): Fixtures => {
    let n = 0;
    const once = <T>(make: () => Promise<T>) => {
      let p: Promise<T> | null = null;
      return () => (p ??= make());
    };
    const onceSync = <T>(make: () => T) => {
      let made: { value: T } | null = null;
      return () => (made ??= { value: make() }).value;
    };
    const staged: Record<string, Promise<string>> = {};
    const ok = async (method: string, url: string, body?: unknown) => {
      const res = await t.call(TENANT_A, method, `/customer${url}`, body);
      expect(res.status, `${method} ${url}: ${res.body}`).toBeLessThan(300);
      return res.json;
    };
    const id = (prefix = 'X') => `${prefix}-${Date.now().toString(36)}-${(n++).toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    const device = once(async () => {
      const deviceId = id('DEV');
      await ok('POST', '/devices', { device_id: deviceId });
      return deviceId;
    });
    const certificate = once(async () => {
      const json = await ok('POST', `/devices/${await device()}/certificates/generate`, { key_type: 'ec-p256' });
      return { id: json.certificate.id as number, certPem: json.cert_pem as string };
    });
    return {
      newId: id,
      device,
      certificate,
      rotation: once(async () => {
        await certificate();
        await ok('POST', `/devices/${await device()}/certificates/rotate`, { key_type: 'ec-p256' });
      }),
      alert: once(async () => {
        const deviceId = id('ALERT');
        await ok('POST', '/devices', { device_id: deviceId });
        await ok('POST', `/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: 5 });
        // The worker's expiry-alert task alone (runOnce would also publish a CRL, deliver webhooks, ...).
        await worker.tasks.find((task) => task.name === 'expiry-alerts')!.run();
        const list = await ok('GET', `/alerts?device_id=${deviceId}`);
        expect(list.alerts.length, 'the worker raised an expiry alert').toBeGreaterThan(0);
        return list.alerts[0].id as number;
      }),
      claimCa: once(async () => {
        const res = await t.call(TENANT_A, 'POST', '/customer/claim-cas', { ca_cert_pem: newClaimCaPem() }, 'tenant-admin');
        expect(res.status, res.body).toBe(201);
        return res.json.claim_ca.id as number;
      }),
      webhook: once(async () => (await ok('POST', '/notification-webhooks', { url: `https://hooks.example.com/${id('hook')}` })).webhook.id as number),
      activeCa: once(async () => {
        const res = await t.call(null, 'GET', '/operator/cas');
        expect(res.status, res.body).toBe(200);
        const active = (res.json.cas as { id: string; status: string; tenant_id: string | null }[]).find((c) => c.status === 'active' && c.tenant_id === null);
        if (!active) throw new Error('no global active CA');
        return active.id;
      }),
      stagedCa: (tenant = false) =>
        (staged[String(tenant)] ??= t.call(null, 'POST', '/operator/cas', { key_type: 'ec-p256', common_name: `Authz CA ${id('staged')}`, ...(tenant ? { tenant_id: TENANT_A } : {}) }).then((res) => {
          expect(res.status, res.body).toBe(201);
          return res.json.id as string;
        })),
      csr: onceSync(() => opensslCsr('ec-p256').csrPem),
      importCa: onceSync(newImportCa),
      operatorWebhook: once(async () => {
        const res = await t.call(null, 'POST', '/operator/notification-webhooks', { url: `https://hooks.example.com/${id('ophook')}` });
        expect(res.status, res.body).toBe(201);
        return res.json.webhook.id as number;
      }),
    };
  };

  it('has exactly one row for every registered route, and no row without a route', () => {
    const registered = new Set(routeTable(t.service.app).map(keyOf));
    expect(registered.size).toBeGreaterThan(40);
    const missing = [...registered].filter((k) => !(k in ROUTES));
    expect(missing, 'routes without a row in ROUTES (see the top of this file)').toEqual([]);
    const stale = Object.keys(ROUTES).filter((k) => !registered.has(k));
    expect(stale, 'rows in ROUTES without a registered route').toEqual([]);
  });

  it('authorizes a route by its scope alone: a handler with no check of its own is still protected', async () => {
    const probe = async (app: FastifyInstance) => {
      app.post('/probe', async () => ({ reached: true }));
    };
    const app = await buildHttpApp({
      verifier: (await tokenVerifierFor(t.config)).verifier,
      sessions: createSessionStore({ db: database.db, clock: t.clock }),
      customer: [probe],
      operator: [probe],
      public: [],
      metrics: new Registry(),
      limits: t.config.http,
    });
    try {
      const post = async (url: string, token?: string) =>
        (await app.inject({ method: 'POST', url, headers: token ? { authorization: `Bearer ${token}` } : {} })).statusCode;
      expect(await post('/operator/probe')).toBe(401);
      expect(await post('/operator/probe', await t.token(TENANT_A))).toBe(403);
      expect(await post('/operator/probe', await t.token(null, 'operator'))).toBe(200);
      expect(await post('/customer/probe', await t.token(null, 'operator'))).toBe(403);
      expect(await post('/customer/probe', await t.token(TENANT_A))).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('answers every case on every route with the expected status', { timeout: 600_000 }, async () => {
    const failures: string[] = [];
    let checked = 0;
    for (const route of routeTable(t.service.app)) {
      const row = ROUTES[keyOf(route)];
      if (!row) continue; // reported by the test above
      const fx = fixtures();
      const hasParams = /[:*]/.test(route.path);
      // The owner's case last: it may change what the others would see (revoke, delete, ...).
      for (const c of CASES) {
        const want = expected(route.access, route.method, row, hasParams, c);
        if (want === null) continue;
        const credential = await credentials[c](route.access, row.role);
        const req = row.request ? await row.request(fx, credential) : { path: route.path };
        const headers: Record<string, string> = {};
        if (!row.sendsCredential) {
          if (credential.token) headers.authorization = `Bearer ${credential.token}`;
          if (credential.cookie) headers.cookie = credential.cookie;
        }
        if (route.access === 'session' && c === 'own tenant' && !row.sendsCredential) {
          // The owner of a browser session: its cookie with its own CSRF token.
          const cookie = (await credentials['cookie without CSRF token'](route.access)).cookie!;
          headers.cookie = cookie;
          headers['x-csrf-token'] = csrfOf.get(cookie.split('=')[1]!)!;
          delete headers.authorization;
        }
        if (req.body !== undefined) headers['content-type'] = 'application/json';
        const res = await t.service.app.inject({
          method: route.method as 'GET',
          url: route.prefix + req.path,
          headers,
          ...(req.body === undefined ? {} : { payload: JSON.stringify(req.body) }),
        });
        checked++;
        if (res.statusCode !== want) failures.push(`${route.method} ${route.url} [${c}]: ${res.statusCode}, expected ${want}: ${res.body.slice(0, 200)}`);
        if (c === 'other tenant' && route.access === 'customer' && res.body.includes(`"tenant_id":"${TENANT_A}"`)) {
          failures.push(`${route.method} ${route.url} [${c}]: the answer shows tenant ${TENANT_A}'s data`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(checked).toBeGreaterThan(CASES.length * 40);
  });
});
