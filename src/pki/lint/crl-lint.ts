/**
 * Lints a CRL before it is stored or written: the header is parsed by @peculiar/asn1-x509
 * (time, extensions, CRL Number, AKI), the entries by the lint's own TLV reader (tlv.ts) in
 * one linear pass without per-entry objects, since a CRL reaches 1M entries (asn1js, under
 * @peculiar, refuses such trees). Neither shares code with our DER encoder. The signature is
 * not checked here: verifyCrl does that right after.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  CRLNumber,
  Extensions,
  Time,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_deltaCRLIndicator,
  id_ce_issuingDistributionPoint,
} from '@peculiar/asn1-x509';
import type { CaLintProfile } from './ca-profile.ts';
import { lintCheck, LintFailure } from './lint-failure.ts';
import { childNodes, expectNode, nodeBytes, readNode, timeMs, type Node } from './tlv.ts';

const SEQ = 0x30;
const INT = 0x02;
const KNOWN_CRL_EXTENSIONS = new Set([id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_issuingDistributionPoint]);
/** id-ce-cRLReasons (2.5.29.21) and id-ce-invalidityDate (2.5.29.24), DER-encoded OIDs. */
const REASON_OID = [0x06, 0x03, 0x55, 0x1d, 0x15];
const INVALIDITY_DATE_OID = [0x06, 0x03, 0x55, 0x1d, 0x18];
/**
 * reasonCode values a full CRL may carry: not 0 (unspecified is left out, RFC 5280 5.3.1),
 * 7 (unused) or 8 (removeFromCRL: delta CRLs only). The API no longer accepts
 * certificateHold or the CA reasons for a device, but rows revoked earlier keep theirs.
 */
const FULL_CRL_REASON_CODES = new Set([1, 2, 3, 4, 5, 6, 9, 10]);

export interface CrlLintOptions {
  ca: CaLintProfile;
  /** The last published number: this CRL's must be greater. */
  previousNumber: bigint;
}

export interface LintedCrl {
  crlNumber: bigint;
  entries: number;
}

const parseWith = <T>(rule: string, what: string, fn: () => T): T => {
  try {
    return fn();
  } catch (e) {
    if (e instanceof LintFailure) throw e;
    throw new LintFailure(rule, `${what}: @peculiar/asn1-x509 cannot parse it: ${(e as Error).message}`);
  }
};

