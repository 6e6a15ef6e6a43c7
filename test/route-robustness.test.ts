import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keySource } from '../src/pki/key-source.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { opensslCsr, run } from './support/openssl.ts';
import { startTestService, type TestService } from './support/service.ts';

/**
 * A systematic sweep of every documented route (GET /docs/json) with bad input: malformed
 * and wrongly shaped bodies, wrong types and oversized or NUL-carrying values for every body
 * property, hostile path parameters, another tenant's real ids, and wrongly typed query
 * strings. The contract (DESIGN.md section 1): never a 5xx, every error is problem+json
 * with a `code`, and a rejected request writes nothing.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface SchemaNode {
  type?: string | string[];
  nullable?: boolean;
  enum?: Json[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  anyOf?: SchemaNode[];
  minProperties?: number;
}

type Scope = 'customer' | 'operator' | 'public';

interface Operation {
  method: string;
  /** OpenAPI template, e.g. /api/v1/customer/certificates/{id} */
  path: string;
  pathParams: string[];
  query: Record<string, SchemaNode>;
  body: SchemaNode | null;
  scope: Scope;
}

interface Probe {
  route: string;
  what: string;
  method: string;
  url: string;
  /** Raw request body (sent with `contentType`, default application/json). */
  payload?: string;
  contentType?: string;
  /** The exact status the probe must get (another tenant's resource: 404). */
  expectStatus?: number;
}

