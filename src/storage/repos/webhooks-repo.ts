import type { WebhookRecord } from '../../domain/webhook.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { iso } from '../rows.ts';

const COLUMNS = 'id, tenant_id, url, description, enabled, created_by, created_at, updated_at';

const toWebhook = (r: Record<string, unknown>): WebhookRecord => ({
  id: Number(r.id),
  tenant_id: String(r.tenant_id),
  url: String(r.url),
  description: (r.description as string | null) ?? null,
  enabled: Boolean(r.enabled),
  created_by: String(r.created_by),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

export async function insertWebhook(
  tx: Queryable,
  w: { tenantId: string; url: string; description: string | null; enabled: boolean; secret: (id: number) => string; createdBy: string; now: Date },
): Promise<WebhookRecord> {
  // The id first: the secret is sealed for it (associated data), then stored with the row.
  const next = await tx.query<{ id: string }>(`SELECT nextval(pg_get_serial_sequence('notification_webhooks', 'id'))::text AS id`);
  const id = Number(onlyRow(next.rows, 'next webhook id').id);
  const { rows } = await tx.query(
    `INSERT INTO notification_webhooks (id, tenant_id, url, description, enabled, secret, created_by, created_at, updated_at)
     VALUES ($8, $1, $2, $3, $4, $5, $6, $7, $7) RETURNING ${COLUMNS}`,
    [w.tenantId, w.url, w.description, w.enabled, w.secret(id), w.createdBy, w.now, id],
  );
  return toWebhook(onlyRow(rows, 'insert webhook'));
}

export async function listWebhooks(tx: Queryable): Promise<WebhookRecord[]> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM notification_webhooks ORDER BY id`);
  return rows.map(toWebhook);
}

export async function findWebhook(tx: Queryable, id: number): Promise<WebhookRecord | null> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM notification_webhooks WHERE id = $1`, [id]);
  return rows[0] ? toWebhook(rows[0]) : null;
}

export async function updateWebhook(
  tx: Queryable,
  id: number,
  changes: { url?: string; description?: string | null; enabled?: boolean; secret?: string },
  now: Date,
): Promise<WebhookRecord | null> {
  const sets: string[] = [];
  const params: unknown[] = [id, now];
  for (const column of ['url', 'description', 'enabled', 'secret'] as const) {
    const value = changes[column];
    if (value === undefined) continue;
    params.push(value);
    sets.push(`${column} = $${params.length}`);
  }
  const { rows } = await tx.query(
    `UPDATE notification_webhooks SET ${[...sets, 'updated_at = $2'].join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
    params,
  );
  return rows[0] ? toWebhook(rows[0]) : null;
}

/** Deletes the endpoint and (cascade) its queued deliveries. */
export async function deleteWebhook(tx: Queryable, id: number): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM notification_webhooks WHERE id = $1', [id]);
  return rowCount > 0;
}

/** Endpoints whose secret is still stored in plaintext (written before encryption at rest). Operator role. */
export async function listPlaintextSecrets(tx: Queryable): Promise<{ id: number; tenantId: string; secret: string }[]> {
  const { rows } = await tx.query(`SELECT id, tenant_id, secret FROM notification_webhooks WHERE secret NOT LIKE 'v1:%' AND secret NOT LIKE 'v2:%' ORDER BY id`);
  return rows.map((r) => ({ id: Number(r.id), tenantId: String(r.tenant_id), secret: String(r.secret) }));
}

/** Endpoints after `afterId` whose secret is not sealed by the current key (`prefix`), by id: the work of a re-encryption. Operator role. */
export async function listSecretsNotUnder(tx: Queryable, prefix: string, afterId: number, limit: number): Promise<{ id: number; tenantId: string; secret: string }[]> {
  const { rows } = await tx.query(
    `SELECT id, tenant_id, secret FROM notification_webhooks WHERE id > $2 AND left(secret, length($1)) <> $1 ORDER BY id LIMIT $3`,
    [prefix, afterId, limit],
  );
  return rows.map((r) => ({ id: Number(r.id), tenantId: String(r.tenant_id), secret: String(r.secret) }));
}

/** Replaces a stored secret by its encrypted form, unless it changed meanwhile (rotated). Operator role. */
export async function replaceStoredSecret(tx: Queryable, id: number, from: string, to: string): Promise<boolean> {
  const { rowCount } = await tx.query('UPDATE notification_webhooks SET secret = $3 WHERE id = $1 AND secret = $2', [id, from, to]);
  return rowCount > 0;
}

/** Provisioning policies whose approval webhook secret is not under the current key (`prefix`), by tenant id. Operator role. */
export async function listApprovalSecretsNotUnder(tx: Queryable, prefix: string, afterTenant: string, limit: number): Promise<{ tenantId: string; secret: string }[]> {
  const { rows } = await tx.query(
    `SELECT tenant_id, approval_secret FROM provisioning_policies
      WHERE approval_secret IS NOT NULL AND tenant_id > $2 AND left(approval_secret, length($1)) <> $1 ORDER BY tenant_id LIMIT $3`,
    [prefix, afterTenant, limit],
  );
  return rows.map((r) => ({ tenantId: String(r.tenant_id), secret: String(r.approval_secret) }));
}

/** Replaces a sealed approval secret, unless it changed meanwhile (rotated). Operator role. */
export async function replaceApprovalSecret(tx: Queryable, tenantId: string, from: string, to: string): Promise<boolean> {
  const { rowCount } = await tx.query('UPDATE provisioning_policies SET approval_secret = $3 WHERE tenant_id = $1 AND approval_secret = $2', [tenantId, from, to]);
  return rowCount > 0;
}

/**
 * The tenant's webhook count, with the tenant's webhook creations serialised until the
 * transaction ends (a transaction-scoped advisory lock): two parallel creates cannot both
 * see a count below the cap.
 */
export async function countWebhooksForCreate(tx: Queryable, tenantId: string): Promise<number> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext('certfleet:notification_webhooks'), hashtext($1))`, [tenantId]);
  const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM notification_webhooks WHERE tenant_id = $1', [tenantId]);
  return Number(onlyRow(rows, 'count webhooks').n);
}
