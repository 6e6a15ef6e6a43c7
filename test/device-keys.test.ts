/**
 * The keys a device may bring, on every path that accepts one (CSR issuance, import): RSA with a
 * public exponent of at least 65537 (and below 2^256), and no EC certificate asserting
 * keyEncipherment or dataEncipherment (RFC 8813), even under the older profile imports accept.
 * A key whose certificate was revoked for keyCompromise is never certified again (CSR issuance,
 * rotation with a CSR, import; in any tenant), and one key serves one device unless the tenant
 * allows shared keys.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { run } from './support/openssl.ts';
import { startTestService, type TestService } from './support/service.ts';

function openssl(args: string[]): string {
  const r = run('openssl', args);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}:\n${r.out}`);
  return r.out;
}

/** A key made by openssl: RSA with the given public exponent, or EC P-256. */
function key(dir: string, spec: { rsaExponent: number } | 'ec'): string {
  const path = join(dir, `key-${typeof spec === 'string' ? spec : spec.rsaExponent}.pem`);
  openssl(
    typeof spec === 'string'
      ? ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]
      : ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', `rsa_keygen_pubexp:${spec.rsaExponent}`, '-out', path],
  );
  return path;
}

function csr(keyPath: string): string {
  const out = openssl(['req', '-new', '-key', keyPath, '-subj', '/CN=device', '-outform', 'PEM']);
  return out.slice(out.indexOf('-----BEGIN'));
}

