/**
 * The check after the CA signs (src/pki/lint/signed-certificate-check.ts): every issued
 * certificate's produced bytes are read back and its CA signature verified by node:crypto, and
 * Node's full X509Certificate parse-back runs for a CA's first certificate and periodically. A
 * signer that goes wrong after the first certificate (when only the cheap check runs) is still
 * caught, and a produced certificate whose envelope differs from the linted TBS in any way is refused.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { signedEnvelope } from '../src/domain/certificate-der.ts';
import { AppError } from '../src/domain/errors.ts';
import { createCertificateAuthority, FULL_PARSE_BACK_EVERY } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem, type CaKeyType, type DeviceCa } from '../src/pki/device-ca.ts';
import { spkiOf } from '../src/pki/keys.ts';
import { checkSignedCertificate, checkSignedCertificateInPool, type SignedCertificateExpectation } from '../src/pki/lint/signed-certificate-check.ts';
import { LintFailure } from '../src/pki/lint/lint-failure.ts';
import { pemBlocks } from '../src/pki/pem.ts';

const DAY = 86_400_000;
const now = new Date();
const request = (cn = 'acme/D1') => {
  const device = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { tenantId: 'acme', commonName: cn, publicKey: { spkiDer: spkiOf(device.publicKey), keyType: 'ec-p256' }, notBefore: now, notAfter: new Date(now.getTime() + 30 * DAY) };
};
const errorOf = async (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e);
const ruleOf = (f: () => void): string | null => {
  try {
    f();
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(LintFailure);
    return (e as LintFailure).rule;
  }
};

/** The rule both ways refuse with (inline and with the signature verified in the thread pool): the same, or null for both. */
const ruleOfBoth = async (der: Uint8Array, expected: SignedCertificateExpectation): Promise<string | null> => {
  const inline = ruleOf(() => checkSignedCertificate(der, expected));
  const inPool = await checkSignedCertificateInPool(der, expected).then(
    () => null,
    (e: unknown) => (expect(e).toBeInstanceOf(LintFailure), (e as LintFailure).rule),
  );
  expect(inPool).toBe(inline);
  return inline;
};

describe.each(['ec-p256', 'rsa-3072'] as const)('the check after signing, CA key %s', (keyType: CaKeyType) => {
  let ca: DeviceCa;
  beforeAll(async () => {
    const created = await createDeviceCa({ now: new Date(now.getTime() - DAY), keyType });
    ca = await deviceCaFromPem(created.certPem, created.keyPem);
  });

  it('a signer that goes wrong after the first certificate (no full parse-back then) is caught: cert.signature', async () => {
    let caSignatures = 0;
    const authority = createCertificateAuthority(ca, {
      crlUrl: 'http://certfleet.test/pki/crl',
      // The third CA signature is over other bytes; the first two are right.
      sign: async (tbs, signer) => signer.sign(signer === ca.signer && ++caSignatures === 3 ? Buffer.concat([tbs, Buffer.of(0)]) : tbs),
    });
    const good = [await authority.issue(request('acme/D1')), await authority.issue(request('acme/D2'))];
    for (const issued of good) expect(new X509Certificate(issued.certPem).verify(ca.publicKey)).toBe(true);
    const error = await errorOf(authority.issue(request('acme/D3')));
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('LINT_FAILED');
    expect((error as AppError).details?.rule).toBe('cert.signature');
    expect(FULL_PARSE_BACK_EVERY).toBeGreaterThan(3); // so the third went through the cheap check only
  });

  it('accepts what the CA signed, and refuses every altered envelope', async () => {
    const authority = createCertificateAuthority(ca, { crlUrl: 'http://certfleet.test/pki/crl' });
    const issued = await authority.issue(request());
    const [der] = pemBlocks(issued.certPem, 'CERTIFICATE');
    const parsed = new X509Certificate(der!);
    expect(parsed.verify(ca.publicKey)).toBe(true);
    // The TBS and the signature, as the produced certificate carries them.
    const tbsLength = der!.readUInt16BE(6) + 4; // SEQUENCE 0x30 0x82 LL LL, then the TBS SEQUENCE 0x30 0x82 LL LL
    expect(der!.subarray(0, 2)).toEqual(Buffer.of(0x30, 0x82));
    expect(der!.subarray(4, 6)).toEqual(Buffer.of(0x30, 0x82));
    const tbs = der!.subarray(4, 4 + tbsLength);
    const algorithm = Buffer.from(ca.signer.algorithmIdentifierDer);
    const rest = der!.subarray(4 + tbsLength);
    expect(rest.subarray(0, algorithm.length)).toEqual(algorithm);
    const signature = rest.subarray(algorithm.length + 3 + (rest[algorithm.length + 1]! & 0x80 ? rest[algorithm.length + 1]! & 0x7f : 0));
    expect(signedEnvelope(tbs, algorithm, signature)).toEqual(der);
    const expected = { tbs, signatureAlgorithmDer: algorithm, hash: ca.signer.hash, caPublicKey: ca.publicKey };

    expect(await ruleOfBoth(der!, expected)).toBeNull();
    // A trailing byte after the certificate.
    expect(await ruleOfBoth(Buffer.concat([der!, Buffer.of(0)]), expected)).toBe('cert.parse');
    // Another TBS than the one linted (one bit of the serial), the signature still the CA's over it.
    const otherTbs = Buffer.from(tbs);
    otherTbs[12] ^= 0x01;
    const otherSigned = signedEnvelope(otherTbs, algorithm, ca.signer.signSync(otherTbs));
    expect(await ruleOfBoth(otherSigned, expected)).toBe('cert.signature');
    // An outer signatureAlgorithm other than the TBS's (SHA-384 for SHA-256 or the reverse).
    const otherAlgorithm = Buffer.from(algorithm);
    const last = algorithm.indexOf(Buffer.of(0x05, 0x00)) > 0 ? algorithm.indexOf(Buffer.of(0x05, 0x00)) - 1 : algorithm.length - 1;
    otherAlgorithm[last] ^= 0x01;
    expect(await ruleOfBoth(signedEnvelope(tbs, otherAlgorithm, signature), expected)).toBe('cert.signature');
    // A signature with unused bits, and a signature by another key.
    const unused = Buffer.from(signedEnvelope(tbs, algorithm, signature));
    unused[unused.length - signature.length - 1] = 1;
    expect(await ruleOfBoth(unused, expected)).toBe('cert.signature');
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(await ruleOfBoth(der!, { ...expected, caPublicKey: stranger })).toBe('cert.signature');
    // A signature over other bytes.
    const badSig = signedEnvelope(tbs, algorithm, ca.signer.signSync(Buffer.concat([tbs, Buffer.of(0)])));
    expect(await ruleOfBoth(badSig, expected)).toBe('cert.signature');
  });
});
