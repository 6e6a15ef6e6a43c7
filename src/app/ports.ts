import type { KeyType } from '../domain/certificate.ts';

/** Narrow dependencies of the use cases besides storage (storage-ports.ts). Implementations live in src/pki and the storage layer (revocation events). */

/** A public key as SubjectPublicKeyInfo DER, with its type (`rsa-2048`, `ec-p256`, ...). */
export interface DevicePublicKey {
  spkiDer: Buffer;
  keyType: string;
}

export interface IssueRequest {
  commonName: string;
  publicKey: DevicePublicKey;
  notBefore: Date;
  notAfter: Date;
}

export interface IssuedCertificate {
  certPem: string;
  fingerprint: string;
  serialHex: string;
  issuer: string;
  keyType: string;
  notBefore: Date;
  notAfter: Date;
}

/** Parsed from a PEM the caller sent; signature and chain already checked against the Device CA. */
export interface VerifiedCertificate extends IssuedCertificate {
  commonName: string;
}

/** The issuing authority: it signs, it knows nothing of HTTP or storage (smallstep's split). */
export interface CertificateAuthority {
  /** Throws CA_NOT_CONFIGURED when no Device CA is loaded. */
  caCertPem(): string;
  /** The CA certificate's validity (throws CA_NOT_CONFIGURED like caCertPem). */
  caValidity(): { notBefore: Date; notAfter: Date };
  issue(request: IssueRequest): Promise<IssuedCertificate>;
  /** An existing certificate (upload): must be signed by the Device CA. */
  verifyIssued(certPem: string): Promise<VerifiedCertificate>;
}

export interface KeySource {
  /** `tenantId`: generation is queued fairly across tenants. */
  generate(keyType: KeyType, tenantId?: string): Promise<{ publicKey: DevicePublicKey; privateKeyPem: string }>;
  /** Verifies a CSR's signature and key strength; returns its public key. */
  publicKeyFromCsr(csrPem: string): Promise<DevicePublicKey>;
  /**
   * The key of a certificate brought for import (already verified as issued by the Device CA):
   * refused when a CSR with it would be (weak key), or when its KeyUsage does not fit the key (RFC 8813).
   */
  publicKeyFromCertificate(certPem: string): DevicePublicKey;
}

/** Told after every committed revocation; the CRL publisher rebuilds and pushes the CRL. */
export interface RevocationListener {
  revocationCommitted(): void;
}

/**
 * Told after a change that alters the broker's acl_file (a device registered, a tenant's broker
 * grants replaced). Resolves when this process has rewritten the file and reloaded the broker,
 * or at once when another process keeps the broker's files (it was NOTIFYed).
 */
export interface BrokerAclListener {
  aclChanged(): Promise<void>;
}

export const noRevocationListener: RevocationListener = { revocationCommitted: () => undefined };

export interface Actor {
  /** `sub` of the token, or `system:<task>` for the worker. */
  id: string;
  tenantId: string;
}

/** The row a sealed secret belongs to: the ciphertext is bound to it (AEAD associated data). */
export interface SealContext {
  tenantId: string;
  webhookId: number;
}

/** Encryption at rest of small secrets (webhook HMAC keys); implemented by pki/secret-box.ts. */
export interface SecretSealer {
  /** The stored form of `plain` for this row, under the current key. */
  seal(plain: string, context: SealContext): string;
  /** The plaintext of a stored value of this row. Throws when it does not authenticate (no configured key, another row's ciphertext, tampered). */
  open(stored: string, context: SealContext): string;
  /** True when `stored` is sealed for a row by the current key (nothing left to re-encrypt). */
  isCurrent(stored: string): boolean;
  /** Prefix of every value the current key sealed (`v2:<key id>:`). */
  readonly currentPrefix: string;
}
