import type { CertificateRecord } from '../domain/certificate.ts';
import type { RenewalPolicy } from '../domain/renewal-policy.ts';

/** A certificate of the device issued after another one (recovery: is the expired one superseded?). */
export interface NewerCertificate {
  id: number;
  status: CertificateRecord['status'];
  certPem: string;
}

/** The pending rotation of a device, seen from its new certificate. */
export interface PendingDeviceRotation {
  newCertificateId: number;
  newCertPem: string;
  oldCertificateIds: number[];
  scheduledRevokeAt: string;
  /** Actor id of whoever started it (`device:<tenant>/<device>` for a device-initiated renewal). */
  startedBy: string | null;
}

export interface EnrollmentTokenRecord {
  id: number;
  device_id: string;
  expires_at: string;
  created_at: string;
}

/** What device-initiated renewal needs from storage (implemented in src/storage/repos/renewal-repo.ts). */
export interface RenewalStore {
  /** The certificate with this SHA-256 fingerprint, in the tenant. */
  certificateByFingerprint(tenantId: string, fingerprint: string): Promise<CertificateRecord | null>;
  /** The device's newest ACTIVE certificate (the broker already proved the device holds an unrevoked one). */
  latestActiveCertificate(tenantId: string, deviceId: string): Promise<CertificateRecord | null>;
  pendingRotation(tenantId: string, deviceId: string): Promise<PendingDeviceRotation | null>;
  /** Records how the rotation whose new certificate is `newCertificateId` was confirmed. */
  markConfirmedVia(tenantId: string, newCertificateId: number, via: 'est' | 'mqtt'): Promise<void>;
  /** Stores the token's hash and, in the same transaction, the audit event `enrollment_token.created`; null: no such device. */
  createEnrollmentToken(t: { tenantId: string; deviceId: string; tokenSha256: string; expiresAt: Date; createdBy: string; now: Date }): Promise<EnrollmentTokenRecord | null>;
  /** Marks the token used if it is unused, unexpired and belongs to the device; false otherwise. */
  consumeEnrollmentToken(tenantId: string, deviceId: string, tokenSha256: string, now: Date): Promise<boolean>;
  /** The tenant's renewal policy; `validityDaysSet`: the tenant chose validity_days (otherwise a renewal keeps the replaced certificate's lifetime). */
  renewalPolicy(tenantId: string): Promise<{ policy: RenewalPolicy; validityDaysSet: boolean }>;
  /** The device's certificates stored after `certificateId` (any status), oldest first. */
  newerCertificates(tenantId: string, deviceId: string, certificateId: number): Promise<NewerCertificate[]>;
  /** The new certificate of a completed rotation that replaced this one (left ACTIVE when revoke_superseded is false), null when none. */
  supersededBy(tenantId: string, certificateId: number): Promise<number | null>;
  /** The certificate was registered with `.../certificates/import` (issued outside certfleet). */
  wasImported(tenantId: string, certificateId: number): Promise<boolean>;
  /**
   * Records a signed MQTT renewal or recovery request (the presenting certificate's fingerprint and
   * its request_id) in the database, so a replay is refused across restarts and replicas; false
   * when it was recorded before. The certificate's records received before `forgetBefore` (past
   * the signature window: they cannot be replayed any more) are removed.
   */
  recordSignedRequest(r: { tenantId: string; certificateFingerprint: string; requestId: string; signedAt: number; now: Date; forgetBefore: Date }): Promise<boolean>;
  /** An audit event of a device-initiated action (recovery and its refusals). */
  recordAudit(e: { tenantId: string; actor: string; action: string; targetType: string; targetId: string | number; details: Record<string, unknown>; at: Date }): Promise<void>;
}

// ---- factory (claim) onboarding

/** A manufacturer's CA certificate registered by a tenant (no key), as the API shows it. */
export interface ClaimCaRecord {
  id: number;
  name: string | null;
  subject: string;
  fingerprint_sha256: string;
  not_before: string;
  not_after: string;
  /** The uploaded CRL of this CA, null when none was. */
  crl: { this_update: string; next_update: string | null; entries: number } | null;
  created_by: string;
  created_at: string;
  updated_at: string;
}

export interface StoredClaimCa extends ClaimCaRecord {
  ca_cert_pem: string;
  crlDer: Buffer | null;
}

export interface StoredProvisioningPolicy {
  /** The policy as stored (validated when it was put): see src/domain/provisioning-policy.ts. */
  policy: unknown;
  /** The approval webhook's secret as stored (sealed), null without a webhook. */
  approvalSecret: string | null;
  updated_by: string;
  updated_at: string;
}

/** Which device a claim certificate onboarded (certificate_id null: reserved, not issued yet). */
export interface ClaimEnrollmentRecord {
  id: number;
  claim_fingerprint: string;
  claim_ca_id: number;
  claim_serial: string;
  claim_subject: string;
  device_id: string;
  certificate_id: number | null;
  transport: 'est' | 'mqtt';
  created_at: string;
  enrolled_at: string | null;
}