export function lintCrl(der: Uint8Array, { ca, previousNumber }: CrlLintOptions): LintedCrl {
  const list = expectNode(der, 0, der.length, SEQ, 'CertificateList');
  lintCheck(list.end === der.length, 'crl.parse', 'trailing bytes after the CertificateList');
  const [tbs, outerAlg, sig, ...rest] = childNodes(der, list);
  lintCheck(tbs?.tag === SEQ && outerAlg?.tag === SEQ && sig?.tag === 0x03 && rest.length === 0, 'crl.parse', 'CertificateList is not SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }');

  let at = tbs.body;
  const next = (): Node | null => (at < tbs.end ? readNode(der, at, tbs.end) : null);
  const version = next();
  lintCheck(version?.tag === INT && version.end - version.body === 1 && der[version.body] === 1, 'crl.version', 'version must be v2 (INTEGER 1)');
  at = version.end;
  const innerAlg = expectNode(der, at, tbs.end, SEQ, 'signature');
  lintCheck(nodeBytes(der, innerAlg).equals(nodeBytes(der, outerAlg)), 'crl.signature_algorithm', 'tbsCertList.signature differs from signatureAlgorithm');
  at = innerAlg.end;
  const issuer = expectNode(der, at, tbs.end, SEQ, 'issuer');
  lintCheck(nodeBytes(der, issuer).equals(ca.subjectDer), 'crl.issuer', 'issuer bytes differ from the CA certificate subject');
  at = issuer.end;

  const thisNode = readNode(der, at, tbs.end);
  const thisUpdate = parseWith('crl.this_update', 'thisUpdate', () => AsnConvert.parse(nodeBytes(der, thisNode), Time).getTime());
  at = thisNode.end;
  const nextNode = next();
  lintCheck(nextNode && (nextNode.tag === 0x17 || nextNode.tag === 0x18), 'crl.next_update', 'nextUpdate is missing (RFC 5280 5.1.2.5: conforming CRL issuers MUST include it)');
  const nextUpdate = parseWith('crl.next_update', 'nextUpdate', () => AsnConvert.parse(nodeBytes(der, nextNode), Time).getTime());
  lintCheck(nextUpdate > thisUpdate, 'crl.next_update', 'nextUpdate is not after thisUpdate');
  lintCheck(thisUpdate >= ca.notBefore, 'crl.this_update', 'thisUpdate is before the CA was valid');
  at = nextNode.end;

  let entries = 0;
  let field = next();
  if (field?.tag === SEQ) {
    lintCheck(field.end > field.body, 'crl.entries.empty', 'an empty revokedCertificates list must be absent (RFC 5280 5.1.2.6)');
    entries = lintEntries(der, field, thisUpdate.getTime());
    at = field.end;
    field = next();
  }
  lintCheck(field?.tag === 0xa0 && field.end === tbs.end, 'crl.extensions', 'crlExtensions [0] must be present and last');
  const extensions = parseWith('crl.extensions', 'crlExtensions', () => AsnConvert.parse(der.subarray(field.body, field.end), Extensions));
  const seen = new Set<string>();
  for (const e of extensions) {
    lintCheck(!seen.has(e.extnID), 'crl.extensions.unique', `extension ${e.extnID} appears twice`);
    seen.add(e.extnID);
    lintCheck(e.extnID !== id_ce_deltaCRLIndicator, 'crl.extensions', 'a delta CRL indicator on a full CRL');
    lintCheck(!e.critical || KNOWN_CRL_EXTENSIONS.has(e.extnID), 'crl.extensions', `unknown critical extension ${e.extnID}`);
  }
  const numberExt = extensions.find((e) => e.extnID === id_ce_cRLNumber);
  lintCheck(numberExt && !numberExt.critical, 'crl.number', 'CRL Number must be present and non-critical');
  parseWith('crl.number', 'CRL Number', () => AsnConvert.parse(numberExt.extnValue, CRLNumber));
  const crlNumber = crlNumberOf(numberExt.extnValue.buffer);
  lintCheck(crlNumber > previousNumber, 'crl.number', `CRL Number ${crlNumber} is not greater than the previous ${previousNumber}`);
  const akiExt = extensions.find((e) => e.extnID === id_ce_authorityKeyIdentifier);
  lintCheck(akiExt && !akiExt.critical, 'crl.aki', 'Authority Key Identifier must be present and non-critical');
  if (ca.subjectKeyId) {
    const keyId = AsnConvert.parse(akiExt.extnValue, AuthorityKeyIdentifier).keyIdentifier;
    lintCheck(keyId && Buffer.from(keyId.buffer).equals(ca.subjectKeyId), 'crl.aki', 'Authority Key Identifier differs from the CA key identifier');
  }
  return { crlNumber, entries };
}

/** CRLNumber ::= INTEGER (0..MAX), at most 20 octets (RFC 5280 5.2.3). */
function crlNumberOf(extnValue: ArrayBuffer): bigint {
  const value = new Uint8Array(extnValue);
  const n = expectNode(value, 0, value.length, INT, 'CRLNumber', 'crl.number');
  const len = n.end - n.body;
  lintCheck(len >= 1 && len <= 20, 'crl.number', `CRL Number is ${len} octets (at most 20)`);
  lintCheck((value[n.body] & 0x80) === 0, 'crl.number', 'CRL Number is negative');
  return BigInt(`0x${Buffer.from(value.subarray(n.body, n.end)).toString('hex')}`);
}

