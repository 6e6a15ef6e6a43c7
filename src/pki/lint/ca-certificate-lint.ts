/**
 * Lints a CA certificate certfleet makes (`ca create`, `ca create --root`, `ca create --parent`)
 * before the issuing key signs it, as every device certificate and CRL is linted: a copy signed by a
 * throwaway key of the signing key's algorithm is parsed back by @peculiar/asn1-x509 and Node's
 * X509Certificate (no code shared with the encoder) and checked against the CA profile: v3, serial,
 * matching signature algorithms, the issuer's exact subject bytes, validity within the issuer's,
 * one CN (the expected one), the requested key, BasicConstraints cA (critical) with the expected
 * pathLen (0: an issuing CA; 1: a root over intermediates), KeyUsage keyCertSign + cRLSign
 * (critical), no EKU, an SKI, and for an intermediate an AKI equal to its root's SKI and its root's
 * CRL URL as CRL distribution point (the root's CRL lists it once revoked or retired).
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  KeyUsage,
  SubjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_cRLDistributionPoints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectKeyIdentifier,
  type Extension,
} from '@peculiar/asn1-x509';
import type { CaLintProfile } from './ca-profile.ts';
import { bytes, checkSerial, checkTime, parseForLint } from './certificate-lint.ts';
import { lintCheck } from './lint-failure.ts';

const OID_COMMON_NAME = '2.5.4.3';
const KU_CERT_SIGN = 0x04;
const KU_CRL_SIGN = 0x02;

export interface CaCertificateLintOptions {
  /** The issuer as the lint sees it; null: self-signed (the certificate is its own issuer). */
  issuer: CaLintProfile | null;
  /** The key that verifies the copy's signature (the throwaway key's public half). */
  verifyWith: CaLintProfile['publicKey'];
  /** `crlDistributionPointUrl`: an intermediate's (its root's CRL URL), null for a self-signed CA (none). */
  expected: { commonName: string; spkiDer: Uint8Array; pathLength: number; crlDistributionPointUrl: string | null };
}

