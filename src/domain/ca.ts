/**
 * A Device CA as a managed record (issue 19): what is stored in `certificate_authorities`.
 * Pure data; the key itself is reached through `keyRef` by src/pki (never stored here).
 *
 * Lifecycle (DESIGN section 7 names):
 *   staged   -> published to brokers and devices (cafile, CRL, /pki/cas.pem), never signs a device certificate yet
 *   active   -> signs new certificates; at most one per scope (the database enforces it)
 *   retiring -> signs no device certificate; its certificates stay valid, it stays published and its CRL keeps being signed
 *   retired  -> its last certificate expired or was revoked (or the operator forced it): no longer published, no CRL, key unloaded
 *   revoked  -> compromised (cACompromise): signs nothing, no longer published (brokers stop trusting it at once), key unloaded
 * staged -> active -> retiring -> retired; staged|active|retiring -> revoked; staged -> retired (withdrawn). Nothing returns.
 *
 * Scope: `tenantId` null = the global CA (every tenant without its own active CA); a tenant id =
 * that tenant's own issuing CA, which never signs another tenant's device.
 *
 * Kind (a two-level hierarchy): `issuing` CAs sign device certificates; an issuing CA is either
 * self-signed (`parentId` null) or an intermediate signed by a certfleet `root` (`parentId` = the
 * root's id; pathLen 0). A `root` signs only intermediates and its own CRL (which lists its revoked
 * and retired intermediates), never a device certificate: it is created `active` (in service, published)
 * and can never be activated for issuance, never counts as a scope's active issuing CA. It retires
 * once none of its intermediates is published, and revoking it (cACompromise) revokes them too.
 */
export const CA_STATUSES = ['staged', 'active', 'retiring', 'retired', 'revoked'] as const;
export type CaStatus = (typeof CA_STATUSES)[number];

/** The CAs brokers and devices must trust, and whose CRL is published: staged, active, retiring. */
export const PUBLISHED_CA_STATUSES: readonly CaStatus[] = ['staged', 'active', 'retiring'];
export const isPublishedCaStatus = (status: CaStatus): boolean => PUBLISHED_CA_STATUSES.includes(status);

export const CA_KINDS = ['issuing', 'root'] as const;
export type CaKind = (typeof CA_KINDS)[number];

/** Where a CA key lives: a PEM file (plain or encrypted PKCS#8) or an object in a PKCS#11 token (RFC 7512 URI, no PIN). */
export type CaKeyRef = { kind: 'file'; path: string } | { kind: 'pkcs11'; uri: string };

export interface CaRecord {
  /** Stable id (`ca_` + 16 hex), used in routes (/api/v1/operator/cas/{id}, /pki/ca/{id}/crl) and the CLI. */
  id: string;
  /** null: the global scope. */
  tenantId: string | null;
  status: CaStatus;
  /** `root`: signs intermediates and its CRL only; `issuing`: signs device certificates (see the file comment). */
  kind: CaKind;
  /** The root that signed this intermediate; null: self-signed (a root, or an issuing CA made or imported on its own). */
  parentId: string | null;
  /** Serial number of the CA certificate (lower-case hex, no leading zeros): its entry on its root's CRL. */
  serialNumber: string;
  /** RFC 4514 subject of the CA certificate. */
  subject: string;
  /**
   * The value device_certificates.issuer (and crl_pending_revocations.issuer, crl_restored_entries.issuer)
   * holds for the certificates this CA signed: today the CA's CN, unique across CA records. A CRL lists the
   * revoked certificates WHERE issuer = issuerLabel.
   */
  issuerLabel: string;
  /** Subject key identifier, lower-case hex: the crl_state row (issuer_key_id) of this CA's CRL. Unique. */
  issuerKeyId: string;
  notBefore: Date;
  notAfter: Date;
  certPem: string;
  keyRef: CaKeyRef;
  /**
   * The CRL distribution point in every certificate this CA signs, and the Issuing Distribution
   * Point of its CRL: `<PUBLIC_BASE_URL>/pki/ca/{id}/crl` for a CA created or imported as a record;
   * the CA imported at start from DEVICE_CA_* keeps the URL its certificates already carry
   * (`/pki/crl`), so its CRL series and scope continue. Fixed for the CA's life.
   */
  crlDistributionPoint: string;
  createdAt: Date;
  activatedAt: Date | null;
  retiringAt: Date | null;
  retiredAt: Date | null;
  revokedAt: Date | null;
  revocationReason: string | null;
}

/** The one-line label of a key reference (logs, API): a path or a PKCS#11 URI (never a PIN). */
export const describeCaKeyRef = (ref: CaKeyRef): string => (ref.kind === 'file' ? ref.path : ref.uri);

/** A CA that may sign device certificates now: an active issuing CA (a root never does). */
export const isIssuingActive = (ca: Pick<CaRecord, 'status' | 'kind'>): boolean => ca.status === 'active' && ca.kind === 'issuing';
