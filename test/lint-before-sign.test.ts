/**
 * Lint before the CA signs (issue 23 item 3, Boulder's way): a certificate or CRL that fails the
 * lint never gets a CA signature. A spy counts the signatures made with the CA key while a faulty
 * encoder is injected; the lint reads a copy signed by a throwaway key of the same algorithm, and
 * the CA-signed result is still parsed back and verified.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { KeySigner } from '../src/pki/kms/key-signer.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareCrl } from '../src/crl/build-crl.ts';
import { createPublishCrl, crlAuthorityFor, type CrlAuthority } from '../src/crl/publish-crl.ts';
import { encodeDeviceTbs, type DeviceProfile } from '../src/domain/certificate-der.ts';
import { AppError } from '../src/domain/errors.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { throwawayKeyFor } from '../src/pki/crl-signer.ts';
import { createDeviceCa, deviceCaFromPem, type CaKeyType, type DeviceCa } from '../src/pki/device-ca.ts';
import { spkiOf } from '../src/pki/keys.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { createManualClock } from '../src/domain/clock.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';

const DAY = 86_400_000;
const now = new Date();

async function newCa(keyType: CaKeyType): Promise<DeviceCa> {
  const created = await createDeviceCa({ now: new Date(now.getTime() - DAY), keyType });
  return deviceCaFromPem(created.certPem, created.keyPem);
}

const errorOf = async (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e);

describe.each(['ec-p256', 'rsa-3072'] as const)('certificates, CA key %s', (keyType) => {
  let ca: DeviceCa;
  beforeAll(async () => {
    ca = await newCa(keyType);
  });

  /** A CertificateAuthority whose signatures go through a spy that counts those made with the CA key. */
  function spied(encodeTbs?: typeof encodeDeviceTbs) {
    const used: KeySigner[] = [];
    const authority = createCertificateAuthority(ca, {
      crlUrl: 'http://certfleet.test/pki/crl',
      encodeTbs,
      sign: async (tbs, signer) => {
        used.push(signer);
        return signer.sign(tbs);
      },
    });
    const caSignatures = () => used.filter((signer) => signer === ca.signer).length;
    const throwawaySignatures = () => used.filter((signer) => signer.publicKey.equals(throwawayKeyFor(ca.publicKey).publicKey)).length;
    return { authority, caSignatures, throwawaySignatures };
  }

  const request = () => {
    const device = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { tenantId: 'acme', commonName: 'acme/D1', publicKey: { spkiDer: spkiOf(device.publicKey), keyType: 'ec-p256' }, notBefore: now, notAfter: new Date(now.getTime() + 30 * DAY) };
  };

  it('a good certificate: the throwaway key signs the lint copy, then the CA key signs once', async () => {
    const { authority, caSignatures, throwawaySignatures } = spied();
    const issued = await authority.issue(request());
    expect(throwawaySignatures()).toBe(1);
    expect(caSignatures()).toBe(1);
    expect((await authority.verifyIssued(issued.certPem)).serialHex).toBe(issued.serialHex);
  });

  it('an encoder breaking the profile: LINT_FAILED and the CA key never signed', async () => {
    const keyCertSign = (profile: DeviceProfile, c: Parameters<typeof encodeDeviceTbs>[1]) => {
      const ku = Buffer.from('300e0603551d0f0101ff040403020780', 'hex'); // digitalSignature
      const bad = Buffer.from('300e0603551d0f0101ff040403020284', 'hex'); // digitalSignature + keyCertSign
      const shared = Buffer.from(profile.sharedExtensions);
      const at = shared.indexOf(ku);
      expect(at).toBeGreaterThanOrEqual(0);
      bad.copy(shared, at);
      return encodeDeviceTbs({ ...profile, sharedExtensions: shared }, c);
    };
    const { authority, caSignatures, throwawaySignatures } = spied(keyCertSign);
    const error = await errorOf(authority.issue(request()));
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('LINT_FAILED');
    expect((error as AppError).details?.rule).toBe('cert.key_usage');
    expect(throwawaySignatures()).toBe(1);
    expect(caSignatures()).toBe(0);
  });

  it('a CA signature that does not verify is still caught after signing (parsed back, verified)', async () => {
    let calls = 0;
    const authority = createCertificateAuthority(ca, {
      crlUrl: 'http://certfleet.test/pki/crl',
      // The throwaway copy is signed right; the CA's signature is over other bytes.
      sign: async (tbs, signer) => signer.sign(calls++ === 0 ? tbs : Buffer.concat([tbs, Buffer.of(0)])),
    });
    const error = await errorOf(authority.issue(request()));
    expect((error as AppError).code).toBe('LINT_FAILED');
    expect((error as AppError).details?.rule).toBe('cert.signature');
  });
});

describe('CRLs', () => {
  let database: TestDatabase;
  let ca: DeviceCa;
  const clock = createManualClock(now);
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    ca = await newCa('ec-p256');
  });
  afterAll(async () => {
    await database?.close();
  });

  function spied(authority: CrlAuthority) {
    let count = 0;
    const signer = { algorithmIdentifierDer: authority.signer.algorithmIdentifierDer, sign: (tbs: Uint8Array) => (count++, authority.signer.sign(tbs)) };
    return { authority: { ...authority, signer }, caSignatures: () => count };
  }
  const settings = { validityHours: 168, distributionPointUrl: 'http://certfleet.test/pki/crl' };

  it('the lint key is a throwaway of the CA key’s algorithm, made once per process', () => {
    const a = crlAuthorityFor(ca);
    expect(Buffer.from(a.lintSigner.algorithmIdentifierDer).equals(Buffer.from(a.signer.algorithmIdentifierDer))).toBe(true);
    expect(throwawayKeyFor(ca.publicKey)).toBe(throwawayKeyFor(ca.publicKey));
    expect(throwawayKeyFor(ca.publicKey).publicKey.equals(ca.publicKey)).toBe(false);
  });

  it('a faulty encoder (CRL number going backwards): LINT_FAILED, nothing stored, and the CA key never signed', async () => {
    const storage = createStorage(database.db);
    const good = spied(crlAuthorityFor(ca));
    const first = await createPublishCrl({ storage, clock, authority: good.authority, settings })();
    expect(first.published).toBe(true);
    expect(good.caSignatures()).toBe(2); // the file variant and the served one

    const faulty = spied(crlAuthorityFor(ca));
    const publish = createPublishCrl({ storage, clock, authority: faulty.authority, settings, prepare: (input) => prepareCrl({ ...input, crlNumber: 1n }) });
    const error = await errorOf(publish());
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('LINT_FAILED');
    expect((error as AppError).details?.rule).toBe('crl.number');
    expect(faulty.caSignatures()).toBe(0);
    const stored = await storage.asOperator(({ crl }) => crl.readCrlInfo(good.authority.issuerKeyId));
    expect(stored?.crlNumber).toBe(first.published ? first.crl.crlNumber : -1n);
  });
});
