/**
 * Issue 9 points 1, 2 (certificates) and 8: the device certificate profile, the lint every
 * certificate passes before it leaves, and the revocation reasons a device certificate takes.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/domain/clock.ts';
import { encodeDeviceTbs, type DeviceProfile } from '../src/domain/certificate-der.ts';
import { createDeviceCa, writeDeviceCa } from '../src/pki/device-ca.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { opensslText, run } from './support/openssl.ts';

const DAY = 86_400_000;


/** One PGlite database for the file's services (opening one costs 2.5 to 3.5 s of CPU), emptied where a test needs it so. */
let pglite: TestDatabase | undefined;
const sharedPglite = async (): Promise<TestDatabase> => (pglite ??= await createTestDatabase('pglite'));
afterAll(async () => pglite?.close());

describe('device certificate profile (issue 9.1) and reasons (9.8)', () => {
  let database: TestDatabase;
  let t: TestService;
  const caCreated = new Date('2026-03-01T00:00:00Z');

  beforeAll(async () => {
    database = await sharedPglite();
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-profile-'));
    mkdirSync(join(dataDir, 'pki'), { mode: 0o700 });
    // A CA valid for one year: long certificates must be capped at its notAfter.
    const ca = await createDeviceCa({ now: caCreated, validityYears: 1, commonName: 'Short CA' });
    await writeDeviceCa(ca, join(dataDir, 'pki/device-ca.crt'), join(dataDir, 'pki/device-ca.key'));
    t = await startTestService(database, { dataDir, clock: createManualClock(new Date(caCreated.getTime() + 10_000)) });
  });
  afterAll(async () => {
    await t?.close();
  });
  beforeEach(async () => {
    await database.reset();
    t.clock.set(new Date(caCreated.getTime() + 10_000));
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
  });

  it.each(['rsa-2048', 'ec-p256'])('%s: KeyUsage is digitalSignature only, critical; EKU clientAuth; openssl verifies it for sslclient', async (keyType) => {
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: keyType, validity_days: 30 });
    expect(res.status).toBe(201);
    const text = opensslText(res.json.cert_pem);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).not.toContain('Key Encipherment');
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication\n/);
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-profile-'));
    writeFileSync(join(dir, 'ca.pem'), t.service.ca.ca!.certPem);
    writeFileSync(join(dir, 'leaf.pem'), res.json.cert_pem);
    const at = String(Math.floor(t.clock.now().getTime() / 1000) + 60);
    const verified = run('openssl', ['verify', '-attime', at, '-purpose', 'sslclient', '-x509_strict', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]);
    expect(verified.out).toContain(': OK');
  });

  it('caps notAfter at the CA notAfter (saying so in warning) and never starts before the CA', async () => {
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256', validity_days: 3650 });
    expect(res.status).toBe(201);
    const caCert = new X509Certificate(t.service.ca.ca!.certPem);
    const cert = new X509Certificate(res.json.cert_pem);
    expect(new Date(cert.validTo).getTime()).toBe(new Date(caCert.validTo).getTime());
    expect(res.json.certificate.not_after).toBe(new Date(caCert.validTo).toISOString());
    expect(res.json.warning).toMatch(/capped at the CA's notAfter/);
    // The CA started 60 s before caCreated; the usual 5-minute backdating would precede it.
    expect(new Date(cert.validFrom).getTime()).toBe(new Date(caCert.validFrom).getTime());

    const normal = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256', validity_days: 30 });
    expect(normal.json.warning).not.toMatch(/capped/);

    const rotated = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate', { key_type: 'ec-p256', validity_days: 3650 });
    expect(rotated.status).toBe(201);
    expect(rotated.json.warning).toMatch(/capped at the CA's notAfter/);
  });

  it('an expired CA answers 503 CA_EXPIRED and issues nothing', async () => {
    t.clock.set(new Date(caCreated.getTime() + 400 * DAY));
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json.code).toBe('CA_EXPIRED');
    expect((await t.call('acme', 'GET', '/customer/certificates')).json.total).toBe(0);
  });

  it('a clock so far before the CA that the certificate would end before it starts answers 503 CA_NOT_YET_VALID', async () => {
    t.clock.set(new Date(caCreated.getTime() - 3 * DAY));
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256', validity_days: 1 });
    expect(res.status).toBe(503);
    expect(res.json.code).toBe('CA_NOT_YET_VALID');
    // Within reach of the CA's start, it issues from the CA's notBefore on.
    const ok = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256', validity_days: 30 });
    expect(ok.status).toBe(201);
    expect(new X509Certificate(ok.json.cert_pem).validFrom).toBe(new X509Certificate(t.service.ca.ca!.certPem).validFrom);
  });

  it('refuses a device id that makes the CN tenant/device longer than 64 characters, naming the limit', async () => {
    const tenant = 'tenant-with-a-long-name'; // 23 characters + '/' leaves 40 for the device id
    expect((await t.call(tenant, 'POST', '/customer/devices', { device_id: 'd'.repeat(40) })).status).toBe(201);
    const res = await t.call(tenant, 'POST', '/customer/devices', { device_id: 'd'.repeat(41) });
    expect(res.status).toBe(422);
    expect(res.json.code).toBe('INVALID_DEVICE_ID');
    expect(res.json.detail).toMatch(/64/);
    expect(res.json.details.max_device_id_length).toBe(40);
    const ok = await t.call(tenant, 'POST', `/customer/devices/${'d'.repeat(40)}/certificates/generate`, { key_type: 'ec-p256' });
    expect(ok.status).toBe(201);
    expect(new X509Certificate(ok.json.cert_pem).subject).toBe(`CN=${tenant}/${'d'.repeat(40)}`);
  });

  it.each([
    ['certificateHold', 422],
    ['removeFromCRL', 422],
    ['cACompromise', 422],
    ['aACompromise', 422],
    ['keyCompromise', 200],
  ])('revoking a device certificate with %s answers %i', async (reason, status) => {
    const issued = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    const res = await t.call('acme', 'POST', `/customer/certificates/${issued.json.certificate.id}/revoke`, { reason });
    expect(res.status).toBe(status);
    if (status === 422) {
      expect(res.json.code).toBe('REVOCATION_REASON_NOT_ALLOWED');
      expect((await t.call('acme', 'GET', `/customer/certificates/${issued.json.certificate.id}`)).json.certificate.status).toBe('ACTIVE');
    }
  });

  it('cancelling a rotation with certificateHold is refused too', async () => {
    await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate', { key_type: 'ec-p256' });
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel', { reason: 'certificate_hold' });
    expect(res.status).toBe(422);
    expect(res.json.code).toBe('REVOCATION_REASON_NOT_ALLOWED');
  });
});

