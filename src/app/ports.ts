import type { KeyType } from '../domain/certificate.ts';
import type { CaKeyRef, CaRecord } from '../domain/ca.ts';

/** Narrow dependencies of the use cases besides storage (storage-ports.ts). Implementations live in src/pki and the storage layer (revocation events). */

/** A public key as SubjectPublicKeyInfo DER, with its type (`rsa-2048`, `ec-p256`, ...). */
export interface DevicePublicKey {
  spkiDer: Buffer;
  keyType: string;
}

export interface IssueRequest {
  /** The device's tenant: the active CA of its scope signs (its own CA, else the global one). */
  tenantId: string;
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
  /** The CA record that signed it (null: a process without CA records, e.g. a single-CA test authority). */
  caId?: string | null;
  /** The signing CA's certificate (PEM), when this process signed it: the answer's ca_cert_pem without parsing the new certificate again. */
  issuerPem?: string;
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
  /** The certificate of the CA that signs for `tenantId` now (its own active CA, else the global one; no tenant: the global one), followed by its root's for an intermediate. Throws CA_NOT_CONFIGURED when there is none. */
  caCertPem(tenantId?: string | null): string;
  /** Every CA a device must trust now (staged, active, retiring), PEM, concatenated; throws CA_NOT_CONFIGURED when there is none. */
  trustedCaPems(): string;
  /** The validity of the CA that signs for `tenantId` (throws CA_NOT_CONFIGURED like caCertPem). */
  caValidity(tenantId?: string | null): { notBefore: Date; notAfter: Date };
  /** Signed by the active CA of the request's tenant scope; never by a staged, retiring, retired or revoked CA. */
  issue(request: IssueRequest): Promise<IssuedCertificate>;
  /** An existing certificate (upload): must be signed by a published CA the tenant may use (its own or the global scope's). */
  verifyIssued(certPem: string, tenantId?: string | null): Promise<VerifiedCertificate>;
  /** The PEM of the published CA (staged, active, retiring) that signed `certPem` (name and signature), followed by its root's when it is an intermediate (chain order), or null. */
  issuerPemOf(certPem: string): string | null;
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

/** A CA certificate and key checked by the CA keystore (pki/ca-keystore.ts), ready to be stored as a record. */
export interface PreparedCa {
  certPem: string;
  subject: string;
  /** Its CN: device_certificates.issuer of what it signs. */
  issuerLabel: string;
  issuerKeyId: string;
  notBefore: Date;
  notAfter: Date;
  keyRef: CaKeyRef;
  /** Writes the key file (mode 0600, never over an existing file); a token key is already in its token. Called in the storing transaction, after the insert. */
  persist(): Promise<void>;
}

/**
 * Where Device CA keys are made and checked (issue 19). Every failure is an AppError with a 4xx
 * code: INVALID_CA_CERTIFICATE (not a CA, expired, unparseable), WEAK_KEY, CA_KEY_MISMATCH,
 * CA_KEY_UNAVAILABLE (unreadable key, PKCS#11 URI that does not resolve, wrong PIN, no PIN file).
 */
export interface CaKeystore {
  /**
   * A new key (a file under CA_KEY_DIR, or generated in the token at `keyUri`) and its CA certificate:
   * self-signed (an issuing CA, pathLen 0, or `kind` root, pathLen 1), or signed by the root `parentId`
   * (an intermediate, pathLen 0; CA_KEY_UNAVAILABLE when that root's key is not loaded).
   */
  generate(input: { id: string; keyType: 'ec-p256' | 'rsa-3072'; keyUri: string | null; commonName: string; now: Date; kind?: 'root' | 'issuing'; parentId?: string | null; parentCrlUrl?: string | null }): Promise<PreparedCa>;
  /** An operator's own CA ("bring your own CA"): its certificate and either its key (PEM) or the URI of its key in the token. */
  importCa(input: { id: string; certPem: string; keyPem: string | null; keyUri: string | null; now: Date }): Promise<PreparedCa>;
}

/**
 * What the issuing use cases need of the CA directory (pki/ca-directory.ts): the records, and
 * a re-read after a change this process made (it also tells the other replicas).
 */
export interface CaRegistry {
  all(): readonly CaRecord[];
  /** The CA's key is loaded in this process (a published CA whose key could be used). */
  isLoaded(id: string): boolean;
  changed(): Promise<void>;
}
