/**
 * The pluggable signer of a CA key (the model: smallstep's kms/): where the key lives (a file
 * loaded into the process, a PKCS#11 token, later a cloud KMS) is hidden behind one interface.
 * Certificates and CRLs are signed through it and never see the key itself.
 */
import type { KeyObject } from 'node:crypto';
import type { TbsSigner as CrlSigner } from '../../domain/signer.ts';
import { children, decodeOid, nth, readSingle } from '../../domain/der.ts';
import { SIGNATURE_ALGORITHMS } from '../crl-signer.ts';

/** `ec-p256`, `ec-p384`, `rsa-3072`, ... (the notation of keys.ts describeKey). */
export type SignerKeyType = string;

export interface KeySigner {
  /** Where the key lives: `file` (in this process) or `pkcs11` (in a token; never in this process). */
  readonly kind: 'file' | 'pkcs11';
  /** The key type, e.g. `ec-p256` or `rsa-3072`. */
  readonly keyType: SignerKeyType;
  /** DER AlgorithmIdentifier of the signature (ecdsa-with-SHA256, sha256WithRSAEncryption, ...). */
  readonly algorithmIdentifierDer: Buffer;
  /** The digest the signature algorithm uses (`sha256`, `sha384`). */
  readonly hash: string;
  readonly publicKey: KeyObject;
  /** DER SubjectPublicKeyInfo of the public key. */
  readonly spkiDer: Buffer;
  /** Names the key for operators and logs (a path or a PKCS#11 URI without any PIN). */
  readonly label: string;
  /** Signs DER to-be-signed bytes: returns the X.509 signatureValue bytes (DER ECDSA-Sig-Value for EC). */
  sign(tbs: Uint8Array): Promise<Buffer>;
  /**
   * The same, synchronously: the CRL builder (domain/crl/build-crl.ts) signs synchronously.
   * One call per CRL variant; a token signs a digest (EC) or hashes in the module (RSA).
   */
  signSync(tbs: Uint8Array): Buffer;
  /** Releases sessions and the module (PKCS#11); a no-op for a file key. */
  close(): Promise<void>;
}

/** The CRL builder's signer view of a KeySigner. */
export function crlSignerFor(signer: KeySigner): CrlSigner {
  return { algorithmIdentifierDer: signer.algorithmIdentifierDer, sign: (tbs) => signer.signSync(tbs), signAsync: (tbs) => signer.sign(tbs) };
}

/** The node:crypto digest name of a DER signature AlgorithmIdentifier (one of SIGNATURE_ALGORITHMS). */
export function hashOfAlgorithm(algorithmIdentifierDer: Uint8Array): string {
  const seq = readSingle(algorithmIdentifierDer);
  const algOid = decodeOid(algorithmIdentifierDer, nth(children(algorithmIdentifierDer, seq), 0, 'algorithm'));
  const known = SIGNATURE_ALGORITHMS[algOid];
  if (!known) throw new TypeError(`unsupported signature algorithm ${algOid}`);
  return known.hash;
}

