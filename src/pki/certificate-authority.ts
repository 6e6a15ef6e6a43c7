import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import type { CertificateAuthority, IssueRequest, IssuedCertificate, VerifiedCertificate } from '../app/ports.ts';
import type { DeviceCa } from './device-ca.ts';
import type { CaDirectory, LoadedCa } from './ca-directory.ts';
import { isIssuingActive } from '../domain/ca.ts';
import { randomSerialHex } from './serial-number.ts';
import { describeKey, publicKeyFromSpki } from './keys.ts';
import { x509 } from './x509.ts';
import { deviceProfile, encodeDeviceTbs, signedEnvelope } from '../domain/certificate-der.ts';
import { children, nth, readSingle } from '../domain/der.ts';
import { caIdentityFromCertificate, throwawayKeyForAsync } from './crl-signer.ts';
import { fileKeySigner } from './kms/file-signer.ts';
import type { KeySigner } from './kms/key-signer.ts';
import { toPem } from './pem.ts';
import { caLintProfile } from './lint/ca-profile.ts';
import { lintCertificate } from './lint/certificate-lint.ts';
import { runLint, runLintAsync } from './lint/lint-failure.ts';
import { createIssuedTbsLint } from './lint/issued-tbs-lint.ts';
import { checkSignedCertificateInPool } from './lint/signed-certificate-check.ts';

/**
 * The signed certificate parsed back by Node in full (X509Certificate + verify) for the first
 * certificate of each CA and then every this many; every certificate gets checkSignedCertificate
 * (the envelope read back, the TBS the linted one, the signature verified by node:crypto).
 */
export const FULL_PARSE_BACK_EVERY = 1000;

const notConfigured = () => new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');

/** Serial numbers are stored as lower-case hex without leading zeros (the seed's format). */
export const normaliseSerial = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, '');

const fingerprintOf = (der: ArrayBuffer | Uint8Array): string =>
  createHash('sha256').update(der instanceof Uint8Array ? der : new Uint8Array(der)).digest('hex');

/** SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
function keyIdOf(spki: Buffer): Buffer {
  const outer = readSingle(spki);
  const bits = nth(children(spki, outer), 1, 'subjectPublicKey');
  return createHash('sha1').update(spki.subarray(bits.valueStart + 1, bits.end)).digest();
}

/** Each CA's certificate parsed once (not once per certificate checked against it). */
const parsedCas = new WeakMap<DeviceCa, X509Certificate>();
function parsedCa(ca: DeviceCa): X509Certificate {
  let parsed = parsedCas.get(ca);
  if (!parsed) parsedCas.set(ca, (parsed = new X509Certificate(ca.certDer)));
  return parsed;
}

