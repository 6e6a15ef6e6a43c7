/**
 * Device CAs as records (issue 19 items 1, 3, 4 and 7), on real Postgres through the HTTP API:
 * the configured CA adopted at start (upgrade with no step), staging, activation (the previous CA
 * retiring, in one transaction), issuance by the active CA of the tenant's scope, retirement
 * refused while certificates remain, revocation, tenant isolation, and bad input refused with
 * nothing stored.
 */
import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { x509 } from '../src/pki/x509.ts';
import { randomSerialHex } from '../src/pki/serial-number.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { AlreadyExistsError } from '../src/app/storage-ports.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const DAY = 86_400_000;

/** A self-signed certificate for the bad-input cases (x509 lib; `ca: false` gives a leaf). */
async function makeCert(o: { rsaBits?: number; ca?: boolean; notBefore?: Date; notAfter?: Date; cn?: string }) {
  const alg = o.rsaBits
    ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: o.rsaBits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
    : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: `CN=${o.cn ?? 'Bad CA'}`,
    notBefore: o.notBefore ?? new Date(now - DAY),
    notAfter: o.notAfter ?? new Date(now + 3650 * DAY),
    keys,
    signingAlgorithm: alg,
    extensions:
      o.ca === false
        ? [new x509.BasicConstraintsExtension(false, undefined, true)]
        : [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem') + '\n', keyPem: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string };
}

describe('Device CA records on pg', () => {
  let database: TestDatabase;
  let t: TestService;
  const op = (method: string, url: string, body?: unknown) => t.call(null, method, `/api/v1/operator${url}`, body, 'operator');
  const issue = async (tenant: string, device: string) => {
    const res = await t.call(tenant, 'POST', `/api/v1/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256' });
    expect(res.status, res.body).toBe(201);
    return res.json as { certificate: { id: number; issuer: string; serial_number: string }; cert_pem: string; ca_cert_pem: string };
  };
  const issuedBy = (certPem: string, caPem: string) => new X509Certificate(certPem).verify(new X509Certificate(caPem).publicKey);
  const keyFiles = () => (existsSync(t.config.caKeys.dir) ? readdirSync(t.config.caKeys.dir) : []);

  beforeAll(async () => {
    database = await createTestDatabase('pg');
    t = await startTestService(database);
    for (const [tenant, device] of [['acme', 'A1'], ['acme', 'A2'], ['globex', 'G1']]) {
      expect((await t.call(tenant, 'POST', '/api/v1/customer/devices', { device_id: device })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('upgrade: the configured CA becomes the active global record; certificates issued before it get its id; revocation and the CRL series continue after a restart', async () => {
    const before = await issue('acme', 'A1');
    const revokedBefore = await issue('acme', 'A1');
    expect((await t.call('acme', 'POST', `/api/v1/customer/certificates/${revokedBefore.certificate.id}/revoke`, {})).status).toBe(200);
    await t.service.crl.publisher!.idle();
    const crlNumber = async () => BigInt(String((await database.db.asOperator((tx) => tx.query<{ n: string }>(`SELECT crl_number::text AS n FROM crl_state`))).rows[0]!.n));
    const numberBefore = await crlNumber();
    expect(numberBefore > 0n).toBe(true);

    // The database as it was before the migration: no CA rows, no ca_id on any certificate.
    await database.driver.transaction(async (tx) => {
      await tx.query(`UPDATE device_certificates SET ca_id = NULL`);
      await tx.query(`DELETE FROM certificate_authorities`);
    });
    const dataDir = t.dataDir;
    await t.close();
    t = await startTestService(database, { dataDir });

    const { json } = await op('GET', '/cas');
    expect(json.cas).toHaveLength(1);
    const [ca] = json.cas;
    expect(ca).toMatchObject({ status: 'active', tenant_id: null, active_certificates: 1, key: { kind: 'file', ref: t.config.caKeyPath } });
    expect(ca.issuer_key_id).toBe(t.service.ca.ca!.subjectKeyId.toString('hex'));
    expect(ca.crl_distribution_point).toBe(`${t.config.publicBaseUrl}/pki/crl`); // what its certificates already carry
    const rows = (await database.db.asOperator((tx) => tx.query<{ ca_id: string | null }>(`SELECT ca_id FROM device_certificates`))).rows;
    expect(rows.every((r) => r.ca_id === ca.id)).toBe(true);

    // A certificate issued before the upgrade is still revocable, and the next CRL continues the series.
    expect((await t.call('acme', 'POST', `/api/v1/customer/certificates/${before.certificate.id}/revoke`, {})).status).toBe(200);
    await t.service.crl.publisher!.idle();
    expect(await crlNumber()).toBeGreaterThan(numberBefore);
    const crl = await t.service.crl.getCrl();
    expect(crl).not.toBeNull();
  });

  it('rollover: stage, activate (the old CA retiring), issue under the new CA, retire refused while certificates remain, then retired', async () => {
    const old = (await op('GET', '/cas')).json.cas.find((c: { status: string }) => c.status === 'active');
    const underOld = await issue('acme', 'A2');
    const created = await op('POST', '/cas', { key_type: 'ec-p256' });
    expect(created.status, created.body).toBe(201);
    const next = created.json;
    expect(next).toMatchObject({ status: 'staged', tenant_id: null, active_certificates: 0, key: { kind: 'file' } });
    expect(next.crl_distribution_point).toBe(`${t.config.publicBaseUrl}/pki/ca/${next.id}/crl`);
    // Its key: a 0600 file under CA_KEY_DIR.
    expect(keyFiles()).toEqual([`${next.id}.key`]);
    const shown = await op('GET', `/cas/${next.id}`);
    expect(shown.json.key_loaded).toBe(true);
    const nextPem = shown.json.cert_pem;
    const nextCert = new X509Certificate(nextPem);
    expect(nextCert.ca).toBe(true);
    expect(Date.parse(nextCert.validTo) - Date.now()).toBeGreaterThan(5 * 365 * DAY);

    // Staged: it does not sign yet.
    const stillOld = await issue('globex', 'G1');
    expect(issuedBy(stillOld.cert_pem, old ? (await op('GET', `/cas/${old.id}`)).json.cert_pem : '')).toBe(true);

    const activated = await op('POST', `/cas/${next.id}/activate`);
    expect(activated.status, activated.body).toBe(200);
    expect(activated.json).toMatchObject({ ca: { id: next.id, status: 'active' }, previous: old.id });
    expect((await op('GET', `/cas/${old.id}`)).json.ca.status).toBe('retiring');
    expect((await op('POST', `/cas/${next.id}/activate`)).json.code).toBe('CA_STATUS_CONFLICT');

    const underNew = await issue('acme', 'A2');
    expect(issuedBy(underNew.cert_pem, nextPem)).toBe(true);
    expect(underNew.ca_cert_pem).toBe(nextPem);
    expect(new X509Certificate(underNew.cert_pem).toString()).toBeTruthy();

    // Migration progress and the certificate filter (rotate-expiring --issuer).
    const progress = (await op('GET', `/cas/${old.id}`)).json.progress;
    expect(progress).toEqual([
      { tenant_id: 'acme', active_certificates: 1 },
      { tenant_id: 'globex', active_certificates: 1 },
    ]);
    const listed = await t.call('acme', 'GET', `/api/v1/customer/certificates?status=ACTIVE&ca_id=${old.id}`);
    expect(listed.json.certificates.map((c: { id: number }) => c.id)).toEqual([underOld.certificate.id]);

    // Retire: 409 while certificates remain; force needs a reason.
    const refused = await op('POST', `/cas/${old.id}/retire`, {});
    expect(refused.status).toBe(409);
    expect(refused.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(refused.json).toMatchObject({ code: 'CA_HAS_ACTIVE_CERTIFICATES', active_certificates: 2 });
    expect((await op('POST', `/cas/${old.id}/retire`, { force: true })).status).toBe(422);
    expect((await op('POST', `/cas/${next.id}/retire`, {})).json.code).toBe('CA_STATUS_CONFLICT'); // active: activate a successor first

    // Revoking a certificate of the retiring CA marks that CA's CRL as pending.
    expect((await t.call('acme', 'POST', `/api/v1/customer/certificates/${underOld.certificate.id}/revoke`, {})).status).toBe(200);
    expect((await t.call('globex', 'POST', `/api/v1/customer/certificates/${stillOld.certificate.id}/revoke`, {})).status).toBe(200);
    const retired = await op('POST', `/cas/${old.id}/retire`, {});
    expect(retired.status, retired.body).toBe(200);
    expect(retired.json.ca).toMatchObject({ status: 'retired', active_certificates: 0 });
    const audit = (await database.db.asOperator((tx) => tx.query<{ action: string }>(`SELECT action FROM audit_events WHERE target_type = 'ca' ORDER BY id`))).rows.map((r) => r.action);
    expect(audit).toEqual(['ca.created', 'ca.activated', 'ca.retired']);
  });

  it('a tenant CA signs only its tenant; tenants cannot see or change CAs; revoke stops issuance at once', async () => {
    for (const role of ['customer', 'tenant-admin'] as const) {
      expect((await t.call('acme', 'GET', '/api/v1/operator/cas', undefined, role)).status).toBe(403);
      expect((await t.call('acme', 'POST', '/api/v1/operator/cas', { tenant_id: 'acme' }, role)).status).toBe(403);
    }
    const acmeCa = (await op('POST', '/cas', { tenant_id: 'acme' })).json;
    expect(acmeCa).toMatchObject({ status: 'staged', tenant_id: 'acme' });
    expect((await op('POST', `/cas/${acmeCa.id}/activate`)).json).toMatchObject({ ca: { status: 'active' }, previous: null });
    const acmePem = (await op('GET', `/cas/${acmeCa.id}`)).json.cert_pem;
    const globalPem = (await op('GET', '/cas')).json.cas.find((c: { status: string; tenant_id: string | null }) => c.status === 'active' && c.tenant_id === null);
    const globalCertPem = (await op('GET', `/cas/${globalPem.id}`)).json.cert_pem;

    const acmeCert = await issue('acme', 'A1');
    expect(issuedBy(acmeCert.cert_pem, acmePem)).toBe(true);
    const globexCert = await issue('globex', 'G1');
    expect(issuedBy(globexCert.cert_pem, globalCertPem)).toBe(true);
    expect(issuedBy(globexCert.cert_pem, acmePem)).toBe(false);
    // The tenant's CA bundle is its own issuing CA.
    expect((await t.call('acme', 'GET', '/api/v1/customer/ca-bundle')).body).toBe(acmePem);

    // Compromise: revoked at once, never signs again (acme falls back to the global CA).
    expect((await op('POST', `/cas/${acmeCa.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(422);
    const revoked = await op('POST', `/cas/${acmeCa.id}/revoke`, { reason: 'cACompromise' });
    expect(revoked.status, revoked.body).toBe(200);
    expect(revoked.json).toMatchObject({ ca: { status: 'revoked', reason: 'cACompromise' }, was: 'active' });
    expect(t.service.cas.published().some((l) => l.record.id === acmeCa.id)).toBe(false);
    const after = await issue('acme', 'A1');
    expect(issuedBy(after.cert_pem, acmePem)).toBe(false);
    expect(issuedBy(after.cert_pem, globalCertPem)).toBe(true);
  });

  it('bad input: each a clear 4xx problem, nothing stored', async () => {
    const count = async () => (await op('GET', '/cas')).json.cas.length;
    const files = keyFiles().length;
    const n = await count();
    const good = await createDeviceCa({ now: new Date(), commonName: 'BYO CA' });
    const other = await createDeviceCa({ now: new Date(), commonName: 'Other CA' });
    const leaf = await makeCert({ ca: false, cn: 'not a CA' });
    const weak = await makeCert({ rsaBits: 1024, cn: 'weak CA' });
    const expired = await makeCert({ notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY), cn: 'expired CA' });
    const cases: Array<[string, string, unknown, number, string]> = [
      ['key does not match', '/cas/import', { cert_pem: good.certPem, key_pem: other.keyPem }, 422, 'CA_KEY_MISMATCH'],
      ['not a CA certificate', '/cas/import', { cert_pem: leaf.certPem, key_pem: leaf.keyPem }, 422, 'INVALID_CA_CERTIFICATE'],
      ['weak key (RSA 1024)', '/cas/import', { cert_pem: weak.certPem, key_pem: weak.keyPem }, 422, 'WEAK_KEY'],
      ['expired CA', '/cas/import', { cert_pem: expired.certPem, key_pem: expired.keyPem }, 422, 'INVALID_CA_CERTIFICATE'],
      ['no key at all', '/cas/import', { cert_pem: good.certPem }, 422, 'VALIDATION_FAILED'],
      ['a key where the certificate goes', '/cas/import', { cert_pem: good.keyPem, key_pem: good.keyPem }, 422, 'VALIDATION_FAILED'],
      ['unknown tenant', '/cas', { tenant_id: 'nobody' }, 404, 'TENANT_NOT_FOUND'],
      ['PKCS#11 URI without a token configured', '/cas', { key_uri: 'pkcs11:token=nothere;object=x' }, 422, 'CA_KEY_UNAVAILABLE'],
      ['unsupported key type', '/cas', { key_type: 'rsa-1024' }, 422, 'VALIDATION_FAILED'],
    ];
    for (const [what, url, body, status, code] of cases) {
      const res = await op('POST', url, body);
      expect([what, res.status, res.json?.code]).toEqual([what, status, code]);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
    }
    expect((await op('GET', '/cas/ca_0000000000000000')).status).toBe(404);
    expect(await count()).toBe(n);
    expect(keyFiles().length).toBe(files);

    // Bring your own CA: accepted once; the same key again is refused.
    const byo = await op('POST', '/cas/import', { cert_pem: good.certPem, key_pem: good.keyPem });
    expect(byo.status, byo.body).toBe(201);
    expect(byo.json).toMatchObject({ status: 'staged', subject: 'CN=BYO CA, O=certfleet' });
    expect((await op('POST', '/cas/import', { cert_pem: good.certPem, key_pem: good.keyPem })).json.code).toBe('CA_EXISTS');
  });

  it('storage: at most one active CA per scope, the global scope included (NULL tenant)', async () => {
    const storage = createStorage(database.db);
    const base = (id: string, tenantId: string | null) => ({
      id,
      tenantId,
      status: 'active' as const,
      subject: `CN=${id}`,
      issuerLabel: id,
      issuerKeyId: id,
      notBefore: new Date(),
      notAfter: new Date(Date.now() + DAY),
      certPem: '-',
      keyRef: { kind: 'file' as const, path: '/nonexistent' },
      crlDistributionPoint: 'http://x/crl',
      createdAt: new Date(),
      createdBy: 'test',
    });
    await expect(storage.asOperator(({ cas }) => cas.insertCa(base('ca_dup1', null)))).rejects.toBeInstanceOf(AlreadyExistsError);
    await storage.asOperator(({ cas }) => cas.insertCa(base('ca_t1', 'tenant-x')));
    await expect(storage.asOperator(({ cas }) => cas.insertCa(base('ca_t2', 'tenant-x')))).rejects.toBeInstanceOf(AlreadyExistsError);
    // A tenant role cannot read the CA table at all.
    await expect(database.db.asTenant('acme', (tx) => tx.query(`SELECT * FROM certificate_authorities`))).rejects.toThrow(/permission denied/);
  });
});

