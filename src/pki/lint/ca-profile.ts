import { X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, SubjectKeyIdentifier, id_ce_subjectKeyIdentifier } from '@peculiar/asn1-x509';

/** What the linters compare against, read from the CA certificate by @peculiar/asn1-x509 (not by our DER code). */
export interface CaLintProfile {
  subjectDer: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** Subject Key Identifier (null when the CA has none). */
  subjectKeyId: Buffer | null;
  publicKey: KeyObject;
}

export function caLintProfile(caCertDer: Uint8Array): CaLintProfile {
  const cert = AsnConvert.parse(caCertDer, Certificate);
  const tbs = cert.tbsCertificate;
  const ski = tbs.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
  return {
    subjectDer: Buffer.from(AsnConvert.serialize(tbs.subject)),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    subjectKeyId: ski ? Buffer.from(AsnConvert.parse(ski.extnValue, SubjectKeyIdentifier).buffer) : null,
    publicKey: new X509Certificate(Buffer.from(caCertDer)).publicKey,
  };
}
