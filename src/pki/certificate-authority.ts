import { createHash } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import type { CertificateAuthority, IssueRequest, IssuedCertificate, VerifiedCertificate } from '../app/ports.ts';
import { randomSerialHex, type DeviceCa } from './device-ca.ts';
import { describeKey, publicKeyFromSpki, spkiOf } from './keys.ts';
import { x509 } from './x509.ts';

const notConfigured = () => new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');

/** Serial numbers are stored as lower-case hex without leading zeros (the seed's format). */
export const normaliseSerial = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, '');

const fingerprintOf = (der: ArrayBuffer | Uint8Array): string =>
  createHash('sha256').update(der instanceof Uint8Array ? der : new Uint8Array(der)).digest('hex');

/**
 * Issues device client certificates: CN tenant/device, BasicConstraints CA=false
 * (critical), KeyUsage digitalSignature+keyEncipherment (critical), EKU clientAuth,
 * SKI, AKI and the CRL distribution point.
 */
export function createCertificateAuthority(ca: DeviceCa | null, options: { crlUrl: string; organization?: string }): CertificateAuthority {
  let caExtensions: x509.Extension[] | null = null;
  const staticExtensions = async () =>
    (caExtensions ??= [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.AuthorityKeyIdentifierExtension(ca!.subjectKeyId.toString('hex')),
      new x509.CRLDistributionPointsExtension([options.crlUrl]),
    ]);

  return {
    caCertPem() {
      if (!ca) throw notConfigured();
      return ca.certPem;
    },

    async issue(req: IssueRequest): Promise<IssuedCertificate> {
      if (!ca) throw notConfigured();
      const spki = new x509.PublicKey(new Uint8Array(spkiOf(req.publicKey)));
      const serialHex = randomSerialHex();
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serialHex,
        subject: [{ CN: [req.commonName] }, ...(options.organization ? [{ O: [options.organization] }] : [])],
        issuer: ca.certificate.subjectName,
        notBefore: req.notBefore,
        notAfter: req.notAfter,
        publicKey: spki,
        signingKey: ca.signingKey,
        signingAlgorithm: ca.signingAlgorithm,
        extensions: [...(await staticExtensions()), await x509.SubjectKeyIdentifierExtension.create(spki)],
      });
      return {
        certPem: cert.toString('pem') + '\n',
        fingerprint: fingerprintOf(cert.rawData),
        serialHex: normaliseSerial(serialHex),
        issuer: ca.issuerLabel,
        keyType: describeKey(req.publicKey),
        notBefore: cert.notBefore,
        notAfter: cert.notAfter,
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
