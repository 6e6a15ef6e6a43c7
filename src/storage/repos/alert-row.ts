import type { AlertRecord, AlertStatus } from '../../domain/alert.ts';
import { iso, isoOrNull } from '../rows.ts';

/** A row of fleet_alert (from a query, or the jsonb snapshot an outbox row carries) as the API and webhooks show it. */
export const toAlert = (r: Record<string, unknown>): AlertRecord => ({
  id: Number(r.id),
  tenant_id: String(r.tenant_id),
  device_id: (r.device_id as string | null) ?? null,
  alert_type: String(r.alert_type),
  fingerprint: String(r.fingerprint),
  status: r.status as AlertStatus,
  severity: Number(r.severity),
  summary: String(r.summary),
  details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
  acknowledged_at: isoOrNull(r.acknowledged_at),
  acknowledged_by: (r.acknowledged_by as string | null) ?? null,
  closed_at: isoOrNull(r.closed_at),
  closed_by: (r.closed_by as string | null) ?? null,
  close_reason: (r.close_reason as string | null) ?? null,
});
