/**
 * What a broker agent checks before a CRL bundle reaches its broker: every CRL of the bundle is
 * signed by one of the trusted CAs (`--ca-file`) and names it as issuer, its nextUpdate is in
 * the future, no CA has two CRLs, and no CA's CRL number goes backwards from what the node
 * applied last. A bundle that fails any of these is refused whole (the broker keeps its file).
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { caIdentityFromCertificate } from '../../pki/crl-signer.ts';
import { PemError, pemBlocks } from '../../pki/pem.ts';
import { CrlVerificationError, verifyCrl } from '../../crl/verify-crl.ts';

export interface TrustedCa {
  /** Hex key id (subjectKeyIdentifier): the CA's name in the agent's state. */
  keyId: string;
  subjectDer: Buffer;
  publicKey: KeyObject;
}

export interface CheckedCrl {
  issuerKeyId: string;
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  der: Buffer;
}

export class BundleRejectedError extends Error {
  override readonly name = 'BundleRejectedError';
  constructor(
    readonly code: 'EMPTY' | 'UNTRUSTED_ISSUER' | 'DUPLICATE_ISSUER' | 'NUMBER_WENT_BACKWARDS' | 'INVALID_CRL' | 'NOT_YET_VALID',
    message: string,
  ) {
    super(`CRL bundle refused: ${message}`);
  }
}

/** The CA certificates of a PEM file (the broker's `cafile`). */
export function trustedCasFromPem(pem: string): TrustedCa[] {
  return pemBlocks(pem, 'CERTIFICATE').map((der) => {
    const identity = caIdentityFromCertificate(der);
    return { keyId: identity.subjectKeyId.toString('hex'), subjectDer: identity.subjectDer, publicKey: new X509Certificate(der).publicKey };
  });
}

function verifyOne(der: Buffer, cas: TrustedCa[], now: Date): CheckedCrl {
  let last: unknown = null;
  for (const ca of cas) {
    try {
      const v = verifyCrl(der, { caPublicKey: ca.publicKey, now, issuerNameDer: ca.subjectDer });
      return { issuerKeyId: ca.keyId, crlNumber: v.crlNumber, thisUpdate: v.thisUpdate, nextUpdate: v.nextUpdate, der };
    } catch (error) {
      if (!(error instanceof CrlVerificationError)) throw error;
      last = error;
      // WRONG_ISSUER/BAD_SIGNATURE: maybe another CA's; anything else is this CRL's own defect
      if (error.code !== 'WRONG_ISSUER' && error.code !== 'BAD_SIGNATURE') break;
    }
  }
  const reason = last instanceof CrlVerificationError ? last : null;
  if (reason && reason.code !== 'WRONG_ISSUER' && reason.code !== 'BAD_SIGNATURE') throw new BundleRejectedError('INVALID_CRL', reason.message);
  throw new BundleRejectedError('UNTRUSTED_ISSUER', `a CRL is not signed by any CA of the trusted file${reason ? ` (${reason.message})` : ''}`);
}

/**
 * A CRL whose thisUpdate is ahead of the broker's clock makes OpenSSL refuse every client ("CRL is
 * not yet valid"): one further ahead than this is refused; a smaller skew is waited out before writing.
 */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

/**
 * Checks a bundle (PEM, one `X509 CRL` block per CA) against the trusted CAs and the numbers the
 * node applied last (`applied`: CA key id → CRL number). Returns its CRLs; throws BundleRejectedError.
 * `now` null: the file on disk read back at start (only signatures and issuers count).
 */
export function checkBundle(pem: string, cas: TrustedCa[], applied: ReadonlyMap<string, bigint>, now: Date | null): CheckedCrl[] {
  let blocks: Buffer[];
  try {
    blocks = pemBlocks(pem, 'X509 CRL');
  } catch (error) {
    if (error instanceof PemError) throw new BundleRejectedError('INVALID_CRL', error.message);
    throw error;
  }
  if (blocks.length === 0) throw new BundleRejectedError('EMPTY', 'no X509 CRL block');
  const out: CheckedCrl[] = [];
  for (const der of blocks) {
    const crl = verifyOne(der, cas, now ?? new Date(0));
    if (now && crl.thisUpdate.getTime() - now.getTime() > MAX_CLOCK_SKEW_MS) {
      throw new BundleRejectedError('NOT_YET_VALID', `CA ${crl.issuerKeyId}: thisUpdate ${crl.thisUpdate.toISOString()} is ahead of this node's clock (${now.toISOString()}); the broker would refuse every client`);
    }
    if (out.some((c) => c.issuerKeyId === crl.issuerKeyId)) throw new BundleRejectedError('DUPLICATE_ISSUER', `two CRLs of CA ${crl.issuerKeyId}`);
    const before = applied.get(crl.issuerKeyId);
    if (before !== undefined && crl.crlNumber < before) {
      throw new BundleRejectedError('NUMBER_WENT_BACKWARDS', `CA ${crl.issuerKeyId}: CRL number ${crl.crlNumber} is older than ${before}, which this node applied`);
    }
    out.push(crl);
  }
  return out;
}
