/**
 * Tenant CA scope binding on certfleet's own device-facing surfaces (issue 19, per-tenant CAs):
 * tenant TA holds its own issuing CA (imported with its key) and forges certificates whose CN
 * names tenant TB's device `TB/victim`, even with the victim's serial number. None of them may
 * renew or recover as TB/victim, over EST (simplereenroll, recovery with an expired certificate)
 * or the MQTT renewal and recovery use cases (signed requests), and a claim certificate of a
 * manufacturer CA that TA registered (or of TA's own device CA) does not onboard into TB.
 * certfleet recognises a presented certificate by its own records (the certificate's SHA-256
 * fingerprint within the CN's tenant, so issuer and serial included), never by CN alone.
 * Positive controls: the victim's real certificate renews over EST and MQTT, and TB's own claim
 * CA onboards into TB, so each refusal comes from the binding and not from a dead path.
 */
import 'reflect-metadata';
import { createPublicKey, randomUUID, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { generateDeviceKey } from '../src/pki/keys.ts';
import { renewalSigningText } from '../src/renewal/device-renewal.ts';
import { run } from './support/openssl.ts';
import { credentialFrom, deviceCsr, estRequest, serialOf, startRolloverRig, type Credential, type RolloverRig } from './support/rollover.ts';
import { scaled } from './support/timeouts.ts';

let rig: RolloverRig;
let taCa: DeviceCa;
let taCaFiles: { cert: string; key: string };
let victim: Credential;

const file = (name: string) => join(rig.tmp, 'certs', name);

function mustRun(cmd: string, args: string[]) {
  const r = run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
  return r.out;
}

/** What TA does with its CA key: any CN, any serial, signed by openssl. */
function forge(name: string, commonName: string, serialHex?: string): Credential {
  const key = file(`${name}.key`);
  const csr = file(`${name}.csr`);
  const cert = file(`${name}.crt`);
  const ext = file(`${name}.ext`);
  mustRun('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${commonName.replace(/([/+])/g, '\\$1')}`, '-out', csr]);
  writeFileSync(ext, 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n');
  mustRun('openssl', ['x509', '-req', '-in', csr, '-CA', taCaFiles.cert, '-CAkey', taCaFiles.key, ...(serialHex ? ['-set_serial', `0x${serialHex}`] : ['-CAcreateserial']), '-days', '30', '-extfile', ext, '-out', cert]);
  return credentialFrom(readFileSync(cert, 'utf8'), readFileSync(key, 'utf8'));
}

/** A certificate of TA's CA for `commonName` that expired yesterday (for the recovery paths). */
async function forgeExpired(commonName: string): Promise<Credential> {
  const key = await generateDeviceKey('ec-p256');
  const now = Date.now();
  const issued = await createCertificateAuthority(taCa, { crlUrl: 'http://localhost/pki/ca/ta/crl' }).issue({
    commonName,
    publicKey: { spkiDer: createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'der' }), keyType: 'ec-p256' },
    notBefore: new Date(now - 10 * 86_400_000),
    notAfter: new Date(now - 86_400_000),
  } as never);
  return credentialFrom(issued.certPem, key.privateKeyPem);
}

/** A signed MQTT renewal/recovery request (docs/device-renewal.md) made with `cred`'s key. */
function signedRequest(cred: Credential, csrPem: string) {
  const requestId = `r-${randomUUID().slice(0, 8)}`;
  const signedAt = Math.floor(Date.now() / 1000);
  const signature = sign('sha256', Buffer.from(renewalSigningText(requestId, signedAt, csrPem)), cred.keyPem).toString('base64');
  return { requestId, csrPem, certPem: cred.certPem, signedAt, signature };
}

const csrPem = (base64: string) => `-----BEGIN CERTIFICATE REQUEST-----\n${base64.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE REQUEST-----\n`;

async function certificatesOf(tenant: string, deviceId: string): Promise<number> {
  const res = await rig.t.call(tenant, 'GET', `/api/v1/customer/certificates?device_id=${deviceId}&limit=100`);
  expect(res.status, res.body).toBe(200);
  return (res.json.items ?? res.json.certificates).length;
}

const codeOf = async (p: Promise<unknown>) => p.then(() => 'accepted', (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);

beforeAll(async () => {
  rig = await startRolloverRig('ca-scope-renewal');
  const { t } = rig;
  expect((await t.call('TA', 'POST', '/api/v1/customer/devices', { device_id: 'ta-known' })).status).toBe(201);
  expect((await t.call('TB', 'POST', '/api/v1/customer/devices', { device_id: 'victim' })).status).toBe(201);
  const gen = await t.call('TB', 'POST', '/api/v1/customer/devices/victim/certificates/generate', { key_type: 'ec-p256' });
  expect(gen.status, gen.body).toBe(201);
  victim = credentialFrom(gen.json.cert_pem, gen.json.private_key_pem);

  // Valid since 30 days: it can sign the expired certificates of the recovery cases.
  const pem = await createDeviceCa({ now: new Date(Date.now() - 30 * 86_400_000), commonName: 'Tenant TA own CA (renewal test)' });
  taCa = await deviceCaFromPem(pem.certPem, pem.keyPem);
  taCaFiles = { cert: file('ta-ca.crt'), key: file('ta-ca.key') };
  writeFileSync(taCaFiles.cert, pem.certPem);
  writeFileSync(taCaFiles.key, pem.keyPem, { mode: 0o600 });
  const imported = await t.call(null, 'POST', '/api/v1/operator/cas/import', { cert_pem: pem.certPem, key_pem: pem.keyPem, tenant_id: 'TA' }, 'operator-admin');
  expect(imported.status, imported.body).toBe(201);
  const id = (imported.json.ca ?? imported.json).id as string;
  expect((await t.call(null, 'POST', `/api/v1/operator/cas/${id}/activate`, {}, 'operator-admin')).status).toBe(200);
  // TB allows recovery, so the recovery paths are live for TB's real devices.
  expect((await t.call('TB', 'PUT', '/api/v1/customer/renewal-policy', { recovery_window_days: 30 }, 'tenant-admin')).status).toBe(200);
  // The EST listener must trust TA's CA (its devices re-enroll there too): the refusals below are certfleet's, not TLS's.
  await t.service.crl.settled();
}, scaled(180_000));

afterAll(async () => {
  await rig?.close();
}, scaled(60_000));

describe("a tenant CA's certificate for another tenant's device CN renews and recovers nothing", () => {
  it('EST simplereenroll: refused (403), even with the victim’s serial number; nothing issued to TB/victim', async () => {
    const before = await certificatesOf('TB', 'victim');
    const ta = forge('ta-own-device', 'TA/ta-known');
    const own = await estRequest(rig.estUrl, rig.combinedCa, ta, 'GET', 'cacerts');
    expect(own.status, 'TA’s CA is trusted by the EST listener (the test is not vacuous)').toBe(200);
    for (const forged of [forge('forged', 'TB/victim'), forge('forged-serial', 'TB/victim', serialOf(new x509.X509Certificate(victim.certPem)))]) {
      const { csrBase64 } = await deviceCsr('TB/victim');
      const res = await estRequest(rig.estUrl, rig.combinedCa, forged, 'POST', 'simplereenroll', csrBase64);
      expect(res.status, res.body).toBe(403);
      expect(res.body).toMatch(/unknown certificate/);
    }
    expect(await certificatesOf('TB', 'victim')).toBe(before);
  });

  it('EST recovery with an expired forged certificate: refused; nothing issued', async () => {
    const before = await certificatesOf('TB', 'victim');
    const expired = await forgeExpired('TB/victim');
    const { csrBase64 } = await deviceCsr('TB/victim');
    const res = await estRequest(rig.estUrl, rig.combinedCa, expired, 'POST', 'simplereenroll', csrBase64);
    expect(res.status, res.body).toBe(403);
    expect(res.body).toMatch(/unknown certificate/);
    expect(await certificatesOf('TB', 'victim')).toBe(before);
  });

  it('MQTT renewal and recovery (signed requests): refused as an unknown certificate', async () => {
    const renewal = rig.t.service.renewal.renewal;
    const { csrBase64 } = await deviceCsr('TB/victim');
    const csr = csrPem(csrBase64);
    const forged = forge('forged-mqtt', 'TB/victim', serialOf(new x509.X509Certificate(victim.certPem)));
    expect(await codeOf(renewal.authenticateSignedRequest('TB/victim', signedRequest(forged, csr)))).toMatch(/^FORBIDDEN: .*unknown certificate/);
    expect(await codeOf(renewal.recoverWithSignedRequest(signedRequest(await forgeExpired('TB/victim'), csr)))).toMatch(/^FORBIDDEN: .*unknown certificate/);
    // Positive control: the victim's own certificate authenticates the same way.
    const device = await renewal.authenticateSignedRequest('TB/victim', signedRequest(victim, csr));
    expect(`${device.tenantId}/${device.deviceId}`).toBe('TB/victim');
  });

  it('positive control: the victim’s own certificate re-enrolls over EST', async () => {
    const { csrBase64 } = await deviceCsr('TB/victim');
    const res = await estRequest(rig.estUrl, rig.combinedCa, victim, 'POST', 'simplereenroll', csrBase64);
    expect(res.status, res.body).toBe(200);
  });

  it('claim onboarding: a claim CA TA registered (or TA’s own device CA) does not onboard into TB; TB’s own claim CA does', async () => {
    const { t } = rig;
    const claims = t.service.renewal.claims;
    // Manufacturer CAs: one TA registers, one TB registers.
    const mfrA = await createDeviceCa({ now: new Date(), commonName: 'Manufacturer of TA' });
    const mfrB = await createDeviceCa({ now: new Date(), commonName: 'Manufacturer of TB' });
    expect((await t.call('TA', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrA.certPem }, 'tenant-admin')).status).toBe(201);
    expect((await t.call('TB', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrB.certPem }, 'tenant-admin')).status).toBe(201);
    const claimOf = async (ca: { certPem: string; keyPem: string }, cn: string) => {
      const loaded = await deviceCaFromPem(ca.certPem, ca.keyPem);
      const key = await generateDeviceKey('ec-p256');
      const issued = await createCertificateAuthority(loaded, { crlUrl: 'http://localhost/none' }).issue({
        commonName: cn,
        publicKey: { spkiDer: createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'der' }), keyType: 'ec-p256' },
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
      } as never);
      return Buffer.from(new x509.X509Certificate(issued.certPem).rawData);
    };
    const csrFor = async (cn: string) => csrPem((await deviceCsr(cn)).csrBase64);
    expect(await codeOf(claims.enrollWithClaim('TB', await claimOf(mfrA, 'claimed-by-ta'), await csrFor('claimed-by-ta'), 'est'))).toMatch(/^CLAIM_CA_UNKNOWN/);
    expect(await codeOf(claims.enrollWithClaim('TB', await claimOf({ certPem: taCa.certPem, keyPem: readFileSync(taCaFiles.key, 'utf8') }, 'victim'), await csrFor('victim'), 'est'))).toMatch(/^CLAIM_CA_UNKNOWN/);
    const ok = await claims.enrollWithClaim('TB', await claimOf(mfrB, 'tb-new'), await csrFor('tb-new'), 'est');
    expect(ok.device_id).toBe('tb-new');
  });
});
