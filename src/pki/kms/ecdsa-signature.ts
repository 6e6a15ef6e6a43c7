/**
 * ECDSA signature encodings: PKCS#11 CKM_ECDSA returns r || s (each the size of the curve
 * order, big-endian); X.509 and CRLs carry the DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }.
 */
import { TAG, children, expectTag, integerFromUnsigned, readSingle, sequence, valueBytes } from '../../domain/der.ts';

export function ecdsaRawToDer(raw: Uint8Array): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new RangeError(`an ECDSA r||s signature has an even, non-zero length (got ${raw.length})`);
  const half = raw.length / 2;
  return sequence(integerFromUnsigned(raw.subarray(0, half)), integerFromUnsigned(raw.subarray(half)));
}

/** DER ECDSA-Sig-Value → r || s, each left-padded to `size` bytes (32 for P-256, 48 for P-384). */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Buffer {
  const seq = expectTag(readSingle(der), TAG.SEQUENCE, 'ECDSA-Sig-Value');
  const out = Buffer.alloc(2 * size);
  children(der, seq).forEach((part, i) => {
    let bytes = valueBytes(der, expectTag(part, TAG.INTEGER, i === 0 ? 'r' : 's'));
    while (bytes.length > size && bytes[0] === 0) bytes = bytes.subarray(1);
    if (bytes.length > size) throw new RangeError('ECDSA integer longer than the curve order');
    out.set(bytes, (i + 1) * size - bytes.length);
  });
  return out;
}