describe('lint before a certificate leaves (issue 9.2)', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await sharedPglite();
  });

  async function withFault(authority: NonNullable<Parameters<typeof startTestService>[1]>['overrides'], run: (t: TestService) => Promise<void>) {
    await database.reset();
    const t = await startTestService(database, { overrides: authority });
    try {
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'D1' })).status).toBe(201);
      await run(t);
    } finally {
      await t.close();
    }
  }

  const expectLintFailure = async (t: TestService, rule: string) => {
    const res = await t.call('acme', 'POST', '/customer/devices/D1/certificates/generate', { key_type: 'ec-p256' });
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json.code).toBe('LINT_FAILED');
    expect(res.json.details.rule).toBe(rule);
    expect(res.json.detail).toContain(rule);
    expect(res.body).not.toContain('PRIVATE KEY');
    expect((await t.call('acme', 'GET', '/customer/certificates')).json.total).toBe(0);
    const audit = await database.db.asOperator((tx) => tx.query(`SELECT count(*)::int AS n FROM audit_events WHERE action LIKE 'certificate.%'`));
    expect(audit.rows[0].n).toBe(0);
  };

  it('a signer that signs other bytes: cert.signature, nothing stored', async () => {
    await withFault(
      { authority: { sign: (tbs, signer) => signer.sign(Buffer.concat([tbs, Buffer.of(0)])) } },
      (t) => expectLintFailure(t, 'cert.signature'),
    );
  });

  it('an encoder that writes the old KeyUsage (digitalSignature + keyEncipherment): cert.key_usage', async () => {
    const oldKu = Buffer.from('300e0603551d0f0101ff0404030205a0', 'hex');
    const newKu = Buffer.from('300e0603551d0f0101ff040403020780', 'hex');
    const encodeTbs = (profile: DeviceProfile, c: Parameters<typeof encodeDeviceTbs>[1]) => {
      const at = profile.sharedExtensions.indexOf(newKu);
      expect(at).toBeGreaterThanOrEqual(0);
      const shared = Buffer.from(profile.sharedExtensions);
      oldKu.copy(shared, at);
      return encodeDeviceTbs({ ...profile, sharedExtensions: shared }, c);
    };
    await withFault({ authority: { encodeTbs } }, (t) => expectLintFailure(t, 'cert.key_usage'));
  });

  it('an encoder that outlives the CA: cert.validity.within_ca', async () => {
    const encodeTbs = (profile: DeviceProfile, c: Parameters<typeof encodeDeviceTbs>[1]) =>
      encodeDeviceTbs(profile, { ...c, notAfter: new Date(c.notAfter.getTime() + 20 * 365 * DAY) });
    await withFault({ authority: { encodeTbs } }, (t) => expectLintFailure(t, 'cert.validity.within_ca'));
  });

  it('an encoder that writes a negative serial: cert.serial.sign', async () => {
    const encodeTbs = (profile: DeviceProfile, c: Parameters<typeof encodeDeviceTbs>[1]) => {
      const tbs = encodeDeviceTbs(profile, c);
      // serial INTEGER follows the [0] version (a0 03 02 01 02): 02 14 <20 bytes>; set the sign bit.
      // The first octet becomes 0x80-0xbf, never 0xff: 0xff before an octet with its high bit set
      // is a non-minimal INTEGER, which the full lint's parser refuses as cert.parse (1 serial in
      // 128 did that when the test only set the bit: a first octet of 0x7f).
      const at = tbs.indexOf(Buffer.from('a0030201020214', 'hex')) + 7;
      expect(at).toBeGreaterThan(6);
      tbs[at] = 0x80 | (tbs[at]! & 0x3f);
      return tbs;
    };
    await withFault({ authority: { encodeTbs } }, (t) => expectLintFailure(t, 'cert.serial.sign'));
  });

  it('import lints too: a CA-signed certificate with keyCertSign is refused with the rule (422, not stored)', async () => {
    await database.reset();
    const t = await startTestService(database);
    try {
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'D1' })).status).toBe(201);
      const dir = mkdtempSync(join(tmpdir(), 'certfleet-lint-'));
      const caKey = join(t.dataDir, 'pki/device-ca.key');
      const caCrt = join(t.dataDir, 'pki/device-ca.crt');
      run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k'), '-out', join(dir, 'csr'), '-subj', '/CN=acme\\/D1']);
      writeFileSync(join(dir, 'ext'), 'keyUsage=critical,digitalSignature,keyCertSign\nextendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n');
      const bad = run('openssl', [
        'x509', '-req', '-in', join(dir, 'csr'), '-CA', caCrt, '-CAkey', caKey, '-days', '30', '-set_serial', '0x4a' + '11'.repeat(15),
        '-extfile', join(dir, 'ext'), '-out', join(dir, 'crt'),
      ]);
      expect(bad.out).not.toMatch(/error/i);
      expect(bad.code).toBe(0);
      const { readFileSync } = await import('node:fs');
      const res = await t.call('acme', 'POST', '/customer/devices/D1/certificates/import', { cert_pem: readFileSync(join(dir, 'crt'), 'utf8') });
      expect(res.status).toBe(422);
      expect(res.json.code).toBe('INVALID_CERTIFICATE');
      expect(res.json.details.rule).toBe('cert.key_usage');
      expect((await t.call('acme', 'GET', '/customer/certificates')).json.total).toBe(0);
    } finally {
      await t.close();
    }
  });
});
