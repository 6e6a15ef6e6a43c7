/**
 * The broker agent's surface, attacked and exercised in process (PGlite):
 * - the `broker-agent` role reaches its routes and nothing else; its token must name one node and
 *   no tenant; no customer token may claim the reserved tenant `certfleet` (the canaries' tenant);
 * - a node reports and gets canaries only as itself (the token's broker_node claim);
 * - GET /pki/crl-bundle.pem is what CRL_OUTPUT_PATH holds, and a long poll is woken by the
 *   publication of a newer CRL (not by its timeout), or answers 304 when nothing changed;
 * - the agent's bundle check (checkBundle): several CAs' CRLs in one bundle, and refusals of an
 *   untrusted issuer, a number going backwards, an expired CRL, one ahead of the clock, a duplicate.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { checkBundle, trustedCasFromPem, BundleRejectedError } from '../src/broker/agent/bundle-check.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { buildCrl } from '../src/crl/build-crl.ts';
import { caIdentityFromCertificate } from '../src/pki/crl-signer.ts';
import { crlSignerFor } from '../src/pki/kms/key-signer.ts';
import { createDeviceCa, deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { crlDerToPem, crlDerToPemBytes } from '../src/crl/verify-crl.ts';
import { loadStoredFileCrl } from '../src/crl/publish-crl.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

let database: TestDatabase;
let t: TestService;
let sign: (claims: { roles: string[]; brokerNode?: string; tenantId?: string }) => Promise<string>;

const inject = async (token: string | null, method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => {
  const res = await t.service.app.inject({
    method: method as 'GET',
    url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, body: res.body, headers: res.headers, json: () => res.json() };
};

beforeAll(async () => {
  database = await createTestDatabase('pglite');
  t = await startTestService(database);
  const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
  sign = (c) => key.sign({ roles: c.roles as never, brokerNode: c.brokerNode, tenantId: c.tenantId, subject: 'test', ttlSeconds: 600, now: new Date() });
});
afterAll(async () => {
  await t?.close();
  await database?.close();
});

describe('the broker-agent role', () => {
  it('reaches the bundle and its own routes, nothing else', async () => {
    const agent = await sign({ roles: ['broker-agent'], brokerNode: 'n1' });
    expect((await inject(agent, 'GET', '/pki/crl-bundle.pem')).status).toBe(200);
    for (const url of ['/api/v1/operator/devices', '/api/v1/operator/broker-nodes', '/api/v1/customer/devices', '/operator/alerts']) {
      expect((await inject(agent, 'GET', url)).status, url).toBe(403);
    }
    expect((await inject(agent, 'POST', '/api/v1/customer/devices', { device_id: 'x' })).status).toBe(403);
    // customers and operators are not broker agents
    expect((await inject(await t.token('acme'), 'GET', '/pki/crl-bundle.pem')).status).toBe(403);
    expect((await inject(await t.token(null, 'operator'), 'POST', '/api/v1/broker-agent/canaries', {})).status).toBe(403);
    expect((await inject(null, 'GET', '/pki/crl-bundle.pem')).status).toBe(401);
  });

  it('refuses tokens that name no node, a tenant, another role besides, or the reserved tenant certfleet', async () => {
    for (const claims of [
      { roles: ['broker-agent'] },
      { roles: ['broker-agent'], brokerNode: 'n1', tenantId: 'acme' },
      { roles: ['broker-agent', 'operator'], brokerNode: 'n1' },
      { roles: ['broker-agent'], brokerNode: 'a/b' },
    ]) {
      expect((await inject(await sign(claims), 'GET', '/pki/crl-bundle.pem')).status, JSON.stringify(claims)).toBe(401);
    }
    // An operator-looking token with a node claim does not become an agent, and keeps no extra power.
    expect((await inject(await sign({ roles: ['operator'], brokerNode: 'n1' }), 'GET', '/pki/crl-bundle.pem')).status).toBe(403);
    // Nobody can act as the canaries' tenant.
    const reserved = await sign({ roles: ['tenant-admin'], tenantId: 'certfleet' });
    expect((await inject(reserved, 'GET', '/api/v1/customer/devices')).status).toBe(401);
    expect((await inject(reserved, 'POST', '/api/v1/customer/devices', { device_id: 'canary.n1.valid' })).status).toBe(401);
  });

  it('reports and gets canaries only as its own node', async () => {
    const a = await sign({ roles: ['broker-agent'], brokerNode: 'node-a' });
    const b = await sign({ roles: ['broker-agent'], brokerNode: 'node-b' });
    const canaries = (await inject(a, 'POST', '/api/v1/broker-agent/canaries', { kind: 'mosquitto' })).json();
    expect(canaries.node).toBe('node-a');
    const cn = (pem: string) => /CN=([^\n,]+)/.exec(new X509Certificate(pem).subject.replace(/\n/g, ','))?.[1];
    expect(cn(canaries.valid.cert_pem)).toBe('certfleet/canary.node-a.valid');
    expect(cn(canaries.revoked.cert_pem)).toBe('certfleet/canary.node-a.revoked');
    // the revoked canary is revoked, the valid one is not
    const certs = (await inject(await t.token(null, 'operator'), 'GET', '/api/v1/operator/certificates?tenant_id=certfleet')).json().certificates;
    expect(certs.find((c: { id: number }) => c.id === canaries.revoked.id).status).toBe('REVOKED');
    expect(certs.find((c: { id: number }) => c.id === canaries.valid.id).status).toBe('ACTIVE');
    // new canaries revoke the node's previous valid one
    const again = (await inject(a, 'POST', '/api/v1/broker-agent/canaries', {})).json();
    const after = (await inject(await t.token(null, 'operator'), 'GET', '/api/v1/operator/certificates?tenant_id=certfleet')).json().certificates;
    expect(after.find((c: { id: number }) => c.id === canaries.valid.id).status).toBe('REVOKED');
    expect(after.find((c: { id: number }) => c.id === again.valid.id).status).toBe('ACTIVE');

    const now = new Date().toISOString();
    expect((await inject(a, 'POST', '/api/v1/broker-agent/report', { kind: 'mosquitto', crl_number: '5', applied_at: now, check: { at: now, result: 'failed', detail: 'revoked canary accepted' } })).status).toBe(200);
    expect((await inject(b, 'POST', '/api/v1/broker-agent/report', { kind: 'mosquitto', crl_number: '3', applied_at: now, check: { at: now, result: 'passed' } })).status).toBe(200);
    // a report cannot name another node: the body has no node field
    expect((await inject(b, 'POST', '/api/v1/broker-agent/report', { kind: 'mosquitto', node: 'node-a', crl_number: '9' })).status).toBe(422);
    // an older number later does not move the node backwards
    expect((await inject(a, 'POST', '/api/v1/broker-agent/report', { kind: 'mosquitto', crl_number: '2' })).status).toBe(200);
    const nodes = (await inject(await t.token(null, 'operator'), 'GET', '/api/v1/operator/broker-nodes')).json().nodes;
    expect(nodes.map((n: { node: string; crl_number: string; last_check_result: string; state: string }) => [n.node, n.crl_number, n.last_check_result, n.state])).toEqual([
      ['node-a', '5', 'failed', 'enforcement_failed'],
      ['node-b', '3', 'passed', expect.stringMatching(/ok|lagging/)],
    ]);
    const alerts = (await inject(await t.token(null, 'operator'), 'GET', '/api/v1/operator/alerts?tenant_id=__system__&type=BROKER_ENFORCEMENT_FAILED&status=OPEN')).json().alerts;
    expect(alerts.map((x: { fingerprint: string; severity: number }) => [x.fingerprint, x.severity])).toEqual([['broker-node:node-a', 5]]);
    const metrics = (await inject(null, 'GET', '/metrics')).body;
    expect(metrics).toMatch(/^certfleet_broker_node_enforced\{node="node-a"\} 0$/m);
    expect(metrics).toMatch(/^certfleet_broker_node_enforced\{node="node-b"\} 1$/m);
    expect(metrics).toMatch(/^certfleet_broker_node_crl_number\{node="node-a"\} 5$/m);
  });
});

describe('GET /pki/crl-bundle.pem', () => {
  it('serves what CRL_OUTPUT_PATH holds; a long poll wakes on a newer CRL, or answers 304', async () => {
    const agent = await sign({ roles: ['broker-agent'], brokerNode: 'poller' });
    await t.service.crl.publisher!.idle();
    const first = await inject(agent, 'GET', '/pki/crl-bundle.pem');
    expect(first.status).toBe(200);
    expect(first.body).toBe(readFileSync(t.config.crlOutputPath, 'latin1'));
    const etag = String(first.headers.etag);
    expect((await inject(agent, 'GET', '/pki/crl-bundle.pem?wait=1', undefined, { 'if-none-match': etag })).status).toBe(304);

    const waiting = inject(agent, 'GET', '/pki/crl-bundle.pem?wait=100', undefined, { 'if-none-match': etag });
    const bundle = t.service.crl.bundle!;
    while (bundle.waiting() === 0) await new Promise((r) => setImmediate(r));
    // a revocation: the publication (not the 100 s timeout) answers the waiting agent
    expect((await inject(await t.token('acme'), 'POST', '/api/v1/customer/devices', { device_id: 'poll-1' })).status).toBe(201);
    const gen = (await inject(await t.token('acme'), 'POST', '/api/v1/customer/devices/poll-1/certificates/generate', { key_type: 'ec-p256' })).json();
    expect((await inject(await t.token('acme'), 'POST', `/api/v1/customer/certificates/${gen.certificate.id}/revoke`, {})).status).toBe(200);
    const woken = await waiting;
    expect(woken.status).toBe(200);
    expect(woken.headers.etag).not.toBe(etag);
    expect(Number(woken.headers['x-crl-numbers'])).toBeGreaterThan(Number(first.headers['x-crl-numbers']));
    expect(bundle.waiting()).toBe(0);
    await t.service.crl.publisher!.idle();
    expect(woken.body).toBe(readFileSync(t.config.crlOutputPath, 'latin1'));
    // answered from the CRL this process just published: byte for byte what the database holds
    const stored = await loadStoredFileCrl(createStorage(database.storage.db), t.service.crl.issuerKeyId!);
    expect(woken.body).toBe(crlDerToPemBytes(stored!).toString('latin1'));
  }, 60_000);
});

describe('the agent checks a bundle before its broker sees it', () => {
  const now = new Date();
  const hour = 3_600_000;
  let caA: DeviceCa;
  let caB: DeviceCa;
  const crl = (ca: typeof caA, n: bigint, o: { thisUpdate?: Date; nextUpdate?: Date } = {}) => {
    const id = caIdentityFromCertificate(ca.certDer);
    return crlDerToPem(
      buildCrl({
        issuerNameDer: id.subjectDer,
        authorityKeyId: id.subjectKeyId,
        thisUpdate: o.thisUpdate ?? new Date(now.getTime() - hour),
        nextUpdate: o.nextUpdate ?? new Date(now.getTime() + hour),
        crlNumber: n,
        revoked: new Uint8Array(0),
        signer: crlSignerFor(ca.signer),
      }),
    );
  };
  beforeAll(async () => {
    const make = async (cn: string) => {
      const pem = await createDeviceCa({ now, commonName: cn });
      return deviceCaFromPem(pem.certPem, pem.keyPem);
    };
    caA = await make('bundle CA A');
    caB = await make('bundle CA B');
  });
  const keyOf = (ca: typeof caA) => caIdentityFromCertificate(ca.certDer).subjectKeyId.toString('hex');
  const refusal = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (e instanceof BundleRejectedError) return e.code;
      throw e;
    }
    return 'accepted';
  };

  it('accepts one CRL per trusted CA, and refuses every defect', () => {
    const both = trustedCasFromPem(caA.certPem + caB.certPem);
    const onlyA = trustedCasFromPem(caA.certPem);
    const bundle = crl(caA, 7n) + crl(caB, 3n);
    expect(checkBundle(bundle, both, new Map(), now).map((c) => [c.issuerKeyId, c.crlNumber])).toEqual([
      [keyOf(caA), 7n],
      [keyOf(caB), 3n],
    ]);
    expect(refusal(() => checkBundle(bundle, both, new Map([[keyOf(caA), 7n], [keyOf(caB), 3n]]), now))).toBe('accepted'); // the same again
    expect(refusal(() => checkBundle(bundle, onlyA, new Map(), now))).toBe('UNTRUSTED_ISSUER');
    expect(refusal(() => checkBundle(bundle, both, new Map([[keyOf(caB), 4n]]), now))).toBe('NUMBER_WENT_BACKWARDS');
    expect(refusal(() => checkBundle(crl(caA, 8n, { nextUpdate: new Date(now.getTime() - 1000), thisUpdate: new Date(now.getTime() - hour) }), both, new Map(), now))).toBe('INVALID_CRL');
    expect(refusal(() => checkBundle(crl(caA, 8n, { thisUpdate: new Date(now.getTime() + hour), nextUpdate: new Date(now.getTime() + 2 * hour) }), both, new Map(), now))).toBe('NOT_YET_VALID');
    expect(refusal(() => checkBundle(crl(caA, 8n) + crl(caA, 9n), both, new Map(), now))).toBe('DUPLICATE_ISSUER');
    expect(refusal(() => checkBundle('', both, new Map(), now))).toBe('EMPTY');
    const tampered = crl(caA, 8n).replace(/\n([A-Za-z0-9+/]{10})/, (_m, s: string) => `\n${s.split('').reverse().join('')}`);
    expect(['INVALID_CRL', 'UNTRUSTED_ISSUER']).toContain(refusal(() => checkBundle(tampered, both, new Map(), now)));
  });
});
