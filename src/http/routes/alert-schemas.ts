import { ALERT_STATUSES } from '../../domain/alert.ts';
import { certificateIdParam, pageQuery } from '../schemas.ts';

/** `/alerts/{id}` and `/notification-webhooks/{id}`: the same positive integer id as certificates. */
export const idParam = certificateIdParam;

export const alertListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { type: 'string', pattern: '^[A-Z][A-Z0-9_]{0,63}$' },
    status: { type: 'string', enum: [...ALERT_STATUSES] },
    unresolved: { type: 'boolean', description: 'true: OPEN and ACKNOWLEDGED alerts (not CLOSED), what needs attention' },
    device_id: { type: 'string', maxLength: 128 },
    severity: { type: 'integer', minimum: 0, maximum: 10 },
    min_severity: { type: 'integer', minimum: 0, maximum: 10 },
    tenant_id: { type: 'string', maxLength: 128 },
    ...pageQuery,
  },
} as const;

export interface AlertListQuerystring {
  type?: string;
  status?: (typeof ALERT_STATUSES)[number];
  unresolved?: boolean;
  device_id?: string;
  severity?: number;
  min_severity?: number;
  tenant_id?: string;
  limit: number;
  cursor?: string;
}

export const toListAlertsInput = (q: AlertListQuerystring, cursor: number | undefined) => ({
  type: q.type,
  status: q.status,
  unresolved: q.unresolved,
  deviceId: q.device_id,
  severity: q.severity,
  minSeverity: q.min_severity,
  limit: q.limit,
  cursor,
});
