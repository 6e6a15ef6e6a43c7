/**
 * ECDSA signature encodings: PKCS#11 CKM_ECDSA returns r || s (each the size of the curve
 * order, big-endian); X.509 and CRLs carry the DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }.
 */
import { integerFromUnsigned, sequence } from '../../domain/der.ts';

export function ecdsaRawToDer(raw: Uint8Array): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new RangeError(`an ECDSA r||s signature has an even, non-zero length (got ${raw.length})`);
  const half = raw.length / 2;
  return sequence(integerFromUnsigned(raw.subarray(0, half)), integerFromUnsigned(raw.subarray(half)));
}

