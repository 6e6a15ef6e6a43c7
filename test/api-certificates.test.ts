import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { opensslCsr, opensslText, opensslVerify } from './support/openssl.ts';

describe.each(oneDriver('pg'))('certificates API on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let caPem: string;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    caPem = t.service.ca.ca!.certPem;
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001', site_id: 'site1' })).status).toBe(201);
  });

  it('generates an RSA-2048 certificate by default, with the seed response shape, verified by openssl', async () => {
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', {});
    expect(res.status).toBe(201);
    const { certificate, cert_pem, private_key_pem, ca_cert_pem, warning } = res.json;
    expect(certificate).toMatchObject({ id: 1, device_id: 'DEVICE-001', common_name: 'acme/DEVICE-001', status: 'ACTIVE', key_type: 'rsa-2048' });
    expect(private_key_pem).toContain('PRIVATE KEY');
    expect(ca_cert_pem).toBe(caPem);
    expect(warning).toMatch(/private key/i);
    const v = opensslVerify(caPem, cert_pem);
    expect(v.out).toContain(': OK');
    expect(v.code).toBe(0);
    const text = opensslText(cert_pem);
    expect(text).toContain('Subject: CN = acme/DEVICE-001');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication/);
    expect(text).toContain('Subject Key Identifier');
    expect(text).toContain('Authority Key Identifier');
    expect(text).toContain('URI:http://127.0.0.1:8080/pki/crl');
    // a random positive serial of at least 128 bits
    expect(BigInt('0x' + certificate.serial_number) >= 2n ** 128n).toBe(true);
    expect(text).toContain('Public-Key: (2048 bit)');
  });

  it('generates EC P-256 when asked, and never stores the private key', async () => {
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256', validity_days: 30 });
    expect(res.status).toBe(201);
    expect(res.json.certificate.key_type).toBe('ec-p256');
    expect(opensslVerify(caPem, res.json.cert_pem).code).toBe(0);
    const days = (Date.parse(res.json.certificate.not_after) - t.clock.now().getTime()) / 86_400_000;
    expect(Math.round(days)).toBe(30);
    const dump = await database.db.asOperator((tx) => tx.query(`SELECT row_to_json(c)::text AS j FROM device_certificates c`));
    expect(dump.rows.map((r) => String(r.j)).join()).not.toContain('PRIVATE KEY');
    const keyBody = res.json.private_key_pem.split('\n')[1];
    expect(dump.rows.map((r) => String(r.j)).join()).not.toContain(keyBody);
  });

  it('issues from a CSR with the subject forced to tenant/device and no private key in the answer', async () => {
    const { csrPem } = opensslCsr('ec-p256', '/CN=evil/O=other');
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csrPem, validity_days: 90 });
    expect(res.status).toBe(201);
    expect(res.json.private_key_pem).toBeUndefined();
    const text = opensslText(res.json.cert_pem);
    expect(text).toMatch(/Subject: CN = acme\/DEVICE-001\n/);
    expect(text).not.toContain('evil');
    expect(opensslVerify(caPem, res.json.cert_pem).code).toBe(0);
  });

  it('rejects weak or exotic CSR keys and forged CSR signatures, writing nothing', async () => {
    const weak = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: opensslCsr('rsa-1024').csrPem });
    expect(weak.status).toBe(422);
    expect(weak.json.code).toBe('WEAK_KEY');
    const curve = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: opensslCsr('ec-secp256k1').csrPem });
    expect(curve.status).toBe(422);
    expect(curve.json.code).toBe('WEAK_KEY');
    const good = opensslCsr('ec-p256').csrPem;
    const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5] ^= 0xff; // inside the signature
    const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    const bad = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: forged });
    expect(bad.status).toBe(422);
    expect(bad.json.code).toBe('INVALID_CSR');
    expect((await t.call('acme', 'GET', '/customer/certificates')).json.total).toBe(0);
  });

  it('imports a certificate that chains to the Device CA and carries the right CN, and refuses others', async () => {
    const issued = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    // As the schema owner: the application roles cannot delete audit events (migration 007).
    await database.driver.transaction((tx) => tx.query('DELETE FROM audit_events'));
    await database.db.asOperator((tx) => tx.query('DELETE FROM device_certificates'));
    const ok = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: issued.json.cert_pem });
    expect(ok.status).toBe(201);
    expect(ok.json.certificate.fingerprint_sha256).toBe(issued.json.certificate.fingerprint_sha256);
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-002' })).status).toBe(201);
    const wrongCn = await t.call('acme', 'POST', '/customer/devices/DEVICE-002/certificates/import', { cert_pem: issued.json.cert_pem });
    expect(wrongCn.status).toBe(422);
    expect(wrongCn.json.detail).toContain('acme/DEVICE-002');
    const foreign = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: caPem.replace(/A/, 'B') });
    expect(foreign.status).toBe(422);
    const dup = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: issued.json.cert_pem });
    expect(dup.status).toBe(409);
  });

  it('lists with filters and keyset pagination, and gets one certificate with its PEM', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256', validity_days: i < 2 ? 10 : 300 })).status).toBe(201);
    }
    const page1 = await t.call('acme', 'GET', '/customer/certificates?device_id=DEVICE-001&limit=2');
    expect(page1.json.total).toBe(5);
    expect(page1.json.certificates.map((c: { id: number }) => c.id)).toEqual([5, 4]);
    const page2 = await t.call('acme', 'GET', `/customer/certificates?device_id=DEVICE-001&limit=2&cursor=${page1.json.next_cursor}`);
    expect(page2.json.certificates.map((c: { id: number }) => c.id)).toEqual([3, 2]);
    const page3 = await t.call('acme', 'GET', `/api/v1/customer/certificates?device_id=DEVICE-001&limit=2&cursor=${page2.json.next_cursor}`);
    expect(page3.json.certificates.map((c: { id: number }) => c.id)).toEqual([1]);
    expect(page3.json.next_cursor).toBeNull();
    const expiring = await t.call('acme', 'GET', '/customer/certificates?expiring_within_days=30');
    expect(expiring.json.certificates.map((c: { id: number }) => c.id)).toEqual([2, 1]);
    await t.call('acme', 'POST', '/customer/certificates/3/revoke', { reason: 'keyCompromise' });
    const revoked = await t.call('acme', 'GET', '/customer/certificates?status=REVOKED');
    expect(revoked.json.certificates.map((c: { id: number }) => c.id)).toEqual([3]);
    const one = await t.call('acme', 'GET', '/customer/certificates/3');
    expect(one.json.certificate.cert_pem).toContain('BEGIN CERTIFICATE');
    expect(one.json.certificate.revoked_reason).toBe('keyCompromise');
  });

  it('revokes with or without a body, writes audit events, and 404s a second revocation', async () => {
    await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    const bare = await t.service.app.inject({
      method: 'POST',
      url: '/customer/certificates/1/revoke',
      headers: { authorization: `Bearer ${await t.token('acme')}`, 'content-type': 'application/json' },
    });
    expect(bare.statusCode).toBe(200);
    expect(bare.json().certificate.status).toBe('REVOKED');
    const rotated = await t.call('acme', 'POST', '/customer/certificates/2/revoke', { reason: 'rotated' });
    expect(rotated.json.crl_reason).toBe('superseded');
    expect(rotated.json.certificate.revoked_reason).toBe('rotated');
    const again = await t.call('acme', 'POST', '/customer/certificates/2/revoke', { reason: 'rotated' });
    expect(again.status).toBe(409);
    expect(again.json.code).toBe('CERTIFICATE_ALREADY_REVOKED');
    const audit = await database.db.asTenant('acme', (tx) => tx.query<{ action: string; actor: string }>('SELECT action, actor FROM audit_events ORDER BY id'));
    expect(audit.rows.map((r) => r.action)).toEqual(['device.registered', 'certificate.issued', 'certificate.issued', 'certificate.revoked', 'certificate.revoked']);
    expect(audit.rows[3].actor).toBe('test:acme:customer');
  });

  it('pages through devices with a keyset cursor', async () => {
    for (const id of ['D-3', 'D-1', 'D-2']) expect((await t.call('acme', 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
    const seen: string[] = [];
    let url = '/customer/devices?limit=2';
    for (let page = 0; page < 5; page++) {
      const res = await t.call('acme', 'GET', url);
      expect(res.json.total).toBe(4);
      seen.push(...res.json.devices.map((d: { device_id: string }) => d.device_id));
      if (!res.json.next_cursor) break;
      url = `/customer/devices?limit=2&cursor=${encodeURIComponent(res.json.next_cursor)}`;
    }
    expect(seen).toEqual(['D-1', 'D-2', 'D-3', 'DEVICE-001']);
  });

  it('serves the CA bundle and the public CA, OpenAPI docs, health and readiness', async () => {
    expect((await t.call('acme', 'GET', '/customer/ca-bundle')).body).toBe(caPem);
    const pub = await t.service.app.inject({ method: 'GET', url: '/pki/ca.pem' });
    expect(pub.body).toBe(caPem);
    const docs = await t.service.app.inject({ method: 'GET', url: '/docs/json' });
    expect(docs.json().paths).toHaveProperty('/api/v1/customer/devices/{device_id}/certificates/generate');
    expect((await t.service.app.inject({ method: 'GET', url: '/readyz' })).json()).toMatchObject({ status: 'ready', device_ca: 'loaded' });
  });

  it('lets operators list across tenants, and refuses tenant tokens there', async () => {
    await t.call('globex', 'POST', '/customer/devices', { device_id: 'G-1' });
    await t.call('globex', 'POST', '/customer/devices/G-1/certificates/generate', { key_type: 'ec-p256' });
    await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    const all = await t.call(null, 'GET', '/api/v1/operator/certificates');
    expect(all.status).toBe(200);
    expect(all.json.total).toBe(2);
    const globex = await t.call(null, 'GET', '/operator/devices?tenant_id=globex');
    expect(globex.json.devices.map((d: { device_id: string }) => d.device_id)).toEqual(['G-1']);
    expect((await t.call('acme', 'GET', '/operator/certificates')).status).toBe(403);
  });
});
