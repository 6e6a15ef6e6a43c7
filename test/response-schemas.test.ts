/**
 * Every JSON operation of the OpenAPI document declares the answer it gives, exactly.
 *
 * Fastify serializes an answer with the route's response schema (fast-json-stringify), which
 * drops any property the schema does not list and coerces values to the declared types: an
 * incomplete schema silently loses fields. So, for every documented JSON operation, a real
 * request is made and
 *  - the serialized body must equal what the handler returned (nothing dropped, nothing coerced);
 *  - what the handler returned must validate against the schema the served /docs/json gives
 *    for that status, closed (every object schema without `additionalProperties` gets `false`):
 *    a field the schema does not list, a required field missing, a wrong type or an
 *    undeclared null fails;
 *  - the body must validate against the served schema as it is.
 * The last test checks that every documented operation except the few non-JSON ones was covered.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { createRaiseExpiryAlerts } from '../src/app/raise-expiry-alerts.ts';
import { createSignDeviceCertificate } from '../src/app/sign-device-certificate.ts';
import { createExpiryPolicy } from '../src/domain/expiry-policy.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { handlerPayload, serializationLoss } from './support/handler-payloads.ts';
import { opensslCsr } from './support/openssl.ts';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { startTestService, type TestService } from './support/service.ts';

type Injected = Awaited<ReturnType<TestService['service']['app']['inject']>>;
type Schema = Record<string, unknown>;
type Operation = { responses?: Record<string, { content?: Record<string, { schema?: Schema }> }> };
type Document = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } };

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];

/** Documented operations that answer PEM or DER, not JSON. */
const NON_JSON = [
  'GET /api/v1/customer/ca-bundle',
  'GET /api/v1/customer/crl',
  'GET /pki/ca.pem',
  'GET /pki/crl',
  'GET /pki/crl.pem',
  'GET /pki/crl-bundle.pem',
  'GET /pki/ca-scopes.pem',
  'GET /pki/cas.pem',
  'GET /pki/ca/{id}',
  'GET /pki/ca/{id}/crl',
  'GET /pki/ca/{id}/crl.pem',
];

/** The schema with every object closed: a property it does not list is an error. */
function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== 'object') return schema;
  const out = Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, closed(v)])) as Schema;
  if ((out.type === 'object' || out.properties) && !('additionalProperties' in out)) out.additionalProperties = false;
  return out;
}

const newAjv = () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv) => void)(ajv);
  return ajv;
};

