/**
 * A Device CA certificate signed through a KeySigner (the key may sit in a token): self-signed, or
 * an intermediate signed by a certfleet root; and `ca create --key-uri`'s library half: a key
 * generated in the token plus its CA certificate.
 */
import { X509Certificate } from 'node:crypto';
import { signedEnvelope } from '../../domain/certificate-der.ts';
import { AppError } from '../../domain/errors.ts';
import { throwawayKeyForAsync } from '../crl-signer.ts';
import { caLintProfile } from '../lint/ca-profile.ts';
import { lintCaCertificate } from '../lint/ca-certificate-lint.ts';
import { runLint } from '../lint/lint-failure.ts';
import { fileKeySigner } from './file-signer.ts';
import { children, nth, readSingle, tlvBytes } from '../../domain/der.ts';
import { randomSerialHex } from '../serial-number.ts';
import { x509 } from '../x509.ts';
import { toPem } from '../pem.ts';
import type { KeySigner } from './key-signer.ts';
import { generateKeyInToken, type TokenKeyType } from './pkcs11/generate-key.ts';
import { openPkcs11Signer } from './pkcs11/pkcs11-signer.ts';

export interface CaCertificateOptions {
  commonName?: string;
  organization?: string;
  validityYears?: number;
  now: Date;
  /** BasicConstraints pathLenConstraint: 0 (default) for a CA that signs device certificates, 1 for a root over intermediates. */
  pathLength?: number;
  /**
   * The root that signs this intermediate (its certificate; `signer` is then the root's key).
   * Absent: self-signed by `signer`. An intermediate's validity ends at its root's at the latest.
   */
  issuer?: { certDer: Uint8Array; crlDistributionPointUrl: string } | null;
  /** The new CA's public key (DER SPKI) when the signer is its root's; default: the signer's own. */
  subjectSpkiDer?: Uint8Array;
}

const WEB_ALGORITHM: Record<string, Algorithm & { hash: string }> = {
  sha256: { name: 'ECDSA', hash: 'SHA-256' },
  sha384: { name: 'ECDSA', hash: 'SHA-384' },
};

/**
 * A CA certificate signed through a KeySigner (the key may sit in a token): BasicConstraints CA
 * (critical, pathLen `pathLength`), keyCertSign + cRLSign + digitalSignature, SKI; an intermediate
 * also gets its root's key identifier as AKI. Linted before the signing key signs (a copy signed by
 * a throwaway key of the same algorithm: lint/ca-certificate-lint.ts), verified after.
 */
export async function createCaCertificate(signer: KeySigner, options: CaCertificateOptions): Promise<string> {
  const issuer = options.issuer ? caLintProfile(options.issuer.certDer) : null;
  if (options.issuer && !issuer!.publicKey.equals(signer.publicKey)) throw new Error("the signer is not the root's key");
  const subjectSpki = new Uint8Array(options.subjectSpkiDer ?? signer.spkiDer);
  let notBefore = new Date(Math.floor((options.now.getTime() - 60_000) / 1000) * 1000);
  let notAfter = new Date(Math.floor(options.now.getTime() / 1000) * 1000);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + (options.validityYears ?? 10));
  if (issuer) {
    if (notBefore < issuer.notBefore) notBefore = issuer.notBefore;
    if (notAfter > issuer.notAfter) notAfter = issuer.notAfter;
  }
  const commonName = options.commonName ?? 'certfleet Device CA';
  const name = `CN=${commonName}, O=${options.organization ?? 'certfleet'}`;
  const pathLength = options.pathLength ?? 0;
  const rsa = signer.keyType.startsWith('rsa');
  const subjectKey = new x509.PublicKey(subjectSpki);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
    await x509.SubjectKeyIdentifierExtension.create(subjectKey),
  ];
  if (issuer?.subjectKeyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(issuer.subjectKeyId.toString('hex'), false));
  // An intermediate names its root's CRL (the Issuing Distribution Point the root's served CRL carries: same scope for OpenSSL).
  if (options.issuer) extensions.push(new x509.CRLDistributionPointsExtension([options.issuer.crlDistributionPointUrl], false));
  // The library encodes the TBS around a placeholder signature; the signer then signs those exact bytes.
  const draft = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: name,
    issuer: issuer ? new x509.X509Certificate(new Uint8Array(options.issuer!.certDer)).subjectName : name,
    notBefore,
    notAfter,
    publicKey: subjectSpki,
    signingAlgorithm: rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : WEB_ALGORITHM[signer.hash],
    signature: new Uint8Array(rsa ? 256 : 2 * (signer.hash === 'sha384' ? 48 : 32)).fill(1),
    extensions,
  });
  const der = Buffer.from(draft.rawData);
  const parts = children(der, readSingle(der));
  const [tbsTlv, algTlv] = [nth(parts, 0, 'tbsCertificate'), nth(parts, 1, 'signatureAlgorithm')];
  const tbs = Buffer.from(tlvBytes(der, tbsTlv));
  if (!Buffer.from(tlvBytes(der, algTlv)).equals(signer.algorithmIdentifierDer)) {
    throw new Error(`cannot make a CA certificate for a ${signer.keyType} key: signature algorithm mismatch`);
  }
  // Lint a copy signed by a throwaway key of the signer's algorithm; only then does the CA key sign.
  const throwaway = await throwawayKeyForAsync(signer.publicKey);
  const copy = signedEnvelope(tbs, signer.algorithmIdentifierDer, await fileKeySigner(throwaway.privateKey, 'throwaway lint key').sign(tbs));
  const expected = { commonName, spkiDer: subjectSpki, pathLength, crlDistributionPointUrl: options.issuer?.crlDistributionPointUrl ?? null };
  runLint(() => lintCaCertificate(copy, { issuer: issuer ? { ...issuer, publicKey: throwaway.publicKey } : null, verifyWith: throwaway.publicKey, expected }));
  const signed = signedEnvelope(tbs, signer.algorithmIdentifierDer, await signer.sign(tbs));
  if (!new X509Certificate(signed).verify(signer.publicKey)) {
    throw new AppError('LINT_FAILED', 'lint rule ca.signature failed: the CA certificate signature does not verify with the signing key', { rule: 'ca.signature' });
  }
  return toPem('CERTIFICATE', signed);
}

export interface TokenCaOptions extends CaCertificateOptions {
  /** Names the token and the new key's label (object=), e.g. pkcs11:token=certfleet;object=device-ca-2. */
  uri: string;
  modulePath: string;
  pin: string;
  keyType?: TokenKeyType;
}

/**
 * Generates the CA key in the token (sensitive, not extractable) and self-signs its certificate
 * there; with `issuerSigner` (and `issuer`), the root's key signs it instead (an intermediate).
 */
export async function createDeviceCaInToken(options: TokenCaOptions & { issuerSigner?: KeySigner }): Promise<{ certPem: string; keyUri: string }> {
  const key = await generateKeyInToken(options);
  if (options.issuerSigner) {
    return { certPem: await createCaCertificate(options.issuerSigner, { ...options, subjectSpkiDer: key.spkiDer }), keyUri: key.uri };
  }
  const signer = await openPkcs11Signer({ uri: key.uri, modulePath: options.modulePath, pin: options.pin, maxSessions: 1 });
  try {
    return { certPem: await createCaCertificate(signer, options), keyUri: key.uri };
  } finally {
    await signer.close();
  }
}
