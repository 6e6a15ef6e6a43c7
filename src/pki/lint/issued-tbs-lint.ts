/**
 * The pre-signing lint of issued certificates, paid in full once per certificate shape and then
 * only for what varies.
 *
 * A device certificate's TBS is the same bytes from one certificate to the next except five fields:
 * the serial, the validity, the subject (CN tenant/device), the subjectPublicKeyInfo and the
 * SubjectKeyIdentifier. Everything else (version, signature algorithm, issuer, the key's algorithm,
 * BasicConstraints, KeyUsage, EKU, AKI, CRL distribution point, the extensions' order) is the
 * certificate's *shape*. The full lint (a copy signed by a throwaway key, parsed by
 * @peculiar/asn1-x509 and by Node's X509Certificate, every profile rule: lintCertificate) runs for
 * the first certificate of each shape, and again every `fullEvery` certificates. Every other TBS is
 * split by this module's own TLV reader (lint/tlv.ts, no code shared with the encoder): its shape
 * must be byte-identical to one that passed the full lint, and the five varying fields are linted
 * here, each by the same rules as the full lint (serial size, sign and entropy; UTCTime before 2050
 * and GeneralizedTime from 2050, whole seconds, order, within the CA's validity; exactly one CN,
 * the expected one, UTF-8, within the length limit; the requested key, byte for byte; a
 * non-critical SubjectKeyIdentifier). So every TBS is linted before the CA signs it; what the
 * cheap path skips is re-checking, per certificate, bytes already proven good. The signed
 * certificate is then read back and its CA signature verified (signed-certificate-check.ts: the
 * envelope, the TBS byte for byte the linted one, the outer/inner signature algorithm agreement,
 * the signature by node:crypto), and parsed back by Node in full for the first certificate of each
 * CA and periodically (certificate-authority.ts).
 */
import { MAX_COMMON_NAME_LENGTH } from '../../domain/identifiers.ts';
import type { CaLintProfile } from './ca-profile.ts';
import { lintCheck } from './lint-failure.ts';
import { childNodes, nodeBytes, readNode, type Node } from './tlv.ts';

export interface IssuedTbsExpectation {
  commonName: string;
  spkiDer: Uint8Array;
}

export interface IssuedTbsLint {
  /** Throws a LintFailure (or what the full lint throws) when the TBS must not be signed. */
  lint(tbs: Buffer, expected: IssuedTbsExpectation): Promise<void>;
  /** How many full lints ran (tests, metrics). */
  readonly fullLints: number;
}

const RULE = 'cert.parse';
const TAG = { INTEGER: 0x02, OCTET_STRING: 0x04, OID: 0x06, UTF8: 0x0c, SEQUENCE: 0x30, SET: 0x31, UTC: 0x17, GENERALIZED: 0x18, V: 0xa0, EXT: 0xa3 } as const;
const TBS_TAGS = [TAG.V, TAG.INTEGER, TAG.SEQUENCE, TAG.SEQUENCE, TAG.SEQUENCE, TAG.SEQUENCE, TAG.SEQUENCE, TAG.EXT];
const OID_CN = Buffer.from('0603550403', 'hex');
const OID_SKI = Buffer.from('0603551d0e', 'hex');
/** Shapes remembered (a CA has a handful: one per key type); past this the memory starts again. */
const MAX_SHAPES = 64;

const only = (buf: Buffer, parent: Node, tag: number, what: string, rule = RULE): Node => {
  const [kid, ...others] = childNodes(buf, parent, rule);
  lintCheck(kid !== undefined && others.length === 0 && kid.tag === tag, rule, `${what}: expected exactly one element of tag 0x${tag.toString(16)}`);
  return kid;
};