export function lintCaCertificate(der: Uint8Array, options: CaCertificateLintOptions): { notBefore: Date; notAfter: Date } {
  const { cert, node } = parseForLint(der, 'ca');
  const tbs = cert.tbsCertificate;
  checkSerial(bytes(tbs.serialNumber), 'ca.serial', 16);
  const subjectDer = bytes(AsnConvert.serialize(tbs.subject));
  const issuerDer = bytes(AsnConvert.serialize(tbs.issuer));
  lintCheck(issuerDer.equals(options.issuer ? options.issuer.subjectDer : subjectDer), 'ca.issuer', options.issuer ? "issuer bytes differ from the root's subject" : 'a self-signed CA must name itself as issuer');
  if (options.issuer) lintCheck(!subjectDer.equals(options.issuer.subjectDer), 'ca.subject', 'an intermediate must not have its root\'s subject');
  lintCheck(node.verify(options.verifyWith), 'ca.signature', 'the signature does not verify with the signing key');

  const notBefore = checkTime(tbs.validity.notBefore, 'notBefore');
  const notAfter = checkTime(tbs.validity.notAfter, 'notAfter');
  lintCheck(notBefore < notAfter, 'ca.validity.order', 'notBefore is not before notAfter');
  if (options.issuer) {
    const root = options.issuer;
    lintCheck(notBefore >= root.notBefore, 'ca.validity.within_root', () => `notBefore ${notBefore.toISOString()} is before the root's ${root.notBefore.toISOString()}`);
    lintCheck(notAfter <= root.notAfter, 'ca.validity.within_root', () => `notAfter ${notAfter.toISOString()} is after the root's ${root.notAfter.toISOString()}`);
  }

  const cns = tbs.subject.flatMap((rdn) => rdn.filter((atv) => atv.type === OID_COMMON_NAME));
  lintCheck(cns.length === 1, 'ca.subject.cn', `${cns.length} common names, expected 1`);
  lintCheck(cns[0]?.value.toString() === options.expected.commonName, 'ca.subject.cn', `CN "${cns[0]?.value.toString()}", expected "${options.expected.commonName}"`);
  lintCheck(bytes(AsnConvert.serialize(tbs.subjectPublicKeyInfo)).equals(bytes(options.expected.spkiDer)), 'ca.public_key', 'subjectPublicKeyInfo differs from the new CA key');
  lintCheck(tbs.issuerUniqueID === undefined && tbs.subjectUniqueID === undefined, 'ca.unique_ids', 'issuer/subject unique IDs are not allowed');

  const byId = new Map<string, Extension>();
  for (const e of tbs.extensions ?? []) {
    lintCheck(!byId.has(e.extnID), 'ca.extensions.unique', `extension ${e.extnID} appears twice`);
    byId.set(e.extnID, e);
  }
  const bc = byId.get(id_ce_basicConstraints);
  lintCheck(bc?.critical, 'ca.basic_constraints', 'BasicConstraints must be present and critical');
  const constraints = AsnConvert.parse(bc.extnValue, BasicConstraints);
  lintCheck(constraints.cA, 'ca.basic_constraints', 'cA is not true');
  lintCheck(constraints.pathLenConstraint === options.expected.pathLength, 'ca.basic_constraints', `pathLenConstraint ${String(constraints.pathLenConstraint)}, expected ${options.expected.pathLength}`);

  const ku = byId.get(id_ce_keyUsage);
  lintCheck(ku?.critical, 'ca.key_usage', 'KeyUsage must be present and critical');
  const usage = bytes(AsnConvert.parse(ku.extnValue, KeyUsage).value)[0] ?? 0;
  lintCheck(usage & KU_CERT_SIGN && usage & KU_CRL_SIGN, 'ca.key_usage', 'KeyUsage must assert keyCertSign and cRLSign');
  lintCheck(!byId.has(id_ce_extKeyUsage), 'ca.eku', 'a CA certificate carries no ExtendedKeyUsage');

  const ski = byId.get(id_ce_subjectKeyIdentifier);
  lintCheck(ski, 'ca.ski', 'SubjectKeyIdentifier missing');
  const skiValue = bytes(AsnConvert.parse(ski.extnValue, SubjectKeyIdentifier).buffer);
  lintCheck(skiValue.length >= 1 && skiValue.length <= 20, 'ca.ski', `SubjectKeyIdentifier is ${skiValue.length} octets`);
  const aki = byId.get(id_ce_authorityKeyIdentifier);
  if (options.issuer) {
    lintCheck(aki && !aki.critical, 'ca.aki', 'an intermediate needs a non-critical AuthorityKeyIdentifier');
    const keyId = AsnConvert.parse(aki.extnValue, AuthorityKeyIdentifier).keyIdentifier;
    lintCheck(options.issuer.subjectKeyId && keyId && bytes(keyId.buffer).equals(options.issuer.subjectKeyId), 'ca.aki', "AuthorityKeyIdentifier differs from the root's SubjectKeyIdentifier");
  } else if (aki) {
    const keyId = AsnConvert.parse(aki.extnValue, AuthorityKeyIdentifier).keyIdentifier;
    lintCheck(keyId && bytes(keyId.buffer).equals(skiValue), 'ca.aki', 'a self-signed CA\'s AuthorityKeyIdentifier must be its own key identifier');
  }
  const cdp = byId.get(id_ce_cRLDistributionPoints);
  if (options.expected.crlDistributionPointUrl === null) lintCheck(!cdp, 'ca.crl_distribution_point', 'a self-signed CA carries no CRL distribution point');
  else {
    lintCheck(cdp && !cdp.critical, 'ca.crl_distribution_point', "an intermediate must name its root's CRL (non-critical CRLDistributionPoints)");
    const points = AsnConvert.parse(cdp.extnValue, CRLDistributionPoints);
    const urls = points.flatMap((p) => p.distributionPoint?.fullName?.map((n) => n.uniformResourceIdentifier) ?? []);
    lintCheck(points.length === 1 && urls.length === 1 && urls[0] === options.expected.crlDistributionPointUrl, 'ca.crl_distribution_point', `CRL distribution point ${JSON.stringify(urls)}, expected ${options.expected.crlDistributionPointUrl}`);
  }
  return { notBefore, notAfter };
}
