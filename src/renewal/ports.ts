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
  /** The certificate was registered with `.../certificates/import` (issued outside certfleet). */
  wasImported(tenantId: string, certificateId: number): Promise<boolean>;
  /** An audit event of a device-initiated action (recovery and its refusals). */
  recordAudit(e: { tenantId: string; actor: string; action: string; targetType: string; targetId: string | number; details: Record<string, unknown>; at: Date }): Promise<void>;
}
