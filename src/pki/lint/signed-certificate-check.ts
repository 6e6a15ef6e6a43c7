/**
 * The check after the CA signed a certificate, on the produced bytes: what Node's
 * X509Certificate parse + verify established, without parsing the certificate again.
 *
 * The TBS was linted before the CA signed it (issued-tbs-lint.ts: the full lint once per shape,
 * the varying fields every time), so what is left to prove after signing is the envelope and the
 * signature. This reads the produced DER with the lint's own TLV reader (tlv.ts, not the encoder's
 * code) and requires:
 *
 * - exactly one SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }, nothing after it
 *   (a trailing byte would make it a different certificate for some parsers);
 * - tbsCertificate byte for byte the TBS that was linted (so the certificate that leaves the
 *   service is the linted one);
 * - signatureAlgorithm byte for byte the TBS's own signature field, and the CA signer's
 *   algorithm (RFC 5280 4.1.1.2; OpenSSL's X509_verify refuses a mismatch, so this is what the
 *   parse-back checked);
 * - signatureValue a BIT STRING with no unused bits whose content verifies over the TBS with the
 *   CA public key and the algorithm's digest (node:crypto verify: OpenSSL, not this code).
 *
 * That is everything X509Certificate(der).verify(caKey) decided for these bytes: OpenSSL's parse
 * of the TBS itself is covered by the full lint of its shape (which parses the throwaway-signed copy
 * with Node's X509Certificate) and the varying fields' checks; the caller still parses the result
 * back with Node in full for the first certificate of each CA and periodically (certificate-authority.ts).
 */
import { verify, type KeyObject } from 'node:crypto';
import { lintCheck } from './lint-failure.ts';
import { childNodes, nodeBytes, readNode } from './tlv.ts';

const RULE = 'cert.signature';
const SEQUENCE = 0x30;
const BIT_STRING = 0x03;

export interface SignedCertificateExpectation {
  /** The TBS that was linted and signed. */
  tbs: Uint8Array;
  /** The CA signer's AlgorithmIdentifier DER. */
  signatureAlgorithmDer: Uint8Array;
  /** Its digest (`sha256`, `sha384`). */
  hash: string;
  caPublicKey: KeyObject;
}

/** Throws a LintFailure (rule cert.signature, or cert.parse for a malformed envelope) unless `der` is the CA-signed `tbs`. */
export function checkSignedCertificate(der: Uint8Array, expected: SignedCertificateExpectation): void {
  const v = envelopeChecked(der, expected);
  let ok = false;
  try {
    ok = verify(expected.hash, v.tbs, v.key, v.value);
  } catch {
    ok = false;
  }
  lintCheck(ok, RULE, 'the CA signature does not verify with the CA public key');
}

/**
 * checkSignedCertificate with the signature verified in libuv's thread pool (node:crypto verify
 * with a callback: OpenSSL, as the inline call), off the event loop's thread; the envelope's
 * checks are the same, made inline. Rejects with the same LintFailure.
 */
export async function checkSignedCertificateInPool(der: Uint8Array, expected: SignedCertificateExpectation): Promise<void> {
  const v = envelopeChecked(der, expected);
  const ok = await new Promise<boolean>((resolve) => {
    try {
      verify(expected.hash, v.tbs, v.key, v.value, (error, result) => resolve(!error && result));
    } catch {
      resolve(false);
    }
  });
  lintCheck(ok, RULE, 'the CA signature does not verify with the CA public key');
}

/** Every check but the signature's verification; what that verification needs. */
function envelopeChecked(der: Uint8Array, expected: SignedCertificateExpectation) {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const top = readNode(buf, 0, buf.length, 'cert.parse');
  lintCheck(top.tag === SEQUENCE && top.end === buf.length, 'cert.parse', 'the certificate is not exactly one SEQUENCE');
  const parts = childNodes(buf, top, 'cert.parse');
  const [tbsNode, algorithm, signature] = parts;
  lintCheck(parts.length === 3 && tbsNode?.tag === SEQUENCE && algorithm?.tag === SEQUENCE && signature?.tag === BIT_STRING, 'cert.parse', 'the certificate is not { tbsCertificate, signatureAlgorithm, signatureValue }');
  const tbs = nodeBytes(buf, tbsNode);
  lintCheck(tbs.equals(Buffer.from(expected.tbs.buffer, expected.tbs.byteOffset, expected.tbs.byteLength)), RULE, 'the signed certificate does not carry the TBS that was linted');
  const innerAlgorithm = childNodes(buf, tbsNode, 'cert.parse')[2];
  const outer = nodeBytes(buf, algorithm);
  lintCheck(innerAlgorithm !== undefined && nodeBytes(buf, innerAlgorithm).equals(outer), RULE, 'signatureAlgorithm differs from the TBS signature field');
  lintCheck(outer.equals(Buffer.from(expected.signatureAlgorithmDer)), RULE, 'signatureAlgorithm is not the CA signer’s');
  lintCheck(signature.end > signature.body && buf[signature.body] === 0, RULE, 'signatureValue has unused bits');
  const value = buf.subarray(signature.body + 1, signature.end);
  const key = expected.caPublicKey.asymmetricKeyType === 'ec' ? { key: expected.caPublicKey, dsaEncoding: 'der' as const } : expected.caPublicKey;
  return { tbs, key, value };
}
