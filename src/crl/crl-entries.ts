/**
 * Reads the revoked entries of a DER CRL (serial, revocation date, reason): what a reconcile after
 * a restore re-marks as revoked. Pure, strict DER; a generator, so a million entries are never all
 * objects at once. Call it only on a CRL verifyCrl accepted (signature, issuer).
 */
import { REVOCATION_REASONS, type ReasonName } from '../domain/revocation-reasons.ts';
import { DerError, TAG, decodeOid, decodeTime, expectTag, readTlv, valueBytes, type Tlv } from '../domain/der.ts';
import { revokedList } from './build-crl.ts';

export interface CrlEntry {
  /** Lowercase hex without leading zeros (device_certificates.serial_number). */
  serialHex: string;
  revokedAt: Date;
  /** The entry's CRLReason; `unspecified` when it carries none. */
  reason: ReasonName;
}

const OID_REASON_CODE = '2.5.29.21';
const REASON_BY_CODE = new Map<number, ReasonName>(Object.entries(REVOCATION_REASONS).map(([name, code]) => [code, name as ReasonName]));

function reasonOf(der: Uint8Array, extensions: Tlv): ReasonName {
  const seq = expectTag(extensions, TAG.SEQUENCE, 'crlEntryExtensions');
  for (let off = seq.valueStart; off < seq.end; ) {
    const ext = expectTag(readTlv(der, off, seq.end), TAG.SEQUENCE, 'Extension');
    off = ext.end;
    const id = expectTag(readTlv(der, ext.valueStart, ext.end), TAG.OID, 'extnID');
    if (decodeOid(der, id) !== OID_REASON_CODE) continue;
    let t = readTlv(der, id.end, ext.end);
    if (t.tag === TAG.BOOLEAN) t = readTlv(der, t.end, ext.end);
    const value = expectTag(t, TAG.OCTET_STRING, 'extnValue');
    const code = expectTag(readTlv(der, value.valueStart, value.end), TAG.ENUMERATED, 'CRLReason');
    const bytes = valueBytes(der, code);
    if (bytes.length !== 1) throw new DerError('CRLReason out of range');
    return REASON_BY_CODE.get(bytes[0]) ?? 'unspecified';
  }
  return 'unspecified';
}

/** Every revoked entry of the CRL, in its order. Throws DerError on a malformed entry. */
export function* crlEntries(der: Uint8Array): Generator<CrlEntry> {
  const list = revokedList(der);
  if (!list) return;
  for (let off = list.valueStart; off < list.end; ) {
    const entry = expectTag(readTlv(der, off, list.end), TAG.SEQUENCE, 'revoked entry');
    off = entry.end;
    const serial = expectTag(readTlv(der, entry.valueStart, entry.end), TAG.INTEGER, 'userCertificate');
    const date = readTlv(der, serial.end, entry.end);
    if (date.tag !== TAG.UTC_TIME && date.tag !== TAG.GENERALIZED_TIME) throw new DerError('revoked entry: revocationDate must be a Time');
    const serialHex = Buffer.from(valueBytes(der, serial)).toString('hex').replace(/^0+(?=.)/, '');
    const reason = date.end < entry.end ? reasonOf(der, readTlv(der, date.end, entry.end)) : 'unspecified';
    yield { serialHex, revokedAt: decodeTime(der, date), reason };
  }
}
