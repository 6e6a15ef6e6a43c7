/**
 * A signature over DER to-be-signed bytes (a TBSCertList, a TBSCertificate): what the pure
 * builders need from a key. pki/crl-signer.ts makes one from a private key (the CA's, or the
 * lint's throwaway key of the same algorithm).
 */
export interface TbsSigner {
  /** DER AlgorithmIdentifier used both in the TBS and as the outer signatureAlgorithm. */
  algorithmIdentifierDer: Uint8Array;
  /** Signs the DER TBS; returns the raw signatureValue bytes (DER ECDSA-Sig-Value for EC). */
  sign(tbs: Uint8Array): Uint8Array;
  /** The same in libuv's thread pool (so two large TBSs are hashed on two cores at once); optional. */
  signAsync?(tbs: Uint8Array): Promise<Uint8Array>;
}
