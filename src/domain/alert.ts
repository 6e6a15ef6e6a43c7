/** Alert vocabulary shared by the worker, the API and the webhooks. */
/**
 * CRL_STALE, BROKER_RELOAD_FAILING, CA_EXPIRING and CRL_RECONCILED (revocations restored from a
 * CRL after a database restore) and CRL_INCREMENTAL_MISMATCH (the CRL entries kept in memory differed
 * from a full read of the database; publish-crl.ts) are system alerts (tenant __system__): operators see them and
 * their webhooks get them.
 */
/** CLAIM_CERT_SHARED: a claim (factory) certificate was presented for a second device id (cloned or shared claim identity). */
export const ALERT_TYPES = ['CERT_EXPIRING', 'CERT_EXPIRED', 'CRL_STALE', 'BROKER_RELOAD_FAILING', 'CA_EXPIRING', 'CLAIM_CERT_SHARED', 'CRL_RECONCILED', 'CRL_INCREMENTAL_MISMATCH'] as const;
export const SYSTEM_ALERT_TYPES = ['CRL_STALE', 'BROKER_RELOAD_FAILING', 'CA_EXPIRING', 'CRL_RECONCILED', 'CRL_INCREMENTAL_MISMATCH'] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

export const ALERT_STATUSES = ['OPEN', 'ACKNOWLEDGED', 'CLOSED'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

/** Why an alert closed: by a person, or by the worker because its cause went away. */
export const CLOSE_REASONS = ['manual', 'rotated', 'revoked', 'expired', 'replaced', 'resolved'] as const;

/** Owner of system-wide alerts (CRL_STALE). Not a valid tenant id, so no tenant can see or own it. */
export const SYSTEM_TENANT = '__system__';

export interface AlertRecord {
  id: number;
  tenant_id: string;
  device_id: string | null;
  alert_type: string;
  fingerprint: string;
  status: AlertStatus;
  severity: number;
  summary: string;
  details: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  closed_at: string | null;
  closed_by: string | null;
  close_reason: string | null;
}
