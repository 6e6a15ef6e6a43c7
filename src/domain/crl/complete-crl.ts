/**
 * The broker's file holds the complete variant of the CRL served at the distribution point URL:
 * the same TBSCertList without the Issuing Distribution Point extension, with its own signature
 * (made at publication). Only that signature (tens of bytes) is stored next to the served CRL,
 * so the database keeps one copy of the entries (tens of MB at a million) and every worker
 * rebuilds the same file bytes.
 */
import { bitString, children, contextExplicit, decodeOid, readSingle, readTlv, sequence, tlv, tlvBytes, TAG, valueBytes, type Tlv } from '../der.ts';

const ISSUING_DISTRIBUTION_POINT = '2.5.29.28';
const CRL_EXTENSIONS_TAG = 0xa0;

function parts(crlDer: Uint8Array): { tbs: Tlv; alg: Tlv; signature: Tlv } {
  const outer = readSingle(crlDer);
  const [tbs, alg, signature] = children(crlDer, outer);
  if (!tbs || !alg || signature?.tag !== TAG.BIT_STRING) throw new RangeError('not a CertificateList');
  return { tbs, alg, signature };
}

/** The signatureValue bytes of a CRL (without the unused-bits octet). */
export function crlSignature(crlDer: Uint8Array): Buffer {
  return Buffer.from(valueBytes(crlDer, parts(crlDer).signature).subarray(1));
}

/** `crlDer` without its Issuing Distribution Point, carrying `signature` (made over that TBS). */
export function completeCrlOf(crlDer: Uint8Array, signature: Uint8Array): Buffer {
  const { tbs, alg } = parts(crlDer);
  const fields = children(crlDer, tbs);
  const last = fields[fields.length - 1];
  if (last?.tag !== CRL_EXTENSIONS_TAG) throw new RangeError('the CRL has no extensions');
  const list = readTlv(crlDer, last.valueStart, last.end);
  const kept = children(crlDer, list)
    .filter((extension) => decodeOid(crlDer, children(crlDer, extension)[0]) !== ISSUING_DISTRIBUTION_POINT)
    .map((extension) => tlvBytes(crlDer, extension));
  const completeTbs = tlv(TAG.SEQUENCE, ...fields.slice(0, -1).map((f) => tlvBytes(crlDer, f)), contextExplicit(0, sequence(...kept)));
  return sequence(completeTbs, tlvBytes(crlDer, alg), bitString(signature));
}
