/**
 * Lints a certificate before it leaves the service (Boulder's pre-issuance lint): parsed
 * back by @peculiar/asn1-x509 and Node's X509Certificate, which share no code with our
 * DER encoder, and checked against the device profile.
 */
import { X509Certificate } from 'node:crypto';
import { AsnConvert, type BitString } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  Name,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  type Extension,
  type Time,
} from '@peculiar/asn1-x509';
import { MAX_COMMON_NAME_LENGTH } from '../../domain/identifiers.ts';
import type { CaLintProfile } from './ca-profile.ts';
import { lintCheck } from './lint-failure.ts';

const OID_COMMON_NAME = '2.5.4.3';
/** KeyUsage bits (DER named bits: bit 0 is the high bit of the first octet). */
const KU_DIGITAL_SIGNATURE = 0x80;
const KU_CA_BITS = 0x04 | 0x02; // keyCertSign (5), cRLSign (6)

export interface CertificateLintOptions {
  ca: CaLintProfile;
  /** `issued`: our device profile, exactly. `imported`: issued earlier by this CA, possibly under an older profile. */
  profile: 'issued' | 'imported';
  /** What we meant to issue (issued profile). */
  expected?: { commonName: string; spkiDer: Uint8Array };
}

export interface LintedCertificate {
  notBefore: Date;
  notAfter: Date;
}

export const bytes = (b: ArrayBuffer | Uint8Array) => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b));

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function checkTime(t: Time, field: string) {
  const date = t.getTime();
  const year = date.getUTCFullYear();
  lintCheck(year < 2050 ? t.utcTime !== undefined : t.generalTime !== undefined, 'cert.validity.encoding', `${field} ${date.toISOString()} must be ${year < 2050 ? 'UTCTime' : 'GeneralizedTime'}`);
  lintCheck(date.getUTCMilliseconds() === 0, 'cert.validity.encoding', `${field} has fractional seconds`);
  return date;
}

export function checkSerial(raw: Uint8Array, rule: string, minOctets: number): void {
  lintCheck(raw.length >= 1 && raw.length <= 20, `${rule}.size`, `serial is ${raw.length} octets (1 to 20 allowed)`);
  lintCheck(((raw[0] ?? 0) & 0x80) === 0, `${rule}.sign`, 'serial is negative'); // not empty: checked above
  lintCheck(!(raw.length > 1 && raw[0] === 0 && ((raw[1] ?? 0) & 0x80) === 0), `${rule}.encoding`, 'serial has a superfluous leading zero octet');
  lintCheck(raw.some((b) => b !== 0), `${rule}.sign`, 'serial is zero');
  const magnitude = raw[0] === 0 ? raw.length - 1 : raw.length;
  lintCheck(magnitude >= minOctets, `${rule}.size`, `serial has ${magnitude} octets of magnitude (at least ${minOctets} for 64 bits of entropy)`);
}

function bitStringBytes(b: BitString): { value: Buffer; unusedBits: number } {
  return { value: bytes(b.value), unusedBits: b.unusedBits };
}

/**
 * The first rules of every certificate lint (device and CA): parsed by @peculiar/asn1-x509 and by
 * Node's X509Certificate, DER (re-encoding gives the same bytes), version 3, and the inner and
 * outer signature algorithms equal. `rule` prefixes the rule names (`cert`, `ca`).
 */
export function parseForLint(der: Uint8Array, rule: string): { cert: Certificate; node: X509Certificate } {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(der, Certificate);
  } catch (e) {
    lintCheck(false, `${rule}.parse`, `@peculiar/asn1-x509 cannot parse it: ${(e as Error).message}`);
  }
  lintCheck(bytes(AsnConvert.serialize(cert)).equals(bytes(der)), `${rule}.der`, 'not DER: re-encoding the parsed certificate gives other bytes');
  let node: X509Certificate;
  try {
    node = new X509Certificate(Buffer.from(der));
  } catch (e) {
    lintCheck(false, `${rule}.parse`, `Node's X509Certificate cannot parse it: ${(e as Error).message}`);
  }
  const tbs = cert.tbsCertificate;
  lintCheck(tbs.version === Version.v3, `${rule}.version`, `version ${tbs.version + 1}, expected 3`);
  lintCheck(
    bytes(AsnConvert.serialize(tbs.signature)).equals(bytes(AsnConvert.serialize(cert.signatureAlgorithm))),
    `${rule}.signature_algorithm`,
    'tbsCertificate.signature differs from signatureAlgorithm',
  );
  return { cert, node };
}