/** A certificate for acme/DEVICE-001 signed by the service's Device CA with openssl (as an older issuer would have). */
function caSigned(t: TestService, dir: string, keyPath: string, keyUsage: string): string {
  const ext = join(dir, `ext-${keyUsage.replace(/\W/g, '')}.cnf`);
  writeFileSync(ext, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,${keyUsage}\nextendedKeyUsage=clientAuth\n`);
  const req = join(dir, 'req.pem');
  writeFileSync(req, openssl(['req', '-new', '-key', keyPath, '-subj', '/CN=acme\\/DEVICE-001', '-outform', 'PEM']).replace(/^[^-]*/, ''));
  const out = openssl(['x509', '-req', '-in', req, '-CA', t.config.caCertPath, '-CAkey', t.config.caKeyPath, '-set_serial', `0x${Date.now().toString(16)}01`, '-days', '30', '-extfile', ext, '-sha256']);
  return out.slice(out.indexOf('-----BEGIN'));
}

describe('device keys (pglite)', () => {
  let database: TestDatabase;
  let t: TestService;
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-device-keys-'));

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('never certifies again a key revoked for keyCompromise: CSR, rotation with a CSR, import, another tenant', async () => {
    const compromised = key(dir, 'ec');
    const first = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(compromised) });
    expect(first.status).toBe(201);
    const older = caSigned(t, dir, compromised, 'digitalSignature'); // the same key, certified before
    expect((await t.call('acme', 'POST', `/customer/certificates/${first.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    const again = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(compromised) });
    expect(again.status).toBe(422);
    expect(again.json.code).toBe('KEY_COMPROMISED');
    const rotated = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate', { csr_pem: csr(compromised) });
    expect(rotated.status).toBe(422);
    expect(rotated.json.code).toBe('KEY_COMPROMISED');
    const imported = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: older });
    expect(imported.status).toBe(422);
    expect(imported.json.code).toBe('KEY_COMPROMISED');
    expect((await t.call('other', 'POST', '/customer/devices', { device_id: 'DEVICE-009' })).status).toBe(201);
    const elsewhere = await t.call('other', 'POST', '/customer/devices/DEVICE-009/certificates/csr', { csr_pem: csr(compromised) });
    expect(elsewhere.json.code).toBe('KEY_COMPROMISED');
    // A key revoked for another reason stays usable by its device.
    const retired = key(dir, 'ec');
    const kept = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(retired) });
    expect((await t.call('acme', 'POST', `/customer/certificates/${kept.json.certificate.id}/revoke`, { reason: 'superseded' })).status).toBe(200);
    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(retired) })).status).toBe(201);
  });

  it('refuses one key for two devices of a tenant unless the tenant allows shared keys', async () => {
    const shared = key(dir, 'ec');
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-002' })).status).toBe(201);
    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(shared) })).status).toBe(201);
    const second = await t.call('acme', 'POST', '/customer/devices/DEVICE-002/certificates/csr', { csr_pem: csr(shared) });
    expect(second.status).toBe(409);
    expect(second.json.code).toBe('KEY_IN_USE');
    expect(second.json.detail).toContain('DEVICE-001');
    // The tenant setting: read by every customer, changed by a tenant-admin only, audited.
    expect((await t.call('acme', 'GET', '/customer/settings')).json).toEqual({ tenant_id: 'acme', allow_shared_device_keys: false });
    expect((await t.call('acme', 'PUT', '/customer/settings', { allow_shared_device_keys: true })).status).toBe(403);
    const bad = await t.call('acme', 'PUT', '/customer/settings', { allow_shared_device_keys: 'yes' }, 'tenant-admin');
    expect(bad.status).toBe(422);
    expect(bad.json.code).toBe('VALIDATION_FAILED');
    const allowed = await t.call('acme', 'PUT', '/customer/settings', { allow_shared_device_keys: true }, 'tenant-admin');
    expect(allowed.status, allowed.body).toBe(200);
    expect(allowed.json).toEqual({ tenant_id: 'acme', allow_shared_device_keys: true });
    expect((await t.call('other', 'GET', '/customer/settings')).json.allow_shared_device_keys).toBe(false); // per tenant
    const audit = await t.call('acme', 'GET', '/customer/audit-events');
    const event = audit.json.audit_events.find((e: { action: string }) => e.action === 'tenant_settings.updated');
    expect(event?.details).toMatchObject({ before: { allow_shared_device_keys: false }, after: { allow_shared_device_keys: true } });
    const issued = await t.call('acme', 'POST', '/customer/devices/DEVICE-002/certificates/csr', { csr_pem: csr(shared) });
    expect(issued.status).toBe(201);
    // Turned off again: a third device is refused the key, rotation of a device already holding it too.
    expect((await t.call('acme', 'PUT', '/customer/settings', { allow_shared_device_keys: false }, 'tenant-admin')).status).toBe(200);
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-003' })).status).toBe(201);
    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-003/certificates/csr', { csr_pem: csr(shared) })).json.code).toBe('KEY_IN_USE');
  });

  it('refuses an RSA CSR whose public exponent is 3, and accepts 65537', async () => {
    const weak = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(key(dir, { rsaExponent: 3 })) });
    expect(weak.status).toBe(422);
    expect(weak.json.code).toBe('WEAK_KEY');
    expect(weak.json.detail).toContain('exponent');
    const good = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csr(key(dir, { rsaExponent: 65537 })) });
    expect(good.status).toBe(201);
  });

  it('refuses to import a CA-signed certificate whose RSA exponent is 3', async () => {
    const res = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: caSigned(t, dir, key(dir, { rsaExponent: 3 }), 'digitalSignature') });
    expect(res.status).toBe(422);
    expect(res.json.code).toBe('WEAK_KEY');
  });

  it('refuses to import an EC certificate asserting keyEncipherment (RFC 8813), and imports the same key without it', async () => {
    const ecKey = key(dir, 'ec');
    const bad = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: caSigned(t, dir, ecKey, 'digitalSignature,keyEncipherment') });
    expect(bad.status).toBe(422);
    expect(bad.json.code).toBe('INVALID_CERTIFICATE');
    expect(bad.json.detail).toContain('keyEncipherment');
    const ok = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/import', { cert_pem: caSigned(t, dir, ecKey, 'digitalSignature') });
    expect(ok.status).toBe(201);
  });
});
