import { contextExplicit, contextImplicit, integer, oid, sequence, set } from '../domain/der.ts';

const SIGNED_DATA = '1.2.840.113549.1.7.2';
const DATA = '1.2.840.113549.1.7.1';

/**
 * A certs-only CMS SignedData (RFC 5652; RFC 7030 4.1.3 "certs-only"): no content, no signers,
 * just the certificates, as EST answers /cacerts and /simple(re)enroll.
 */
export function pkcs7CertsOnly(certificatesDer: Uint8Array[]): Buffer {
  const signedData = sequence(
    integer(1),
    set(),
    sequence(oid(DATA)),
    contextImplicit(0, Buffer.concat(certificatesDer), true),
    set(),
  );
  return sequence(oid(SIGNED_DATA), contextExplicit(0, signedData));
}