const matchesAt = (buf: Uint8Array, at: number, bytes: number[]) => bytes.every((b, i) => buf[at + i] === b);

/** One pass over revokedCertificates: serial sign/size/encoding, strictly ascending (sorted, unique), date, reason. */
function lintEntries(der: Uint8Array, list: Node, thisUpdateMs: number): number {
  let count = 0;
  let prevAt = -1;
  let prevLen = 0;
  for (let at = list.body; at < list.end; ) {
    const entry = readNode(der, at, list.end);
    if (entry.tag !== SEQ) throw new LintFailure('crl.parse', `entry ${count}: not a SEQUENCE`);
    const serial = readNode(der, entry.body, entry.end);
    if (serial.tag !== INT) throw new LintFailure('crl.parse', `entry ${count}: serial is not an INTEGER`);
    const s = serial.body;
    const len = serial.end - s;
    if (len < 1 || len > 20) throw new LintFailure('crl.entries.serial.size', `entry ${count}: serial is ${len} octets (1 to 20)`);
    if (der[s] & 0x80) throw new LintFailure('crl.entries.serial.sign', `entry ${count}: negative serial`);
    if (len > 1 && der[s] === 0 && (der[s + 1] & 0x80) === 0) throw new LintFailure('crl.entries.serial.encoding', `entry ${count}: serial has a superfluous leading zero`);
    if (prevAt >= 0) {
      // Minimal positive INTEGERs: a longer one is larger; same length compares bytewise.
      let cmp = len - prevLen;
      for (let i = 0; cmp === 0 && i < len; i++) cmp = der[s + i] - der[prevAt + i];
      if (cmp <= 0) throw new LintFailure('crl.entries.order', `entry ${count}: serial ${cmp === 0 ? 'repeats' : 'is smaller than'} the previous one (entries must be sorted and unique)`);
    }
    prevAt = s;
    prevLen = len;
    const date = readNode(der, serial.end, entry.end);
    const ms = timeMs(der, date);
    if (Number.isNaN(ms)) throw new LintFailure('crl.entries.revocation_date', `entry ${count}: revocationDate is not a valid UTCTime/GeneralizedTime`);
    if (ms > thisUpdateMs) throw new LintFailure('crl.entries.revocation_date', `entry ${count}: revocationDate is after thisUpdate`);
    if (date.end < entry.end) lintEntryExtensions(der, readNode(der, date.end, entry.end), count);
    count++;
    at = entry.end;
  }
  return count;
}

function lintEntryExtensions(der: Uint8Array, exts: Node, index: number) {
  if (exts.tag !== SEQ || exts.end === exts.body) throw new LintFailure('crl.entries.extensions', `entry ${index}: crlEntryExtensions must be a non-empty SEQUENCE`);
  for (let at = exts.body; at < exts.end; ) {
    const ext = readNode(der, at, exts.end);
    const id = readNode(der, ext.body, ext.end);
    let value = readNode(der, id.end, ext.end);
    if (value.tag === 0x01) throw new LintFailure('crl.entries.extensions', `entry ${index}: critical entry extension`);
    if (matchesAt(der, id.start, REASON_OID) && id.end - id.start === REASON_OID.length) {
      value = readNode(der, value.body, value.end); // ENUMERATED inside the OCTET STRING
      const code = value.end - value.body === 1 ? der[value.body] : -1;
      if (value.tag !== 0x0a || !FULL_CRL_REASON_CODES.has(code)) {
        throw new LintFailure('crl.entries.reason', `entry ${index}: reasonCode ${code} is not allowed in a full CRL (unspecified must be absent, removeFromCRL is for delta CRLs)`);
      }
    } else if (!(matchesAt(der, id.start, INVALIDITY_DATE_OID) && id.end - id.start === INVALIDITY_DATE_OID.length)) {
      throw new LintFailure('crl.entries.extensions', `entry ${index}: unexpected entry extension`);
    }
    at = ext.end;
  }
}