/** Issued by `ca`: its issuer name is the CA's subject and the CA's key verifies its signature. */
function signedBy(certPem: string, ca: DeviceCa): boolean {
  try {
    const cert = new X509Certificate(certPem);
    return cert.checkIssued(parsedCa(ca)) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** The CA-signed certificate, parsed back (by Node's X509Certificate) and verified with the CA public key. */
function verifyCaSignature(der: Buffer, caPublicKey: KeyObject): void {
  let ok = false;
  try {
    ok = new X509Certificate(der).verify(caPublicKey);
  } catch {
    ok = false;
  }
  if (!ok) throw new AppError('LINT_FAILED', 'lint rule cert.signature failed: the CA signature does not verify with the CA public key', { rule: 'cert.signature' });
}

export interface CertificateAuthorityOptions {
  crlUrl: string;
  /** Test seams: a faulty encoder or signer must be caught by the lint before the CA key signs, or by the verification after. */
  encodeTbs?: typeof encodeDeviceTbs;
  sign?: (tbs: Buffer, signer: KeySigner) => Promise<Uint8Array>;
}

/**
 * Issues device client certificates: CN tenant/device, BasicConstraints CA=false
 * (critical), KeyUsage digitalSignature (critical), EKU clientAuth, SKI, AKI and the CRL
 * distribution point. The TBS is encoded directly (the shared extensions once per CA) and
 * signed by the CA's KeySigner (kms/: a file key in libuv's thread pool, or a PKCS#11 token). Lint before signing (Boulder's way): a copy signed by a
 * throwaway key of the CA key's algorithm is linted (lint/) first, and only a TBS that passed gets
 * the CA's signature; the signed certificate is then read back and its CA signature verified
 * (lint/signed-certificate-check.ts; Node's full X509Certificate parse-back as well for a CA's first
 * certificate and every FULL_PARSE_BACK_EVERY).
 */
export function createCertificateAuthority(ca: DeviceCa | null, options: CertificateAuthorityOptions): CertificateAuthority {
  const encodeTbs = options.encodeTbs ?? encodeDeviceTbs;
  const signTbs = options.sign ?? ((tbs: Buffer, signer: KeySigner) => signer.sign(tbs));
  const identity = ca ? caIdentityFromCertificate(ca.certDer) : null;
  const lintCa = ca ? caLintProfile(ca.certDer) : null;
  // Made once per algorithm per process, in the background from here (an RSA key takes a while): the first issuance waits for it.
  const throwaway = ca ? throwawayKeyForAsync(ca.signer.publicKey) : null;
  throwaway?.catch(() => undefined); // reported by the first issuance
  const lintCopyCa = lintCa && throwaway ? throwaway.then((pair) => ({ ...lintCa, publicKey: pair.publicKey, throwawaySigner: fileKeySigner(pair.privateKey, 'throwaway lint key') })) : null;
  lintCopyCa?.catch(() => undefined);
  const signer = ca ? ca.signer : null;
  let sinceParseBack = FULL_PARSE_BACK_EVERY; // the first certificate is parsed back in full
  // Lint a copy signed by the throwaway key (the full lint) once per certificate shape, and the varying fields of every TBS (lint/issued-tbs-lint.ts).
  const tbsLint =
    lintCa && lintCopyCa
      ? createIssuedTbsLint({
          ca: lintCa,
          fullLint: async (tbs, expected) => {
            const { throwawaySigner, ...lintCopyProfile } = await lintCopyCa;
            const copy = signedEnvelope(tbs, profile!.signatureAlgorithmDer, await signTbs(tbs, throwawaySigner));
            lintCertificate(copy, { ca: lintCopyProfile, profile: 'issued', expected });
          },
        })
      : null;
  const profile =
    ca && identity && signer
      ? deviceProfile({
          issuerNameDer: identity.subjectDer,
          authorityKeyId: identity.subjectKeyId,
          crlDistributionPointUrl: options.crlUrl,
          signatureAlgorithmDer: signer.algorithmIdentifierDer,
        })
      : null;

  return {
    caCertPem() {
      if (!ca) throw notConfigured();
      return ca.certPem;
    },
    trustedCaPems() {
      if (!ca) throw notConfigured();
      return ca.certPem;
    },
    issuerPemOf(certPem: string) {
      return ca && signedBy(certPem, ca) ? ca.certPem : null;
    },
    caValidity() {
      if (!ca || !lintCa) throw notConfigured();
      return { notBefore: lintCa.notBefore, notAfter: lintCa.notAfter };
    },

    async issue(req: IssueRequest): Promise<IssuedCertificate> {
      if (!ca || !profile || !lintCopyCa || !tbsLint) throw notConfigured();
      await lintCopyCa; // the throwaway key: made in the background at start, the first issuance waits for it
      const spki = req.publicKey.spkiDer;
      const serial = Buffer.from(randomSerialHex(), 'hex');
      const tbs = encodeTbs(profile, {
        serial,
        commonName: req.commonName,
        notBefore: req.notBefore,
        notAfter: req.notAfter,
        subjectPublicKeyInfoDer: spki,
        subjectKeyId: keyIdOf(spki),
      });
      // The CA key signs nothing that fails the profile.
      await runLintAsync(() => tbsLint.lint(tbs, { commonName: req.commonName, spkiDer: spki }));
      const der = signedEnvelope(tbs, profile.signatureAlgorithmDer, await signTbs(tbs, ca.signer));
      // The check after signing, on the produced bytes (lint/signed-certificate-check.ts), and now and then Node's full parse-back as well.
      await runLintAsync(() => checkSignedCertificateInPool(der, { tbs, signatureAlgorithmDer: profile.signatureAlgorithmDer, hash: ca.signer.hash, caPublicKey: ca.publicKey }));
      if (++sinceParseBack >= FULL_PARSE_BACK_EVERY) {
        verifyCaSignature(der, ca.publicKey);
        sinceParseBack = 0;
      }
      return {
        certPem: toPem('CERTIFICATE', der),
        fingerprint: fingerprintOf(der),
        serialHex: normaliseSerial(serial.toString('hex')),
        issuer: ca.issuerLabel,
        issuerPem: ca.certPem,
        keyType: req.publicKey.keyType,
        notBefore: new Date(Math.floor(req.notBefore.getTime() / 1000) * 1000),
        notAfter: new Date(Math.floor(req.notAfter.getTime() / 1000) * 1000),
      };
    },
    async verifyIssued(certPem: string): Promise<VerifiedCertificate> {
      if (!ca) throw notConfigured();
      let cert: x509.X509Certificate;
      try {
        cert = new x509.X509Certificate(certPem.trim());
      } catch {
        throw new AppError('INVALID_CERTIFICATE', 'cert_pem is not a parseable X.509 certificate');
      }
      const signedByCa =
        cert.issuerName.toString() === ca.certificate.subjectName.toString() &&
        (await cert.verify({ publicKey: ca.certificate.publicKey, signatureOnly: true }).catch(() => false));
      if (!signedByCa) throw new AppError('INVALID_CERTIFICATE', 'the certificate was not issued by this Device CA');
      const bc = cert.getExtension(x509.BasicConstraintsExtension);
      if (bc?.ca) throw new AppError('INVALID_CERTIFICATE', 'a CA certificate cannot be a device certificate');
      runLint(() => lintCertificate(new Uint8Array(cert.rawData), { ca: lintCa!, profile: 'imported' }), 'INVALID_CERTIFICATE');
      return {
        certPem: cert.toString('pem') + '\n',
        fingerprint: fingerprintOf(cert.rawData),
        serialHex: normaliseSerial(cert.serialNumber),
        issuer: ca.issuerLabel,
        keyType: describeKey(publicKeyFromSpki(cert.publicKey.rawData)),
        notBefore: cert.notBefore,
        notAfter: cert.notAfter,
        commonName: cert.subjectName.getField('CN')[0] ?? '',
      };
    },
  };
}

export interface DirectoryAuthorityOptions extends Omit<CertificateAuthorityOptions, 'crlUrl'> {}

/**
 * The issuing authority over the CA directory (issue 19): a certificate is signed by the active
 * CA of its tenant's scope (the tenant's own CA, else the global one) and carries that CA's CRL
 * distribution point; a staged, retiring, retired or revoked CA never signs. One single-CA
 * authority (createCertificateAuthority) per CA, made when the CA is first used.
 */
export function createDirectoryAuthority(directory: CaDirectory, options: DirectoryAuthorityOptions = {}): CertificateAuthority {
  const authorities = new Map<string, { ca: DeviceCa; authority: CertificateAuthority }>();
  const authorityOf = (loaded: LoadedCa): CertificateAuthority => {
    const known = authorities.get(loaded.record.id);
    if (known && known.ca === loaded.ca) return known.authority;
    const authority = createCertificateAuthority(loaded.ca, { ...options, crlUrl: loaded.record.crlDistributionPoint });
    authorities.set(loaded.record.id, { ca: loaded.ca, authority });
    return authority;
  };
  const signing = (tenantId: string | null | undefined): LoadedCa => {
    const loaded = directory.activeFor(tenantId ?? null);
    if (!loaded || !isIssuingActive(loaded.record)) throw notConfigured();
    // Defence in depth: a tenant's CA signs only for that tenant.
    if (loaded.record.tenantId !== null && loaded.record.tenantId !== tenantId) throw notConfigured();
    return loaded;
  };
  /** An issuing CA's certificate, followed by its root's when it is an intermediate (TLS chain order: what a device needs to verify its certificate). */
  const chainOf = (loaded: LoadedCa): string => {
    const root = loaded.record.parentId ? directory.all().find((r) => r.id === loaded.record.parentId) : undefined;
    return root ? loaded.ca.certPem.trimEnd() + '\n' + root.certPem.trimEnd() + '\n' : loaded.ca.certPem;
  };
  /** The published CAs a tenant's certificates may come from: its own and the global scope's. */
  const inScope = (tenantId: string | null | undefined) => directory.published().filter((l) => l.record.tenantId === null || l.record.tenantId === (tenantId ?? null));
  return {
    caCertPem: (tenantId) => chainOf(signing(tenantId)),
    trustedCaPems() {
      const all = directory.published();
      if (all.length === 0) throw notConfigured();
      return all.map((l) => l.ca.certPem).join('');
    },
    caValidity: (tenantId) => authorityOf(signing(tenantId)).caValidity(),
    async issue(req) {
      const loaded = signing(req.tenantId);
      const issued = await authorityOf(loaded).issue(req);
      // ca_cert_pem: the chain (an intermediate's root after it), as issuerPemOf gives it.
      return { ...issued, caId: loaded.record.id, issuerPem: chainOf(loaded) };
    },
    async verifyIssued(certPem, tenantId) {
      const candidates = inScope(tenantId);
      const [first] = candidates;
      if (first === undefined) throw notConfigured();
      const issuer = candidates.find((l) => signedBy(certPem, l.ca));
      if (!issuer) {
        // Parse errors keep their message (INVALID_CERTIFICATE: not parseable).
        return authorityOf(first).verifyIssued(certPem).then(() => {
          throw new AppError('INVALID_CERTIFICATE', 'the certificate was not issued by a Device CA of this tenant');
        });
      }
      const verified = await authorityOf(issuer).verifyIssued(certPem);
      return { ...verified, caId: issuer.record.id };
    },
    issuerPemOf(certPem) {
      const issuer = directory.published().find((l) => signedBy(certPem, l.ca));
      return issuer ? chainOf(issuer) : null;
    },
  };
}
