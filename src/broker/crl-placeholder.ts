/**
 * The placeholder `crlfile` of Mosquitto's CRL hash folder layout (src/broker/crl-hash-links.ts):
 * a CRL with no entries, signed by a throwaway key, whose issuer is no CA's (so it never answers a
 * device's CRL lookup), valid for 100 years. It is there only so that Mosquitto builds a new
 * SSL_CTX at every reload (`mosquitto_security_apply` does so for a listener with `crlfile` and
 * `require_certificate`), which makes OpenSSL load the real CRLs from `capath` afresh. Its
 * contents are never checked: OpenSSL uses a CRL only for certificates of its issuer.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { oid, sequence, set, utf8String } from '../domain/der.ts';
import { buildCrl } from '../crl/build-crl.ts';
import { crlDerToPem } from '../crl/verify-crl.ts';
import { createCrlSigner } from '../pki/crl-signer.ts';

/** The placeholder's issuer CN: no certfleet CA has it. */
export const CRL_PLACEHOLDER_ISSUER = 'certfleet CRL placeholder (no CA: the CRLs are in the capath folder)';

export function renderCrlPlaceholder(now = new Date()): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const issuerNameDer = sequence(set(sequence(oid('2.5.4.3'), utf8String(CRL_PLACEHOLDER_ISSUER))));
  const der = buildCrl({
    issuerNameDer,
    authorityKeyId: randomBytes(20),
    thisUpdate: new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000),
    nextUpdate: new Date(Date.UTC(now.getUTCFullYear() + 100, 0, 1)),
    crlNumber: 1n,
    revoked: new Uint8Array(0),
    signer: createCrlSigner(privateKey),
  });
  return crlDerToPem(der);
}