/** The TBS split into its shape (a string key) and its varying fields. */
function split(tbs: Buffer) {
  const top = readNode(tbs, 0, tbs.length, RULE);
  lintCheck(top.tag === TAG.SEQUENCE && top.end === tbs.length, RULE, 'the TBS is not one SEQUENCE');
  const fields = childNodes(tbs, top, RULE);
  lintCheck(fields.length === TBS_TAGS.length && fields.every((f, i) => f.tag === TBS_TAGS[i]), RULE, 'the TBS fields are not those of the device profile');
  const [version, serial, signature, issuer, validity, subject, spki, extWrapper] = fields;
  lintCheck(version && serial && signature && issuer && validity && subject && spki && extWrapper, RULE, 'the TBS fields are not those of the device profile');
  const extensions = childNodes(tbs, only(tbs, extWrapper, TAG.SEQUENCE, 'extensions'), RULE);
  const [spkiAlgorithm, ...spkiRest] = childNodes(tbs, spki, RULE);
  lintCheck(spkiAlgorithm !== undefined && spkiRest.length === 1 && spkiAlgorithm.tag === TAG.SEQUENCE, RULE, 'subjectPublicKeyInfo is not { algorithm, subjectPublicKey }');
  const shape: Buffer[] = [nodeBytes(tbs, version), nodeBytes(tbs, signature), nodeBytes(tbs, issuer), nodeBytes(tbs, spkiAlgorithm)];
  let ski: Node | null = null;
  extensions.forEach((e, i) => {
    lintCheck(e.tag === TAG.SEQUENCE, 'cert.extensions', 'an extension is not a SEQUENCE');
    const id = readNode(tbs, e.body, e.end, RULE);
    if (id.tag === TAG.OID && nodeBytes(tbs, id).equals(OID_SKI)) {
      lintCheck(ski === null, 'cert.extensions.unique', 'SubjectKeyIdentifier appears twice');
      ski = e;
      shape.push(Buffer.from(`ski@${i}`));
    } else shape.push(nodeBytes(tbs, e));
  });
  // Lengths are part of each TLV: the key is unambiguous.
  return { key: Buffer.concat(shape).toString('latin1'), serial, validity, subject, spki, ski: ski as Node | null };
}

function checkSerial(tbs: Buffer, n: Node): void {
  const raw = tbs.subarray(n.body, n.end);
  const first = raw[0];
  lintCheck(first !== undefined && raw.length <= 20, 'cert.serial.size', `serial is ${raw.length} octets (1 to 20 allowed)`);
  lintCheck((first & 0x80) === 0, 'cert.serial.sign', 'serial is negative');
  lintCheck(!(raw.length > 1 && first === 0 && ((raw[1] ?? 0) & 0x80) === 0), 'cert.serial.encoding', 'serial has a superfluous leading zero octet');
  lintCheck(raw.some((b) => b !== 0), 'cert.serial.sign', 'serial is zero');
  const magnitude = first === 0 ? raw.length - 1 : raw.length;
  lintCheck(magnitude >= 16, 'cert.serial.size', `serial has ${magnitude} octets of magnitude (at least 16)`);
}

/** RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ through 2049, GeneralizedTime YYYYMMDDHHMMSSZ from 2050, whole seconds. */
function readTime(tbs: Buffer, n: Node, field: string): Date {
  const text = tbs.toString('latin1', n.body, n.end);
  let year: number;
  let rest: string;
  if (n.tag === TAG.UTC) {
    lintCheck(/^\d{12}Z$/.test(text), 'cert.validity.encoding', `${field} UTCTime "${text}" is not YYMMDDHHMMSSZ`);
    const yy = Number(text.slice(0, 2));
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    rest = text.slice(2);
  } else {
    lintCheck(n.tag === TAG.GENERALIZED, 'cert.validity.encoding', `${field} is neither UTCTime nor GeneralizedTime`);
    lintCheck(/^\d{14}Z$/.test(text), 'cert.validity.encoding', `${field} GeneralizedTime "${text}" is not YYYYMMDDHHMMSSZ (whole seconds)`);
    year = Number(text.slice(0, 4));
    lintCheck(year >= 2050, 'cert.validity.encoding', `${field} ${year} must be UTCTime`);
    rest = text.slice(4);
  }
  const num = (i: number) => Number(rest.slice(i, i + 2));
  const [mo, d, h, mi, s] = [num(0), num(2), num(4), num(6), num(8)];
  const date = new Date(Date.UTC(year, mo - 1, d, h, mi, s));
  lintCheck(
    date.getUTCFullYear() === year && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d && date.getUTCHours() === h && date.getUTCMinutes() === mi && date.getUTCSeconds() === s,
    'cert.validity.encoding',
    `${field} "${text}" is not a valid instant`,
  );
  return date;
}

