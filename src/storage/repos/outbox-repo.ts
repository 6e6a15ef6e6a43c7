import type { ClaimedDelivery, DeliveryOutcome } from '../../app/storage-ports.ts';
import type { DeliveryRecord } from '../../domain/webhook.ts';
import type { Queryable } from '../driver.ts';
import { iso, isoOrNull } from '../rows.ts';
import { toAlert } from './alert-row.ts';

/**
 * SQL for a CTE that queues one outbox row per (alert, enabled webhook of its tenant), in the
 * statement that changed the alerts: `source` names a CTE of fleet_alert rows (RETURNING
 * f.*), `event` is an SQL expression over its alias `a`, `now` a parameter. The payload
 * snapshots the alert row as it is now (to_jsonb), so a later change does not alter what
 * this event said.
 */
export const enqueueAlertEvents = (source: string, event: string, now: string) => `
  INSERT INTO notification_outbox (tenant_id, webhook_id, alert_id, event, payload, next_attempt_at, created_at)
  SELECT a.tenant_id, w.id, a.id, ${event}, jsonb_build_object('alert', to_jsonb(a) - 'inserted', 'occurred_at', ${now}::timestamptz), ${now}, ${now}
  FROM ${source} a JOIN notification_webhooks w ON w.tenant_id = a.tenant_id AND w.enabled`;

/** The outbox row's snapshot (to_jsonb of the alert row) as webhooks show it. */
const toPayload = (p: { alert: Record<string, unknown>; occurred_at: unknown }): ClaimedDelivery['payload'] => ({
  alert: toAlert(p.alert),
  occurred_at: iso(p.occurred_at),
});

/**
 * Claims up to `limit` due deliveries of enabled webhooks, at most `perWebhook` per endpoint
 * (a dead endpoint with a backlog cannot fill the batch). The claim is the attempt counter
 * plus next_attempt_at pushed `claimMs` ahead: another replica does not see the rows as due
 * until then, and if this process dies mid-send they are retried after it. Operator role.
 */
export async function claimDueDeliveries(tx: Queryable, q: { now: Date; limit: number; perWebhook: number; claimMs: number }): Promise<ClaimedDelivery[]> {
  const { rows } = await tx.query(
    `WITH due AS (
       SELECT o.id, o.webhook_id FROM notification_outbox o
       JOIN notification_webhooks w ON w.id = o.webhook_id AND w.enabled
       WHERE o.status = 'PENDING' AND o.next_attempt_at <= $1
       ORDER BY o.next_attempt_at, o.id
       LIMIT $2 FOR UPDATE OF o SKIP LOCKED
     ), fair AS (
       SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY webhook_id ORDER BY id) AS rn FROM due) d
       WHERE rn <= $3 ORDER BY rn, id LIMIT $5
     )
     UPDATE notification_outbox o
     SET attempts = o.attempts + 1, last_attempt_at = $1, next_attempt_at = $1::timestamptz + $4 * interval '1 millisecond'
     FROM fair, notification_webhooks w
     WHERE o.id = fair.id AND w.id = o.webhook_id
     RETURNING o.id, o.tenant_id, o.webhook_id, o.event, o.payload, o.attempts, w.url, w.secret`,
    [q.now, q.limit * 4, q.perWebhook, q.claimMs, q.limit],
  );
  return rows
    .map((r) => ({
      id: Number(r.id),
      tenantId: String(r.tenant_id),
      webhookId: Number(r.webhook_id),
      event: String(r.event),
      payload: toPayload((typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload) as { alert: Record<string, unknown>; occurred_at: unknown }),
      attempt: Number(r.attempts),
      url: String(r.url),
      secret: String(r.secret),
    }))
    .sort((a, b) => a.id - b.id);
}

/** Records a batch of outcomes in one statement. */
export async function recordDeliveryOutcomes(tx: Queryable, outcomes: DeliveryOutcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  await tx.query(
    `UPDATE notification_outbox o
     SET status = r.status, delivered_at = r.delivered_at, next_attempt_at = COALESCE(r.next_attempt_at, o.next_attempt_at),
         last_status_code = r.code, last_error = r.error
     FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[], $7::text[])
          AS r(id, attempt, status, delivered_at, next_attempt_at, code, error)
     WHERE o.id = r.id AND o.attempts = r.attempt AND o.status = 'PENDING'`,
    [
      outcomes.map((o) => o.id),
      outcomes.map((o) => o.attempt),
      outcomes.map((o) => o.status),
      outcomes.map((o) => o.deliveredAt),
      outcomes.map((o) => o.nextAttemptAt),
      outcomes.map((o) => o.statusCode),
      outcomes.map((o) => o.error),
    ],
  );
}

/** Deletes delivered and dead rows created before `before`, at most `limit` per call. */
export async function pruneDeliveries(tx: Queryable, before: Date, limit: number): Promise<number> {
  const { rowCount } = await tx.query(
    `DELETE FROM notification_outbox WHERE id IN (
       SELECT id FROM notification_outbox WHERE status <> 'PENDING' AND created_at < $1 ORDER BY created_at LIMIT $2)`,
    [before, limit],
  );
  return rowCount;
}

/** The latest deliveries of one webhook, newest first (tenant scope through RLS). */
export async function listDeliveries(tx: Queryable, webhookId: number, limit: number): Promise<DeliveryRecord[]> {
  const { rows } = await tx.query(
    `SELECT id, webhook_id, alert_id, event, status, attempts, next_attempt_at, last_attempt_at, last_status_code, last_error, delivered_at, created_at
     FROM notification_outbox WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2`,
    [webhookId, limit],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    webhook_id: Number(r.webhook_id),
    alert_id: r.alert_id === null ? null : Number(r.alert_id),
    event: String(r.event),
    status: String(r.status),
    attempts: Number(r.attempts),
    next_attempt_at: r.status === 'PENDING' ? isoOrNull(r.next_attempt_at) : null,
    last_attempt_at: isoOrNull(r.last_attempt_at),
    last_status_code: r.last_status_code === null ? null : Number(r.last_status_code),
    last_error: (r.last_error as string | null) ?? null,
    delivered_at: isoOrNull(r.delivered_at),
    created_at: iso(r.created_at),
  }));
}