describe.each(oneDriver('pg'))('response schemas on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let doc: Document;
  const covered = new Set<string>();
  const ajv = newAjv();
  /** A certificate as a handler returned it, for the last test. */
  let sampleCertificate: unknown;
  let lastResponse: Injected | null = null;

  /** A validator of `schema` whose `#/components/...` references resolve in `components`. */
  const validatorOf = (schema: Schema, components: Document['components']): ValidateFunction => ajv.compile({ ...schema, components });
  const closedComponents = () => closed(doc.components) as Document['components'];

  const expectValid = (validate: ValidateFunction, value: unknown, what: string) => {
    const ok = validate(value);
    expect(ok, `${what}: ${JSON.stringify(validate.errors, null, 1)}\n${JSON.stringify(value, null, 1).slice(0, 3000)}`).toBe(true);
  };

  const headersFor = async (who: string | null | undefined): Promise<Record<string, string>> =>
    who === undefined ? {} : { authorization: `Bearer ${await t.token(who, who === null ? 'operator' : 'customer')}` };

  /**
   * Calls `method template` (path parameters filled in from `params`) as tenant `who` (null:
   * an operator; undefined: no credentials), expects `status`, and checks the answer against
   * the served document. Returns the body.
   */
  const check = async (
    who: string | null | undefined,
    method: string,
    template: string,
    status: number,
    options: { params?: Record<string, string | number>; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<any> => {
    const url = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(options.params?.[name])));
    const res: Injected = await t.service.app.inject({
      method: method as 'GET',
      url,
      headers: { ...(await headersFor(who)), ...options.headers, ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(options.body !== undefined ? { payload: JSON.stringify(options.body) } : {}),
    });
    lastResponse = res;
    const op = `${method} ${template}`;
    expect(res.statusCode, `${op}: ${res.body}`).toBe(status);
    const documented = doc.paths[template]?.[method.toLowerCase()]?.responses?.[String(status)];
    expect(documented, `${op} documents its ${status} answer`).toBeDefined();
    if (status === 204) {
      expect(res.body).toBe('');
      covered.add(op);
      return null;
    }
    const schema = documented!.content?.['application/json']?.schema;
    expect(schema, `${op} ${status} has an application/json schema`).toBeDefined();
    expect(String(res.headers['content-type'])).toMatch(/^application\/json/);

    const payload = handlerPayload(res);
    expect(payload, `${op}: the handler's payload was captured`).toBeDefined();
    const returned: unknown = JSON.parse(JSON.stringify(payload));
    expect(serializationLoss(res), `${op}: serialization changed the answer`).toBeNull();
    expect(res.json()).toEqual(returned);
    expectValid(validatorOf(closed(schema) as Schema, closedComponents()), returned, `${op} ${status}: the handler's answer against the closed schema`);
    expectValid(validatorOf(schema!, doc.components), res.json(), `${op} ${status}: the body against the served schema`);
    covered.add(op);
    return res.json();
  };

  const C = '/api/v1/customer';
  const O = '/api/v1/operator';

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    // the webhook targets 127.0.0.1 (nothing is delivered in this test)
    t = await startTestService(database, { env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' } });
    const res = await t.service.app.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    doc = res.json();
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('every JSON operation answers exactly what its OpenAPI response schema describes', async () => {
    // Devices
    expect((await check('acme', 'POST', `${C}/devices`, 201, { body: { device_id: 'D1', site_id: 'site-1' } })).device.site_id).toBe('site-1');
    for (const id of ['D2', 'D3', 'D4']) await check('acme', 'POST', `${C}/devices`, 201, { body: { device_id: id } });
    expect((await check('acme', 'GET', `${C}/devices`, 200, { params: {} })).devices).toHaveLength(4);
    expect((await check('acme', 'GET', `${C}/devices/{device_id}`, 200, { params: { device_id: 'D2' } })).device.site_id).toBeNull();

    // Issue: a generated key (private_key_pem present), a CSR (absent), an import
    const generated = await check('acme', 'POST', `${C}/devices/{device_id}/certificates/generate`, 201, {
      params: { device_id: 'D1' },
      body: { key_type: 'ec-p256', validity_days: 90 },
    });
    expect(generated.private_key_pem).toContain('PRIVATE KEY');
    sampleCertificate = generated.certificate;
    // Each certificate names the CA record that signed it (issue 25: the issuing CA a customer can see and pick).
    expect(generated.certificate.ca_id).toMatch(/^ca_[0-9a-f]+$/);
    const fromCsr = await check('acme', 'POST', `${C}/devices/{device_id}/certificates/csr`, 201, {
      params: { device_id: 'D2' },
      body: { csr_pem: opensslCsr('ec-p256').csrPem, validity_days: 90 },
    });
    expect(fromCsr).not.toHaveProperty('private_key_pem');
    const signed = await createSignDeviceCertificate(t.service.deps)('acme', 'D4', 200, { kind: 'generate', keyType: 'ec-p256' });
    await check('acme', 'POST', `${C}/devices/{device_id}/certificates/import`, 201, { params: { device_id: 'D4' }, body: { cert_pem: signed.issued.certPem } });

    // Rotate, look at it, confirm
    const rotated = await check('acme', 'POST', `${C}/devices/{device_id}/certificates/rotate`, 201, {
      params: { device_id: 'D1' },
      body: { key_type: 'ec-p256', revoke_old_after_hours: 24 },
    });
    expect(rotated.old_certificates).toHaveLength(1);
    const pending = await check('acme', 'GET', `${C}/devices/{device_id}/certificates/rotation`, 200, { params: { device_id: 'D1' } });
    expect(pending.old_certificates[0].id).toBe(generated.certificate.id);
    const listed = await check('acme', 'GET', `${C}/certificates`, 200, { params: {} });
    expect(listed.certificates.some((c: { scheduled_revoke_at: string | null }) => c.scheduled_revoke_at !== null)).toBe(true);
    const confirmed = await check('acme', 'POST', `${C}/devices/{device_id}/certificates/rotate/confirm`, 200, { params: { device_id: 'D1' }, body: {} });
    expect(confirmed.revoked_certificates.map((c: { id: number }) => c.id)).toEqual([generated.certificate.id]);

    // Rotate with a CSR, cancel
    await check('acme', 'POST', `${C}/devices/{device_id}/certificates/rotate`, 201, {
      params: { device_id: 'D2' },
      body: { csr_pem: opensslCsr('ec-p256').csrPem },
    });
    const cancelled = await check('acme', 'POST', `${C}/devices/{device_id}/certificates/rotate/cancel`, 200, { params: { device_id: 'D2' }, body: {} });
    expect(cancelled.revoked_certificate.status).toBe('REVOKED');
    expect(cancelled.kept_certificates.map((c: { id: number }) => c.id)).toEqual([fromCsr.certificate.id]);

    // One certificate, revoke
    expect((await check('acme', 'GET', `${C}/certificates/{id}`, 200, { params: { id: rotated.new_certificate.id } })).certificate.cert_pem).toBe(rotated.cert_pem);
    const revoked = await check('acme', 'POST', `${C}/certificates/{id}/revoke`, 200, { params: { id: rotated.new_certificate.id }, body: { reason: 'keyCompromise' } });
    expect(revoked).toMatchObject({ crl_reason: 'keyCompromise', certificate: { status: 'REVOKED', revoked_reason: 'keyCompromise' } });

    await check('acme', 'POST', `${C}/devices/{device_id}/enrollment-tokens`, 201, {
      params: { device_id: 'D3' },
      body: { expires_in_hours: 2 },
      headers: { authorization: `Bearer ${await t.token('acme', 'tenant-admin')}` },
    });

    // Broker grants (replacing them needs tenant-admin)
    const admin = { authorization: `Bearer ${await t.token('acme', 'tenant-admin')}` };
    await check('acme', 'PUT', `${C}/broker-grants`, 200, { body: { grants: [{ filter: 'broadcast/#', access: 'read' }] }, headers: admin });
    expect((await check('acme', 'GET', `${C}/broker-grants`, 200)).grants).toEqual([{ filter: 'broadcast/#', access: 'read' }]);
    await check('acme', 'PUT', `${C}/renewal-policy`, 200, { body: { recovery_window_days: 30, jitter: 0.1 }, headers: admin });
    expect((await check('acme', 'GET', `${C}/renewal-policy`, 200)).recovery_window_days).toBe(30);

    // Factory (claim) onboarding: claim CAs and the provisioning policy (changes need tenant-admin)
    const caDir = mkdtempSync(join(tmpdir(), 'certfleet-claim-ca-'));
    const inCaDir = (args: string[]) => spawnSync('openssl', args, { cwd: caDir, encoding: 'utf8' });
    inCaDir([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30',
      '-subj', '/CN=Schema Claim CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    writeFileSync(join(caDir, 'ca.cnf'), '[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = ca.crt\nprivate_key = ca.key\n');
    writeFileSync(join(caDir, 'index.txt'), '');
    writeFileSync(join(caDir, 'crlnumber'), '01\n');
    inCaDir(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl']);
    const claimCa = await check('acme', 'POST', `${C}/claim-cas`, 201, { body: { ca_cert_pem: readFileSync(join(caDir, 'ca.crt'), 'utf8'), name: 'schema' }, headers: admin });
    await check('acme', 'GET', `${C}/claim-cas`, 200);
    await check('acme', 'GET', `${C}/claim-cas/{id}`, 200, { params: { id: claimCa.claim_ca.id } });
    const withCrl = await check('acme', 'PUT', `${C}/claim-cas/{id}/crl`, 200, { params: { id: claimCa.claim_ca.id }, body: { crl_pem: readFileSync(join(caDir, 'ca.crl'), 'utf8') }, headers: admin });
    expect(withCrl.claim_ca.crl.entries).toBe(0);
    await check('acme', 'DELETE', `${C}/claim-cas/{id}`, 204, { params: { id: claimCa.claim_ca.id }, body: {}, headers: admin });
    rmSync(caDir, { recursive: true, force: true });
    await check('acme', 'GET', `${C}/provisioning-policy`, 200);
    const policy = await check('acme', 'PUT', `${C}/provisioning-policy`, 200, {
      body: { admit: { cn_patterns: ['SN-*'] }, approval_webhook: { url: 'https://approve.example.com/hook', timeout_ms: 2000 } },
      headers: admin,
    });
    expect(policy.approval_secret).toMatch(/^whsec_/);

    // Tenant settings (changing them needs tenant-admin)
    await check('acme', 'PUT', `${C}/settings`, 200, { body: { allow_shared_device_keys: false }, headers: admin });
    expect((await check('acme', 'GET', `${C}/settings`, 200)).allow_shared_device_keys).toBe(false);

    // Webhooks (before the alerts, so that they queue deliveries)
    const webhook = await check('acme', 'POST', `${C}/notification-webhooks`, 201, { body: { url: 'http://127.0.0.1:9/hook', description: 'schema test' } });
    const hook = { id: webhook.webhook.id };
    await check('acme', 'GET', `${C}/notification-webhooks`, 200);
    await check('acme', 'GET', `${C}/notification-webhooks/{id}`, 200, { params: hook });
    expect((await check('acme', 'PATCH', `${C}/notification-webhooks/{id}`, 200, { params: hook, body: { description: null } })).webhook.description).toBeNull();
    await check('acme', 'POST', `${C}/notification-webhooks/{id}/rotate-secret`, 200, { params: hook, body: {} });

    // Alerts: two certificates of D3 expire within days
    for (let i = 0; i < 2; i++) {
      await check('acme', 'POST', `${C}/devices/{device_id}/certificates/generate`, 201, { params: { device_id: 'D3' }, body: { key_type: 'ec-p256', validity_days: 5 } });
    }
    await createRaiseExpiryAlerts({ storage: t.service.deps.storage, clock: t.clock, policy: createExpiryPolicy() })();
    const deliveries = await check('acme', 'GET', `${C}/notification-webhooks/{id}/deliveries`, 200, { params: hook });
    expect(deliveries.deliveries.length).toBeGreaterThan(0);
    await check('acme', 'DELETE', `${C}/notification-webhooks/{id}`, 204, { params: hook, body: {} });

    const alerts = await check('acme', 'GET', `${C}/alerts`, 200);
    expect(alerts.alerts).toHaveLength(2);
    const [first, second] = alerts.alerts.map((a: { id: number }) => ({ id: a.id }));
    await check('acme', 'GET', `${C}/alerts/{id}`, 200, { params: first });
    expect((await check('acme', 'POST', `${C}/alerts/{id}/acknowledge`, 200, { params: first, body: {} })).alert.acknowledged_by).not.toBeNull();
    expect((await check('acme', 'POST', `${C}/alerts/{id}/close`, 200, { params: first, body: {} })).alert.close_reason).toBe('manual');

    // Audit, overview
    expect((await check('acme', 'GET', `${C}/audit-events`, 200)).audit_events.length).toBeGreaterThan(0);
    await check('acme', 'GET', `${C}/expiry-summary`, 200);
    await t.service.crl.publisher!.publishNow();
    await check('acme', 'GET', `${C}/crl/status`, 200);
    // The CAs a tenant may see (read-only): the one that signed its certificates, which signs its new ones too.
    expect((await check('acme', 'GET', `${C}/cas`, 200)).cas).toEqual([
      expect.objectContaining({ id: generated.certificate.ca_id, status: 'active', tenant_id: null, signs_new_certificates: true }),
    ]);

    // Operator views
    expect((await check(null, 'GET', `${O}/devices`, 200)).total).toBe(4);
    expect((await check(null, 'GET', `${O}/certificates`, 200)).certificates.length).toBeGreaterThan(0);
    await check(null, 'GET', `${O}/alerts`, 200);
    // The operators' webhooks (system alerts)
    const opHook = { id: (await check(null, 'POST', `${O}/notification-webhooks`, 201, { body: { url: 'http://127.0.0.1:9/ops', description: 'operators' } })).webhook.id };
    await check(null, 'GET', `${O}/notification-webhooks`, 200);
    await check(null, 'GET', `${O}/notification-webhooks/{id}`, 200, { params: opHook });
    await check(null, 'PATCH', `${O}/notification-webhooks/{id}`, 200, { params: opHook, body: { enabled: false } });
    await check(null, 'POST', `${O}/notification-webhooks/{id}/rotate-secret`, 200, { params: opHook, body: {} });
    await check(null, 'GET', `${O}/notification-webhooks/{id}/deliveries`, 200, { params: opHook });
    await check(null, 'DELETE', `${O}/notification-webhooks/{id}`, 204, { params: opHook, body: {} });
    await check(null, 'GET', `${O}/alerts/{id}`, 200, { params: second });
    await check(null, 'POST', `${O}/alerts/{id}/acknowledge`, 200, { params: second, body: {} });
    await check(null, 'POST', `${O}/alerts/{id}/close`, 200, { params: second, body: {} });
    await check(null, 'GET', `${O}/audit-events`, 200);
    await check(null, 'GET', `${O}/expiry-summary`, 200);
    await check(null, 'GET', `${O}/crl/status`, 200);
    // Every published CA's own CRL (issue 25: the overview shows each CA's CRL number and age).
    expect((await check(null, 'GET', `${O}/fleet-overview`, 200)).crls).toEqual([expect.objectContaining({ status: 'active', crl_number: expect.stringMatching(/^\d+$/) })]);

    // A broker agent, and the operator's list of broker nodes
    const agentKey = await loadOrCreateDevSigningKey(devKeyPath(t.config));
    const agent = { authorization: `Bearer ${await agentKey.sign({ roles: ['broker-agent'], brokerNode: 'schema-node', subject: 'broker-node:schema-node', ttlSeconds: 600, now: new Date() })}` };
    const canaries = await check(undefined, 'POST', '/api/v1/broker-agent/canaries', 201, { headers: agent, body: { kind: 'mosquitto' } });
    expect(canaries.valid.private_key_pem).toContain('PRIVATE KEY');
    const names = await check(undefined, 'POST', '/api/v1/broker-agent/revoked-common-names', 200, { headers: agent, body: { serials: [canaries.revoked.serial_number] } });
    expect(names.certificates).toEqual([{ serial_number: canaries.revoked.serial_number, common_name: 'certfleet/canary.schema-node.revoked' }]);
    const now = new Date().toISOString();
    await check(undefined, 'POST', '/api/v1/broker-agent/report', 200, {
      headers: agent,
      body: { kind: 'mosquitto', crl_number: '1', applied_at: now, check: { at: now, result: 'passed', detail: 'ok' }, error: null },
    });
    expect((await check(null, 'GET', `${O}/broker-nodes`, 200)).nodes).toEqual([expect.objectContaining({ node: 'schema-node', last_check_result: 'passed' })]);

    // Device CAs (operator): list, stage, import, show, activate (a tenant's own), retire, revoke
    const cas = await check(null, 'GET', `${O}/cas`, 200);
    const active = cas.cas.find((c: { status: string; tenant_id: string | null }) => c.status === 'active' && c.tenant_id === null);
    expect(active).toBeDefined();
    expect((await check(null, 'GET', `${O}/cas/{id}`, 200, { params: { id: active.id } })).ca.id).toBe(active.id);
    const staged = await check(null, 'POST', `${O}/cas`, 201, { body: { key_type: 'ec-p256', common_name: 'Schema staged CA' } });
    expect(staged.status).toBe('staged');
    expect((await check(null, 'POST', `${O}/cas/{id}/retire`, 200, { params: { id: staged.id }, body: {} })).ca.status).toBe('retired');
    const tenantCa = await check(null, 'POST', `${O}/cas`, 201, { body: { key_type: 'ec-p256', tenant_id: 'acme', common_name: 'Schema acme CA' } });
    expect((await check(null, 'POST', `${O}/cas/{id}/activate`, 200, { params: { id: tenantCa.id }, body: {} })).ca.status).toBe('active');
    expect((await check(null, 'POST', `${O}/cas/{id}/revoke`, 200, { params: { id: tenantCa.id }, body: { reason: 'cACompromise' } })).ca.status).toBe('revoked');
    const importDir = mkdtempSync(join(tmpdir(), 'schema-ca-'));
    const made = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(importDir, 'ca.key'), '-out', join(importDir, 'ca.crt'), '-days', '365',
      '-subj', '/CN=Schema imported CA', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    expect(made.status, String(made.stderr)).toBe(0);
    const imported = await check(null, 'POST', `${O}/cas/import`, 201, { body: { cert_pem: readFileSync(join(importDir, 'ca.crt'), 'utf8'), key_pem: readFileSync(join(importDir, 'ca.key'), 'utf8') } });
    rmSync(importDir, { recursive: true, force: true });
    expect(imported.status).toBe('staged');

    // Sign-in
    await check(undefined, 'GET', '/auth/config', 200);
    expect((await check(undefined, 'GET', '/auth/me', 200)).principal).toBeNull();
    expect((await check('acme', 'GET', '/auth/me', 200)).principal.tenant_id).toBe('acme');
    const session = await check(undefined, 'POST', '/auth/session', 200, { body: { token: await t.token('acme') } });
    const id = lastResponse!.cookies.find((c) => c.name === 'certfleet_session')?.value;
    expect(id).toBeTruthy();
    await check(undefined, 'DELETE', '/auth/session', 204, { headers: { cookie: `certfleet_session=${id}`, 'x-csrf-token': session.csrf_token }, body: {} });
  });

  it('health answers are serialized without loss (hidden from the document)', async () => {
    for (const url of ['/healthz', '/readyz']) {
      const res = await t.service.app.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      expect(handlerPayload(res)).toBeDefined();
      expect(serializationLoss(res)).toBeNull();
    }
  });

  it('the check fails for a schema that misses a field', () => {
    const certificate = structuredClone(doc.components.schemas.Certificate) as { required: string[]; properties: Record<string, unknown> };
    delete certificate.properties.updated_at;
    certificate.required = certificate.required.filter((f) => f !== 'updated_at');
    const components = { schemas: { ...doc.components.schemas, Certificate: certificate } };
    const validate = validatorOf(closed({ $ref: '#/components/schemas/Certificate' }) as Schema, closed(components) as Document['components']);
    expect(validate(sampleCertificate)).toBe(false);
    expect(validate.errors?.[0]).toMatchObject({ keyword: 'additionalProperties', params: { additionalProperty: 'updated_at' } });
  });

  it('covered every documented operation that answers JSON', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((m) => METHODS.includes(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    for (const op of NON_JSON) expect(operations).toContain(op);
    expect(operations.filter((op) => !NON_JSON.includes(op) && !covered.has(op))).toEqual([]);
  });
});