function checkVarying(tbs: Buffer, parts: ReturnType<typeof split>, ca: CaLintProfile, expected: IssuedTbsExpectation): void {
  checkSerial(tbs, parts.serial);

  const [notBeforeNode, notAfterNode, ...extraTimes] = childNodes(tbs, parts.validity, RULE);
  lintCheck(notBeforeNode && notAfterNode && extraTimes.length === 0, 'cert.validity.encoding', 'validity is not { notBefore, notAfter }');
  const notBefore = readTime(tbs, notBeforeNode, 'notBefore');
  const notAfter = readTime(tbs, notAfterNode, 'notAfter');
  lintCheck(notBefore < notAfter, 'cert.validity.order', 'notBefore is not before notAfter');
  lintCheck(notBefore >= ca.notBefore, 'cert.validity.within_ca', () => `notBefore ${notBefore.toISOString()} is before the CA's ${ca.notBefore.toISOString()}`);
  lintCheck(notAfter <= ca.notAfter, 'cert.validity.within_ca', () => `notAfter ${notAfter.toISOString()} is after the CA's ${ca.notAfter.toISOString()}`);

  // Subject: exactly one RDN of exactly one CN (UTF8String), the expected one.
  const rdn = only(tbs, parts.subject, TAG.SET, 'subject', 'cert.subject.cn');
  const atv = only(tbs, rdn, TAG.SEQUENCE, 'subject RDN', 'cert.subject.cn');
  const [type, value, ...more] = childNodes(tbs, atv, RULE);
  lintCheck(type && value && more.length === 0 && nodeBytes(tbs, type).equals(OID_CN) && value.tag === TAG.UTF8, 'cert.subject.cn', 'the subject is not one CN as a UTF8String');
  const cnBytes = tbs.subarray(value.body, value.end);
  const cn = cnBytes.toString('utf8');
  lintCheck(Buffer.from(cn, 'utf8').equals(cnBytes), 'cert.subject.cn', 'CN is not valid UTF-8');
  lintCheck(cn.length >= 1 && cn.length <= MAX_COMMON_NAME_LENGTH, 'cert.subject.cn', `CN is ${cn.length} characters (1 to ${MAX_COMMON_NAME_LENGTH})`);
  lintCheck(cn === expected.commonName, 'cert.subject.cn', `CN "${cn}", expected "${expected.commonName}"`);

  lintCheck(nodeBytes(tbs, parts.spki).equals(Buffer.from(expected.spkiDer)), 'cert.public_key', 'subjectPublicKeyInfo differs from the requested key');

  lintCheck(parts.ski, 'cert.ski', 'SubjectKeyIdentifier missing');
  const [skiId, skiValue, ...skiRest] = childNodes(tbs, parts.ski, RULE);
  lintCheck(skiId && skiValue && skiRest.length === 0 && skiValue.tag === TAG.OCTET_STRING, 'cert.ski', 'SubjectKeyIdentifier must be non-critical: { extnID, extnValue }');
  const keyId = only(tbs, skiValue, TAG.OCTET_STRING, 'SubjectKeyIdentifier', 'cert.ski');
  lintCheck(keyId.end > keyId.body, 'cert.ski', 'SubjectKeyIdentifier is empty');
}

export function createIssuedTbsLint(options: {
  ca: CaLintProfile;
  /** The full lint (a throwaway-signed copy through lintCertificate). */
  fullLint: (tbs: Buffer, expected: IssuedTbsExpectation) => Promise<void>;
  /** A full lint every this many certificates besides the first of each shape (default 1,000). */
  fullEvery?: number;
}): IssuedTbsLint {
  const fullEvery = options.fullEvery ?? 1000;
  const passed = new Set<string>();
  let sinceFull = 0;
  let fullLints = 0;
  return {
    get fullLints() {
      return fullLints;
    },
    async lint(tbs, expected) {
      let parts: ReturnType<typeof split>;
      try {
        parts = split(tbs);
        // The varying fields in every case: a full lint is never what lets a wrong one through.
        checkVarying(tbs, parts, options.ca, expected);
      } catch (failure) {
        // Refused: the full lint names the rule when it finds one (its names are the catalogue's), else this failure stands.
        await options.fullLint(tbs, expected);
        throw failure;
      }
      if (passed.has(parts.key) && ++sinceFull < fullEvery) return;
      await options.fullLint(tbs, expected);
      fullLints++;
      sinceFull = 0;
      if (passed.size >= MAX_SHAPES) passed.clear();
      passed.add(parts.key);
    },
  };
}
