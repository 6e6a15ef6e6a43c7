export const KEY_TYPES = ['rsa-2048', 'ec-p256'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export const CERTIFICATE_STATUSES = ['ACTIVE', 'REVOKED', 'EXPIRED'] as const;
export type CertificateStatus = (typeof CERTIFICATE_STATUSES)[number];

export const DEFAULT_KEY_TYPE: KeyType = 'rsa-2048';
export const DEFAULT_VALIDITY_DAYS = 365;
export const MAX_VALIDITY_DAYS = 3650;

/** Backdating notBefore tolerates devices whose clocks run a little behind. */
export const NOT_BEFORE_SKEW_MS = 5 * 60_000;

export interface CertificateRecord {
  id: number;
  tenant_id: string;
  device_id: string;
  fingerprint_sha256: string;
  common_name: string;
  issuer: string;
  /** The CA record that signed it (certificate_authorities.id); null: not known (an upload verified against no record, or not yet backfilled). */
  ca_id: string | null;
  serial_number: string;
  key_type: string;
  status: CertificateStatus;
  not_before: string;
  not_after: string;
  revoked_at: string | null;
  revoked_reason: string | null;
  scheduled_revoke_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface CertificateWithPem extends CertificateRecord {
  cert_pem: string;
}

export const PRIVATE_KEY_WARNING = 'Save the private key now -- it will NOT be shown again.';
export const DEVICE_KEY_NOTE = 'The private key stays on the device; certfleet never saw it.';

/** revoke_old_after_hours and ROTATION_GRACE_HOURS: 1 hour to 30 days. */
export const MAX_ROTATION_GRACE_HOURS = 720;

/** Certificate list filter: `pending`, the old or the new certificates of a pending rotation; `none`, the others. */
export const ROTATION_FILTERS = ['none', 'pending'] as const;
export type RotationFilter = (typeof ROTATION_FILTERS)[number];
