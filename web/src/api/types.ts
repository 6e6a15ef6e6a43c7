import type { AlertRecord } from '../../../src/domain/alert.ts';
import type { CertificateRecord } from '../../../src/domain/certificate.ts';

/**
 * Response shapes of the routes whose OpenAPI schema has no response body (yet): the request
 * side of those routes is still typed from schema.d.ts. Field names as the API prints them.
 */
export type Certificate = CertificateRecord;

export interface CertificatePage {
  certificates: Certificate[];
  total: number;
  limit: number;
  next_cursor: string | null;
}

export interface Device {
  tenant_id: string;
  device_id: string;
  site_id: string | null;
  status: string;
  created_at: string;
}

export interface DevicePage {
  devices: Device[];
  total: number;
  next_cursor: string | null;
}

export interface Issued {
  certificate: Certificate;
  cert_pem: string;
  private_key_pem?: string;
  ca_cert_pem: string;
  warning?: string;
}

export interface Rotated {
  new_certificate: Certificate;
  cert_pem: string;
  private_key_pem?: string;
  old_certificates: { id: number; fingerprint: string; status: string; scheduled_revoke_at: string | null }[];
  grace_period_hours: number;
  warning?: string;
}

export interface Rotation {
  device_id: string;
  new_certificate: Certificate;
  next_revoke_at: string;
  old_certificates: { id: number; fingerprint: string; status: string; scheduled_revoke_at: string }[];
}

export type Alert = AlertRecord;

export interface AlertPage {
  alerts: Alert[];
  total: number;
  next_cursor: string | null;
}

export interface Webhook {
  id: number;
  url: string;
  description: string | null;
  enabled: boolean;
  created_at: string;
}

export interface WebhookCreated {
  webhook: Webhook;
  secret: string;
  warning?: string;
}

export interface Delivery {
  id: number;
  event: string;
  status: string;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
}