/** A new manufacturer CA certificate (openssl; its key thrown away). */
function probeClaimCaPem(): string {
  const r = run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-days', '30',
    '-subj', `/CN=Probe Claim CA ${Math.random().toString(36).slice(2)}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
  ]);
  return /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.out)![0];
}

interface TenantFixture {
  tenant: string;
  deviceId: string;
  certificateId: number;
  alertId: number | null;
  webhookId: number | null;
  claimCaId: number;
}

const HUGE = 'A'.repeat(10 * 1024);
const NUL = 'a\u0000b';

/** Path segments (already URL-encoded) that are never a valid id of the tenant's own resources. */
const BAD_SEGMENTS: Array<[string, string]> = [
  ['non-numeric', 'abc'],
  ['zero', '0'],
  ['negative', '-1'],
  ['fractional', '1.5'],
  ['2^53', '9007199254740992'],
  ['2^63', '9223372036854775808'],
  ['2^64', '18446744073709551616'],
  ['64 digits', '9'.repeat(64)],
  ['129 characters', 'x'.repeat(129)],
  ['600 characters (over maxParamLength)', 'x'.repeat(600)],
  ['encoded <script>', '%3Cscript%3Ealert(1)%3C%2Fscript%3E'],
  ['%00', '%00'],
  ['1%00', '1%00'],
  ['dot-dot', '..'],
  ['encoded dot-dot', '%2E%2E'],
  ['encoded traversal', '..%2F..%2Fetc%2Fpasswd'],
  ['encoded slash', '%2F'],
  ['encoded space', '%20'],
  ['invalid percent-encoding', '%ZZ'],
  ['truncated percent-encoding', 'abc%E2%80'],
  ['right-to-left override', '%E2%80%AE'],
  ['SQL quote', "'%3B--"],
  ['null literal', 'null'],
];

/** The JSON types a schema accepts; an anyOf accepts what any of its alternatives does. */
const typesOf = (s: SchemaNode): string[] =>
  s.anyOf ? [...new Set(s.anyOf.flatMap(typesOf))] : Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
const acceptsNull = (s: SchemaNode) => s.nullable === true || typesOf(s).includes('null');

/** Values of every JSON type that the property's schema does not accept. */
function wrongTypedValues(s: SchemaNode): Array<[string, Json]> {
  const types = typesOf(s);
  const candidates: Array<[string, Json, string[]]> = [
    ['string', 'text', ['string']],
    ['numeric string', '30', ['string']],
    ['number', 42, ['number', 'integer']],
    ['fraction', 1.5, ['number']],
    ['object', { nested: 1 }, ['object']],
    ['array', ['x', 1], ['array']],
    ['boolean', true, ['boolean']],
    ['null', null, ['null']],
  ];
  return candidates
    .filter(([name, , okFor]) => !okFor.some((t) => types.includes(t)) && !(name === 'null' && acceptsNull(s)))
    .map(([name, value]) => [name, value]);
}

/** Values of the right type that break the property's other constraints. */
function constraintBreakers(s: SchemaNode): Array<[string, Json]> {
  const out: Array<[string, Json]> = [];
  const types = typesOf(s);
  if (types.includes('string')) {
    out.push(['10 kB string', HUGE], ['NUL character', NUL]);
    if ((s.minLength ?? 0) > 0) out.push(['empty string', '']);
    if (s.enum) out.push(['value outside the enum', 'NOT_A_VALUE']);
    if (s.pattern) out.push(['value breaking the pattern', '-bad value/']);
  }
  if (types.includes('integer') || types.includes('number')) {
    if (s.minimum !== undefined) out.push(['below minimum', s.minimum - 1]);
    if (s.maximum !== undefined) out.push(['above maximum', s.maximum + 1]);
    out.push(['1e300', 1e300], ['negative', -5]);
  }
  return out;
}

/** Query values (raw, URL-encoded) that a parameter's schema rejects, or that are hostile anyway. */
function badQueryValues(name: string, s: SchemaNode): Array<[string, string]> {
  const types = typesOf(s);
  const out: Array<[string, string]> = [
    ['repeated (array)', `${name}=1&${name}=2`],
    ['%00', `${name}=%00`],
    ['embedded %00', `${name}=a%00b`],
    ['10 kB', `${name}=${HUGE}`],
    ['bracket syntax', `${name}[gt]=1`],
  ];
  if (types.includes('integer') || types.includes('number')) {
    for (const v of ['abc', '1.5', '-1', '99999999999999999999', '', 'NaN', 'Infinity', '1e400', 'true']) out.push([`"${v}"`, `${name}=${v}`]);
    if (s.maximum !== undefined) out.push(['above maximum', `${name}=${s.maximum + 1}`]);
  }
  if (types.includes('string')) {
    if (s.enum) out.push(['outside the enum', `${name}=NOT_A_VALUE`]);
    if (s.pattern) out.push(['breaking the pattern', `${name}=lower%20case`]);
    out.push(['encoded <script>', `${name}=%3Cscript%3E`], ['garbage', `${name}=zz~~%FF`]);
    if (name === 'cursor') for (const v of ['not-a-cursor', '-1', '0', '1e400', '%2F', 'a%2F']) out.push([`cursor "${v}"`, `${name}=${v}`]);
  }
  return out;
}

function operationsFrom(doc: { paths: Record<string, Record<string, any>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const params = (op.parameters ?? []) as Array<{ in: string; name: string; schema: SchemaNode }>;
      const scope: Scope = /^(\/api\/v1)?\/operator\//.test(path) ? 'operator' : /^(\/api\/v1)?\/customer\//.test(path) ? 'customer' : 'public';
      ops.push({
        method: method.toUpperCase(),
        path,
        pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
        query: Object.fromEntries(params.filter((p) => p.in === 'query').map((p) => [p.name, p.schema])),
        body: (op.requestBody?.content?.['application/json']?.schema as SchemaNode | undefined) ?? null,
        scope,
      });
    }
  }
  return ops;
}

describe.each(oneDriver('pg'))('route robustness on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let own: TenantFixture;
  let other: TenantFixture;
  let operations: Operation[];
  const validValues: Record<string, Json> = {};
  let hasWebhooks = false;
  let hasAlerts = false;

  const WATCHED = [
    'device_registry', 'device_certificates', 'certificate_rotations', 'notification_webhooks', 'fleet_alert', 'notification_outbox', 'audit_events',
    'compromised_keys', 'tenant_settings', 'claim_cas', 'provisioning_policies', 'claim_enrollments',
  ];
  let watched: string[] = [];

  /** Row count and a digest of every row of the tenant tables: catches inserts, updates and deletes. */
  const state = async (): Promise<Record<string, string>> => {
    const select = watched
      .map((table) => `(SELECT count(*) || ':' || md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM ${table} r) AS ${table}`)
      .join(', ');
    return database.db.asOperator(async (tx) => (await tx.query<Record<string, string>>(`SELECT ${select}`)).rows[0]);
  };
  const counts = (s: Record<string, string>) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Number(v.split(':')[0])]));

  const ok = <T,>(res: { status: number; json: unknown; body: string }, status: number): T => {
    if (res.status !== status) throw new Error(`seeding failed: ${res.status} ${res.body}`);
    return res.json as T;
  };

  async function seedTenant(tenant: string, deviceId: string): Promise<TenantFixture> {
    ok(await t.call(tenant, 'POST', '/api/v1/customer/devices', { device_id: deviceId, site_id: 'site-1' }), 201);
    const issued = ok<{ certificate: { id: number; fingerprint_sha256: string } }>(await t.call(tenant, 'POST', `/api/v1/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: 30 }), 201);
    // A pending rotation: the first certificate is scheduled for revocation.
    ok(await t.call(tenant, 'POST', `/api/v1/customer/devices/${deviceId}/certificates/rotate`, { key_type: 'ec-p256', revoke_old_after_hours: 24 }), 201);
    let alertId: number | null = null;
    if (hasAlerts) {
      alertId = await database.db.asOperator(async (tx) => {
        const { rows } = await tx.query<{ id: string }>(
          `INSERT INTO fleet_alert (tenant_id, device_id, alert_type, fingerprint, severity, summary)
           VALUES ($1, $2, 'CERT_EXPIRING', $3, 4, 'seeded by the robustness sweep') RETURNING id`,
          [tenant, deviceId, issued.certificate.fingerprint_sha256],
        );
        return Number(rows[0].id);
      });
    }
    let webhookId: number | null = null;
    if (hasWebhooks) {
      webhookId = ok<{ webhook: { id: number } }>(
        await t.call(tenant, 'POST', '/api/v1/customer/notification-webhooks', { url: `https://hooks.example.test/${tenant}`, description: 'seeded' }),
        201,
      ).webhook.id;
    }
    const claimCaId = ok<{ claim_ca: { id: number } }>(await t.call(tenant, 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: probeClaimCaPem() }, 'tenant-admin'), 201).claim_ca.id;
    return { tenant, deviceId, certificateId: issued.certificate.id, alertId, webhookId, claimCaId };
  }

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    const docs = await t.service.app.inject({ method: 'GET', url: '/docs/json' });
    expect(docs.statusCode).toBe(200);
    operations = operationsFrom(docs.json());
    hasWebhooks = operations.some((o) => o.path.endsWith('/notification-webhooks'));
    const present = await database.db.asOperator(async (tx) =>
      (await tx.query<{ t: string }>(`SELECT t FROM unnest($1::text[]) t WHERE to_regclass('public.' || t) IS NOT NULL`, [WATCHED])).rows.map((r) => r.t),
    );
    // Every watched table must exist: a renamed table fails here instead of silently shrinking the check.
    expect(present.sort()).toEqual([...WATCHED].sort());
    watched = WATCHED;
    hasAlerts = true;

    own = await seedTenant('acme', 'ACME-001');
    other = await seedTenant('globex', 'GLOBEX-001');

    // Valid values, so that a probe breaks exactly one thing.
    const { publicKey } = await keySource.generate('ec-p256');
    const now = t.clock.now();
    // A Device CA certificate for acme/GLOBEX-001: importing it for globex's device as acme must be 404.
    const importable = await t.service.deps.authority.issue({
      tenantId: 'acme',
      commonName: `acme/${other.deviceId}`,
      publicKey,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 30 * 86_400_000),
    });
    Object.assign(validValues, {
      device_id: 'PROBE-NEVER-CREATED',
      grants: [{ filter: 'broadcast/#', access: 'read' }],
      serials: ['1f'],
      kind: 'mosquitto',
      crl_number: '1',
      site_id: 'site-2',
      key_type: 'ec-p256',
      validity_days: 30,
      revoke_old_after_hours: 2,
      csr_pem: opensslCsr('ec-p256').csrPem,
      cert_pem: importable.certPem,
      reason: 'keyCompromise',
      url: 'https://hooks.example.test/changed',
      description: 'changed',
      enabled: false,
      token: await t.token('acme'),
      // factory onboarding: a manufacturer CA certificate (its key thrown away) and a CRL of another CA (422 INVALID_CRL)
      ca_cert_pem: probeClaimCaPem(),
      crl_pem: '-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n',
    });
  });

  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  function validValue(name: string, s: SchemaNode): Json {
    if (name in validValues) return validValues[name];
    if (s.enum) return s.enum[0];
    const types = typesOf(s);
    if (types.includes('integer') || types.includes('number')) return s.minimum ?? 1;
    if (types.includes('boolean')) return true;
    throw new Error(`the sweep has no valid value for body property "${name}": add one to validValues`);
  }

  /** The smallest valid body: required properties, plus key_type (never an RSA default in a probe). */
  function baseBody(s: SchemaNode): Record<string, Json> {
    const props = s.properties ?? {};
    const body: Record<string, Json> = {};
    for (const name of Object.keys(props)) {
      if ((s.required ?? []).includes(name) || name === 'key_type') body[name] = validValue(name, props[name]);
    }
    if (Object.keys(body).length < (s.minProperties ?? 0)) {
      const name = Object.keys(props)[0];
      body[name] = validValue(name, props[name]);
    }
    return body;
  }

  function idOf(fixture: TenantFixture, op: Operation, param: string): string {
    if (param === 'device_id') return fixture.deviceId;
    const segments = op.path.split('/');
    const resource = segments[segments.indexOf(`{${param}}`) - 1];
    // CAs (/pki/ca/{id}, /api/v1/operator/cas/{id}): a well-formed unknown id (404, nothing written), never the live CA.
    const caId = 'ca_0000000000000000';
    const id = { certificates: fixture.certificateId, alerts: fixture.alertId, 'notification-webhooks': fixture.webhookId, 'claim-cas': fixture.claimCaId, ca: caId, cas: caId }[resource];
    if (id === undefined || id === null) throw new Error(`the sweep does not know which id ${op.method} ${op.path} takes: teach idOf()`);
    return String(id);
  }

  const urlFor = (op: Operation, values: Record<string, string>) => op.path.replace(/\{(\w+)\}/g, (_m, name: string) => values[name]);
  const ownParams = (op: Operation) => Object.fromEntries(op.pathParams.map((p) => [p, idOf(own, op, p)]));

  function probesFor(op: Operation): Probe[] {
    const route = `${op.method} ${op.path}`;
    const probes: Probe[] = [];
    const add = (what: string, p: Omit<Probe, 'route' | 'what' | 'method'>) => probes.push({ route, what, method: op.method, ...p });
    const ownUrl = urlFor(op, ownParams(op));
    const json = (v: unknown) => JSON.stringify(v);
    const takesBody = op.method !== 'GET' && op.method !== 'HEAD';

    // Bodies: the route's own resources, so the body is the only thing wrong.
    if (takesBody) {
      const base = op.body ? baseBody(op.body) : {};
      add('malformed JSON', { url: ownUrl, payload: '{"validity_days": 3' });
      add('JSON with a trailing comma', { url: ownUrl, payload: '{"a": 1,}' });
      add('JSON array', { url: ownUrl, payload: json([base]) });
      add('empty JSON array', { url: ownUrl, payload: '[]' });
      add('JSON string', { url: ownUrl, payload: '"text"' });
      add('JSON number', { url: ownUrl, payload: '42' });
      add('JSON boolean', { url: ownUrl, payload: 'true' });
      if (!op.body || !acceptsNull(op.body)) add('JSON null', { url: ownUrl, payload: 'null' });
      add('unknown extra field', { url: ownUrl, payload: json({ ...base, unexpected_field: 'x' }) });
      add('__proto__ key', { url: ownUrl, payload: `{"__proto__": {"polluted": true}${Object.keys(base).length ? `, ${json(base).slice(1, -1)}` : ''}}` });
      add('text/plain body', { url: ownUrl, payload: json(base), contentType: 'text/plain' });
      add('form-encoded body', { url: ownUrl, payload: 'a=1', contentType: 'application/x-www-form-urlencoded' });
      if (op.body) {
        if ((op.body.required ?? []).length) add('missing required properties', { url: ownUrl, payload: '{}' });
        for (const [name, prop] of Object.entries(op.body.properties ?? {})) {
          for (const [label, value] of [...wrongTypedValues(prop), ...constraintBreakers(prop)]) {
            add(`body.${name} = ${label}`, { url: ownUrl, payload: json({ ...base, [name]: value }) });
          }
        }
      }
    }

    // Path parameters, one at a time; the body (if any) is valid.
    const validPayload = takesBody && op.body ? json(baseBody(op.body)) : undefined;
    for (const param of op.pathParams) {
      for (const [label, segment] of BAD_SEGMENTS) {
        add(`path ${param} = ${label}`, { url: urlFor(op, { ...ownParams(op), [param]: segment }), payload: validPayload });
      }
      if (op.scope === 'customer') {
        add(`path ${param} = another tenant's real id`, {
          url: urlFor(op, { ...ownParams(op), [param]: idOf(other, op, param) }),
          payload: validPayload,
          expectStatus: 404,
        });
      }
    }

    // Query strings (read routes).
    if (op.method === 'GET') {
      add('unknown query parameter', { url: `${ownUrl}?unexpected_param=1` });
      for (const [name, s] of Object.entries(op.query)) {
        for (const [label, qs] of badQueryValues(name, s)) add(`query ${name} ${label}`, { url: `${ownUrl}?${qs}` });
      }
    }
    return probes;
  }

  it('sweeps every documented route with bad input: no 5xx, problem+json errors, nothing written', async () => {
    // Every resource family is in the document the sweep reads.
    const paths = new Set(operations.map((o) => `${o.method} ${o.path}`));
    for (const expected of [
      'POST /api/v1/customer/devices',
      'POST /api/v1/customer/devices/{device_id}/certificates/generate',
      'POST /api/v1/customer/certificates/{id}/revoke',
      'POST /api/v1/customer/devices/{device_id}/certificates/rotate',
      'GET /api/v1/customer/alerts',
      'GET /api/v1/operator/certificates',
      'POST /auth/session',
    ]) {
      expect(paths).toContain(expected);
    }

    // tenant-admin: every customer route, those only tenant admins may call too (authorization is route-authorization's test).
    const tokens = { customer: await t.token(own.tenant, 'tenant-admin'), operator: await t.token(null, 'operator') };
    const failures: string[] = [];
    const startState = await state();
    let sent = 0;

    for (const op of operations) {
      for (const probe of probesFor(op)) {
        const mutating = probe.method !== 'GET';
        const before = mutating ? await state() : null;
        const headers: Record<string, string> = { authorization: `Bearer ${op.scope === 'operator' ? tokens.operator : tokens.customer}` };
        if (probe.payload !== undefined) headers['content-type'] = probe.contentType ?? 'application/json';
        const res = await t.service.app.inject({ method: probe.method as 'GET', url: probe.url, headers, payload: probe.payload });
        sent++;
        const where = `${probe.route} [${probe.what}]`;
        const contentType = String(res.headers['content-type'] ?? '');
        let body: { code?: unknown; status?: unknown } | null = null;
        try {
          body = res.json();
        } catch {
          body = null;
        }
        if (res.statusCode >= 500) failures.push(`${where}: ${res.statusCode} ${res.body.slice(0, 300)}`);
        else if (res.statusCode >= 400 && (!contentType.startsWith('application/problem+json') || typeof body?.code !== 'string' || body?.status !== res.statusCode)) {
          failures.push(`${where}: ${res.statusCode} is not problem+json with a code (${contentType}) ${res.body.slice(0, 200)}`);
        }
        if (probe.expectStatus !== undefined && res.statusCode !== probe.expectStatus) {
          failures.push(`${where}: expected ${probe.expectStatus}, got ${res.statusCode} ${res.body.slice(0, 200)}`);
        }
        if (mutating && res.statusCode < 400) failures.push(`${where}: bad input accepted with ${res.statusCode} ${res.body.slice(0, 200)}`);
        if (before) {
          const after = await state();
          for (const table of watched) {
            if (after[table] !== before[table]) failures.push(`${where}: ${res.statusCode} but ${table} changed (${before[table]} → ${after[table]})`);
          }
        }
      }
    }

    expect(failures).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Nothing was written by the whole sweep (the read probes included).
    const endState = await state();
    expect(counts(endState)).toEqual(counts(startState));
    expect(endState).toEqual(startState);
    if (process.env.ROUTE_SWEEP_VERBOSE) console.log(`${kind}: ${operations.length} operations, ${sent} requests`);
    expect(sent).toBeGreaterThan(1000);
  });

  // Defects the sweep found, pinned with their exact answers.
  const regressions: Array<[string, 'acme' | null, string, () => string, unknown, number, string, string | null]> = [
    ['NUL in a body string (site_id)', 'acme', 'POST', () => '/api/v1/customer/devices', { device_id: 'NUL-1', site_id: NUL }, 422, 'VALIDATION_FAILED', 'site_id'],
    ['NUL in a revocation reason', 'acme', 'POST', () => `/customer/certificates/${own.certificateId}/revoke`, { reason: NUL }, 422, 'VALIDATION_FAILED', 'reason'],
    ['NUL in a rotation cancel reason', 'acme', 'POST', () => `/customer/devices/${own.deviceId}/certificates/rotate/cancel`, { reason: NUL }, 422, 'VALIDATION_FAILED', 'reason'],
    ['NUL in a webhook description', 'acme', 'PATCH', () => `/customer/notification-webhooks/${own.webhookId}`, { description: NUL }, 422, 'VALIDATION_FAILED', 'description'],
    ['NUL in the device list cursor', 'acme', 'GET', () => '/customer/devices?cursor=a%00b', undefined, 422, 'VALIDATION_FAILED', 'cursor'],
    ['NUL in the alert device_id filter', 'acme', 'GET', () => '/customer/alerts?device_id=%00', undefined, 422, 'VALIDATION_FAILED', 'device_id'],
    ['NUL in the operator tenant_id filter', null, 'GET', () => '/operator/devices?tenant_id=acme%00', undefined, 422, 'VALIDATION_FAILED', 'tenant_id'],
    ['invalid percent-encoding in the path', 'acme', 'POST', () => '/customer/devices/%ZZ/certificates/generate', { key_type: 'ec-p256' }, 400, 'MALFORMED_URL', null],
    ['path parameter over 512 characters', 'acme', 'POST', () => `/customer/certificates/${'1'.repeat(600)}/revoke`, {}, 414, 'URI_TOO_LONG', null],
    ['array body on acknowledge', 'acme', 'POST', () => `/customer/alerts/${own.alertId}/acknowledge`, [1], 422, 'VALIDATION_FAILED', null],
    ['unknown field on close', 'acme', 'POST', () => `/api/v1/customer/alerts/${own.alertId}/close`, { reason: 'x' }, 422, 'VALIDATION_FAILED', null],
    ['string body on operator close', null, 'POST', () => `/operator/alerts/${own.alertId}/close`, '"now"', 422, 'VALIDATION_FAILED', null],
    ['string body on webhook delete', 'acme', 'DELETE', () => `/customer/notification-webhooks/${own.webhookId}`, '"yes"', 422, 'VALIDATION_FAILED', null],
    ['unknown field on rotate-secret', 'acme', 'POST', () => `/customer/notification-webhooks/${own.webhookId}/rotate-secret`, { secret: 'mine' }, 422, 'VALIDATION_FAILED', null],
    ['array body on session logout', 'acme', 'DELETE', () => '/auth/session', [], 422, 'VALIDATION_FAILED', null],
  ];

  it.each(regressions)('%s → problem+json, nothing written', async (_name, tenant, method, url, body, status, code, field) => {
    const before = await state();
    const res = await t.call(tenant, method, url(), body);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json).toMatchObject({ status, code });
    if (field) expect(res.json.errors).toEqual(expect.arrayContaining([expect.objectContaining({ field })]));
    expect(await state()).toEqual(before);
  });

  it('routes without a body still work with none, {} or null', async () => {
    expect((await t.call('acme', 'POST', `/customer/alerts/${own.alertId}/acknowledge`)).json.alert.status).toBe('ACKNOWLEDGED');
    expect((await t.call('acme', 'POST', `/customer/alerts/${own.alertId}/acknowledge`, {})).status).toBe(200);
    expect((await t.call(null, 'POST', `/operator/alerts/${other.alertId}/acknowledge`, 'null')).status).toBe(200);
    expect((await t.call('acme', 'POST', `/customer/notification-webhooks/${own.webhookId}/rotate-secret`, {})).status).toBe(200);
    // An empty body with Content-Type: application/json (the seed's bare calls) is no body.
    expect((await t.call('acme', 'DELETE', `/customer/notification-webhooks/${own.webhookId}`, '')).status).toBe(204);
    expect((await t.call('acme', 'DELETE', '/auth/session')).status).toBe(204);
  });
});