export type ClaimReservation =
  | { outcome: 'acquired' | 'bound' | 'busy'; binding: ClaimEnrollmentRecord }
  | { outcome: 'device_taken'; binding: ClaimEnrollmentRecord };

export interface ClaimAudit {
  actor: string;
  action: string;
  targetType: string;
  targetId: string | number;
  details: Record<string, unknown>;
}

/** What claim onboarding needs from storage (src/storage/repos/claim-repo.ts). Every change writes its audit event in its transaction. */
export interface ClaimStore {
  listClaimCas(tenantId: string): Promise<StoredClaimCa[]>;
  /** Every tenant's claim CA certificates (PEM, distinct): the EST listener names them in its TLS certificate request. */
  allClaimCaPems(): Promise<string[]>;
  /** null: this CA certificate is registered already in the tenant. */
  insertClaimCa(c: { tenantId: string; name: string | null; caCertPem: string; subject: string; fingerprint: string; notBefore: Date; notAfter: Date; now: Date }, audit: ClaimAudit): Promise<ClaimCaRecord | null>;
  /** Replaces the CA's CRL; null when no such CA. */
  setClaimCaCrl(tenantId: string, id: number, crl: { der: Buffer; thisUpdate: Date; nextUpdate: Date | null; entries: number; now: Date }, audit: ClaimAudit): Promise<ClaimCaRecord | null>;
  /** false: no such CA. Its past enrollments stay recorded. */
  deleteClaimCa(tenantId: string, id: number, now: Date, audit: ClaimAudit): Promise<boolean>;
  getProvisioningPolicy(tenantId: string): Promise<StoredProvisioningPolicy | null>;
  /** `approvalSecret`: 'keep' keeps the stored one. */
  // eslint-disable-next-line @typescript-eslint/no-redundant-type-constituents -- 'keep' is the sentinel for "unchanged" (a generated secret is never that word)
  putProvisioningPolicy(tenantId: string, p: { policy: unknown; approvalSecret: string | null | 'keep'; actor: string; now: Date }, audit: ClaimAudit): Promise<StoredProvisioningPolicy>;
  findClaimEnrollment(tenantId: string, claimFingerprint: string): Promise<ClaimEnrollmentRecord | null>;
  /** The claim enrollment of the device by another claim certificate, if any. */
  claimEnrollmentOfDevice(tenantId: string, deviceId: string): Promise<ClaimEnrollmentRecord | null>;
  /**
   * Binds the claim to the device unless it is bound already, and takes the binding's issuing lease
   * (`leaseMs`, on the database's clock) for the request that will issue its certificate. Atomic
   * across replicas (one transaction, serialised per device id):
   * - `acquired`: bound to `deviceId` with no certificate yet; this request issues it;
   * - `bound`: the claim is bound to another device, or its certificate was issued;
   * - `busy`: another request (any replica, this device id or another) is issuing the claim's certificate now;
   * - `device_taken`: another claim certificate is bound to `deviceId` (nothing bound).
   */
  reserveClaimEnrollment(e: {
    tenantId: string;
    claimFingerprint: string;
    claimCaId: number;
    claimSerial: string;
    claimSubject: string;
    deviceId: string;
    transport: 'est' | 'mqtt';
    now: Date;
    leaseMs: number;
  }): Promise<ClaimReservation>;
  /** Gives the issuing lease back after a failed issuance (a retry may issue at once). */
  releaseClaimEnrollment(tenantId: string, id: number): Promise<void>;
  completeClaimEnrollment(tenantId: string, id: number, certificateId: number, now: Date, audit: ClaimAudit): Promise<void>;
  /** The certificate (with PEM) of the tenant with this id, null when none. */
  certificateWithPem(tenantId: string, id: number): Promise<(CertificateRecord & { cert_pem: string }) | null>;
  /** Whether the device is registered and how many certificates it has (any status). */
  deviceState(tenantId: string, deviceId: string): Promise<{ exists: boolean; certificates: number }>;
  /**
   * false: this signed request (claim, request id) was received before (a replay). The claim's
   * records received before `forgetBefore` (past any window a signed request is accepted in, so
   * they could never match a replay) are deleted first: the table stays bounded.
   */
  recordClaimRequest(tenantId: string, claimFingerprint: string, requestId: string, signedAt: number, now: Date, forgetBefore: Date): Promise<boolean>;
  /** Revoked for keyCompromise in any tenant (SHA-256 hex of the SubjectPublicKeyInfo DER). */
  isKeyCompromised(spkiSha256: string): Promise<boolean>;
  /** A refused request: its audit event (nothing else changes). */
  recordRefusal(tenantId: string, now: Date, audit: ClaimAudit): Promise<void>;
  /**
   * Opens (or keeps open) the CLAIM_CERT_SHARED alert of a claim certificate, with its audit event;
   * on the bound device, or on no device while that device is not registered (its onboarding failed).
   */
  raiseSharedClaimAlert(a: { tenantId: string; claimFingerprint: string; deviceId: string; summary: string; details: Record<string, unknown>; severity: number; now: Date }): Promise<void>;
}
