/** A webhook endpoint as the API shows it: never with its secret (the tenant role cannot even read that column). */
export interface WebhookRecord {
  id: number;
  tenant_id: string;
  url: string;
  description: string | null;
  enabled: boolean;
  created_by: string;
  created_at: string;
  updated_at: string;
}

/** One queued or sent alert event of an endpoint, as the API shows it. */
export interface DeliveryRecord {
  id: number;
  webhook_id: number;
  alert_id: number | null;
  event: string;
  status: string;
  attempts: number;
  next_attempt_at: string | null;
  last_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: string | null;
  created_at: string;
}