export function lintCertificate(der: Uint8Array, options: CertificateLintOptions): LintedCertificate {
  const { ca, profile } = options;
  const issued = profile === 'issued';
  const { cert, node } = parseForLint(der, 'cert');
  const tbs = cert.tbsCertificate;
  checkSerial(bytes(tbs.serialNumber), 'cert.serial', issued ? 16 : 1);
  lintCheck(bytes(AsnConvert.serialize(tbs.issuer)).equals(ca.subjectDer), 'cert.issuer', 'issuer bytes differ from the CA certificate subject');
  lintCheck(node.verify(ca.publicKey), 'cert.signature', 'the signature does not verify with the CA public key');

  const notBefore = checkTime(tbs.validity.notBefore, 'notBefore');
  const notAfter = checkTime(tbs.validity.notAfter, 'notAfter');
  lintCheck(notBefore < notAfter, 'cert.validity.order', 'notBefore is not before notAfter');
  lintCheck(notBefore >= ca.notBefore, 'cert.validity.within_ca', () => `notBefore ${notBefore.toISOString()} is before the CA's ${ca.notBefore.toISOString()}`);
  lintCheck(notAfter <= ca.notAfter, 'cert.validity.within_ca', () => `notAfter ${notAfter.toISOString()} is after the CA's ${ca.notAfter.toISOString()}`);

  const cns = tbs.subject.flatMap((rdn) => rdn.filter((atv) => atv.type === OID_COMMON_NAME));
  lintCheck(cns.length === 1, 'cert.subject.cn', `${cns.length} common names, expected 1`);
  const cn = cns[0]?.value.toString() ?? ''; // one (checked above)
  lintCheck(cn.length >= 1 && cn.length <= MAX_COMMON_NAME_LENGTH, 'cert.subject.cn', `CN is ${cn.length} characters (1 to ${MAX_COMMON_NAME_LENGTH})`);
  if (options.expected) {
    lintCheck(cn === options.expected.commonName, 'cert.subject.cn', `CN "${cn}", expected "${options.expected.commonName}"`);
    lintCheck(
      bytes(AsnConvert.serialize(tbs.subjectPublicKeyInfo)).equals(bytes(options.expected.spkiDer)),
      'cert.public_key',
      'subjectPublicKeyInfo differs from the requested key',
    );
  }
  if (issued) lintCheck(bytes(AsnConvert.serialize(tbs.subject)).equals(bytes(AsnConvert.serialize(new Name(tbs.subject)))), 'cert.subject.cn', 'subject is not DER');

  lintCheck(tbs.issuerUniqueID === undefined && tbs.subjectUniqueID === undefined, 'cert.unique_ids', 'issuer/subject unique IDs are not allowed');
  const extensions = tbs.extensions ?? [];
  const byId = new Map<string, Extension>();
  for (const e of extensions) {
    lintCheck(!byId.has(e.extnID), 'cert.extensions.unique', `extension ${e.extnID} appears twice`);
    byId.set(e.extnID, e);
  }

  const bc = byId.get(id_ce_basicConstraints);
  if (issued || bc) {
    lintCheck(bc, 'cert.basic_constraints', 'BasicConstraints missing');
    lintCheck(!AsnConvert.parse(bc.extnValue, BasicConstraints).cA, 'cert.basic_constraints', 'cA is true on a device certificate');
    if (issued) lintCheck(bc.critical, 'cert.basic_constraints', 'BasicConstraints must be critical');
  }

  const ku = byId.get(id_ce_keyUsage);
  if (issued) {
    lintCheck(ku?.critical, 'cert.key_usage', 'KeyUsage must be present and critical');
    const { value, unusedBits } = bitStringBytes(AsnConvert.parse(ku.extnValue, KeyUsage));
    lintCheck(value.length === 1 && value[0] === KU_DIGITAL_SIGNATURE && unusedBits === 7, 'cert.key_usage', `KeyUsage must be digitalSignature only (got ${value.toString('hex')}/${unusedBits} unused bits)`);
  } else if (ku) {
    const { value } = bitStringBytes(AsnConvert.parse(ku.extnValue, KeyUsage));
    lintCheck((value[0] ?? 0) & KU_DIGITAL_SIGNATURE, 'cert.key_usage', 'KeyUsage lacks digitalSignature (TLS client authentication needs it)');
    lintCheck(((value[0] ?? 0) & KU_CA_BITS) === 0, 'cert.key_usage', 'KeyUsage asserts keyCertSign or cRLSign');
  }

  const eku = byId.get(id_ce_extKeyUsage);
  if (issued || eku) {
    lintCheck(eku, 'cert.eku', 'ExtendedKeyUsage missing');
    const purposes = [...AsnConvert.parse(eku.extnValue, ExtendedKeyUsage)];
    if (issued) lintCheck(purposes.length === 1 && purposes[0] === id_kp_clientAuth, 'cert.eku', `ExtendedKeyUsage must be clientAuth only (got ${purposes.join(', ')})`);
    else lintCheck(purposes.includes(id_kp_clientAuth), 'cert.eku', 'ExtendedKeyUsage lacks clientAuth');
  }

  if (issued) {
    lintCheck(byId.get(id_ce_subjectKeyIdentifier), 'cert.ski', 'SubjectKeyIdentifier missing');
    const aki = byId.get(id_ce_authorityKeyIdentifier);
    lintCheck(aki, 'cert.aki', 'AuthorityKeyIdentifier missing');
    const keyId = AsnConvert.parse(aki.extnValue, AuthorityKeyIdentifier).keyIdentifier;
    if (ca.subjectKeyId) lintCheck(keyId && bytes(keyId.buffer).equals(ca.subjectKeyId), 'cert.aki', 'AuthorityKeyIdentifier differs from the CA key identifier');
  }
  return { notBefore, notAfter };
}
