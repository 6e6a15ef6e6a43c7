import { bitString, contextExplicit, integer, octetString, oid, sequence } from './der.ts';

/**
 * P-256 keys encoded from their raw parts (JWK d, x, y). OpenSSL 3's key encoders cost
 * about 170 µs per key on the event loop, several times the key generation itself; this
 * is plain byte assembly. The output is byte-identical to OpenSSL's (tested).
 */
const EC_ALGORITHM = sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7'));

const point = (x: Uint8Array, y: Uint8Array) => Buffer.concat([Uint8Array.of(4), x, y]);

export const p256SpkiDer = (x: Uint8Array, y: Uint8Array): Buffer => sequence(EC_ALGORITHM, bitString(point(x, y)));

/** PKCS#8 PrivateKeyInfo wrapping an RFC 5915 ECPrivateKey (parameters in the algorithm, public key included). */
export const p256Pkcs8Der = (d: Uint8Array, x: Uint8Array, y: Uint8Array): Buffer =>
  sequence(integer(0), EC_ALGORITHM, octetString(sequence(integer(1), octetString(d), contextExplicit(1, bitString(point(x, y))))));
