/**
 * The pre-signing lint of issued certificates (src/pki/lint/issued-tbs-lint.ts): the full lint
 * (throwaway-signed copy, lintCertificate) runs for the first certificate of each shape; every
 * later TBS of that shape is still linted on its varying fields (serial, validity, subject, key,
 * SubjectKeyIdentifier) before the CA key signs. A faulty encoder that breaks one of those
 * fields after the shape was learnt is refused, and the CA key never signs it.
 */
import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeDeviceTbs, type DeviceProfile } from '../src/domain/certificate-der.ts';
import { AppError } from '../src/domain/errors.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { throwawayKeyFor } from '../src/pki/crl-signer.ts';
import { createDeviceCa, deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { spkiOf } from '../src/pki/keys.ts';
import type { KeySigner } from '../src/pki/kms/key-signer.ts';

const DAY = 86_400_000;
const now = new Date();
type Input = Parameters<typeof encodeDeviceTbs>[1];
type Fault = (profile: DeviceProfile, c: Input) => Buffer;

const request = (cn = 'acme/D1') => {
  const device = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { tenantId: cn.split('/')[0] ?? 'acme', commonName: cn, publicKey: { spkiDer: spkiOf(device.publicKey), keyType: 'ec-p256' }, notBefore: now, notAfter: new Date(now.getTime() + 30 * DAY) };
};

describe('issued certificates: full lint once per shape, varying fields every time', () => {
  let ca: DeviceCa;
  beforeAll(async () => {
    const created = await createDeviceCa({ now: new Date(now.getTime() - DAY), keyType: 'ec-p256' });
    ca = await deviceCaFromPem(created.certPem, created.keyPem);
  });

  /** An authority whose encoder can be swapped for a faulty one, counting the CA's and the throwaway key's signatures. */
  function authorityWithSwitch() {
    let fault: Fault | null = null;
    const used: KeySigner[] = [];
    const authority = createCertificateAuthority(ca, {
      crlUrl: 'http://certfleet.test/pki/crl',
      encodeTbs: (profile, c) => (fault ? fault(profile, c) : encodeDeviceTbs(profile, c)),
      sign: async (tbs, signer) => {
        used.push(signer);
        return signer.sign(tbs);
      },
    });
    return {
      authority,
      setFault: (f: Fault | null) => (fault = f),
      caSignatures: () => used.filter((s) => s === ca.signer).length,
      throwawaySignatures: () => used.filter((s) => s.publicKey.equals(throwawayKeyFor(ca.publicKey).publicKey)).length,
    };
  }

  it('one throwaway-signed full lint for many certificates of one shape; each CA-signed certificate verifies', async () => {
    const { authority, caSignatures, throwawaySignatures } = authorityWithSwitch();
    for (let i = 0; i < 20; i++) {
      const issued = await authority.issue(request(`acme/D${i}`));
      expect((await authority.verifyIssued(issued.certPem)).commonName).toBe(`acme/D${i}`);
    }
    expect(caSignatures()).toBe(20);
    expect(throwawaySignatures()).toBe(1);
  });

  const faults: [string, Fault, string][] = [
    ['a negative serial', (p, c) => {
      const tbs = encodeDeviceTbs(p, c);
      expect(tbs.subarray(0, 2)).toEqual(Buffer.of(0x30, 0x82)); // SEQUENCE, two length octets
      expect(tbs[9]).toBe(0x02); // after the version [0]: the serial INTEGER
      tbs[11] |= 0x80; // its first content octet: the sign bit
      return tbs;
    }, 'cert.serial.sign'],
    ['a short serial', (p, c) => encodeDeviceTbs(p, { ...c, serial: Buffer.of(0x01, 0x02) }), 'cert.serial.size'],
    ['another CN', (p, c) => encodeDeviceTbs(p, { ...c, commonName: 'globex/D1' }), 'cert.subject.cn'],
    ['another key', (p, c) => encodeDeviceTbs(p, { ...c, subjectPublicKeyInfoDer: spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey) }), 'cert.public_key'],
    ['notAfter past the CA', (p, c) => encodeDeviceTbs(p, { ...c, notAfter: new Date(Date.UTC(2049, 0, 1)) }), 'cert.validity.within_ca'],
    ['notBefore after notAfter', (p, c) => encodeDeviceTbs(p, { ...c, notBefore: c.notAfter, notAfter: c.notBefore }), 'cert.validity.order'],
  ];

  it.each(faults)('after the shape was learnt, %s is refused and the CA key never signs it', async (_what, fault, rule) => {
    const { authority, setFault, caSignatures } = authorityWithSwitch();
    await authority.issue(request());
    await authority.issue(request());
    expect(caSignatures()).toBe(2);
    setFault(fault);
    const error = await authority.issue(request()).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('LINT_FAILED');
    expect((error as AppError).details?.rule).toBe(rule);
    expect(caSignatures()).toBe(2);
  });

  it('a changed shape (KeyUsage with keyCertSign) after the shape was learnt: the full lint runs again and refuses it', async () => {
    const { authority, setFault, caSignatures, throwawaySignatures } = authorityWithSwitch();
    await authority.issue(request());
    expect(throwawaySignatures()).toBe(1);
    setFault((profile, c) => {
      const shared = Buffer.from(profile.sharedExtensions);
      const at = shared.indexOf(Buffer.from('300e0603551d0f0101ff040403020780', 'hex'));
      Buffer.from('300e0603551d0f0101ff040403020284', 'hex').copy(shared, at);
      return encodeDeviceTbs({ ...profile, sharedExtensions: shared }, c);
    });
    const error = await authority.issue(request()).then(() => null, (e: unknown) => e);
    expect((error as AppError).details?.rule).toBe('cert.key_usage');
    expect(throwawaySignatures()).toBe(2);
    expect(caSignatures()).toBe(1);
  });
});
